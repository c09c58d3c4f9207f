// DHCP view, option iterator and reply builder against the golden frames of
// scripts/golden/gen_services.py. Fixtures are full Ethernet frames; the DHCP message (UDP
// payload) starts at offset 42 (IPv4 without options).
import Testing
import PasstWire

/// Values used by gen_services.py.
private enum V {
    static let guestMAC = MACAddress(0x52, 0x54, 0x00, 0x12, 0x34, 0x56)
    static let guest = IPv4Address(192, 0, 2, 2)
    static let gateway = IPv4Address(192, 0, 2, 1)
    static let dns = [IPv4Address(192, 0, 2, 53), IPv4Address(198, 51, 100, 53)]
    static let search = ["example.com", "sub.example.com"]
    static let search119: [UInt8] = [7, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 3, 0x63, 0x6f, 0x6d, 0,
                                     3, 0x73, 0x75, 0x62, 0xc0, 0]     // "example.com", "sub" + pointer 0
    static let prl: [UInt8] = [1, 3, 6, 12, 15, 26, 28, 119, 121]
    static let xid: UInt32 = 0x3903_f326
    static let requestXID: UInt32 = 0x5e2a_1c07
    static let clientID: [UInt8] = [1] + guestMAC.array
    static let mtu: UInt16 = 65520
    static let routes = [DHCPClasslessRoute(destination: gateway, prefixLength: 32, router: .any),
                         DHCPClasslessRoute(destination: .any, prefixLength: 0, router: gateway)]
    static let fixtures = ["dhcp_discover", "dhcp_request", "dhcp_offer", "dhcp_ack_rapid", "dhcp_ack_routes"]

    /// The options passt sends, in no particular order (passtOrder sorts them).
    static func replyOptions(_ type: DHCPMessageType, mask: IPv4Address = IPv4Address(255, 255, 255, 0),
                             routes: Bool = false, rapid: Bool = false) -> [DHCPReplyOption] {
        var options: [DHCPReplyOption] = [.serverIdentifier(gateway), .leaseTime(DHCP.infiniteLease),
                                          .domainSearch(search), .messageType(type), .subnetMask(mask),
                                          .routers([gateway]), .dnsServers(dns), .interfaceMTU(mtu)]
        if routes { options.append(.classlessStaticRoutes(V.routes)) }
        if rapid { options.append(.rapidCommit) }
        return options
    }
}

/// Reads every header field and typed option of `base[0..<count]` if the view accepts it; returns
/// whether it did.
@discardableResult
private func exerciseDHCP(_ base: UnsafeRawPointer, _ count: Int) -> Bool {
    var steps = 0
    var sink = 0
    for option in DHCPOptions(base + min(count, DHCP.optionsOffset), count: count - min(count, DHCP.optionsOffset)) {
        steps += 1
        sink &+= Int(option.code) &+ option.bytes.count &+ option.ipv4Addresses.count &+ (option.contains(53) ? 1 : 0)
    }
    #expect(steps <= max(0, count - DHCP.optionsOffset) / 2)
    guard let m = DHCPMessage(base, count: count) else { return false }
    sink &+= Int(m.op) &+ Int(m.htype) &+ Int(m.hlen) &+ Int(m.hops) &+ Int(m.xid) &+ Int(m.secs) &+ Int(m.flags)
    sink &+= Int(m.ciaddr.value) &+ Int(m.yiaddr.value) &+ Int(m.siaddr.value) &+ Int(m.giaddr.value)
    sink &+= m.chaddr.array.count &+ m.chaddrBytes.count &+ (m.isBroadcast ? 1 : 0)
    sink &+= Int(m.messageType?.rawValue ?? 0) &+ (m.parameterRequestList?.length ?? 0) &+ (m.clientIdentifier?.length ?? 0)
    sink &+= (m.rapidCommit ? 1 : 0) &+ Int(m.requestedAddress?.value ?? 0) &+ Int(m.serverIdentifier?.value ?? 0)
    sink &+= (m.domainSearch?.count ?? 0) &+ (m.classlessStaticRoutes?.count ?? 0)
    for option in m.options { sink &+= option.length }
    _ = sink
    return true
}

/// The DHCP message of fixture `name`.
private func message(_ name: String) throws -> [UInt8] { ServiceFixtures.dhcpMessage(try ServiceFixtures.frame(name)) }

/// Builds `reply` into a fresh buffer of `capacity` bytes.
private func emit(_ reply: DHCPReply, capacity: Int = DHCP.maximumMessageLength) -> [UInt8]? {
    ServiceFixtures.build(capacity: capacity) { reply.write(to: $0, capacity: $1) }
}

