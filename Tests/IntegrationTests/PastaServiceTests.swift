// pasta's answers to real clients: ping through ping sockets, dhclient (DHCP and DHCPv6), SLAAC
// from router advertisements, and the -p capture of it all read back by tshark.
//
// The clients run inside the namespace pasta spawns, in the test bed's host namespace; the
// router namespace answers the pings. dhclient is kept away from system files: -sf /bin/true (no
// configuration script), lease and PID files in a scratch directory, one attempt (-1). When the
// spawned shell exits, its PID namespace ends, which ends dhclient too.
import Foundation
import Testing
import PasstSys

/// A shell command that brings eth0 up and asks for a DHCP (`family` "-4") or DHCPv6 ("-6")
/// lease once, writing the lease to `directory`/lease`family`, then prints it. For DHCPv6 it first
/// waits (up to 5 s) for the link-local address to finish duplicate address detection.
func dhclientScript(_ family: String, directory: String) -> String {
    let lease = "\(directory)/lease\(family)", pid = "\(directory)/pid\(family)"
    let waitForLinkLocal = family == "-6"
        ? "for i in $(seq 25); do ip -6 addr show dev eth0 scope link | grep inet6 | grep -qv tentative && break; sleep 0.2; done; "
        : ""
    return "ip link set eth0 up && \(waitForLinkLocal)dhclient \(family) -1 -sf /bin/true -lf \(lease) -pf \(pid) eth0"
        + " && cat \(lease)"
}

@Suite("pasta services and ICMP", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct PastaServiceTests {
    @Test("ping to the gateway answered over IPv4 and IPv6")
    func ping() async throws {
        try await withTestBed { bed in
            let result = try bed.pasta(["--config-net", "--", "sh", "-c",
                                        "ping -c1 -W2 192.0.2.1 && ping -6 -c1 -W2 fd00::1"])
            #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
            #expect(result.stdout.contains("1 received"))
        }
    }

    @Test("--no-icmp: no echo replies")
    func noICMP() async throws {
        try await withTestBed { bed in
            let result = try bed.pasta(["--config-net", "--no-icmp", "--", "ping", "-c1", "-W1", "192.0.2.1"])
            #expect(result.status != 0)
        }
    }

    @Test("dhclient -4 leases the host's address, router, DNS, search list and MTU")
    func dhcp() async throws {
        try await withTestBed { bed in
            let directory = try bed.scratchDirectory("dhcp4")
            let result = try bed.pasta(["--dhcp-dns", "--dhcp-search", "--", "sh", "-c",
                                        dhclientScript("-4", directory: directory)], timeout: 30)
            try #require(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("fixed-address 192.0.2.2;"))
            #expect(result.stdout.contains("option subnet-mask 255.255.255.0;"))
            #expect(result.stdout.contains("option routers 192.0.2.1;"))
            #expect(result.stdout.contains("option domain-name-servers 192.0.2.1;"))
            #expect(result.stdout.contains("option domain-search \"example.test.\", \"other.test.\";"))
            #expect(result.stdout.contains("option interface-mtu 65520;"))
        }
    }

    @Test("SLAAC gives an address in the host's /64; dhclient -6 leases the host's address and DNS")
    func ipv6Autoconfiguration() async throws {
        try await withTestBed { bed in
            let slaac = try bed.pasta(["--", "sh", "-c",
                                       "ip link set eth0 up; for i in 1 2 3 4 5 6 7 8 9 10; do "
                                       + "ip -j -6 addr show dev eth0 scope global | grep -q fd00:: && break; sleep 0.5; done; "
                                       + "ip -j -6 addr show dev eth0 scope global"], timeout: 30)
            try #require(slaac.status == 0, "\(slaac.stderr)")
            let link = try #require(try jsonObjects(slaac.stdout).first)
            #expect(addresses(of: link).contains { $0.hasPrefix("fd00::") && $0.hasSuffix("/64") }, "\(slaac.stdout)")

            let directory = try bed.scratchDirectory("dhcp6")
            let lease = try bed.pasta(["--dhcp-dns", "--dhcp-search", "--", "sh", "-c",
                                       dhclientScript("-6", directory: directory)], timeout: 30)
            try #require(lease.status == 0, "\(lease.stderr)")
            #expect(lease.stdout.contains("iaaddr fd00::2 {"))
            #expect(lease.stdout.contains("option dhcp6.name-servers fd00::1;"))
        }
    }

    @Test("-p capture holds the DHCP exchange, readable by tshark")
    func pcapCapture() async throws {
        try await withTestBed { bed in
            let directory = try bed.scratchDirectory("pcap")
            let capture = bed.directory + "/pasta.pcap"
            let result = try bed.pasta(["-p", capture, "--", "sh", "-c", dhclientScript("-4", directory: directory)],
                                       timeout: 30)
            try #require(result.status == 0, "\(result.stderr)")
            let attributes = try FileManager.default.attributesOfItem(atPath: capture)
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
            let types = try Command.check(["tshark", "-n", "-r", capture, "-Y", "dhcp", "-T", "fields",
                                           "-e", "dhcp.option.dhcp"], timeout: 30)
            #expect(types.split(separator: "\n").map(String.init) == ["1", "2", "3", "5"], "\(types)")
        }
    }
}
