// Golden frames: every request of gen_service_answers.py gets exactly upstream's reply (or none),
// through the dispatcher and through its own service; every truncation, every too-small output
// capacity and seeded random corruption of every request is survived without a bad reply.
import Testing
import PasstWire
@testable import PasstServices

@Suite struct GoldenFrameTests {
    /// The service a case's name says owns its request.
    static func owner(of c: Golden.Case) -> (LocalService, ServiceFunction) {
        if c.name.hasPrefix("arp") { return (.arp, Entry.arp) }
        if c.name.hasPrefix("dhcpv6") { return (.dhcpv6, Entry.dhcpv6) }
        if c.name.hasPrefix("dhcp") || c.name.hasPrefix("bootp") { return (.dhcp, Entry.dhcp) }
        return (.ndp, Entry.ndp)
    }

    @Test(arguments: Golden.cases)
    func replyIsUpstreams(_ c: Golden.Case) {
        let harness = ServiceHarness()
        #expect(hex(harness.reply(c.request, c.config)) == hex(c.reply))
        #expect(hex(harness.reply(c.request, c.config, via: Self.owner(of: c).1)) == hex(c.reply))
    }

    @Test(arguments: Golden.cases)
    func requestIsClassifiedToItsService(_ c: Golden.Case) {
        let request = c.request
        let kind = request.withUnsafeBytes { LocalService.classify($0.baseAddress!, count: $0.count) }
        #expect(kind == Self.owner(of: c).0)
    }

    @Test(arguments: Golden.cases)
    func otherServicesIgnoreTheRequest(_ c: Golden.Case) {
        let harness = ServiceHarness()
        let own = Self.owner(of: c).0
        for (kind, service) in [(LocalService.arp, Entry.arp), (.dhcp, Entry.dhcp), (.ndp, Entry.ndp),
                                (.dhcpv6, Entry.dhcpv6)] where kind != own {
            #expect(harness.reply(c.request, c.config, via: service) == nil, "\(kind)")
        }
    }

    @Test(arguments: Golden.cases)
    func everyTruncationGetsNoReply(_ c: Golden.Case) {
        let harness = ServiceHarness()
        let request = c.request
        for length in 0..<request.count {
            #expect(harness.reply(Array(request[..<length]), c.config) == nil, "truncated to \(length)")
        }
    }

    @Test(arguments: Golden.cases.filter(\.expectsReply))
    func everySmallerCapacityIsRespected(_ c: Golden.Case) throws {
        let harness = ServiceHarness()
        let expected = try #require(c.reply)
        #expect(hex(harness.reply(c.request, c.config, capacity: expected.count)) == hex(expected))
        for capacity in 0..<expected.count {
            let reply = harness.reply(c.request, c.config, capacity: capacity)
            if Self.owner(of: c).0 == .dhcp, let reply {
                // DHCP leaves out options that don't fit, down to the 342-byte minimum frame.
                #expect(capacity >= 342 && reply.count <= capacity)
                #expect(dhcpOptions(reply) != nil)
            } else {
                #expect(reply == nil, "capacity \(capacity)")
            }
        }
    }

    @Test(arguments: Golden.cases)
    func randomCorruptionIsSurvived(_ c: Golden.Case) {
        let harness = ServiceHarness()
        let request = c.request
        var rng = SeededGenerator(state: UInt64(request.count) &* 0x5151)
        for _ in 0..<1500 {
            var frame = request
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                frame[Int.random(in: 0..<frame.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if let reply = harness.reply(frame, c.config, capacity: 2048) {
                #expect(reply.count >= ARPResponder.replyLength)
            }
        }
    }

    @Test func unsolicitedRouterAdvertisementIsTheSolicitedOneToAllNodes() {
        let out = GuardedMemory()
        let capacity = 1024
        let n = NDPResponder.unsolicitedRouterAdvertisement(config: Golden.configA, into: out.tail(capacity), capacity: capacity)
        let frame = n.map { Array(UnsafeRawBufferPointer(start: out.tail(capacity), count: $0)) }
        #expect(hex(frame) == hex(Golden.bytes("unsolicited_ra.reply")))
    }
}