@Suite struct DHCPTests {
    @Test func discover() throws {
        try withFrame(try message("dhcp_discover")) { base, count in
            let m = try #require(DHCPMessage(base, count: count))
            #expect(count == 300)
            #expect(m.op == DHCP.bootRequest && m.htype == 1 && m.hlen == 6 && m.hops == 0)
            #expect(m.xid == V.xid && m.secs == 3 && m.flags == 0x8000 && m.isBroadcast)
            #expect(m.ciaddr == .any && m.yiaddr == .any && m.siaddr == .any && m.giaddr == .any)
            #expect(m.chaddr == V.guestMAC && m.chaddrBytes == V.guestMAC.array + [UInt8](repeating: 0, count: 10))
            #expect(Array(m.options).map(\.code) == [53, 61, 55, 80])
            #expect(m.messageType == .discover)
            #expect(m.parameterRequestList?.bytes == V.prl)
            #expect(m.parameterRequestList?.contains(119) == true && m.parameterRequestList?.contains(53) == false)
            #expect(m.clientIdentifier?.bytes == V.clientID)
            #expect(m.rapidCommit)
            #expect(m.option(DHCPOptionCode.rapidCommit)?.length == 0)
            #expect(m.requestedAddress == nil && m.serverIdentifier == nil && m.domainSearch == nil)
        }
    }

    @Test func request() throws {
        try withFrame(try message("dhcp_request")) { base, count in
            let m = try #require(DHCPMessage(base, count: count))
            #expect(m.op == DHCP.bootRequest && m.xid == V.requestXID && m.flags == 0 && !m.isBroadcast)
            #expect(Array(m.options).map(\.code) == [53, 61, 50, 54, 55])
            #expect(m.messageType == .request)
            #expect(m.requestedAddress == V.guest && m.serverIdentifier == V.gateway)
            #expect(m.clientIdentifier?.bytes == V.clientID && !m.rapidCommit)
        }
    }

    @Test func offerFields() throws {
        try withFrame(try message("dhcp_offer")) { base, count in
            let m = try #require(DHCPMessage(base, count: count))
            #expect(m.op == DHCP.bootReply && m.htype == 1 && m.hlen == 6 && m.hops == 0)
            #expect(m.xid == V.xid && m.secs == 0 && m.isBroadcast)
            #expect(m.ciaddr == .any && m.yiaddr == V.guest && m.siaddr == .any && m.giaddr == .any)
            #expect(m.chaddr == V.guestMAC)
            let options = Array(m.options)
            #expect(options.map(\.code) == [53, 1, 3, 6, 26, 119, 51, 54])
            #expect(m.messageType == .offer)
            #expect(options[1].bytes == [255, 255, 255, 0])
            #expect(options[2].ipv4Addresses == [V.gateway])
            #expect(options[3].ipv4Addresses == V.dns)
            #expect(options[4].bytes == [0xff, 0xf0])
            #expect(options[5].bytes == V.search119)
            #expect(m.domainSearch == V.search)
            #expect(options[6].bytes == [0xff, 0xff, 0xff, 0xff])
            #expect(m.serverIdentifier == V.gateway)
            #expect(m.classlessStaticRoutes == nil && !m.rapidCommit)
            // END, then the area is padded to at least 60 bytes (here 63 bytes of options + END).
            #expect(count - DHCP.optionsOffset >= DHCP.minimumOptionsLength)
            #expect(base.u8(count - 1) == DHCPOptionCode.end)
        }
    }

    @Test func offerRoundTrip() throws {
        let reply = try withFrame(try message("dhcp_discover")) { base, count in
            let discover = try #require(DHCPMessage(base, count: count))
            let order = DHCPReplyOption.passtOrder(V.replyOptions(.offer),
                                                   parameterRequestList: discover.parameterRequestList?.bytes)
            return DHCPReply(replyingTo: discover, yiaddr: V.guest, options: order)
        }
        #expect(reply.options.map(\.code) == [53, 1, 3, 6, 26, 119, 51, 54])
        #expect(emit(reply) == (try message("dhcp_offer")))
    }

