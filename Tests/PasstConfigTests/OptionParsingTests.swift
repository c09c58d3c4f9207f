// Accepted forms of every option of spec §2, for passt and pasta.
import PasstConfig
import PasstWire
import Testing

@Suite("Option parsing", .serialized)
struct OptionParsingTests {
    @Test("mode from the program name")
    func programMode() {
        #expect(ProgramMode(programPath: "passt") == .passt)
        #expect(ProgramMode(programPath: "/usr/bin/pasta") == .pasta)
        #expect(ProgramMode(programPath: "/usr/bin/passt.avx2") == .passt)
        #expect(ProgramMode(programPath: "./pasta.avx2") == .pasta)
        #expect(ProgramMode(programPath: "/opt/pasta/bin/passt") == .passt)
        #expect(ProgramMode(programPath: "/usr/bin/qemu") == nil)
        #expect(ProgramMode(programPath: "") == nil)
    }

    @Test("defaults of both modes")
    func defaults() throws {
        let passt = try parseOptions(.passt, [])
        #expect(passt == Options(mode: .passt))
        #expect(passt.dhcpDNS && passt.dhcpSearch)
        #expect(passt.noSplice)
        #expect(passt.ourMAC == .passtDefault)
        #expect(passt.mtu == nil && passt.runAs == nil && passt.socketPath == nil && !passt.foreground)
        let pasta = try parseOptions(.pasta, [])
        #expect(!pasta.dhcpDNS && !pasta.dhcpSearch && !pasta.noSplice)
        #expect(pasta.pastaTarget == .spawn(command: []))
        #expect(pasta.netnsPath == nil && pasta.userNamespace == nil && !pasta.netnsOnly)
    }

    @Test("-d, --trace and -q: the later one decides")
    func verbosity() throws {
        let debug = try parseOptions(.passt, ["-d"])
        #expect(debug.debug && !debug.trace && !debug.quiet)
        let trace = try parseOptions(.passt, ["-q", "--trace"])
        #expect(trace.debug && trace.trace && !trace.quiet)
        let quiet = try parseOptions(.pasta, ["--trace", "-q"])
        #expect(!quiet.debug && !quiet.trace && quiet.quiet)
        let debugAfterQuiet = try parseOptions(.pasta, ["--quiet", "--debug"])
        #expect(debugAfterQuiet.debug && !debugAfterQuiet.quiet)
    }

    @Test("-f, -e (deprecated, warns), -l, --log-size")
    func processOptions() throws {
        #expect(try parseOptions(.passt, ["-f"]).foreground)
        #expect(try parseOptions(.pasta, ["--foreground"]).foreground)
        #expect(try parseWarnings(.passt, ["-e"]) == ["--stderr will be dropped soon"])
        #expect(try parseWarnings(.pasta, ["--stderr"]) == ["--stderr will be dropped soon"])
        #expect(try parseOptions(.passt, ["-l", "/tmp/passt.log"]).logFile == "/tmp/passt.log")
        #expect(try parseOptions(.passt, ["--log-size", "1048576"]).logSize == 1048576)
        #expect(try parseOptions(.pasta, ["--log-size", "0x100000"]).logSize == 1048576)
        #expect(try parseOptions(.pasta, ["--log-size", "40960"]).logSize == 40960)
    }

    @Test("--runas: numeric, names, base 0, GID defaults to UID for numbers")
    func runAs() throws {
        #expect(try parseOptions(.passt, ["--runas", "1000"]).runAs == RunAs(uid: 1000, gid: 1000))
        #expect(try parseOptions(.passt, ["--runas", "1000:100"]).runAs == RunAs(uid: 1000, gid: 100))
        #expect(try parseOptions(.passt, ["--runas", "0x10"]).runAs == RunAs(uid: 16, gid: 16))
        #expect(try parseOptions(.passt, ["--runas", "0"]).runAs == RunAs(uid: 0, gid: 0))
        #expect(try parseOptions(.pasta, ["--runas", "nobody"]).runAs == RunAs(uid: 65534, gid: 65534))
        #expect(try parseOptions(.pasta, ["--runas", "nobody:root"]).runAs == RunAs(uid: 65534, gid: 0))
        #expect(try parseOptions(.pasta, ["--runas", "1000:nogroup"]).runAs == RunAs(uid: 1000, gid: 65534))
    }

