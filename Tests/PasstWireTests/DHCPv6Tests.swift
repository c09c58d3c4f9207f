// DHCPv6 view, option iterator, typed options and builder against the golden frames of
// scripts/golden/gen_services.py. Fixtures are full Ethernet frames; the DHCPv6 message (UDP
// payload) starts at offset 62 (IPv6 without extension headers).
import Testing
import PasstWire

/// Values used by gen_services.py.
private enum V {
    static let ourMAC = MACAddress(0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55)
    static let guestMAC = MACAddress(0x52, 0x54, 0x00, 0x12, 0x34, 0x56)
    static let guestAddress = IPv6Address("2001:db8:1::5")!
    static let notOnLinkAddress = IPv6Address("2001:db8:ffff::9")!
    static let dns = [IPv6Address("2001:db8::53")!, IPv6Address("2001:db8::54")!]
    static let search = ["example.com", "sub.example.com"]
    static let solicitXID: UInt32 = 0x0a2b3c
    static let requestXID: UInt32 = 0x04d5e6
    static let confirmXID: UInt32 = 0x077777
    static let iaid: UInt32 = 0x0c0f_fee0
    static let clientDUID = DHCPv6.duidLLT(time: 700_000_000, mac: guestMAC)
    static let serverDUID = DHCPv6.duidLLT(time: 0x2f0a_1b2c, mac: ourMAC)
    static let inf = DHCPv6.infiniteLifetime
    static let fixtures = ["dhcpv6_solicit", "dhcpv6_advertise", "dhcpv6_request", "dhcpv6_reply",
                           "dhcpv6_confirm", "dhcpv6_reply_notonlink"]

    /// The options of passt's normal ADVERTISE / REPLY, in its order.
    static let normalOptions: [DHCPv6OptionValue] = [
        .serverID(serverDUID),
        .iaNA(iaid: iaid, t1: inf, t2: inf, options: [.iaAddress(guestAddress, preferredLifetime: inf, validLifetime: inf, options: [])]),
        .clientID(clientDUID),
        .dnsServers(dns),
        .domainList(search),
    ]
}

/// Walks `options` and every nested option area, reading each typed view (nesting is bounded:
/// every level consumes at least its option header and fixed part).
private func walk(_ options: DHCPv6Options, depth: Int = 0, sink: inout Int) {
    var steps = 0
    for option in options {
        steps += 1
        sink &+= Int(option.code) &+ option.bytes.count &+ option.ipv6Addresses.count
        if let ia = DHCPv6IANA(option) {
            sink &+= Int(ia.iaid) &+ Int(ia.t1) &+ Int(ia.t2) &+ (ia.address == nil ? 0 : 1) &+ Int(ia.statusCode?.status.rawValue ?? 0)
            walk(ia.options, depth: depth + 1, sink: &sink)
        }
        if let ta = DHCPv6IATA(option) { sink &+= Int(ta.iaid); walk(ta.options, depth: depth + 1, sink: &sink) }
        if let a = DHCPv6IAAddress(option) {
            sink &+= Int(a.address.low & 0xff) &+ Int(a.preferredLifetime) &+ Int(a.validLifetime)
            walk(a.options, depth: depth + 1, sink: &sink)
        }
        if let s = DHCPv6StatusCode(option) { sink &+= Int(s.status.rawValue) &+ s.message.utf8.count }
        if let r = DHCPv6OptionRequest(option) { sink &+= r.codes.count &+ (r.contains(23) ? 1 : 0) }
    }
    #expect(steps <= options.count / 4)
}

/// Reads everything of `base[0..<count]` if the view accepts it; returns whether it did.
@discardableResult
private func exerciseDHCPv6(_ base: UnsafeRawPointer, _ count: Int) -> Bool {
    var sink = 0
    if count >= 4 { walk(DHCPv6Options(base + 4, count: count - 4), sink: &sink) }   // raw, unvalidated
    guard let m = DHCPv6Message(base, count: count) else { return false }
    sink &+= Int(m.messageType.rawValue) &+ Int(m.transactionID)
    sink &+= (m.clientID?.length ?? 0) &+ (m.serverID?.length ?? 0) &+ Int(m.iaNA?.iaid ?? 0)
    sink &+= (m.optionRequest?.count ?? 0) &+ Int(m.elapsedTime ?? 0) &+ (m.rapidCommit ? 1 : 0)
    sink &+= Int(m.statusCode?.status.rawValue ?? 0) &+ (m.dnsServers?.count ?? 0) &+ (m.domainList?.count ?? 0)
    sink &+= (m.serverID?.dataEquals(V.serverDUID) == true ? 1 : 0)
    walk(m.options, sink: &sink)
    _ = sink
    return true
}

