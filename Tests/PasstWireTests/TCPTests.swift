// TCP: golden fields and options, options parser edge cases, builder round trip, corrupted offsets.
import Testing
import PasstWire

@Suite struct TCPTests {
    /// Parses `bytes` as a TCP options area.
    static func options(_ bytes: [UInt8]) -> TCPOptions {
        withFrame(bytes) { p, n in TCPOptions(parsing: p, count: n) }
    }

    @Test func goldenSegmentWithEveryOptionKind() throws {
        try withFrame(try L2L4.frame("ipv4_options_tcp")) { p, n in
            let ip = try #require(IPv4Packet(p + 14, count: n - 14))
            let tcp = try #require(TCPSegment(ip.payload, count: ip.payloadCount))
            #expect(tcp.sourcePort == 43210)
            #expect(tcp.destinationPort == 8080)
            #expect(tcp.sequenceNumber == 0x0102_0304)
            #expect(tcp.acknowledgmentNumber == 0xa0b0_c0d0)
            #expect(tcp.flags == [.psh, .ack])
            #expect(tcp.window == 502)
            #expect(tcp.urgentPointer == 0)
            #expect(tcp.dataOffset == 15 && tcp.headerLength == 60)
            #expect(tcp.optionsCount == 40 && tcp.optionsArea == tcp.base + 20)
            #expect(tcp.isChecksumValid(source: ip.source, destination: ip.destination))
            #expect(!tcp.isChecksumValid(source: L2L4.gateway4, destination: ip.destination))
            #expect(tcp.payloadOffset == 60 && tcp.payloadCount == 18)
            #expect(L2L4.bytes(tcp.payload, tcp.payloadCount) == Array("GET / HTTP/1.0\r\n\r\n".utf8))
            var expected = TCPOptions()
            expected.mss = 1460
            expected.windowScale = 7
            expected.sackPermitted = true
            expected.timestampValue = 123_456_789
            expected.timestampEcho = 987_654_321
            expected.skippedCount = 2                     // SACK blocks and the unknown kind 253
            #expect(tcp.options == expected)
        }
    }

    @Test func goldenSynAckAndSyn() throws {
        try withFrame(try L2L4.frame("ipv4_tcp_synack")) { p, n in
            let ip = try #require(IPv4Packet(p + 14, count: n - 14))
            let tcp = try #require(TCPSegment(ip.payload, count: ip.payloadCount))
            #expect(tcp.sourcePort == 80 && tcp.destinationPort == 43210)
            #expect(tcp.sequenceNumber == 0x1122_3344 && tcp.acknowledgmentNumber == 0x0102_0305)
            #expect(tcp.flags == [.syn, .ack])
            #expect(tcp.window == 65535)
            #expect(tcp.headerLength == 28 && tcp.payloadCount == 0)
            #expect(tcp.options.mss == 65480 && tcp.options.windowScale == 8)
            #expect(!tcp.options.sackPermitted && tcp.options.timestampValue == nil && tcp.options.skippedCount == 0)
            #expect(tcp.isChecksumValid(source: ip.source, destination: ip.destination))
        }
        try withFrame(try L2L4.frame("ipv6_tcp")) { p, n in
            let ip = try #require(IPv6Packet(p + 14, count: n - 14))
            let tcp = try #require(TCPSegment(ip.upperLayer, count: ip.upperLayerCount))
            #expect(tcp.sourcePort == 50000 && tcp.destinationPort == 443)
            #expect(tcp.sequenceNumber == 0xfedc_ba98 && tcp.acknowledgmentNumber == 0)
            #expect(tcp.flags == .syn)
            #expect(tcp.window == 64800)
            #expect(tcp.options.mss == 1440 && tcp.options.windowScale == 7)
            #expect(tcp.isChecksumValid(source: ip.source, destination: ip.destination))
        }
    }