    @Test("-h, --help, --version and --print-capabilities end parsing")
    func informational() throws {
        #expect(try parseCommandLine(.passt, ["-h"]).request == .help)
        #expect(try parseCommandLine(.pasta, ["--help"]).request == .help)
        #expect(try parseCommandLine(.passt, ["--version"]).request == .version)
        #expect(try parseCommandLine(.pasta, ["--vers"]).request == .version)
        #expect(try parseCommandLine(.passt, ["--print-capabilities"]).request == .printCapabilities)
        #expect(try parseCommandLine(.passt, ["--vhost-user", "--print-capabilities"]).request == .printCapabilities)
    }

    @Test("passt: -s/--socket/--socket-path, -F and their order, -1, --vhost-user")
    func passtTransport() throws {
        #expect(try parseOptions(.passt, ["-s", "/tmp/s"]).socketPath == "/tmp/s")
        #expect(try parseOptions(.passt, ["--socket", "/tmp/s"]).socketPath == "/tmp/s")
        #expect(try parseOptions(.passt, ["--socket-path", "/tmp/s"]).socketPath == "/tmp/s")
        #expect(try parseOptions(.passt, ["--sock", "/tmp/s"]).socketPath == "/tmp/s")
        let fd = try parseOptions(.passt, ["-s", "/tmp/s", "-F", "5"])
        #expect(fd.tapFD == 5 && fd.socketPath == nil && fd.oneOff)
        let socket = try parseOptions(.passt, ["--fd", "5", "-s", "/tmp/s"])
        #expect(socket.tapFD == nil && socket.socketPath == "/tmp/s" && socket.oneOff)
        #expect(try parseOptions(.passt, ["-F", "0x10"]).tapFD == 16)
        #expect(try parseOptions(.passt, ["-1"]).oneOff)
        #expect(try parseOptions(.passt, ["--one-off"]).oneOff)
        #expect(try parseOptions(.passt, ["--vhost-user"]).vhostUser)
    }

    @Test("pasta: -F and -I")
    func pastaTap() throws {
        let options = try parseOptions(.pasta, ["-F", "3", "-I", "eth1"])
        #expect(options.tapFD == 3)
        #expect(options.namespaceInterfaceName == "eth1")
        #expect(try parseOptions(.pasta, ["--ns-ifname", "abcdefghijklmno"]).namespaceInterfaceName == "abcdefghijklmno")
    }

    @Test("-p and -P")
    func files() throws {
        let options = try parseOptions(.passt, ["-p", "/tmp/x.pcap", "-P", "/run/passt.pid"])
        #expect(options.pcapFile == "/tmp/x.pcap")
        #expect(options.pidFile == "/run/passt.pid")
        #expect(try parseOptions(.pasta, ["--pcap", "a", "--pid", "b"]).pidFile == "b")
    }

    @Test("-m: range 68-65535, 0 disables, strtol base 0")
    func mtu() throws {
        #expect(try parseOptions(.passt, ["-m", "1500"]).mtu == 1500)
        #expect(try parseOptions(.passt, ["-m", "68"]).mtu == 68)
        #expect(try parseOptions(.passt, ["-m", "65535"]).mtu == 65535)
        #expect(try parseOptions(.passt, ["-m", "0"]).mtu == 0)
        #expect(try parseOptions(.pasta, ["--mtu", "0x5dc"]).mtu == 1500)
    }

    @Test("-a: one address per family, pasta then doesn't copy that family's addresses")
    func address() throws {
        let passt = try parseOptions(.passt, ["-a", "192.0.2.10", "-a", "2001:db8::10"])
        #expect(passt.address4 == IPv4Address(192, 0, 2, 10))
        #expect(passt.address6 == IPv6Address("2001:db8::10"))
        #expect(!passt.noCopyAddresses4 && !passt.noCopyAddresses6)
        let pasta = try parseOptions(.pasta, ["--address", "10.0.2.15"])
        #expect(pasta.noCopyAddresses4 && !pasta.noCopyAddresses6)
        #expect(try parseOptions(.passt, ["-a", "192.0.2.1", "-a", "192.0.2.2"]).address4 == IPv4Address(192, 0, 2, 2))
        #expect(try parseOptions(.passt, ["-a", "240.0.0.1"]).address4 == IPv4Address(240, 0, 0, 1))
    }

