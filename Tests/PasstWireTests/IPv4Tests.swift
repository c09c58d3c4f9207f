// IPv4: golden fields (plain, options, fragment), checksum, builder round trip, corrupted lengths.
import Testing
import PasstWire

@Suite struct IPv4Tests {
    /// Runs `body` with the IPv4 view of the golden frame `name`.
    func withIPv4<R>(_ name: String, _ body: (IPv4Packet) throws -> R) throws -> R {
        try withFrame(try L2L4.frame(name)) { p, n in
            let eth = try #require(EthernetFrame(p, count: n))
            #expect(eth.etherType == EtherType.ipv4)
            return try body(try #require(IPv4Packet(eth.payload, count: eth.payloadCount)))
        }
    }

    @Test func goldenUDPHeader() throws {
        try withIPv4("ipv4_udp") { ip in
            #expect(ip.version == 4)
            #expect(ip.headerLength == 20)
            #expect(ip.tos == 0 && ip.dscp == 0 && ip.ecn == 0)
            #expect(ip.totalLength == 47)
            #expect(ip.identification == 0x1234)
            #expect(ip.dontFragment && !ip.moreFragments)
            #expect(ip.fragmentOffset == 0 && !ip.isFragment)
            #expect(ip.flagsAndFragmentOffset == 0x4000)
            #expect(ip.ttl == 64)
            #expect(ip.protocol == IPProtocol.udp)
            #expect(ip.headerChecksum == 0x3c40)
            #expect(ip.isChecksumValid)
            #expect(ip.source == L2L4.guest4)
            #expect(ip.destination == L2L4.remote4)
            #expect(ip.optionsCount == 0)
            #expect(ip.payloadOffset == 20 && ip.payload == ip.base + 20)
            #expect(ip.payloadCount == 27)
        }
    }

    @Test func goldenHeaderWithOptions() throws {
        try withIPv4("ipv4_options_tcp") { ip in
            #expect(ip.headerLength == 28)
            #expect(ip.tos == 0xb8 && ip.dscp == 46 && ip.ecn == 0)
            #expect(ip.totalLength == 106)
            #expect(ip.identification == 0xbeef)
            #expect(!ip.dontFragment && !ip.isFragment)
            #expect(ip.ttl == 64)
            #expect(ip.protocol == IPProtocol.tcp)
            #expect(ip.isChecksumValid)
            #expect(ip.optionsCount == 8)
            #expect(L2L4.bytes(ip.options, ip.optionsCount) == [0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00])
            #expect(ip.payloadOffset == 28)
            #expect(ip.payloadCount == 78)
        }
    }

    @Test func goldenFragmentWithPadding() throws {
        try withIPv4("ipv4_fragment") { ip in
            #expect(ip.count == 46)                       // Ethernet payload includes 6 bytes of padding
            #expect(ip.totalLength == 40)
            #expect(ip.identification == 0x4242)
            #expect(ip.moreFragments && !ip.dontFragment)
            #expect(ip.fragmentOffset == 185)
            #expect(ip.isFragment)
            #expect(ip.protocol == IPProtocol.udp)
            #expect(ip.isChecksumValid)
            #expect(ip.payloadCount == 20)
            #expect(L2L4.bytes(ip.payload, ip.payloadCount) == Array("0123456789abcdefghij".utf8))
        }
    }

    @Test func isFragmentForOffsetOnlyAndMFOnly() throws {
        var header = Array(try L2L4.frame("ipv4_udp")[14...])
        for (word, fragment) in [(0x0000, false), (0x4000, false), (0x2000, true), (0x0001, true), (0x5fff, true)] {
            header[6] = UInt8(word >> 8); header[7] = UInt8(word & 0xff)
            #expect(IPv4Packet.parse(header) { $0.isFragment } == fragment, "flags \(word)")
        }
    }

    @Test func checksumDetectsCorruption() throws {
        var header = Array(try L2L4.frame("ipv4_udp")[14...])
        var undetected = 0
        for index in 0..<20 where index != 2 && index != 3 && index != 0 {
            let original = header[index]
            header[index] ^= 0x10
            if IPv4Packet.parse(header, { $0.isChecksumValid }) != false { undetected += 1 }
            header[index] = original
        }
        #expect(undetected == 0)
    }

    @Test func fillChecksumWithOptions() throws {
        let golden = try L2L4.frame("ipv4_options_tcp")
        let rebuilt = L2L4.build { p in
            L2L4.copy(golden, to: p, at: 0)
            p.storeBytes(of: UInt16(0x1234), toByteOffset: 14 + 10, as: UInt16.self)
            IPv4Packet.fillChecksum(p + 14, headerLength: 28)
            return golden.count
        }
        #expect(rebuilt == golden)
    }

    @Test func builderRoundTrip() throws {
        let udp = L2L4.build { p in
            var n = EthernetFrame.write(to: p, destination: L2L4.ourMAC, source: L2L4.guestMAC, etherType: EtherType.ipv4)
            n += IPv4Packet.write(to: p + n, source: L2L4.guest4, destination: L2L4.remote4, protocol: IPProtocol.udp,
                                  payloadLength: 27, ttl: 64, identification: 0x1234, dontFragment: true)
            return n
        }
        #expect(udp == Array(try L2L4.frame("ipv4_udp")[0..<34]))

        let fragment = L2L4.build { p in
            var n = EthernetFrame.write(to: p, destination: L2L4.ourMAC, source: L2L4.guestMAC, etherType: EtherType.ipv4)
            n += IPv4Packet.write(to: p + n, source: L2L4.guest4, destination: L2L4.remote4, protocol: IPProtocol.udp,
                                  payloadLength: 20, ttl: 64, identification: 0x4242, moreFragments: true,
                                  fragmentOffset: 185)
            n += L2L4.copy(Array("0123456789abcdefghij".utf8), to: p, at: n)
            return n + 6                                  // zero padding to 60 bytes
        }
        #expect(fragment == (try L2L4.frame("ipv4_fragment")))

        // passt's own header: TTL 255, ID 0, no DF (defaults).
        let synack = L2L4.build { p in
            IPv4Packet.write(to: p, source: L2L4.remote4, destination: L2L4.guest4, protocol: IPProtocol.tcp,
                             payloadLength: 28)
        }
        #expect(synack == Array(try L2L4.frame("ipv4_tcp_synack")[14..<34]))
    }

    @Test func everyTruncation() throws {
        for name in ["ipv4_udp", "ipv4_options_tcp", "ipv4_fragment", "ipv4_tcp_synack",
                     "icmpv4_echo_request", "icmpv4_echo_reply"] {
            let golden = try L2L4.frame(name)
            #expect(L2L4.walkEveryTruncation(golden) == 0, "\(name)")
            let ip = Array(golden[14...])
            let total = Int(L2L4.be16(ip, 2))
            for length in 0...ip.count {
                let accepted = withFrame(Array(ip[0..<length])) { p, n in IPv4Packet(p, count: n) != nil }
                #expect(accepted == (length >= total), "\(name) length \(length)")
            }
        }
    }

    @Test func everyTotalLength() throws {
        for name in ["ipv4_udp", "ipv4_options_tcp", "ipv4_fragment"] {
            let golden = try L2L4.frame(name)
            let buffer = L2L4.GuardedBuffer(golden)
            let ihl = Int(golden[14] & 0xf) * 4
            var violations = 0, wrong = 0
            for total in 0...0xffff {
                buffer.base.storeBytes(of: UInt16(total).bigEndian, toByteOffset: 16, as: UInt16.self)
                violations += buffer.walk().violations
                let accepted = IPv4Packet(buffer.pointer + 14, count: golden.count - 14) != nil
                if accepted != (total >= ihl && total <= golden.count - 14) { wrong += 1 }
            }
            #expect(violations == 0, "\(name)")
            #expect(wrong == 0, "\(name)")
        }
    }

    @Test func everyVersionAndIHL() throws {
        for name in ["ipv4_udp", "ipv4_options_tcp", "icmpv4_echo_request"] {
            let golden = try L2L4.frame(name)
            let buffer = L2L4.GuardedBuffer(golden)
            let total = Int(L2L4.be16(golden, 16))
            var violations = 0, wrong = 0
            for value in 0...255 {
                buffer.base.storeBytes(of: UInt8(value), toByteOffset: 14, as: UInt8.self)
                violations += buffer.walk().violations
                let accepted = IPv4Packet(buffer.pointer + 14, count: golden.count - 14) != nil
                let ihl = (value & 0xf) * 4
                if accepted != (value >> 4 == 4 && ihl >= 20 && ihl <= total) { wrong += 1 }
            }
            #expect(violations == 0, "\(name)")
            #expect(wrong == 0, "\(name)")
        }
    }
}
