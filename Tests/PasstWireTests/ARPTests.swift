// ARP: golden request/reply fields, builder round trip, fixed-field checks, truncation.
import Testing
import PasstWire

@Suite struct ARPTests {
    @Test func goldenRequest() throws {
        let golden = try L2L4.frame("arp_request")
        withFrame(golden) { p, n in
            let eth = EthernetFrame(p, count: n)!
            let arp = ARPPacket(eth.payload, count: eth.payloadCount)!
            #expect(arp.operation == ARPOperation.request)
            #expect(arp.senderMAC == L2L4.guestMAC)
            #expect(arp.senderIP == L2L4.guest4)
            #expect(arp.targetMAC == .zero)
            #expect(arp.targetIP == L2L4.gateway4)
            #expect(arp.count == 46)                      // 28 bytes of ARP + 18 of padding
        }
    }

    @Test func goldenReply() throws {
        let golden = try L2L4.frame("arp_reply")
        withFrame(golden) { p, n in
            let arp = ARPPacket(p + 14, count: n - 14)!
            #expect(arp.operation == ARPOperation.reply)
            #expect(arp.senderMAC == L2L4.ourMAC)
            #expect(arp.senderIP == L2L4.gateway4)
            #expect(arp.targetMAC == L2L4.guestMAC)
            #expect(arp.targetIP == L2L4.guest4)
        }
    }

    @Test func builderRoundTrip() throws {
        let request = L2L4.build { p in
            var n = EthernetFrame.write(to: p, destination: .broadcast, source: L2L4.guestMAC, etherType: EtherType.arp)
            n += ARPPacket.write(to: p + n, operation: ARPOperation.request, senderMAC: L2L4.guestMAC,
                                 senderIP: L2L4.guest4, targetMAC: .zero, targetIP: L2L4.gateway4)
            return n + 18                                 // zero padding to 60 bytes
        }
        #expect(request == (try L2L4.frame("arp_request")))
        let reply = L2L4.build { p in
            var n = EthernetFrame.write(to: p, destination: L2L4.guestMAC, source: L2L4.ourMAC, etherType: EtherType.arp)
            n += ARPPacket.write(to: p + n, operation: ARPOperation.reply, senderMAC: L2L4.ourMAC,
                                 senderIP: L2L4.gateway4, targetMAC: L2L4.guestMAC, targetIP: L2L4.guest4)
            return n
        }
        #expect(reply == (try L2L4.frame("arp_reply")))
    }

    @Test func rejectsOtherHardwareAndProtocolTypes() throws {
        let arp = Array(try L2L4.frame("arp_reply")[14...])
        var wrongAccepted = 0, rightRejected = 0
        for index in 0..<6 {
            for value in 0...255 {
                var mutated = arp
                mutated[index] = UInt8(value)
                let accepted = withFrame(mutated) { p, n in ARPPacket(p, count: n) != nil }
                if value == Int(arp[index]) { if !accepted { rightRejected += 1 } } else if accepted { wrongAccepted += 1 }
            }
        }
        #expect(wrongAccepted == 0)
        #expect(rightRejected == 0)
    }

    @Test func everyTruncation() throws {
        for name in ["arp_request", "arp_reply"] {
            let golden = try L2L4.frame(name)
            #expect(L2L4.walkEveryTruncation(golden) == 0, "\(name)")
            for length in 0...(golden.count - 14) {
                let accepted = withFrame(Array(golden[14..<(14 + length)])) { p, n in ARPPacket(p, count: n) != nil }
                #expect(accepted == (length >= 28), "\(name) length \(length)")
            }
        }
    }
}