    @Test func builderRoundTrip() throws {
        let synack = L2L4.build { p in
            var n = EthernetFrame.write(to: p, destination: L2L4.guestMAC, source: L2L4.ourMAC, etherType: EtherType.ipv4)
            let length = TCPSegment.headerLength(mss: 65480, windowScale: 8)
            n += IPv4Packet.write(to: p + n, source: L2L4.remote4, destination: L2L4.guest4, protocol: IPProtocol.tcp,
                                  payloadLength: length)
            let tcp = p + n
            n += TCPSegment.write(to: tcp, sourcePort: 80, destinationPort: 43210, sequenceNumber: 0x1122_3344,
                                  acknowledgmentNumber: 0x0102_0305, flags: [.syn, .ack], window: 65535,
                                  mss: 65480, windowScale: 8)
            TCPSegment.fillChecksum(tcp, count: length, source: L2L4.remote4, destination: L2L4.guest4)
            return n
        }
        #expect(synack == (try L2L4.frame("ipv4_tcp_synack")))

        let syn = L2L4.build { p in
            var n = EthernetFrame.write(to: p, destination: L2L4.ourMAC, source: L2L4.guestMAC, etherType: EtherType.ipv6)
            n += IPv6Packet.write(to: p + n, source: L2L4.guest6, destination: L2L4.remote6, nextHeader: IPProtocol.tcp,
                                  payloadLength: 28, hopLimit: 64, flowLabel: 0x12345)
            let tcp = p + n
            n += TCPSegment.write(to: tcp, sourcePort: 50000, destinationPort: 443, sequenceNumber: 0xfedc_ba98,
                                  acknowledgmentNumber: 0, flags: .syn, window: 64800, mss: 1440, windowScale: 7)
            TCPSegment.fillChecksum(tcp, count: 28, source: L2L4.guest6, destination: L2L4.remote6)
            return n
        }
        #expect(syn == (try L2L4.frame("ipv6_tcp")))
    }

    @Test func checksumFillOverOptionsAndPayload() throws {
        // Zero the golden checksum and refill it over IPv4 options + TCP options + odd payload.
        let golden = try L2L4.frame("ipv4_options_tcp")
        let rebuilt = L2L4.build { p in
            L2L4.copy(golden, to: p, at: 0)
            p.storeBytes(of: UInt16(0xbeef), toByteOffset: 42 + 16, as: UInt16.self)
            TCPSegment.fillChecksum(p + 42, count: 78, source: L2L4.guest4, destination: L2L4.remote4)
            return golden.count
        }
        #expect(rebuilt == golden)
    }

    @Test func builderHeaderLengthsAndFlags() {
        #expect(TCPSegment.headerLength(mss: nil, windowScale: nil) == 20)
        #expect(TCPSegment.headerLength(mss: 1460, windowScale: nil) == 24)
        #expect(TCPSegment.headerLength(mss: 1460, windowScale: 7) == 28)
        let plain = L2L4.build { p in
            TCPSegment.write(to: p, sourcePort: 1, destinationPort: 2, sequenceNumber: 3, acknowledgmentNumber: 4,
                             flags: [.fin, .ack, .rst, .urg, .ece, .cwr], window: 5, urgentPointer: 6)
        }
        #expect(plain == [0, 1, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0x50, 0xf5, 0, 5, 0, 0, 0, 6])
        let mssOnly = L2L4.build { p in
            TCPSegment.write(to: p, sourcePort: 1, destinationPort: 2, sequenceNumber: 0, acknowledgmentNumber: 0,
                             flags: .syn, window: 0, mss: 0x05b4)
        }
        #expect(mssOnly.count == 24 && mssOnly[12] == 0x60 && Array(mssOnly[20...]) == [2, 4, 0x05, 0xb4])
    }

    @Test func optionsParserCases() {
        // Only NOPs, then EOL: nothing, well formed; bytes after EOL are ignored.
        #expect(Self.options([1, 1, 1, 0, 2, 4, 5, 180]) == TCPOptions())
        #expect(Self.options([]) == TCPOptions())
        // Each kind alone.
        #expect(Self.options([2, 4, 0x05, 0xb4]).mss == 1460)
        #expect(Self.options([3, 3, 14]).windowScale == 14)
        #expect(Self.options([4, 2]).sackPermitted)
        let ts = Self.options([8, 10, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff])
        #expect(ts.timestampValue == 1 && ts.timestampEcho == 0xffff_ffff)
        // Unknown kinds skipped by their length, parsing continues.
        let unknown = Self.options([30, 6, 1, 2, 3, 4, 254, 2, 2, 4, 1, 0])
        #expect(unknown.skippedCount == 2 && unknown.mss == 256 && !unknown.isMalformed)
        // Known kinds with a wrong length are skipped, not taken.
        let wrong = Self.options([2, 3, 9, 3, 4, 1, 2, 4, 2])
        #expect(wrong.mss == nil && wrong.windowScale == nil && wrong.skippedCount == 2 && !wrong.isMalformed)
        // Malformed lengths stop parsing, keeping what came before.
        for bad: [UInt8] in [[2, 0, 5, 180], [2, 1, 5, 180], [2], [2, 4, 5], [253, 40, 0, 0]] {
            let o = Self.options([4, 2] + bad)
            #expect(o.isMalformed && o.sackPermitted && o.mss == nil, "\(bad)")
        }
    }