    @Test("-n: prefix length or contiguous dotted netmask")
    func netmask() throws {
        #expect(try parseOptions(.passt, ["-n", "24"]).prefixLength4 == 24)
        #expect(try parseOptions(.passt, ["-n", "255.255.255.0"]).prefixLength4 == 24)
        #expect(try parseOptions(.passt, ["-n", "255.255.240.0"]).prefixLength4 == 20)
        #expect(try parseOptions(.passt, ["-n", "0x18"]).prefixLength4 == 24)
        #expect(try parseOptions(.passt, ["-n", "0"]).prefixLength4 == 0)
        #expect(try parseOptions(.passt, ["-n", "32"]).prefixLength4 == 32)
        #expect(try parseOptions(.passt, ["-n", "255.255.255.255"]).prefixLength4 == 32)
    }

    @Test("-M and --ns-mac-addr: strict MAC, either case")
    func macAddresses() throws {
        #expect(try parseOptions(.passt, ["-M", "12:34:56:78:9a:bc"]).ourMAC == MACAddress(0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc))
        #expect(try parseOptions(.passt, ["--mac-addr", "12:34:56:78:9A:BC"]).ourMAC == MACAddress(0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc))
        #expect(try parseOptions(.pasta, ["--ns-mac-addr", "02:00:00:00:00:01"]).namespaceMAC == MACAddress(2, 0, 0, 0, 0, 1))
    }

    @Test("-g: per family, pasta then doesn't copy that family's routes")
    func gateway() throws {
        let passt = try parseOptions(.passt, ["-g", "192.0.2.1", "-g", "fe80::1"])
        #expect(passt.gateway4 == IPv4Address(192, 0, 2, 1))
        #expect(passt.gateway6 == IPv6Address("fe80::1"))
        let pasta = try parseOptions(.pasta, ["--gateway", "fe80::1"])
        #expect(!pasta.noCopyRoutes4 && pasta.noCopyRoutes6)
    }

    @Test("-i and --outbound-if4/6: template interfaces")
    func interfaces() throws {
        let both = try parseOptions(.passt, ["-i", "eth0", "--outbound-if4", "lo"])
        #expect(both.interface == "eth0" && both.outboundInterface4 == "lo")
        #expect(both.templateInterface4 == "eth0" && both.templateInterface6 == "eth0")
        let outbound = try parseOptions(.pasta, ["--outbound-if4", "eth0", "--outbound-if6", "eth1"])
        #expect(outbound.templateInterface4 == "eth0" && outbound.templateInterface6 == "eth1")
        #expect(try parseOptions(.pasta, ["--interface", "lo"]).interface == "lo")
    }

    @Test("-o: outbound source per family, IPv4 loopback allowed")
    func outbound() throws {
        let options = try parseOptions(.passt, ["-o", "192.0.2.2", "--outbound", "2001:db8::2"])
        #expect(options.outboundAddress4 == IPv4Address(192, 0, 2, 2))
        #expect(options.outboundAddress6 == IPv6Address("2001:db8::2"))
        #expect(try parseOptions(.passt, ["-o", "127.0.0.1"]).outboundAddress4 == .loopback)
    }

    @Test("-D: repeatable, at most 3 per family, kept verbatim")
    func dns() throws {
        let options = try parseOptions(.passt, ["-D", "198.51.100.53", "-D", "2001:db8::53", "-D", "127.0.0.53",
                                                "-D", "203.0.113.53", "-D", "203.0.113.54"])
        #expect(options.dns4 == [IPv4Address(198, 51, 100, 53), IPv4Address(127, 0, 0, 53), IPv4Address(203, 0, 113, 53)])
        #expect(options.dns6 == [IPv6Address("2001:db8::53")!])
        #expect(!options.noDNS)
    }

    @Test("-D none clears DNS, --dns-forward and --dns-host, whatever the order")
    func dnsNone() throws {
        for arguments in [["--dns-forward", "169.254.1.1", "--dns-host", "192.0.2.53", "-D", "none"],
                          ["-D", "none", "--dns-forward", "169.254.1.1", "--dns-host", "192.0.2.53"]] {
            let options = try parseOptions(.pasta, arguments)
            #expect(options.noDNS && options.dns4.isEmpty)
            #expect(options.dnsForward4 == nil && options.dnsHost4 == nil)
        }
        let again = try parseOptions(.pasta, ["-D", "198.51.100.53", "-D", "none", "-D", "203.0.113.54", "--dns-forward", "fd00::53"])
        #expect(!again.noDNS && again.dns4 == [IPv4Address(203, 0, 113, 54)] && again.dnsForward6 == nil)
    }

