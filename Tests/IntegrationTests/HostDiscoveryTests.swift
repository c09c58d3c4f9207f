// Host discovery (spec §3.1) and the rtnetlink client, run against the test bed's namespaces and
// checked against what iproute2 (`ip -j`) reports there; plus the selection rules on hand-made
// netlink values (no root needed).
import Foundation
import Testing
import PasstConfig
import PasstSys
import PasstWire

/// Reads facts about a namespace from `ip -j`, independently of our netlink code.
struct IPView {
    let bed: TestBed
    let namespace: String

    /// The interface index `ip` reports for `interface`.
    func index(_ interface: String) throws -> Int32 {
        let link = try #require(try bed.ipJSON(namespace, "link", "show", "dev", interface).first)
        return Int32(try #require(link["ifindex"] as? Int))
    }

    /// `addr_info` entries of `interface` for `family` ("-4"/"-6").
    func addresses(_ family: String, _ interface: String) throws -> [[String: Any]] {
        try bed.ipJSON(namespace, family, "addr", "show", "dev", interface).first?["addr_info"] as? [[String: Any]] ?? []
    }

    /// The single address of `scope` ("global"/"link") on `interface` (fails if not exactly one).
    func onlyAddress(_ family: String, _ interface: String, scope: String) throws -> (String, Int) {
        let matching = try addresses(family, interface).filter { $0["scope"] as? String == scope }
        try #require(matching.count == 1, "expected one \(scope) address, ip shows \(matching)")
        return (try #require(matching[0]["local"] as? String), try #require(matching[0]["prefixlen"] as? Int))
    }

    /// The default routes of `family`, as ip reports them.
    func defaultRoutes(_ family: String) throws -> [[String: Any]] {
        try bed.ipJSON(namespace, family, "route", "show", "default")
    }
}

@Suite("Host discovery in the test bed", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct HostDiscoveryTests {
    @Test("The bed's host: eth0, its addresses, gateways and link-local address, as ip shows them")
    func discoversBedHost() async throws {
        try await withTestBed { bed in
            let view = IPView(bed: bed, namespace: bed.host)
            let (v4, v6) = HostDiscovery.discover(using: try bed.netlink(in: bed.host))
            let ipv4 = try #require(v4)
            let ipv6 = try #require(v6)

            let index = try view.index(TestBed.hostInterface)
            #expect(ipv4.interfaceName == TestBed.hostInterface && ipv4.interfaceIndex == index)
            #expect(ipv6.interfaceName == TestBed.hostInterface && ipv6.interfaceIndex == index)

            let (address4, prefix4) = try view.onlyAddress("-4", TestBed.hostInterface, scope: "global")
            #expect(ipv4.address == IPv4Address(address4) && ipv4.prefixLength == prefix4)
            #expect(ipv4.address == IPv4Address(TestBed.hostIPv4) && ipv4.prefixLength == 24)
            let gateway4 = try #require(try view.defaultRoutes("-4").first?["gateway"] as? String)
            #expect(ipv4.gateway == IPv4Address(gateway4))
            #expect(ipv4.gateway == IPv4Address(TestBed.routerIPv4))

            let (address6, prefix6) = try view.onlyAddress("-6", TestBed.hostInterface, scope: "global")
            #expect(ipv6.address == IPv6Address(address6) && ipv6.prefixLength == prefix6)
            let gateway6 = try #require(try view.defaultRoutes("-6").first?["gateway"] as? String)
            #expect(ipv6.gateway == IPv6Address(gateway6))
            #expect(ipv6.gateway == IPv6Address(TestBed.routerIPv6))
            let (linkLocal, _) = try view.onlyAddress("-6", TestBed.hostInterface, scope: "link")
            #expect(ipv6.linkLocal == IPv6Address(linkLocal))
            #expect(ipv6.linkLocal?.isLinkLocal == true)
        }
    }

    @Test("A second address with a longer prefix wins")
    func longerPrefixWins() async throws {
        try await withTestBed { bed in
            try bed.ip(bed.host, "addr", "add", "192.0.2.77/28", "dev", TestBed.hostInterface)
            try bed.ip(bed.host, "addr", "add", "fd00::77/80", "dev", TestBed.hostInterface, "nodad")
            let (v4, v6) = HostDiscovery.discover(using: try bed.netlink(in: bed.host))
            #expect(v4?.address == IPv4Address("192.0.2.77") && v4?.prefixLength == 28)
            #expect(v6?.address == IPv6Address("fd00::77") && v6?.prefixLength == 80)
            #expect(v4?.gateway == IPv4Address(TestBed.routerIPv4))
        }
    }

    @Test("A deprecated address (preferred_lft 0) is skipped even with the longest prefix")
    func deprecatedSkipped() async throws {
        try await withTestBed { bed in
            try bed.ip(bed.host, "addr", "add", "192.0.2.99/30", "dev", TestBed.hostInterface, "preferred_lft", "0")
            try bed.ip(bed.host, "addr", "add", "fd00::99/96", "dev", TestBed.hostInterface, "nodad", "preferred_lft", "0")
            let view = IPView(bed: bed, namespace: bed.host)
            let deprecated = try (view.addresses("-4", TestBed.hostInterface) + view.addresses("-6", TestBed.hostInterface))
                .filter { $0["deprecated"] as? Bool == true }.compactMap { $0["local"] as? String }
            #expect(Set(deprecated) == ["192.0.2.99", "fd00::99"])

            let (v4, v6) = HostDiscovery.discover(using: try bed.netlink(in: bed.host))
            #expect(v4?.address == IPv4Address(TestBed.hostIPv4) && v4?.prefixLength == 24)
            #expect(v6?.address == IPv6Address(TestBed.hostIPv6) && v6?.prefixLength == 64)
        }
    }

    @Test("No default route: the first interface with any route is used, without gateway")
    func noDefaultRoute() async throws {
        try await withTestBed { bed in
            try bed.ip(bed.host, "route", "del", "default")
            try bed.ip(bed.host, "-6", "route", "del", "default")
            let (v4, v6) = HostDiscovery.discover(using: try bed.netlink(in: bed.host))
            #expect(v4?.interfaceName == TestBed.hostInterface && v4?.gateway == nil)
            #expect(v4?.address == IPv4Address(TestBed.hostIPv4))
            #expect(v6?.interfaceName == TestBed.hostInterface && v6?.gateway == nil)
            #expect(v6?.address == IPv6Address(TestBed.hostIPv6))
        }
    }

    @Test("The interface of the default route wins over an interface with only prefix routes")
    func defaultRouteInterfaceWins() async throws {
        try await withTestBed { bed in
            try addSecondLink(bed)
            try bed.ip(bed.host, "route", "del", "default")
            try bed.ip(bed.host, "route", "add", "default", "via", "198.51.100.1", "dev", "eth1")
            let (v4, _) = HostDiscovery.discover(using: try bed.netlink(in: bed.host))
            #expect(v4?.interfaceName == "eth1")
            #expect(v4?.interfaceIndex == (try IPView(bed: bed, namespace: bed.host).index("eth1")))
            #expect(v4?.address == IPv4Address("198.51.100.2") && v4?.prefixLength == 24)
            #expect(v4?.gateway == IPv4Address("198.51.100.1"))
        }
    }

    @Test("Multipath default routes: the nexthop with the highest weight gives the gateway")
    func multipathHeaviestNexthop() async throws {
        try await withTestBed { bed in
            try bed.ip(bed.host, "-6", "route", "replace", "default",
                       "nexthop", "via", "fd00::1", "dev", TestBed.hostInterface, "weight", "1",
                       "nexthop", "via", "fd00::3", "dev", TestBed.hostInterface, "weight", "5",
                       "nexthop", "via", "fd00::4", "dev", TestBed.hostInterface, "weight", "2")
            try bed.ip(bed.host, "route", "replace", "default",
                       "nexthop", "via", "192.0.2.1", "weight", "2", "nexthop", "via", "192.0.2.3", "weight", "7")
            let view = IPView(bed: bed, namespace: bed.host)
            let hops6 = try #require(try view.defaultRoutes("-6").first?["nexthops"] as? [[String: Any]])
            let heaviest6 = try #require(hops6.max { ($0["weight"] as? Int ?? 0) < ($1["weight"] as? Int ?? 0) })
            #expect(heaviest6["gateway"] as? String == "fd00::3")

            let (v4, v6) = HostDiscovery.discover(using: try bed.netlink(in: bed.host))
            #expect(v6?.gateway == IPv6Address("fd00::3"))
            #expect(v6?.interfaceName == TestBed.hostInterface)
            #expect(v4?.gateway == IPv4Address("192.0.2.3"))
        }
    }

    @Test("Multipath with equal weights: the first nexthop the kernel lists")
    func multipathTie() async throws {
        try await withTestBed { bed in
            try bed.ip(bed.host, "-6", "route", "replace", "default",
                       "nexthop", "via", "fd00::5", "dev", TestBed.hostInterface, "weight", "3",
                       "nexthop", "via", "fd00::6", "dev", TestBed.hostInterface, "weight", "3")
            let hops = try #require(try IPView(bed: bed, namespace: bed.host).defaultRoutes("-6").first?["nexthops"]
                                    as? [[String: Any]])
            let first = try #require(hops.first?["gateway"] as? String)
            let (_, v6) = HostDiscovery.discover(using: try bed.netlink(in: bed.host))
            #expect(v6?.gateway == IPv6Address(first))
        }
    }

    @Test("Without a global IPv6 address IPv6 is unusable; IPv4 is unaffected")
    func noGlobalIPv6() async throws {
        try await withTestBed { bed in
            try bed.ip(bed.host, "-6", "addr", "del", TestBed.hostIPv6 + "/64", "dev", TestBed.hostInterface)
            let (v4, v6) = HostDiscovery.discover(using: try bed.netlink(in: bed.host))
            #expect(v6 == nil)
            #expect(v4?.address == IPv4Address(TestBed.hostIPv4))
        }
    }

    @Test("interface4: picks that interface for IPv4 only; an unknown name makes the family unusable")
    func interfaceOverride() async throws {
        try await withTestBed { bed in
            try addSecondLink(bed)
            let netlink = try bed.netlink(in: bed.host)
            let (v4, v6) = HostDiscovery.discover(using: netlink, interface4: "eth1")
            #expect(v4?.interfaceName == "eth1")
            #expect(v4?.address == IPv4Address("198.51.100.2") && v4?.prefixLength == 24)
            #expect(v4?.gateway == nil)
            #expect(v6?.interfaceName == TestBed.hostInterface && v6?.gateway == IPv6Address(TestBed.routerIPv6))

            var warnings: [String] = []
            let (missing, stillV6) = HostDiscovery.discover(using: netlink, interface4: "nosuch0") { warnings.append($0) }
            #expect(missing == nil && stillV6 != nil)
            #expect(warnings.count == 1 && warnings.first?.contains("No such device") == true)
        }
    }

    /// Adds host eth1 (198.51.100.2/24) <-> router veth1 (198.51.100.1/24).
    private func addSecondLink(_ bed: TestBed) throws {
        try bed.ip(bed.host, "link", "add", "eth1", "type", "veth", "peer", "name", "veth1", "netns", bed.router)
        try bed.ip(bed.host, "addr", "add", "198.51.100.2/24", "dev", "eth1")
        try bed.ip(bed.router, "addr", "add", "198.51.100.1/24", "dev", "veth1")
        try bed.ip(bed.router, "link", "set", "veth1", "up")
        try bed.ip(bed.host, "link", "set", "eth1", "up")
    }
}

@Suite("rtnetlink client against iproute2", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct NetlinkClientTests {
    @Test("Link, address and route dumps agree with ip -j")
    func dumpsMatchIP() async throws {
        try await withTestBed { bed in
            let netlink = try bed.netlink(in: bed.host)
            let links = try netlink.links()
            let ipLinks = try bed.ipJSON(bed.host, "link", "show")
            #expect(links.count == ipLinks.count)
            for ipLink in ipLinks {
                let link = try #require(links.first { $0.index == Int32(ipLink["ifindex"] as? Int ?? -1) })
                #expect(link.name == ipLink["ifname"] as? String)
                #expect(Int(link.mtu) == ipLink["mtu"] as? Int)
                #expect(link.mac.map { hex($0) }.joined(separator: ":") == ipLink["address"] as? String)
                #expect(link.isUp == ((ipLink["flags"] as? [String])?.contains("UP") ?? false))
            }

            for (family, flag) in [(NetlinkFamily.ipv4, "-4"), (.ipv6, "-6")] {
                let ours = try netlink.addresses(family: family)
                let theirs = try bed.ipJSON(bed.host, flag, "addr", "show").flatMap { entry in
                    ((entry["addr_info"] as? [[String: Any]]) ?? []).map { (entry["ifindex"] as? Int ?? -1, $0) }
                }
                #expect(ours.count == theirs.count)
                for (index, info) in theirs {
                    let local = try #require(info["local"] as? String)
                    let match = ours.first { text($0.localAddress ?? [], family) == local }
                    #expect(match?.interfaceIndex == Int32(index))
                    #expect(match?.prefixLength == info["prefixlen"] as? Int)
                }
            }

            let routes4 = try netlink.routes(family: .ipv4)
            let ipRoutes4 = try bed.ipJSON(bed.host, "-4", "route", "show", "table", "main")
            #expect(routes4.count == ipRoutes4.count)
            let default4 = try #require(routes4.first { $0.isDefault })
            #expect(default4.gateway == IPv4Address(TestBed.routerIPv4)?.bytes)
            #expect(default4.outputInterface == (try IPView(bed: bed, namespace: bed.host).index(TestBed.hostInterface)))
            #expect(default4.table == RTNetlink.RT_TABLE_MAIN && default4.type == RTNetlink.RTN_UNICAST)
            let prefix4 = try #require(routes4.first { !$0.isDefault })
            #expect(prefix4.destination == [192, 0, 2, 0] && prefix4.prefixLength == 24)
            #expect(prefix4.preferredSource == IPv4Address(TestBed.hostIPv4)?.bytes)
            #expect(prefix4.scope == RTNetlink.RT_SCOPE_LINK)

            let routes6 = try netlink.routes(family: .ipv6)
            let ipRoutes6 = try bed.ipJSON(bed.host, "-6", "route", "show", "table", "main")
            #expect(routes6.count == ipRoutes6.count)
            let default6 = try #require(routes6.first { $0.isDefault })
            #expect(default6.gateway == IPv6Address(TestBed.routerIPv6)?.bytes)
            #expect(default6.priority == (ipRoutes6.first { $0["dst"] as? String == "default" }?["metric"] as? Int).map(UInt32.init))
        }
    }

    @Test("Link up/down, MTU, MAC, addresses (NODAD) and routes (single and multipath) are applied")
    func writeOperations() async throws {
        try await withTestBed { bed in
            let ns = try bed.makeNamespace("s")
            try bed.ip(ns, "link", "add", "a0", "type", "veth", "peer", "name", "b0")
            let netlink = try bed.netlink(in: ns)
            let a0 = try #require(try netlink.link(named: "a0"))
            let b0 = try #require(try netlink.link(named: "b0"))

            try netlink.setMTU(index: a0.index, 1400)
            try netlink.setMAC(index: a0.index, [0x02, 0, 0, 0, 0, 0x42])
            try netlink.setLinkUp(index: a0.index)
            try netlink.setLinkUp(index: b0.index)
            var link = try #require(try bed.ipJSON(ns, "link", "show", "dev", "a0").first)
            #expect(link["mtu"] as? Int == 1400)
            #expect(link["address"] as? String == "02:00:00:00:00:42")
            #expect((link["flags"] as? [String])?.contains("UP") == true)
            #expect(try netlink.link(named: "a0")?.isUp == true)

            let v6 = try #require(IPv6Address("2001:db8::5")).bytes
            try netlink.addAddress(index: a0.index, family: .ipv4, address: [198, 51, 100, 5], prefixLength: 24)
            try netlink.addAddress(index: a0.index, family: .ipv6, address: v6, prefixLength: 64,
                                   flags: RTNetlink.IFA_F_NODAD)
            let infos = try IPView(bed: bed, namespace: ns).addresses("-4", "a0")
                + (try IPView(bed: bed, namespace: ns).addresses("-6", "a0"))
            let added4 = try #require(infos.first { $0["local"] as? String == "198.51.100.5" })
            #expect(added4["prefixlen"] as? Int == 24)
            let added6 = try #require(infos.first { $0["local"] as? String == "2001:db8::5" })
            #expect(added6["prefixlen"] as? Int == 64 && added6["nodad"] as? Bool == true)
            #expect(try netlink.addresses(family: .ipv6, interfaceIndex: a0.index)
                .first { $0.address == v6 }.map { $0.flags & RTNetlink.IFA_F_NODAD != 0 } == true)

            try netlink.addRoute(NetlinkRoute(family: .ipv4, destination: [203, 0, 113, 0], prefixLength: 24,
                                              gateway: [198, 51, 100, 1], outputInterface: a0.index))
            try netlink.addRoute(NetlinkRoute(family: .ipv6, destination: try #require(IPv6Address("2001:db8:1::")).bytes,
                                              prefixLength: 48, gateway: try #require(IPv6Address("2001:db8::1")).bytes,
                                              outputInterface: a0.index))
            try netlink.addRoute(NetlinkRoute(family: .ipv4, nexthops: [
                NetlinkNexthop(interfaceIndex: a0.index, gateway: [198, 51, 100, 1], weight: 1),
                NetlinkNexthop(interfaceIndex: a0.index, gateway: [198, 51, 100, 2], weight: 4),
            ]))
            let route4 = try #require(try bed.ipJSON(ns, "-4", "route", "show", "203.0.113.0/24").first)
            #expect(route4["gateway"] as? String == "198.51.100.1" && route4["dev"] as? String == "a0")
            let route6 = try #require(try bed.ipJSON(ns, "-6", "route", "show", "2001:db8:1::/48").first)
            #expect(route6["gateway"] as? String == "2001:db8::1" && route6["dev"] as? String == "a0")
            let multipath = try #require(try bed.ipJSON(ns, "-4", "route", "show", "default").first?["nexthops"]
                                         as? [[String: Any]])
            #expect(multipath.map { $0["gateway"] as? String ?? "" } == ["198.51.100.1", "198.51.100.2"])
            #expect(multipath.map { $0["weight"] as? Int ?? 0 } == [1, 4])
            let dumped = try #require(try netlink.routes(family: .ipv4).first { $0.isDefault })
            #expect(dumped.nexthops.map(\.weight) == [1, 4] && dumped.nexthops.map(\.interfaceIndex) == [a0.index, a0.index])
            #expect(dumped.interfaceIndex == a0.index && dumped.gateway == nil)

            try netlink.setLinkUp(index: a0.index, false)
            link = try #require(try bed.ipJSON(ns, "link", "show", "dev", "a0").first)
            #expect((link["flags"] as? [String])?.contains("UP") == false)
        }
    }

    @Test("Kernel errors come back as errno values")
    func errors() async throws {
        try await withTestBed { bed in
            let netlink = try bed.netlink(in: bed.host)
            let eth0 = try #require(try netlink.link(named: TestBed.hostInterface))
            let again = #expect(throws: NetlinkError.self) {
                try netlink.addAddress(index: eth0.index, family: .ipv4, address: [192, 0, 2, 2], prefixLength: 24)
            }
            #expect(again?.errno == EEXIST)
            let missing = #expect(throws: NetlinkError.self) { try netlink.setMTU(index: 99999, 1400) }
            #expect(missing?.errno == ENODEV)
            let unreachable = #expect(throws: NetlinkError.self) {
                try netlink.addRoute(NetlinkRoute(family: .ipv4, destination: [203, 0, 113, 0], prefixLength: 24,
                                                  gateway: [198, 51, 100, 1], outputInterface: eth0.index))
            }
            #expect(unreachable?.errno == ENETUNREACH)
            // The socket stays usable after errors.
            #expect(try netlink.links().contains { $0.name == TestBed.hostInterface })
        }
    }

    @Test("A socket opened in the bed sees the bed, not the test process's namespace")
    func socketStaysInNamespace() async throws {
        try await withTestBed { bed in
            let inRouter = try bed.netlink(in: bed.router)
            #expect(try inRouter.link(named: TestBed.routerInterface) != nil)
            #expect(try inRouter.link(named: TestBed.hostInterface) == nil)
        }
    }
}

/// Two lower-case hex digits.
private func hex(_ byte: UInt8) -> String { (byte < 16 ? "0" : "") + String(byte, radix: 16) }

/// Text form of network-order address bytes of `family`.
private func text(_ bytes: [UInt8], _ family: NetlinkFamily) -> String {
    switch family {
    case .ipv4: return bytes.count == 4 ? IPv4Address(bytes[0], bytes[1], bytes[2], bytes[3]).description : ""
    case .ipv6: return IPv6Address(bytes: bytes)?.description ?? ""
    }
}
