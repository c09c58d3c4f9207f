// Configuration resolution (spec §3.1-§3.3): options plus discovered host network.
import PasstConfig
import PasstWire
import Testing

@Suite("Configuration resolution", .serialized)
struct ConfigurationTests {
    @Test("local mode: no template for either family")
    func localMode() throws {
        let configuration = try resolveConfiguration(.pasta, [], host: HostNetwork())
        #expect(configuration.isLocalMode)
        #expect(configuration.notices == ["No external interface as template, switch to local mode"])
        let ipv4 = try #require(configuration.ipv4)
        #expect(ipv4.address == IPv4Address(169, 254, 2, 1) && ipv4.prefixLength == 16)
        #expect(ipv4.gateway == IPv4Address(169, 254, 2, 2) && ipv4.ourTapAddress == IPv4Address(169, 254, 2, 2))
        #expect(ipv4.mapHostLoopback == IPv4Address(169, 254, 2, 2))
        #expect(!ipv4.copyAddresses && !ipv4.copyRoutes && ipv4.templateInterface == nil)
        let ipv6 = try #require(configuration.ipv6)
        #expect(ipv6.address == nil)
        #expect(ipv6.gateway == IPv6Address("fe80::1") && ipv6.ourLinkLocal == IPv6Address("fe80::1"))
        #expect(configuration.namespaceInterfaceName == "tap0")
        #expect(configuration.dhcpEnabled && configuration.ndpEnabled && !configuration.dhcpv6Enabled)
        #expect(configuration.mtu == 65520)
    }

    @Test("local mode ignores -a/-g for IPv4 and keeps -I")
    func localModeOverrides() throws {
        let configuration = try resolveConfiguration(.pasta, ["-a", "100.64.0.2", "-g", "100.64.0.1", "-I", "eth5"],
                                                     host: HostNetwork())
        #expect(configuration.ipv4?.address == IPv4Address(169, 254, 2, 1))
        #expect(configuration.namespaceInterfaceName == "eth5")
    }

    @Test("local mode even with -4: both families come back")
    func localModeBothFamilies() throws {
        let configuration = try resolveConfiguration(.passt, ["-4"], host: HostNetwork())
        #expect(configuration.isLocalMode && configuration.ipv4 != nil && configuration.ipv6 != nil)
    }

    @Test("typical host: addresses, gateway, our addresses, template names")
    func typical() throws {
        let configuration = try resolveConfiguration(.pasta, [], host: typicalHost())
        #expect(!configuration.isLocalMode && configuration.notices.isEmpty)
        let ipv4 = try #require(configuration.ipv4)
        #expect(ipv4.templateInterface == "eth0")
        #expect(ipv4.address == IPv4Address(192, 0, 2, 2) && ipv4.prefixLength == 24)
        #expect(ipv4.gateway == IPv4Address(192, 0, 2, 1) && ipv4.ourTapAddress == IPv4Address(192, 0, 2, 1))
        #expect(ipv4.mapHostLoopback == IPv4Address(192, 0, 2, 1) && ipv4.mapGuestAddress == nil)
        #expect(ipv4.copyAddresses && ipv4.copyRoutes)
        let ipv6 = try #require(configuration.ipv6)
        #expect(ipv6.address == IPv6Address("2001:db8::2"))
        #expect(ipv6.ourLinkLocal == IPv6Address("fe80::1"))
        #expect(ipv6.mapHostLoopback == IPv6Address("fe80::1"))
        #expect(configuration.namespaceInterfaceName == "eth0")
        #expect(configuration.dhcpEnabled && configuration.ndpEnabled && configuration.dhcpv6Enabled)
        #expect(configuration.routerAdvertisementsEnabled)
    }

    @Test("IPv6: a global gateway leaves our link-local to the host's")
    func globalGateway() throws {
        var host = typicalHost()
        host.ipv6?.gateway = IPv6Address("2001:db8::1")
        let ipv6 = try #require(try resolveConfiguration(.passt, [], host: host).ipv6)
        #expect(ipv6.ourLinkLocal == IPv6Address("fe80::2"))
        #expect(ipv6.gateway == IPv6Address("2001:db8::1"))
    }