    @Test("--dns-forward and --dns-host, one per family")
    func dnsForward() throws {
        let options = try parseOptions(.pasta, ["--dns-forward", "169.254.1.1", "--dns-forward", "fd00::53",
                                                "--dns-host", "192.0.2.53", "--dns-host", "::1"])
        #expect(options.dnsForward4 == IPv4Address(169, 254, 1, 1))
        #expect(options.dnsForward6 == IPv6Address("fd00::53"))
        #expect(options.dnsHost4 == IPv4Address(192, 0, 2, 53))
        #expect(options.dnsHost6 == .loopback)
        #expect(try parseOptions(.pasta, ["--dns-host", "127.0.0.53"]).dnsHost4 == IPv4Address(127, 0, 0, 53))
    }

    @Test("-S: each value is one entry; none clears")
    func search() throws {
        #expect(try parseOptions(.passt, ["-S", "a.example", "-S", "b.example c.example"]).searchDomains
            == ["a.example", "b.example c.example"])
        let none = try parseOptions(.passt, ["-S", "a.example", "-S", "none"])
        #expect(none.noSearch && none.searchDomains.isEmpty)
        let after = try parseOptions(.passt, ["-S", "none", "--search", "b.example"])
        #expect(!after.noSearch && after.searchDomains == ["b.example"])
        #expect(try parseOptions(.passt, ["-S", "a", "-S", "b", "-S", "c", "-S", "d", "-S", "e", "-S", "f"])
            .searchDomains.count == 6)
    }

    @Test("DHCP DNS/search switches per mode")
    func dhcpSwitches() throws {
        let passt = try parseOptions(.passt, ["--no-dhcp-dns", "--no-dhcp-search"])
        #expect(!passt.dhcpDNS && !passt.dhcpSearch)
        let pasta = try parseOptions(.pasta, ["--dhcp-dns", "--dhcp-search"])
        #expect(pasta.dhcpDNS && pasta.dhcpSearch)
    }

    @Test("protocol and service switches")
    func switches() throws {
        let options = try parseOptions(.pasta, ["--no-tcp", "--no-udp", "--no-icmp", "--no-dhcp", "--no-ndp",
                                                "--no-dhcpv6", "--no-ra", "--freebind", "--no-splice", "--no-map-gw"])
        #expect(options.noTCP && options.noUDP && options.noICMP && options.noDHCP && options.noNDP)
        #expect(options.noDHCPv6 && options.noRA && options.freebind && options.noSplice && options.noMapGateway)
        #expect(try parseOptions(.pasta, ["-t", "none", "--no-tcp"]).tcpPorts.mode == .none)
    }

    @Test("--map-host-loopback and --map-guest-addr, and 'none'")
    func addressMaps() throws {
        let options = try parseOptions(.pasta, ["--map-host-loopback", "192.0.2.100", "--map-host-loopback", "fd00::100",
                                                "--map-guest-addr", "169.254.1.2"])
        #expect(options.mapHostLoopback4 == IPv4Address(192, 0, 2, 100))
        #expect(options.mapHostLoopback6 == IPv6Address("fd00::100"))
        #expect(options.mapGuestAddress4 == IPv4Address(169, 254, 1, 2))
        #expect(!options.noMapGateway)
        let none = try parseOptions(.pasta, ["--map-host-loopback", "192.0.2.100", "--map-host-loopback", "none"])
        #expect(none.mapHostLoopback4 == nil && none.noMapGateway)
        let guestNone = try parseOptions(.passt, ["--map-guest-addr", "fd00::2", "--map-guest-addr", "none"])
        #expect(guestNone.mapGuestAddress6 == nil && !guestNone.noMapGateway)
    }

    @Test("-4 and -6: the later one wins")
    func families() throws {
        let v4 = try parseOptions(.passt, ["-6", "-4"])
        #expect(v4.ipv4Only && !v4.ipv6Only)
        let v6 = try parseOptions(.pasta, ["--ipv4-only", "--ipv6-only"])
        #expect(!v6.ipv4Only && v6.ipv6Only)
    }

    @Test("pasta --netns NAME means /run/netns/NAME and implies --netns-only")
    func netnsName() throws {
        let options = try parseOptions(.pasta, ["--netns", "ns1"])
        #expect(options.pastaTarget == .netns(path: "/run/netns/ns1"))
        #expect(options.netnsPath == "/run/netns/ns1")
        #expect(options.netnsOnly && options.userNamespace == nil)
        let path = try parseOptions(.pasta, ["--netns", "/run/user/1000/netns/netns-1", "--userns", "/proc/1/ns/user"])
        #expect(path.netnsPath == "/run/user/1000/netns/netns-1")
        #expect(!path.netnsOnly && path.userNamespace == "/proc/1/ns/user")
    }

    @Test("pasta --userns and --netns-only: the later one wins")
    func usernsOrder() throws {
        let userns = try parseOptions(.pasta, ["--netns-only", "--userns", "/u"])
        #expect(!userns.netnsOnly && userns.userNamespace == "/u")
        let netnsOnly = try parseOptions(.pasta, ["--userns", "/u", "--netns-only"])
        #expect(netnsOnly.netnsOnly && netnsOnly.userNamespace == nil)
    }

    @Test("pasta PID: netns and userns of the process")
    func pid() throws {
        let options = try parseOptions(.pasta, ["1234"])
        #expect(options.pastaTarget == .pid(1234))
        #expect(options.netnsPath == "/proc/1234/ns/net")
        #expect(options.userNamespace == "/proc/1234/ns/user" && !options.netnsOnly)
        #expect(try parseOptions(.pasta, ["--userns", "/u", "1234"]).userNamespace == "/u")
        let netnsOnly = try parseOptions(.pasta, ["--netns-only", "1234"])
        #expect(netnsOnly.netnsOnly && netnsOnly.userNamespace == "/proc/1234/ns/user")
        #expect(try parseOptions(.pasta, ["--", "0"]).pastaTarget == .pid(0))
    }

    @Test("pasta command: parsing stops at the first non-option")
    func command() throws {
        #expect(try parseOptions(.pasta, ["ip", "-d", "link"]).pastaTarget == .spawn(command: ["ip", "-d", "link"]))
        let dashed = try parseOptions(.pasta, ["-f", "--", "sh", "-c", "true"])
        #expect(dashed.pastaTarget == .spawn(command: ["sh", "-c", "true"]) && dashed.foreground && !dashed.debug)
        #expect(try parseOptions(.pasta, ["sh"]).pastaTarget == .spawn(command: ["sh"]))
        #expect(try parseOptions(.pasta, ["1234", "x"]).pastaTarget == .spawn(command: ["1234", "x"]))
    }

    @Test("pasta namespace switches: --config-net implies --no-ra")
    func namespaceSwitches() throws {
        let options = try parseOptions(.pasta, ["--config-net", "--no-netns-quit", "--host-lo-to-ns-lo"])
        #expect(options.configNet && options.noRA && options.noNetnsQuit && options.hostLoopbackToNamespaceLoopback)
        let parsed = try parseCommandLine(.pasta, ["--no-copy-routes", "--no-copy-addrs", "--config-net"])
        #expect(parsed.warnings == ["--no-copy-routes will be dropped soon", "--no-copy-addrs will be dropped soon"])
        guard case .run(let copy) = parsed.request else { Issue.record("not run"); return }
        #expect(copy.noCopyRoutes4 && copy.noCopyRoutes6 && copy.noCopyAddresses4 && copy.noCopyAddresses6)
    }

    @Test("unambiguous abbreviations of long options")
    func abbreviations() throws {
        #expect(try parseOptions(.pasta, ["--netns-o"]).netnsOnly)
        #expect(try parseOptions(.pasta, ["--conf"]).configNet)
        #expect(try parseOptions(.pasta, ["--dns-f", "169.254.1.1"]).dnsForward4 == IPv4Address(169, 254, 1, 1))
        #expect(try parseOptions(.passt, ["--mtu=1500"]).mtu == 1500)
        #expect(try parseOptions(.passt, ["--tcp-p=22"]).tcpPorts.forwarded.ports == [22])
    }
}
