// UDP: golden fields, builder round trip, zero-checksum rule, corrupted length field.
import Testing
import PasstWire

@Suite struct UDPTests {
    @Test func goldenIPv4Datagram() throws {
        try withFrame(try L2L4.frame("ipv4_udp")) { p, n in
            let ip = try #require(IPv4Packet(p + 14, count: n - 14))
            let udp = try #require(UDPDatagram(ip.payload, count: ip.payloadCount))
            #expect(udp.sourcePort == 40000)
            #expect(udp.destinationPort == 53)
            #expect(udp.length == 27)
            #expect(udp.checksum == 0x4813)
            #expect(udp.isChecksumValid(source: ip.source, destination: ip.destination))
            #expect(udp.payload == udp.base + 8 && udp.payloadCount == 19)
            #expect(L2L4.bytes(udp.payload, udp.payloadCount) == Array("golden udp payload!".utf8))
        }
    }

    @Test func goldenIPv6DatagramAfterExtensionHeaders() throws {
        try withFrame(try L2L4.frame("ipv6_ext_udp")) { p, n in
            let ip = try #require(IPv6Packet(p + 14, count: n - 14))
            let udp = try #require(UDPDatagram(ip.upperLayer, count: ip.upperLayerCount))
            #expect(udp.sourcePort == 5353 && udp.destinationPort == 5353)
            #expect(udp.length == 23 && udp.payloadCount == 15)
            #expect(udp.isChecksumValid(source: L2L4.guest6, destination: L2L4.remote6))
            #expect(!udp.isChecksumValid(source: L2L4.guest6, destination: L2L4.router6))
            #expect(L2L4.bytes(udp.payload, udp.payloadCount) == Array("extension chain".utf8))
        }
    }

    @Test func builderRoundTrip() throws {
        let built = L2L4.build { p in
            var n = EthernetFrame.write(to: p, destination: L2L4.ourMAC, source: L2L4.guestMAC, etherType: EtherType.ipv4)
            n += IPv4Packet.write(to: p + n, source: L2L4.guest4, destination: L2L4.remote4, protocol: IPProtocol.udp,
                                  payloadLength: 27, ttl: 64, identification: 0x1234, dontFragment: true)
            let udp = p + n
            n += UDPDatagram.write(to: udp, sourcePort: 40000, destinationPort: 53, payloadLength: 19)
            n += L2L4.copy(Array("golden udp payload!".utf8), to: p, at: n)
            UDPDatagram.fillChecksum(udp, count: 27, source: L2L4.guest4, destination: L2L4.remote4)
            return n
        }
        #expect(built == (try L2L4.frame("ipv4_udp")))
    }

    /// Builds a datagram whose computed checksum is 0 (the payload word cancels the rest of the sum).
    static func zeroSumDatagram(pseudo: UInt64) -> [UInt8] {
        let probe = L2L4.build { p in
            let n = UDPDatagram.write(to: p, sourcePort: 1234, destinationPort: 5678, payloadLength: 2)
            UDPDatagram.fillChecksum(p, count: n + 2, pseudoHeaderSum: pseudo)
            return n + 2
        }
        let c = L2L4.be16(probe, 6)                       // ~fold(sum) with a zero payload word
        return L2L4.build { p in
            let n = UDPDatagram.write(to: p, sourcePort: 1234, destinationPort: 5678, payloadLength: 2)
            p.storeBytes(of: c.bigEndian, toByteOffset: n, as: UInt16.self)
            return n + 2
        }
    }

    @Test func zeroChecksumIsSentAsAllOnes() {
        let pseudo4 = Checksum.pseudoHeader(source: L2L4.guest4, destination: L2L4.remote4, protocol: IPProtocol.udp, length: 10)
        var v4 = Self.zeroSumDatagram(pseudo: pseudo4)
        #expect(v4.withUnsafeBytes { Checksum.internet($0.baseAddress!, count: 10, initial: pseudo4) } == 0)
        v4 = withFrame(v4) { p, n in
            L2L4.build { q in L2L4.copy(L2L4.bytes(p, n), to: q, at: 0)
                UDPDatagram.fillChecksum(q, count: n, source: L2L4.guest4, destination: L2L4.remote4); return n }
        }
        #expect(L2L4.be16(v4, 6) == 0xffff)
        #expect(UDPDatagram.parse(v4) { $0.isChecksumValid(source: L2L4.guest4, destination: L2L4.remote4) } == true)

        let pseudo6 = Checksum.pseudoHeader(source: L2L4.guest6, destination: L2L4.remote6, nextHeader: IPProtocol.udp, length: 10)
        var v6 = Self.zeroSumDatagram(pseudo: pseudo6)
        v6 = withFrame(v6) { p, n in
            L2L4.build { q in L2L4.copy(L2L4.bytes(p, n), to: q, at: 0)
                UDPDatagram.fillChecksum(q, count: n, source: L2L4.guest6, destination: L2L4.remote6); return n }
        }
        #expect(L2L4.be16(v6, 6) == 0xffff)
        #expect(UDPDatagram.parse(v6) { $0.isChecksumValid(source: L2L4.guest6, destination: L2L4.remote6) } == true)
    }

    @Test func absentChecksum() throws {
        var udp = Array(try L2L4.frame("ipv4_udp")[34...])
        udp[6] = 0; udp[7] = 0
        #expect(UDPDatagram.parse(udp) { $0.isChecksumValid(source: L2L4.guest4, destination: L2L4.remote4) } == true)
        #expect(UDPDatagram.parse(udp) { $0.isChecksumValid(source: L2L4.guest6, destination: L2L4.remote6) } == false)
    }

    @Test func everyTruncation() throws {
        for name in ["ipv4_udp", "ipv6_ext_udp"] {
            let golden = try L2L4.frame(name)
            #expect(L2L4.walkEveryTruncation(golden) == 0, "\(name)")
            let offset = name == "ipv4_udp" ? 34 : 110
            let datagram = Array(golden[offset...])
            for length in 0...datagram.count {
                let accepted = withFrame(Array(datagram[0..<length])) { p, n in UDPDatagram(p, count: n) != nil }
                #expect(accepted == (length >= datagram.count), "\(name) length \(length)")
            }
        }
    }

    @Test func everyLengthField() throws {
        for (name, offset) in [("ipv4_udp", 34), ("ipv6_ext_udp", 110)] {
            let golden = try L2L4.frame(name)
            let count = golden.count - offset
            let buffer = L2L4.GuardedBuffer(golden)
            var violations = 0, wrong = 0
            for length in 0...0xffff {
                buffer.base.storeBytes(of: UInt16(length).bigEndian, toByteOffset: offset + 4, as: UInt16.self)
                violations += buffer.walk().violations
                let accepted = UDPDatagram(buffer.pointer + offset, count: count) != nil
                if accepted != (length >= 8 && length <= count) { wrong += 1 }
            }
            #expect(violations == 0, "\(name)")
            #expect(wrong == 0, "\(name)")
        }
    }
}
