// The selection rules of host discovery (spec §3.1) on hand-made netlink values; no root needed.
import Testing
import PasstConfig
import PasstSys

@Suite("Host discovery selection rules")
struct HostDiscoveryRuleTests {
    /// A unicast IPv4 route in the main table.
    private func route4(_ destination: [UInt8]?, _ prefix: Int, via gateway: [UInt8]? = nil, dev: Int32? = nil,
                        nexthops: [NetlinkNexthop] = [], type: UInt8 = RTNetlink.RTN_UNICAST) -> NetlinkRoute {
        NetlinkRoute(family: .ipv4, destination: destination, prefixLength: prefix, gateway: gateway,
                     outputInterface: dev, nexthops: nexthops, type: type)
    }

    @Test("First default route's interface wins over earlier prefix routes")
    func defaultFirst() {
        let routes = [route4([192, 0, 2, 0], 24, dev: 2), route4(nil, 0, via: [198, 51, 100, 1], dev: 3),
                      route4(nil, 0, via: [192, 0, 2, 1], dev: 2)]
        #expect(HostDiscovery.templateInterface(routes: routes) == 3)
    }

    @Test("Without default route, the first route's interface; none without routes")
    func firstRoute() {
        #expect(HostDiscovery.templateInterface(routes: [route4([192, 0, 2, 0], 24, dev: 4),
                                                         route4([198, 51, 100, 0], 24, dev: 2)]) == 4)
        #expect(HostDiscovery.templateInterface(routes: []) == nil)
    }

    @Test("Routes without interface, to link-local prefixes, or not unicast are skipped")
    func skipped() {
        let routes = [
            route4(nil, 0, via: [192, 0, 2, 1]),                                  // no interface
            route4(nil, 0, dev: 9, type: 6),                                      // blackhole
            route4([169, 254, 0, 0], 16, dev: 7),                                 // link-local
            route4([169, 254, 3, 0], 24, dev: 7),                                 // inside link-local
            route4([169, 0, 0, 0], 8, dev: 6),                                    // wider: counts
        ]
        #expect(HostDiscovery.templateInterface(routes: routes) == 6)
        let v6 = [NetlinkRoute(family: .ipv6, destination: [0xfe, 0x80] + [UInt8](repeating: 0, count: 14),
                               prefixLength: 64, outputInterface: 5),
                  NetlinkRoute(family: .ipv6, destination: [0xfd] + [UInt8](repeating: 0, count: 15),
                               prefixLength: 64, outputInterface: 8)]
        #expect(HostDiscovery.templateInterface(routes: v6) == 8)
    }

    @Test("A multipath route's interface is its first nexthop's")
    func multipathInterface() {
        let hops = [NetlinkNexthop(interfaceIndex: 5, gateway: [192, 0, 2, 1]),
                    NetlinkNexthop(interfaceIndex: 6, gateway: [192, 0, 2, 3])]
        #expect(HostDiscovery.templateInterface(routes: [route4(nil, 0, nexthops: hops)]) == 5)
    }

    @Test("Gateway: default route on the interface; heaviest nexthop; first among equals")
    func gateway() {
        let plain = [route4(nil, 0, via: [198, 51, 100, 1], dev: 3), route4(nil, 0, via: [192, 0, 2, 1], dev: 2)]
        #expect(HostDiscovery.gateway(routes: plain, interface: 2) == [192, 0, 2, 1])
        #expect(HostDiscovery.gateway(routes: plain, interface: 7) == nil)
        #expect(HostDiscovery.gateway(routes: [route4([192, 0, 2, 0], 24, dev: 2)], interface: 2) == nil)

        let weighted = route4(nil, 0, nexthops: [
            NetlinkNexthop(interfaceIndex: 2, gateway: [192, 0, 2, 1], weight: 1),
            NetlinkNexthop(interfaceIndex: 2, gateway: [192, 0, 2, 3], weight: 9),
            NetlinkNexthop(interfaceIndex: 2, gateway: [192, 0, 2, 4], weight: 9),
            NetlinkNexthop(interfaceIndex: 3, gateway: [192, 0, 2, 5], weight: 50),
        ])
        #expect(HostDiscovery.gateway(routes: [weighted], interface: 2) == [192, 0, 2, 3])
        #expect(HostDiscovery.gateway(routes: [weighted], interface: 3) == [192, 0, 2, 5])
    }

    @Test("Address: non-deprecated, longest prefix, first among equals, scope filter")
    func bestAddress() {
        func address(_ last: UInt8, _ prefix: Int, flags: UInt32 = 0, scope: UInt8 = 0, index: Int32 = 2) -> NetlinkAddress {
            var message = NetlinkMessage(type: RTNetlink.RTM_NEWADDR, flags: 0, sequence: 0,
                                         payload: [2, UInt8(prefix), 0, scope, UInt8(index), 0, 0, 0])
            message.payload += [8, 0, 2, 0, 192, 0, 2, last]                       // IFA_LOCAL
            message.payload += [8, 0, 8, 0] + withUnsafeBytes(of: flags) { Array($0) }  // IFA_FLAGS
            return NetlinkAddress(parsing: message)!
        }
        let list = [address(1, 24), address(2, 28), address(3, 28), address(4, 30, flags: RTNetlink.IFA_F_DEPRECATED),
                    address(5, 32, index: 3), address(6, 29, scope: RTNetlink.RT_SCOPE_LINK)]
        #expect(HostDiscovery.bestAddress(list, interface: 2, scope: 0)?.localAddress == [192, 0, 2, 2])
        #expect(HostDiscovery.bestAddress(list, interface: 2, scope: nil)?.localAddress == [192, 0, 2, 6])
        #expect(HostDiscovery.bestAddress(list, interface: 3, scope: nil)?.localAddress == [192, 0, 2, 5])
        #expect(HostDiscovery.bestAddress(list, interface: 4, scope: nil) == nil)
        #expect(list[3].isDeprecated && !list[0].isDeprecated)
    }
}

