// Ethernet: golden fields, builder round trip, truncation.
import Testing
import PasstWire

@Suite struct EthernetTests {
    @Test func goldenFields() throws {
        let request = try L2L4.frame("arp_request")
        withFrame(request) { p, n in
            let eth = EthernetFrame(p, count: n)!
            #expect(eth.destination == .broadcast)
            #expect(eth.source == L2L4.guestMAC)
            #expect(eth.etherType == EtherType.arp)
            #expect(eth.payloadOffset == 14)
            #expect(eth.payload == p + 14)
            #expect(eth.payloadCount == 46)
        }
        let tcp6 = try L2L4.frame("ipv6_tcp")
        withFrame(tcp6) { p, n in
            let eth = EthernetFrame(p, count: n)!
            #expect(eth.destination == L2L4.ourMAC)
            #expect(eth.source == L2L4.guestMAC)
            #expect(eth.etherType == EtherType.ipv6)
            #expect(eth.payloadCount == n - 14)
        }
        let udp4 = try L2L4.frame("ipv4_udp")
        withFrame(udp4) { p, n in #expect(EthernetFrame(p, count: n)!.etherType == EtherType.ipv4) }
    }

    @Test func builderMatchesEveryGoldenHeader() throws {
        for name in L2L4.frameNames {
            let golden = try L2L4.frame(name)
            let (dst, src, type) = withFrame(golden) { p, n in
                let eth = EthernetFrame(p, count: n)!
                return (eth.destination, eth.source, eth.etherType)
            }
            let built = L2L4.build { EthernetFrame.write(to: $0, destination: dst, source: src, etherType: type) }
            #expect(built == Array(golden[0..<14]), "\(name)")
        }
    }

    @Test func rejectsEveryShortFrame() throws {
        let golden = try L2L4.frame("ipv4_udp")
        for length in 0...golden.count {
            let accepted = withFrame(Array(golden[0..<length])) { p, n in EthernetFrame(p, count: n) != nil }
            #expect(accepted == (length >= 14), "length \(length)")
        }
    }

    @Test func safeParseEntry() throws {
        let golden = try L2L4.frame("arp_reply")
        #expect(EthernetFrame.parse(golden) { $0.etherType } == EtherType.arp)
        #expect(EthernetFrame.parse(Array(golden[0..<13])) { $0.etherType } == nil)
        #expect(EthernetFrame.parse([]) { $0.etherType } == nil)
    }
}