    @Test func everyTwoByteAndRandomOptionsArea() {
        var malformed = 0
        for a in 0...255 {
            for b in 0...255 {
                let buffer = L2L4.GuardedBuffer([UInt8(a), UInt8(b)])
                let o = TCPOptions(parsing: buffer.pointer, count: 2)
                if o.isMalformed { malformed += 1 }
            }
        }
        // Kinds other than 0, 1: a second byte below 2 or above 2 is malformed; 0/1 pairs never are.
        #expect(malformed > 0)
        var rng = L2L4.Random(seed: 9293)
        var digest: UInt64 = 0
        for _ in 0..<20_000 {
            let count = Int.random(in: 0...40, using: &rng)
            let bytes = (0..<count).map { _ in
                Bool.random(using: &rng) ? UInt8.random(in: 0...10, using: &rng) : UInt8.random(in: 0...255, using: &rng)
            }
            let buffer = L2L4.GuardedBuffer(bytes)
            let o = TCPOptions(parsing: buffer.pointer, count: count)
            digest &+= UInt64(o.mss ?? 0) &+ UInt64(o.skippedCount)
        }
        #expect(digest > 0)
    }

    @Test func everyTruncation() throws {
        for name in ["ipv4_options_tcp", "ipv4_tcp_synack", "ipv6_tcp"] {
            let golden = try L2L4.frame(name)
            #expect(L2L4.walkEveryTruncation(golden) == 0, "\(name)")
            let offset = name.hasPrefix("ipv6") ? 54 : 14 + Int(golden[14] & 0xf) * 4
            let segment = Array(golden[offset...])
            let headerLength = Int(segment[12] >> 4) * 4
            for length in 0...segment.count {
                let accepted = withFrame(Array(segment[0..<length])) { p, n in TCPSegment(p, count: n) != nil }
                #expect(accepted == (length >= headerLength), "\(name) length \(length)")
            }
        }
    }

    @Test func everyDataOffsetAndOptionByte() throws {
        for name in ["ipv4_options_tcp", "ipv4_tcp_synack", "ipv6_tcp"] {
            let golden = try L2L4.frame(name)
            let offset = name.hasPrefix("ipv6") ? 54 : 14 + Int(golden[14] & 0xf) * 4
            let segmentCount = golden.count - offset
            let buffer = L2L4.GuardedBuffer(golden)
            var violations = 0, wrong = 0
            for value in 0...255 {
                buffer.base.storeBytes(of: UInt8(value), toByteOffset: offset + 12, as: UInt8.self)
                violations += buffer.walk().violations
                let accepted = TCPSegment(buffer.pointer + offset, count: segmentCount) != nil
                if accepted != (value >> 4 >= 5 && (value >> 4) * 4 <= segmentCount) { wrong += 1 }
            }
            buffer.base.storeBytes(of: golden[offset + 12], toByteOffset: offset + 12, as: UInt8.self)
            // Every value of every option byte.
            let headerLength = Int(golden[offset + 12] >> 4) * 4
            for index in (offset + 20)..<(offset + headerLength) {
                for value in 0...255 {
                    buffer.base.storeBytes(of: UInt8(value), toByteOffset: index, as: UInt8.self)
                    violations += buffer.walk().violations
                }
                buffer.base.storeBytes(of: golden[index], toByteOffset: index, as: UInt8.self)
            }
            #expect(violations == 0, "\(name)")
            #expect(wrong == 0, "\(name)")
        }
    }
}