/// The DHCPv6 message of fixture `name`.
private func message(_ name: String) throws -> [UInt8] { ServiceFixtures.dhcpv6Message(try ServiceFixtures.frame(name)) }

/// Builds a message into a fresh buffer.
private func emit(_ type: DHCPv6MessageType, _ xid: UInt32, _ options: [DHCPv6OptionValue], capacity: Int = 1280) -> [UInt8]? {
    ServiceFixtures.build(capacity: capacity) {
        DHCPv6.write(to: $0, capacity: $1, messageType: type, transactionID: xid, options: options)
    }
}

@Suite struct DHCPv6Tests {
    @Test func solicit() throws {
        let frame = try ServiceFixtures.frame("dhcpv6_solicit")
        #expect(ServiceFixtures.ipv6Addresses(frame).destination == DHCPv6.allRelayAgentsAndServers)
        try withFrame(ServiceFixtures.dhcpv6Message(frame)) { base, count in
            let m = try #require(DHCPv6Message(base, count: count))
            #expect(m.messageType == .solicit && m.transactionID == V.solicitXID)
            #expect(Array(m.options).map(\.code) == [1, 3, 6, 8])
            #expect(m.clientID?.bytes == V.clientDUID && m.clientID?.dataEquals(V.clientDUID) == true)
            #expect(m.serverID == nil)
            let ia = try #require(m.iaNA)
            #expect(ia.iaid == V.iaid && ia.t1 == 0 && ia.t2 == 0 && Array(ia.options).isEmpty && ia.address == nil)
            #expect(m.optionRequest?.codes == [23, 24] && m.optionRequest?.contains(24) == true)
            #expect(m.optionRequest?.contains(39) == false)
            #expect(m.elapsedTime == 0 && !m.rapidCommit)
        }
    }

    @Test func advertiseAndReply() throws {
        for (name, type, xid) in [("dhcpv6_advertise", DHCPv6MessageType.advertise, V.solicitXID),
                                  ("dhcpv6_reply", .reply, V.requestXID)] {
            let frame = try ServiceFixtures.frame(name)
            // passt puts the transaction id in the IPv6 flow label.
            let flowLabel = UInt32(frame[15] & 0x0f) << 16 | UInt32(frame[16]) << 8 | UInt32(frame[17])
            #expect(flowLabel == xid)
            let expected = ServiceFixtures.dhcpv6Message(frame)
            try withFrame(expected) { base, count in
                let m = try #require(DHCPv6Message(base, count: count))
                #expect(m.messageType == type && m.transactionID == xid)
                #expect(Array(m.options).map(\.code) == [2, 3, 1, 23, 24])
                #expect(m.serverID?.bytes == V.serverDUID && m.clientID?.bytes == V.clientDUID)
                let ia = try #require(m.iaNA)
                #expect(ia.iaid == V.iaid && ia.t1 == V.inf && ia.t2 == V.inf && ia.statusCode == nil)
                let address = try #require(ia.address)
                #expect(address.address == V.guestAddress)
                #expect(address.preferredLifetime == V.inf && address.validLifetime == V.inf)
                #expect(Array(address.options).isEmpty)
                #expect(m.dnsServers == V.dns && m.domainList == V.search)
            }
            #expect(emit(type, xid, V.normalOptions) == expected)
        }
    }