    @Test func rapidCommitAckRoundTrip() throws {
        let reply = try withFrame(try message("dhcp_discover")) { base, count in
            let discover = try #require(DHCPMessage(base, count: count))
            let order = DHCPReplyOption.passtOrder(V.replyOptions(.ack, rapid: true),
                                                   parameterRequestList: discover.parameterRequestList?.bytes)
            return DHCPReply(replyingTo: discover, yiaddr: V.guest, options: order)
        }
        let expected = try message("dhcp_ack_rapid")
        #expect(emit(reply) == expected)
        try withFrame(expected) { base, count in
            let m = try #require(DHCPMessage(base, count: count))
            #expect(m.messageType == .ack && m.rapidCommit)
            #expect(Array(m.options).map(\.code) == [53, 1, 3, 6, 26, 119, 51, 54, 80])
        }
    }

    @Test func classlessRoutesAckRoundTrip() throws {
        let expected = try message("dhcp_ack_routes")
        try withFrame(expected) { base, count in
            let m = try #require(DHCPMessage(base, count: count))
            #expect(m.messageType == .ack && m.xid == V.requestXID && !m.isBroadcast && m.yiaddr == V.guest)
            #expect(Array(m.options).map(\.code) == [53, 1, 3, 6, 26, 119, 121, 51, 54])
            #expect(m.option(DHCPOptionCode.subnetMask)?.bytes == [255, 255, 255, 255])
            // Upstream's literal bytes: 32, gw, 0.0.0.0, 0, gw.
            #expect(m.option(DHCPOptionCode.classlessStaticRoutes)?.bytes == [32, 192, 0, 2, 1, 0, 0, 0, 0, 0, 192, 0, 2, 1])
            #expect(m.classlessStaticRoutes == V.routes)
        }
        let reply = try withFrame(try message("dhcp_request")) { base, count in
            let request = try #require(DHCPMessage(base, count: count))
            let order = DHCPReplyOption.passtOrder(V.replyOptions(.ack, mask: .broadcast, routes: true),
                                                   parameterRequestList: request.parameterRequestList?.bytes)
            return DHCPReply(replyingTo: request, yiaddr: V.guest, options: order)
        }
        #expect(emit(reply) == expected)
        // The explicit initialiser gives the same message.
        let explicit = DHCPReply(xid: V.requestXID, flags: 0, yiaddr: V.guest, chaddr: V.guestMAC, options: reply.options)
        #expect(emit(explicit) == expected)
    }

