// The configuration summary lines (upstream's conf_print(), spec §10.2).
import PasstConfig
import PasstWire
import Testing

@Suite("Configuration summary", .serialized)
struct ConfigurationSummaryTests {
    @Test("typical pasta host with a loopback resolver and a search domain")
    func typicalPasta() throws {
        let host = typicalHost(nameservers4: [IPv4Address(127, 0, 0, 53)], search: ["example.org"])
        let configuration = try resolveConfiguration(.pasta, [], host: host)
        #expect(configuration.summaryLines() == [
            "Template interface: eth0 (IPv4), eth0 (IPv6)",
            "Namespace interface: eth0",
            "MAC:",
            "    host: 9a:55:9a:55:9a:55",
            "    NAT to host 127.0.0.1: 192.0.2.1",
            "DHCP:",
            "    assign: 192.0.2.2",
            "    mask: 255.255.255.0",
            "    router: 192.0.2.1",
            "DNS:",
            "    192.0.2.1",
            "DNS search list:",
            "    example.org",
            "    NAT to host ::1: fe80::1",
            "NDP/DHCPv6:",
            "    assign: 2001:db8::2",
            "    router: fe80::1",
            "    our link-local: fe80::1",
            "DNS search list:",
            "    example.org",
        ])
    }

    @Test("passt in local mode")
    func localPasst() throws {
        let configuration = try resolveConfiguration(.passt, [], host: HostNetwork())
        #expect(configuration.summaryLines() == [
            "MAC:",
            "    host: 9a:55:9a:55:9a:55",
            "    NAT to host 127.0.0.1: 169.254.2.2",
            "DHCP:",
            "    assign: 169.254.2.1",
            "    mask: 255.255.0.0",
            "    router: 169.254.2.2",
            "    NAT to host ::1: fe80::1",
            "NDP:",
            "    assign: ::",
            "    router: fe80::1",
            "    our link-local: fe80::1",
        ])
    }

    @Test("outbound interfaces and addresses, IPv4 only, no DHCP, custom MAC")
    func outbound() throws {
        let configuration = try resolveConfiguration(
            .passt, ["-4", "--outbound-if4", "eth0", "-o", "192.0.2.2", "-M", "02:00:00:00:00:01", "--no-dhcp",
                     "-D", "192.0.2.53", "-D", "192.0.2.54", "--no-map-gw"],
            host: typicalHost())
        #expect(configuration.summaryLines() == [
            "Template interface: eth0 (IPv4)",
            "Outbound interface: eth0 (IPv4)",
            "Outbound address: 192.0.2.2",
            "MAC:",
            "    host: 02:00:00:00:00:01",
            "DNS:",
            "    192.0.2.53",
            "    192.0.2.54",
        ])
    }

    @Test("IPv6 only with DHCPv6 but no NDP")
    func dhcpv6Only() throws {
        let configuration = try resolveConfiguration(.passt, ["-6", "--no-ndp", "-D", "2001:db8::53", "-S", "a.example",
                                                              "-o", "2001:db8::2"], host: typicalHost())
        #expect(configuration.summaryLines() == [
            "Template interface: eth0 (IPv6)",
            "Outbound address: 2001:db8::2",
            "MAC:",
            "    host: 9a:55:9a:55:9a:55",
            "    NAT to host ::1: fe80::1",
            "DHCPv6:",
            "    assign: 2001:db8::2",
            "    router: fe80::1",
            "    our link-local: fe80::1",
            "DNS:",
            "    2001:db8::53",
            "DNS search list:",
            "    a.example",
        ])
    }
}