    @Test func requestAndConfirm() throws {
        try withFrame(try message("dhcpv6_request")) { base, count in
            let m = try #require(DHCPv6Message(base, count: count))
            #expect(m.messageType == .request && m.transactionID == V.requestXID)
            #expect(Array(m.options).map(\.code) == [1, 2, 3, 6, 8])
            #expect(m.serverID?.dataEquals(V.serverDUID) == true)
            #expect(m.serverID?.dataEquals(V.clientDUID) == false)
            let address = try #require(m.iaNA?.address)
            #expect(address.address == V.guestAddress && address.preferredLifetime == 0 && address.validLifetime == 0)
            #expect(m.elapsedTime == 100)
        }
        try withFrame(try message("dhcpv6_confirm")) { base, count in
            let m = try #require(DHCPv6Message(base, count: count))
            #expect(m.messageType == .confirm && m.transactionID == V.confirmXID && m.serverID == nil)
            #expect(m.iaNA?.address?.address == V.notOnLinkAddress)
        }
    }

    @Test func notOnLinkReply() throws {
        let expected = try message("dhcpv6_reply_notonlink")
        try withFrame(expected) { base, count in
            let m = try #require(DHCPv6Message(base, count: count))
            #expect(m.messageType == .reply && m.transactionID == V.confirmXID)
            #expect(Array(m.options).map(\.code) == [2, 3, 1])
            let ia = try #require(m.iaNA)
            #expect(ia.iaid == V.iaid && ia.t1 == 0 && ia.t2 == 0 && ia.address == nil)
            let status = try #require(ia.statusCode)
            #expect(status.status == .notOnLink && status.message == DHCPv6.notOnLinkMessage)
            #expect(m.statusCode == nil)                                 // nested, not top level
        }
        // Built the way the service will: the client's IA_NA header echoed, holding the status.
        let reply = try withFrame(try message("dhcpv6_confirm")) { base, count -> [UInt8]? in
            let confirm = try #require(DHCPv6Message(base, count: count))
            let ia = try #require(confirm.iaNA)
            let client = try #require(confirm.clientID)
            return emit(.reply, confirm.transactionID, [
                .serverID(V.serverDUID),
                .iaNA(iaid: ia.iaid, t1: ia.t1, t2: ia.t2, options: [.statusCode(.notOnLink, message: DHCPv6.notOnLinkMessage)]),
                .clientID(client.bytes),
            ])
        }
        #expect(reply == expected)
    }

    @Test func duid() {
        #expect(V.serverDUID == [0, 1, 0, 1, 0x2f, 0x0a, 0x1b, 0x2c, 0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55])
        #expect(DHCPv6.duidTime(unixSeconds: 946_684_800) == 0)
        #expect(DHCPv6.duidTime(unixSeconds: 946_684_800 + 0x2f0a_1b2c) == 0x2f0a_1b2c)
        #expect(DHCPv6.duidTime(unixSeconds: 1_735_689_600) == 789_004_800)        // 2025-01-01
    }