    @Test("a family without address (IPv6: or link-local) is disabled")
    func unusableFamilies() throws {
        var host = typicalHost()
        host.ipv4?.address = nil
        host.ipv6?.linkLocal = nil
        host.ipv6?.gateway = IPv6Address("2001:db8::1")
        #expect(try resolveConfiguration(.passt, [], host: host).isLocalMode)
        host.ipv6?.gateway = IPv6Address("fe80::1")
        let configuration = try resolveConfiguration(.passt, [], host: host)
        #expect(configuration.ipv4 == nil && configuration.ipv6 != nil)
        #expect(!configuration.dhcpEnabled)
    }

    @Test("-4 and -6 disable the other family")
    func familySwitches() throws {
        let v4 = try resolveConfiguration(.passt, ["-4"], host: typicalHost())
        #expect(v4.ipv4 != nil && v4.ipv6 == nil && !v4.ndpEnabled && !v4.dhcpv6Enabled)
        let v6 = try resolveConfiguration(.passt, ["-6"], host: typicalHost())
        #expect(v6.ipv4 == nil && v6.ipv6 != nil && !v6.dhcpEnabled)
    }

    @Test("-a without -n: classful prefix; -n applies only with -a", arguments: [
        ("100.64.2.3", nil as String?, 8), ("172.16.1.1", nil, 16), ("192.168.1.1", nil, 24), ("240.0.0.1", nil, 32),
        ("100.64.2.3", "20", 20), ("100.64.2.3", "255.255.255.0", 24), ("192.168.1.1", "0", 24),
    ])
    func classful(address: String, netmask: String?, prefix: Int) throws {
        let arguments = ["-a", address] + (netmask.map { ["-n", $0] } ?? [])
        let ipv4 = try #require(try resolveConfiguration(.passt, arguments, host: typicalHost()).ipv4)
        #expect(ipv4.address == IPv4Address(address))
        #expect(ipv4.prefixLength == prefix)
    }

    @Test("-n without -a: the host's prefix wins")
    func netmaskWithoutAddress() throws {
        let ipv4 = try #require(try resolveConfiguration(.passt, ["-n", "16"], host: typicalHost()).ipv4)
        #expect(ipv4.prefixLength == 24)
    }

    @Test("-a makes a family usable when the host has no address there")
    func addressWithoutHostAddress() throws {
        var host = typicalHost()
        host.ipv4?.address = nil
        let ipv4 = try #require(try resolveConfiguration(.pasta, ["-a", "192.0.2.20"], host: host).ipv4)
        #expect(ipv4.address == IPv4Address(192, 0, 2, 20) && ipv4.prefixLength == 24 && !ipv4.copyAddresses)
    }

    @Test("-g overrides the gateway, and with it our tap address and the loopback map")
    func gatewayOverride() throws {
        let configuration = try resolveConfiguration(.pasta, ["-g", "192.0.2.254", "-g", "fe80::fe"], host: typicalHost())
        #expect(configuration.ipv4?.gateway == IPv4Address(192, 0, 2, 254))
        #expect(configuration.ipv4?.ourTapAddress == IPv4Address(192, 0, 2, 254))
        #expect(configuration.ipv4?.mapHostLoopback == IPv4Address(192, 0, 2, 254))
        #expect(configuration.ipv4?.copyRoutes == false)
        #expect(configuration.ipv6?.ourLinkLocal == IPv6Address("fe80::fe"))
    }

    @Test("no default route: no gateway, no DHCP, no loopback mapping")
    func noGateway() throws {
        var host = typicalHost(nameservers4: [IPv4Address(127, 0, 0, 53)])
        host.ipv4?.gateway = nil
        let configuration = try resolveConfiguration(.passt, [], host: host)
        let ipv4 = try #require(configuration.ipv4)
        #expect(ipv4.gateway == nil && ipv4.ourTapAddress == nil && ipv4.mapHostLoopback == nil)
        #expect(!configuration.dhcpEnabled)
        #expect(ipv4.dns.isEmpty && ipv4.dnsHost == IPv4Address(127, 0, 0, 53))
    }