@Suite("rtnetlink message encoding")
struct NetlinkEncodingTests {
    @Test("Attributes are padded to 4 bytes and nested lengths cover their contents")
    func requestLayout() {
        var request = NetlinkRequest(type: RTNetlink.RTM_NEWROUTE, flags: RTNetlink.NLM_F_CREATE)
        request.append([2, 0, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0])
        request.appendAttribute(RTNetlink.IFLA_IFNAME, Array("ab".utf8))
        let outer = request.beginNested(RTNetlink.RTA_MULTIPATH)
        let hop = request.beginNexthop(interfaceIndex: 7, weight: 3)
        request.appendAttribute(RTNetlink.RTA_GATEWAY, [192, 0, 2, 1])
        request.endNested(hop)
        request.endNested(outer)
        let bytes = request.bytes
        #expect(bytes.count == 16 + 12 + 8 + 4 + 8 + 8)
        #expect(bytes[4] == 24 && bytes[6] == 0x01 && bytes[7] == 0x04)            // type; REQUEST|CREATE
        #expect(Array(bytes[28..<34]) == [6, 0, 3, 0, 0x61, 0x62])                  // len 6, then padding
        #expect(Array(bytes[36..<40]) == [20, 0, 9, 0])                             // RTA_MULTIPATH, len 20
        #expect(Array(bytes[40..<48]) == [16, 0, 0, 2, 7, 0, 0, 0])                 // rtnh: len 16, hops 2, ifindex 7
        #expect(Array(bytes[48..<56]) == [8, 0, 5, 0, 192, 0, 2, 1])

        let message = NetlinkMessage(type: RTNetlink.RTM_NEWROUTE, flags: 0, sequence: 0, payload: Array(bytes[16...]))
        let route = NetlinkRoute(parsing: message)
        #expect(route?.nexthops == [NetlinkNexthop(interfaceIndex: 7, gateway: [192, 0, 2, 1], weight: 3)])
        #expect(route?.table == 254 && route?.routeProtocol == 3 && route?.type == 1 && route?.isDefault == true)
        #expect(route?.interfaceIndex == 7)
    }

    @Test("Attribute parsing stops at a malformed length and masks the NESTED bit")
    func parseAttributes() {
        let bytes: [UInt8] = [8, 0, 0x09, 0x80, 1, 2, 3, 4, 5, 0, 3, 0, 0x41, 0, 0, 0, 99, 0, 1, 0]
        let attributes = NetlinkAttribute.parse(bytes)
        #expect(attributes.map(\.type) == [9, 3])
        #expect(attributes[0].u32 == UInt32(littleEndian: 0x0403_0201) && attributes[1].string == "A")
    }
}
