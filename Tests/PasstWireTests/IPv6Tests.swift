// IPv6: golden fields, extension-header walk, builder round trip, corrupted lengths and chains.
import Testing
import PasstWire

@Suite struct IPv6Tests {
    /// Runs `body` with the IPv6 view of the golden frame `name`.
    func withIPv6<R>(_ name: String, _ body: (IPv6Packet) throws -> R) throws -> R {
        try withFrame(try L2L4.frame(name)) { p, n in
            let eth = try #require(EthernetFrame(p, count: n))
            #expect(eth.etherType == EtherType.ipv6)
            return try body(try #require(IPv6Packet(eth.payload, count: eth.payloadCount)))
        }
    }

    /// A minimal IPv6 packet with `payload` and the given first next header.
    static func packet(nextHeader: UInt8, payload: [UInt8]) -> [UInt8] {
        L2L4.build { p in
            let n = IPv6Packet.write(to: p, source: L2L4.guest6, destination: L2L4.remote6, nextHeader: nextHeader,
                                     payloadLength: payload.count)
            return n + L2L4.copy(payload, to: p, at: n)
        }
    }

    @Test func goldenTCPHeader() throws {
        try withIPv6("ipv6_tcp") { ip in
            #expect(ip.version == 6)
            #expect(ip.trafficClass == 0)
            #expect(ip.flowLabel == 0x12345)
            #expect(ip.payloadLength == 28)
            #expect(ip.nextHeader == IPProtocol.tcp)
            #expect(ip.hopLimit == 64)
            #expect(ip.source == L2L4.guest6)
            #expect(ip.destination == L2L4.remote6)
            #expect(ip.payload == ip.base + 40 && ip.payloadCount == 28)
            #expect(ip.upperLayerProtocol == IPProtocol.tcp)
            #expect(ip.upperLayerOffset == 40)
            #expect(ip.upperLayer == ip.base + 40 && ip.upperLayerCount == 28)
            #expect(!ip.hasFragmentHeader && !ip.isFragment && ip.fragmentHeaderOffset == 0)
            #expect(ip.fragmentOffset == 0 && ip.fragmentIdentification == 0 && !ip.moreFragments)
        }
    }

    @Test func goldenExtensionChain() throws {
        try withIPv6("ipv6_ext_udp") { ip in
            #expect(ip.nextHeader == IPProtocol.hopByHop)
            #expect(ip.payloadLength == 79)
            #expect(ip.hopLimit == 64)
            // hop-by-hop 8 bytes at 40, routing 24 at 48, destination options 16 at 72, fragment 8 at 88.
            #expect(ip.base.u8(40) == IPProtocol.routing)
            #expect(ip.base.u8(48) == IPProtocol.destinationOptions)
            #expect(IPv6Address(at: ip.base, offset: 56) == L2L4.router6)
            #expect(ip.base.u8(72) == IPProtocol.fragment)
            #expect(ip.hasFragmentHeader && ip.fragmentHeaderOffset == 88)
            #expect(!ip.isFragment && ip.fragmentOffset == 0 && !ip.moreFragments)
            #expect(ip.fragmentIdentification == 0xdead_beef)
            #expect(ip.upperLayerProtocol == IPProtocol.udp)
            #expect(ip.upperLayerOffset == 96)
            #expect(ip.upperLayerCount == 23)
            let udp = try #require(UDPDatagram(ip.upperLayer, count: ip.upperLayerCount))
            #expect(udp.isChecksumValid(source: ip.source, destination: ip.destination))
        }
    }

    @Test func checksumOverChainRoundTrip() throws {
        // Rebuild the chain frame: IPv6 header and UDP by the builders, extension headers copied.
        let golden = try L2L4.frame("ipv6_ext_udp")
        let rebuilt = L2L4.build { p in
            var n = EthernetFrame.write(to: p, destination: L2L4.ourMAC, source: L2L4.guestMAC, etherType: EtherType.ipv6)
            n += IPv6Packet.write(to: p + n, source: L2L4.guest6, destination: L2L4.remote6,
                                  nextHeader: IPProtocol.hopByHop, payloadLength: 79, hopLimit: 64)
            n += L2L4.copy(Array(golden[54..<110]), to: p, at: n)
            let udp = p + n
            n += UDPDatagram.write(to: udp, sourcePort: 5353, destinationPort: 5353, payloadLength: 15)
            n += L2L4.copy(Array("extension chain".utf8), to: p, at: n)
            UDPDatagram.fillChecksum(udp, count: 23, source: L2L4.guest6, destination: L2L4.remote6)
            return n
        }
        #expect(rebuilt == golden)
    }

    @Test func builderRoundTrip() throws {
        let golden = try L2L4.frame("ipv6_tcp")
        let built = L2L4.build { p in
            var n = EthernetFrame.write(to: p, destination: L2L4.ourMAC, source: L2L4.guestMAC, etherType: EtherType.ipv6)
            n += IPv6Packet.write(to: p + n, source: L2L4.guest6, destination: L2L4.remote6, nextHeader: IPProtocol.tcp,
                                  payloadLength: 28, hopLimit: 64, flowLabel: 0x12345)
            return n
        }
        #expect(built == Array(golden[0..<54]))
        let classy = L2L4.build { p in
            IPv6Packet.write(to: p, source: .loopback, destination: .loopback, nextHeader: 59, payloadLength: 0,
                             flowLabel: 0xfff_ffff, trafficClass: 0xb8)
        }
        #expect(IPv6Packet.parse(classy) { ($0.trafficClass, $0.flowLabel, $0.hopLimit) } ?? (0, 0, 0) == (0xb8, 0xf_ffff, 255))
    }

    @Test func walkRejectsMalformedChains() {
        // An endless run of empty hop-by-hop headers reaches the end of the payload.
        #expect(IPv6Packet.parse(Self.packet(nextHeader: 0, payload: [UInt8](repeating: 0, count: 64))) { _ in 1 } == nil)
        // A header whose length runs past the payload.
        #expect(IPv6Packet.parse(Self.packet(nextHeader: 60, payload: [17, 2] + [UInt8](repeating: 0, count: 14))) { _ in 1 } == nil)
        #expect(IPv6Packet.parse(Self.packet(nextHeader: 60, payload: [17, 1] + [UInt8](repeating: 0, count: 22))) {
            ($0.upperLayerProtocol, $0.upperLayerOffset, $0.upperLayerCount) } ?? (0, 0, 0) == (17, 56, 8))
        // Extension header cut short (fewer than 8 bytes left).
        #expect(IPv6Packet.parse(Self.packet(nextHeader: 43, payload: [17, 0, 0, 0])) { _ in 1 } == nil)
        #expect(IPv6Packet.parse(Self.packet(nextHeader: 44, payload: [17, 0, 0, 0, 0, 0, 0])) { _ in 1 } == nil)
        // Two fragment headers.
        let twoFragments: [UInt8] = [44, 0, 0, 0, 0, 0, 0, 1, 17, 0, 0, 0, 0, 0, 0, 1] + [UInt8](repeating: 0, count: 8)
        #expect(IPv6Packet.parse(Self.packet(nextHeader: 44, payload: twoFragments)) { _ in 1 } == nil)
        // No next header: an empty upper layer.
        #expect(IPv6Packet.parse(Self.packet(nextHeader: 59, payload: [])) { ($0.upperLayerProtocol, $0.upperLayerCount) }
                ?? (0, 1) == (59, 0))
    }

    @Test func nonFirstFragmentStopsTheWalk() {
        // Fragment offset 1 (8 bytes), M set; what follows looks like a hop-by-hop header but is data.
        let payload: [UInt8] = [0, 0, 0x00, 0x09, 0x12, 0x34, 0x56, 0x78] + [UInt8](repeating: 0xff, count: 8)
        let result = IPv6Packet.parse(Self.packet(nextHeader: 44, payload: payload)) {
            ($0.upperLayerProtocol, $0.upperLayerOffset, $0.isFragment, $0.fragmentOffset, $0.moreFragments,
             $0.fragmentIdentification)
        }
        #expect(result?.0 == 0 && result?.1 == 48 && result?.2 == true && result?.3 == 1 && result?.4 == true
                && result?.5 == 0x1234_5678)
        // First fragment (offset 0, M set) continues into the upper-layer header.
        let first: [UInt8] = [17, 0, 0x00, 0x01, 0, 0, 0, 9] + [0, 1, 0, 2, 0, 8, 0, 0]
        let firstResult = IPv6Packet.parse(Self.packet(nextHeader: 44, payload: first)) {
            ($0.upperLayerProtocol, $0.upperLayerOffset, $0.isFragment)
        }
        #expect(firstResult?.0 == 17 && firstResult?.1 == 48 && firstResult?.2 == true)
    }

    @Test func everyTruncation() throws {
        for name in ["ipv6_tcp", "ipv6_ext_udp", "icmpv6_echo_request", "icmpv6_echo_reply"] {
            let golden = try L2L4.frame(name)
            #expect(L2L4.walkEveryTruncation(golden) == 0, "\(name)")
            let ip = Array(golden[14...])
            for length in 0...ip.count {
                let accepted = withFrame(Array(ip[0..<length])) { p, n in IPv6Packet(p, count: n) != nil }
                #expect(accepted == (length == ip.count), "\(name) length \(length)")
            }
        }
    }

    @Test func everyPayloadLength() throws {
        for name in ["ipv6_tcp", "ipv6_ext_udp", "icmpv6_echo_request"] {
            let golden = try L2L4.frame(name)
            let buffer = L2L4.GuardedBuffer(golden)
            var violations = 0, acceptedTooLong = 0, acceptedCount = 0
            for length in 0...0xffff {
                buffer.base.storeBytes(of: UInt16(length).bigEndian, toByteOffset: 18, as: UInt16.self)
                violations += buffer.walk().violations
                if IPv6Packet(buffer.pointer + 14, count: golden.count - 14) != nil {
                    acceptedCount += 1
                    if 40 + length > golden.count - 14 { acceptedTooLong += 1 }
                }
            }
            #expect(violations == 0, "\(name)")
            #expect(acceptedTooLong == 0, "\(name)")
            #expect(acceptedCount > 0, "\(name)")
        }
    }

    @Test func everyExtensionHeaderByte() throws {
        // Every value of every byte of the fixed next header and of the extension chain (offsets 6 and
        // 40..<96 of the IPv6 header): lengths, next headers, fragment fields. Never out of bounds.
        let golden = try L2L4.frame("ipv6_ext_udp")
        let buffer = L2L4.GuardedBuffer(golden)
        var violations = 0
        for offset in [6] + Array(40..<96) {
            for value in 0...255 {
                buffer.base.storeBytes(of: UInt8(value), toByteOffset: 14 + offset, as: UInt8.self)
                violations += buffer.walk().violations
            }
            buffer.base.storeBytes(of: golden[14 + offset], toByteOffset: 14 + offset, as: UInt8.self)
        }
        #expect(violations == 0)
        // Random chains of extension headers over random bytes.
        var rng = L2L4.Random(seed: 8200)
        let kinds: [UInt8] = [0, 43, 44, 60, 6, 17, 58, 59]
        for _ in 0..<20_000 {
            var payload = (0..<Int.random(in: 0...80, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var i = 0
            while i < payload.count { payload[i] = kinds.randomElement(using: &rng)!; i += Int.random(in: 1...24, using: &rng) }
            let packet = Self.packet(nextHeader: kinds.randomElement(using: &rng)!, payload: payload)
            let frame = L2L4.build { p in
                let n = EthernetFrame.write(to: p, destination: L2L4.ourMAC, source: L2L4.guestMAC, etherType: EtherType.ipv6)
                return n + L2L4.copy(packet, to: p, at: n)
            }
            violations += L2L4.GuardedBuffer(frame).walk().violations
        }
        #expect(violations == 0)
    }
}