    @Test func otherOptionValues() throws {
        let bytes = try #require(emit(.informationRequest, 0x1234_5678, [
            .rapidCommit, .elapsedTime(0xfffe), .optionRequest([]), .dnsServers([]), .domainList(["", "bad..name"]),
            .iaTA(iaid: 9, options: []), .raw(code: 39, data: [0, 1, 2]),
        ]))
        // Transaction id keeps its low 24 bits; empty DNS and domain lists are left out.
        #expect(Array(bytes.prefix(4)) == [11, 0x34, 0x56, 0x78])
        try withFrame(bytes) { base, count in
            let m = try #require(DHCPv6Message(base, count: count))
            #expect(Array(m.options).map(\.code) == [14, 8, 6, 4, 39])
            #expect(m.rapidCommit && m.elapsedTime == 0xfffe && m.optionRequest?.count == 0)
            #expect(m.option(4).flatMap(DHCPv6IATA.init)?.iaid == 9)
            #expect(m.option(39)?.bytes == [0, 1, 2] && m.dnsServers == nil && m.domainList == nil)
        }
        // Data over 65535 bytes cannot be encoded.
        #expect(emit(.reply, 1, [.raw(code: 99, data: [UInt8](repeating: 0, count: 65536))], capacity: 70000) == nil)
    }

    @Test func rejectsShortAndRelayMessages() {
        withFrame([1, 2, 3]) { #expect(DHCPv6Message($0, count: $1) == nil) }
        withFrame([12, 0, 0, 0]) { #expect(DHCPv6Message($0, count: $1) == nil) }
        withFrame([13, 0, 0, 0]) { #expect(DHCPv6Message($0, count: $1) == nil) }
        withFrame([7, 0, 0, 1]) { base, count in
            #expect(DHCPv6Message(base, count: count).map { Array($0.options).isEmpty } == true)
        }
    }

    @Test func optionIteratorEdgeCases() {
        /// The option codes found in an option area made of `bytes`.
        func codes(_ bytes: [UInt8]) -> [UInt16] {
            ServiceFixtures.GuardedBuffer(capacity: 64).with(bytes) { Array(DHCPv6Options($0, count: $1)).map(\.code) }
        }
        #expect(codes([]) == [])
        #expect(codes([0, 1, 0]) == [])                              // header cut
        #expect(codes([0, 1, 0, 0, 0, 2]) == [1])                    // empty option, then a cut header
        #expect(codes([0, 1, 0, 1, 7, 0, 2, 0, 2, 1]) == [1])        // second option's data overruns
        #expect(codes([0, 1, 0xff, 0xff, 1, 2]) == [])
        // IA_NA too short for its fixed part is not an IA_NA view.
        let short: [UInt8] = [0, 3, 0, 4, 1, 2, 3, 4]
        ServiceFixtures.GuardedBuffer(capacity: 64).with(short) { base, count in
            let option = Array(DHCPv6Options(base, count: count)).first
            #expect(option != nil && option.flatMap(DHCPv6IANA.init) == nil)
        }
    }

    @Test func everyTruncationIsRejectedOrSafe() throws {
        let guarded = ServiceFixtures.GuardedBuffer()
        for name in V.fixtures {
            let m = try message(name)
            for length in 0...m.count {
                let accepted = guarded.with(Array(m.prefix(length))) { exerciseDHCPv6($0, $1) }
                #expect(accepted == (length >= 4))
            }
        }
    }

    @Test func corruptedOptionLengthsNeverCrash() throws {
        let guarded = ServiceFixtures.GuardedBuffer()
        for name in V.fixtures {
            let m = try message(name)
            // Every option length field, nested ones included (found by walking the golden message).
            var lengthFields: [Int] = []
            func collect(_ start: Int, _ end: Int) {
                var offset = start
                while offset + 4 <= end {
                    let code = Int(m[offset]) << 8 | Int(m[offset + 1])
                    let length = Int(m[offset + 2]) << 8 | Int(m[offset + 3])
                    lengthFields.append(offset + 2)
                    let data = offset + 4
                    switch code {
                    case 3: collect(data + 12, data + length)
                    case 5: collect(data + 24, data + length)
                    default: break
                    }
                    offset = data + length
                }
            }
            collect(4, m.count)
            #expect(lengthFields.count >= 4)
            for field in lengthFields {
                for high in [0, 1, 0xff] {
                    var corrupted = m
                    corrupted[field] = UInt8(high)
                    ServiceFixtures.everyValue(at: field + 1, of: corrupted) { c in
                        guarded.with(c) { #expect(exerciseDHCPv6($0, $1)) }
                    }
                }
            }
        }
    }

    @Test func randomMutationsNeverCrash() throws {
        let guarded = ServiceFixtures.GuardedBuffer()
        var rng = ServiceFixtures.SeededGenerator(seed: 0xd6c9_0547)
        for name in V.fixtures {
            let m = try message(name)
            for _ in 0..<1500 {
                var mutated = ServiceFixtures.mutate(m, using: &rng)
                mutated = Array(mutated.prefix(Int.random(in: 0...mutated.count, using: &rng)))
                guarded.with(mutated) { exerciseDHCPv6($0, $1) }
            }
        }
    }

    @Test func capacityIsRespected() throws {
        let full = try #require(emit(.reply, V.requestXID, V.normalOptions))
        for capacity in 0..<full.count {
            let (result, untouched) = ServiceFixtures.buildBounded(capacity: capacity) {
                DHCPv6.write(to: $0, capacity: $1, messageType: .reply, transactionID: V.requestXID, options: V.normalOptions)
            }
            #expect(result == nil && untouched)
        }
    }
}