    @Test("--outbound-if4 with IPv4 unusable: External interface not usable")
    func outboundInterfaceUnusable() throws {
        var host = typicalHost()
        host.ipv4 = nil
        #expect(throws: ConfigError("External interface not usable")) {
            try resolveConfiguration(.passt, ["--outbound-if4", "eth0"], host: host)
        }
        #expect(throws: ConfigError("External interface not usable")) {
            try resolveConfiguration(.passt, ["-4", "--outbound-if6", "eth0"], host: typicalHost())
        }
        let fine = try resolveConfiguration(.passt, ["--outbound-if4", "eth0"], host: typicalHost())
        #expect(fine.ipv4?.outboundInterface == "eth0")
    }

    @Test("loopback name servers become the map-host-loopback address and the DNS match")
    func loopbackNameservers() throws {
        let host = typicalHost(nameservers4: [IPv4Address(127, 0, 0, 53), IPv4Address(192, 0, 2, 53)],
                               nameservers6: [IPv6Address.loopback])
        let configuration = try resolveConfiguration(.passt, [], host: host)
        let ipv4 = try #require(configuration.ipv4)
        #expect(ipv4.dns == [IPv4Address(192, 0, 2, 1), IPv4Address(192, 0, 2, 53)])
        #expect(ipv4.dnsMatch == IPv4Address(192, 0, 2, 1))
        #expect(ipv4.dnsHost == IPv4Address(127, 0, 0, 53))
        let ipv6 = try #require(configuration.ipv6)
        #expect(ipv6.dns == [IPv6Address("fe80::1")!] && ipv6.dnsMatch == IPv6Address("fe80::1"))
        #expect(ipv6.dnsHost == .loopback)
        #expect(configuration.warnings.isEmpty)
    }

    @Test("--dns-forward keeps its match address; --dns-host keeps its host")
    func dnsForward() throws {
        let host = typicalHost(nameservers4: [IPv4Address(127, 0, 0, 53)])
        let configuration = try resolveConfiguration(
            .pasta, ["--dns-forward", "169.254.1.1", "--dns-host", "192.0.2.53", "--map-host-loopback", "192.0.2.100"],
            host: host)
        let ipv4 = try #require(configuration.ipv4)
        #expect(ipv4.dnsMatch == IPv4Address(169, 254, 1, 1))
        #expect(ipv4.dnsHost == IPv4Address(192, 0, 2, 53))
        #expect(ipv4.dns == [IPv4Address(192, 0, 2, 100)])
        #expect(ipv4.mapHostLoopback == IPv4Address(192, 0, 2, 100))
    }

    @Test("--no-map-gw: loopback name servers are skipped, with upstream's warnings")
    func noMapGateway() throws {
        let host = typicalHost(nameservers4: [IPv4Address(127, 0, 0, 53)])
        let passt = try resolveConfiguration(.passt, ["--no-map-gw"], host: host)
        #expect(passt.ipv4?.dns == [] && passt.ipv4?.mapHostLoopback == nil && passt.ipv4?.dnsMatch == nil)
        #expect(passt.warnings == ["Couldn't get any nameserver address", "No IPv4 nameserver available for DHCP",
                                   "No IPv6 nameserver available for NDP/DHCPv6"])
        let pasta = try resolveConfiguration(.pasta, ["--no-map-gw", "--dns-forward", "169.254.1.1"], host: host)
        #expect(pasta.warnings == ["Couldn't get any nameserver address"])
        #expect(pasta.ipv4?.dnsMatch == IPv4Address(169, 254, 1, 1))
        #expect(pasta.ipv4?.dnsHost == IPv4Address(127, 0, 0, 53))
    }

    @Test("-D covers its family only; the other one is read from resolv.conf")
    func dnsPerFamily() throws {
        let host = typicalHost(nameservers4: [IPv4Address(192, 0, 2, 53)], nameservers6: [IPv6Address("2001:db8::53")!])
        let configuration = try resolveConfiguration(.passt, ["-D", "198.51.100.53"], host: host)
        #expect(configuration.ipv4?.dns == [IPv4Address(198, 51, 100, 53)] && configuration.ipv4?.dnsHost == nil)
        #expect(configuration.ipv6?.dns == [IPv6Address("2001:db8::53")!])
        #expect(configuration.ipv6?.dnsHost == IPv6Address("2001:db8::53"))
    }

    @Test("-D none: no DNS and no warnings, even from resolv.conf")
    func dnsNone() throws {
        let host = typicalHost(nameservers4: [IPv4Address(192, 0, 2, 53)], search: ["example.org"])
        let configuration = try resolveConfiguration(.passt, ["-D", "none", "--dns-forward", "192.0.2.99"], host: host)
        #expect(configuration.ipv4?.dns == [] && configuration.ipv4?.dnsMatch == nil && configuration.ipv4?.dnsHost == nil)
        #expect(configuration.warnings.isEmpty)
        #expect(configuration.searchDomains == ["example.org"])
    }

    @Test("at most 3 name servers per family from resolv.conf")
    func nameserverLimit() throws {
        let servers = (1...3).map { IPv4Address(192, 0, 2, UInt8($0)) }
        let host = typicalHost(nameservers4: [IPv4Address(127, 0, 0, 53)] + servers)
        #expect(try resolveConfiguration(.passt, [], host: host).ipv4?.dns
            == [IPv4Address(192, 0, 2, 1)] + servers.prefix(2))
    }

    @Test("search list: from resolv.conf (at most 5, as upstream), -S, -S none")
    func searchList() throws {
        let host = typicalHost(nameservers4: [IPv4Address(192, 0, 2, 53)],
                               search: ["a.example", "b.example", "c.example", "d.example", "e.example", "f.example"])
        #expect(try resolveConfiguration(.passt, [], host: host).searchDomains.count == 5)
        #expect(try resolveConfiguration(.passt, ["-S", "x.example"], host: host).searchDomains == ["x.example"])
        #expect(try resolveConfiguration(.passt, ["-S", "none"], host: host).searchDomains == [])
    }

    @Test("--config-net disables router advertisements; the IPv6 DNS warning then needs DHCPv6")
    func configNet() throws {
        let configuration = try resolveConfiguration(.pasta, ["--config-net", "--dhcp-dns", "--no-dhcpv6"],
                                                     host: typicalHost(nameservers4: [IPv4Address(192, 0, 2, 53)]))
        #expect(!configuration.routerAdvertisementsEnabled && configuration.ndpEnabled)
        #expect(configuration.warnings.isEmpty)
        let withDHCPv6 = try resolveConfiguration(.pasta, ["--config-net", "--dhcp-dns"],
                                                  host: typicalHost(nameservers4: [IPv4Address(192, 0, 2, 53)]))
        #expect(withDHCPv6.warnings == ["No IPv6 nameserver available for NDP/DHCPv6"])
    }

    @Test("--map-guest-addr and --map-host-loopback pass through; none leaves no mapping")
    func addressMaps() throws {
        let configuration = try resolveConfiguration(.pasta, ["--map-guest-addr", "169.254.1.2",
                                                              "--map-host-loopback", "none"], host: typicalHost())
        #expect(configuration.ipv4?.mapGuestAddress == IPv4Address(169, 254, 1, 2))
        #expect(configuration.ipv4?.mapHostLoopback == nil && configuration.ipv6?.mapHostLoopback == nil)
    }

    @Test("MTU: default 65520, -m 0 advertises none")
    func mtu() throws {
        #expect(try resolveConfiguration(.passt, ["-m", "0"], host: typicalHost()).mtu == 0)
        #expect(try resolveConfiguration(.passt, ["-m", "9000"], host: typicalHost()).mtu == 9000)
    }

    @Test("--runas default: current user; root in the init namespace becomes nobody, with the warning")
    func runAsDefault() throws {
        let options = try parseOptions(.passt, [])
        #expect(try Configuration.resolve(options: options, host: typicalHost(), identity: userIdentity).runAs
            == RunAs(uid: 1000, gid: 1000))
        let root = ProcessIdentity(effectiveUID: 0, effectiveGID: 0, isInInitUserNamespace: true,
                                   nobody: RunAs(uid: 65534, gid: 65534))
        let asRoot = try Configuration.resolve(options: options, host: typicalHost(), identity: root)
        #expect(asRoot.runAs == RunAs(uid: 65534, gid: 65534))
        #expect(asRoot.warnings.first == "Started as root, will change to nobody.")
        let nestedRoot = ProcessIdentity(effectiveUID: 0, effectiveGID: 0, isInInitUserNamespace: false, nobody: nil)
        #expect(try Configuration.resolve(options: options, host: typicalHost(), identity: nestedRoot).runAs
            == RunAs(uid: 0, gid: 0))
        let explicit = try parseOptions(.passt, ["--runas", "1:1"])
        #expect(try Configuration.resolve(options: explicit, host: typicalHost(), identity: root).runAs == RunAs(uid: 1, gid: 1))
        #expect(throws: ConfigError("Can't get password file entry for nobody")) {
            try Configuration.resolve(options: options, host: typicalHost(),
                                      identity: ProcessIdentity(effectiveUID: 0, effectiveGID: 0,
                                                                isInInitUserNamespace: true, nobody: nil))
        }
    }

    @Test("the current process identity can be read")
    func currentIdentity() throws {
        let identity = try ProcessIdentity.current()
        #expect(identity.nobody == RunAs(uid: 65534, gid: 65534))
    }
}