    @Test func passtOrderRules() {
        let options = V.replyOptions(.ack, rapid: true)
        // No parameter request list: ascending codes.
        #expect(DHCPReplyOption.passtOrder(options, parameterRequestList: nil).map(\.code) == [1, 3, 6, 26, 51, 53, 54, 80, 119])
        #expect(DHCPReplyOption.passtOrder(options, parameterRequestList: []).map(\.code) == [1, 3, 6, 26, 51, 53, 54, 80, 119])
        // A list containing 53 places it where the client asked; duplicates are sent once.
        #expect(DHCPReplyOption.passtOrder(options, parameterRequestList: [6, 53, 6, 3, 99]).map(\.code)
                == [6, 53, 3, 1, 26, 51, 54, 80, 119])
    }

    @Test func smallAndSplitOptions() throws {
        // Short option lists are padded to a 60-byte options area (300-byte message).
        let small = try #require(emit(DHCPReply(xid: 1, flags: 0, yiaddr: V.guest, chaddr: V.guestMAC,
                                                options: [.messageType(.nak)])))
        #expect(small.count == 300)
        #expect(Array(small[240..<244]) == [53, 1, 6, 255] && small[244...].allSatisfy { $0 == 0 })
        #expect(Array(small[236..<240]) == [99, 130, 83, 99])
        // Empty lists are left out; a search list over 255 bytes is split into several 119s (RFC 3396)
        // that decode back as one.
        // Names sharing no suffix, so compression cannot shrink them below 255 bytes.
        let names = (0..<12).map { "host\($0).a-rather-long-label-number-\($0).example\($0)" }
        let big = try #require(emit(DHCPReply(xid: 2, flags: 0, yiaddr: V.guest, chaddr: V.guestMAC,
                                              options: [.routers([]), .dnsServers([]), .classlessStaticRoutes([]),
                                                        .domainSearch(names), .raw(code: 12, data: Array("guest".utf8))]),
                                   capacity: 4096))
        try withFrame(big) { base, count in
            let m = try #require(DHCPMessage(base, count: count))
            let codes = Array(m.options).map(\.code)
            #expect(codes.filter { $0 == 119 }.count >= 2, "\(codes)")
            #expect(codes.last == 12 && !codes.contains(3) && !codes.contains(6) && !codes.contains(121))
            #expect(m.domainSearch == names)
            #expect(m.option(DHCPOptionCode.hostName)?.bytes == Array("guest".utf8))
        }
    }

    @Test func capacityIsRespected() throws {
        let reply = DHCPReply(xid: V.xid, flags: 0x8000, yiaddr: V.guest, chaddr: V.guestMAC,
                              options: DHCPReplyOption.passtOrder(V.replyOptions(.offer), parameterRequestList: V.prl))
        let full = try #require(emit(reply))
        for capacity in 0..<300 {
            let (result, untouched) = ServiceFixtures.buildBounded(capacity: capacity) { reply.write(to: $0, capacity: $1) }
            #expect(result == nil && untouched)
        }
        // Between 300 bytes and the full length, options that do not fit are left out whole.
        for capacity in 300...full.count {
            let (result, untouched) = ServiceFixtures.buildBounded(capacity: capacity) { reply.write(to: $0, capacity: $1) }
            #expect(untouched)
            let length = try #require(result)
            #expect(length <= capacity && length >= 300)
        }
        let tight = try #require(emit(reply, capacity: 300))
        try withFrame(tight) { base, count in
            let m = try #require(DHCPMessage(base, count: count))
            let options = Array(m.options)
            #expect(options.map(\.code) == [53, 1, 3, 6, 26, 119, 51, 54].filter { c in options.contains { $0.code == c } })
            #expect(options.count < 8 && m.messageType == .offer)
        }
    }

    @Test func headerAndCookieAreRequired() throws {
        let offer = try message("dhcp_offer")
        withFrame(Array(offer.prefix(239))) { #expect(DHCPMessage($0, count: $1) == nil) }
        withFrame(Array(offer.prefix(240))) { base, count in
            let m = DHCPMessage(base, count: count)
            #expect(m != nil && m.map { Array($0.options).isEmpty } == true)
        }
        for i in 236..<240 {
            var bad = offer; bad[i] ^= 0x10
            withFrame(bad) { #expect(DHCPMessage($0, count: $1) == nil) }
        }
    }

    @Test func optionIteratorEdgeCases() {
        /// The option codes found in an options area made of `bytes`.
        func codes(_ bytes: [UInt8]) -> [UInt8] {
            ServiceFixtures.GuardedBuffer(capacity: 64).with(bytes) { Array(DHCPOptions($0, count: $1)).map(\.code) }
        }
        #expect(codes([]) == [])
        #expect(codes([0, 0, 0]) == [])
        #expect(codes([255, 53, 1, 1]) == [])                      // nothing after END
        #expect(codes([0, 53, 1, 1, 0, 80, 0, 255, 1, 1, 1]) == [53, 80])
        #expect(codes([53, 1, 1, 54]) == [53])                     // code without length
        #expect(codes([53, 1, 1, 54, 4, 1, 2, 3]) == [53])         // data overruns the area
        #expect(codes([53, 255]) == [])
        #expect(codes([0, 0, 61, 0]) == [61])
    }

    @Test func everyTruncationIsRejectedOrSafe() throws {
        let guarded = ServiceFixtures.GuardedBuffer()
        for name in V.fixtures {
            let m = try message(name)
            for length in 0...m.count {
                let accepted = guarded.with(Array(m.prefix(length))) { exerciseDHCP($0, $1) }
                #expect(accepted == (length >= DHCP.optionsOffset))
            }
        }
    }

    @Test func corruptedOptionLengthsNeverCrash() throws {
        let guarded = ServiceFixtures.GuardedBuffer()
        for name in V.fixtures {
            let m = try message(name)
            var offset = DHCP.optionsOffset
            while offset + 1 < m.count, m[offset] != 255 {
                if m[offset] == 0 { offset += 1; continue }
                ServiceFixtures.everyValue(at: offset + 1, of: m) { corrupted in
                    guarded.with(corrupted) { #expect(exerciseDHCP($0, $1)) }
                }
                offset += 2 + Int(m[offset + 1])
            }
        }
    }

    @Test func randomMutationsNeverCrash() throws {
        let guarded = ServiceFixtures.GuardedBuffer()
        var rng = ServiceFixtures.SeededGenerator(seed: 0xd4c9_0067)
        for name in V.fixtures {
            let m = try message(name)
            for _ in 0..<1000 {
                // Mutate mostly the options area, where the structure is.
                var mutated = m
                for _ in 0..<Int.random(in: 1...6, using: &rng) {
                    mutated[Int.random(in: DHCP.optionsOffset..<m.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                mutated = Array(mutated.prefix(Int.random(in: DHCP.optionsOffset...m.count, using: &rng)))
                guarded.with(mutated) { exerciseDHCP($0, $1) }
            }
        }
    }
}
