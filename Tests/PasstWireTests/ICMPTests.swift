// ICMP and ICMPv6: golden echo request/reply fields, builder round trip, truncation.
import Testing
import PasstWire

@Suite struct ICMPTests {
    static let data4 = Array("ping payload 0123456789".utf8)
    static let data6 = Array("ping6 payload".utf8)

    @Test func goldenICMPv4Echo() throws {
        for (name, type) in [("icmpv4_echo_request", ICMPv4Type.echoRequest), ("icmpv4_echo_reply", ICMPv4Type.echoReply)] {
            try withFrame(try L2L4.frame(name)) { p, n in
                let ip = try #require(IPv4Packet(p + 14, count: n - 14))
                #expect(ip.protocol == IPProtocol.icmp)
                let icmp = try #require(ICMPv4Packet(ip.payload, count: ip.payloadCount))
                #expect(icmp.type == type && icmp.code == 0)
                #expect(icmp.isChecksumValid)
                #expect(icmp.body == icmp.base + 4 && icmp.bodyCount == 27)
                let echo = try #require(icmp.echo)
                #expect(echo.type == type && echo.code == 0 && echo.checksum == icmp.checksum)
                #expect(echo.identifier == 0x1234)
                #expect(echo.sequenceNumber == 1)
                #expect(L2L4.bytes(echo.data, echo.dataCount) == Self.data4)
            }
        }
    }

    @Test func goldenICMPv6Echo() throws {
        for (name, type) in [("icmpv6_echo_request", ICMPv6Type.echoRequest), ("icmpv6_echo_reply", ICMPv6Type.echoReply)] {
            try withFrame(try L2L4.frame(name)) { p, n in
                let ip = try #require(IPv6Packet(p + 14, count: n - 14))
                #expect(ip.upperLayerProtocol == IPProtocol.icmpv6)
                let icmp = try #require(ICMPv6Packet(ip.upperLayer, count: ip.upperLayerCount))
                #expect(icmp.type == type && icmp.code == 0)
                #expect(icmp.isChecksumValid(source: ip.source, destination: ip.destination))
                #expect(!icmp.isChecksumValid(source: ip.destination, destination: L2L4.router6))
                #expect(icmp.bodyCount == 17)
                let echo = try #require(icmp.echo)
                #expect(echo.identifier == 0xabcd)
                #expect(echo.sequenceNumber == 7)
                #expect(L2L4.bytes(echo.data, echo.dataCount) == Self.data6)
            }
        }
    }

    @Test func builderRoundTripV4() throws {
        for (name, type, fromGuest) in [("icmpv4_echo_request", ICMPv4Type.echoRequest, true),
                                        ("icmpv4_echo_reply", ICMPv4Type.echoReply, false)] {
            let built = L2L4.build { p in
                var n = EthernetFrame.write(to: p, destination: fromGuest ? L2L4.ourMAC : L2L4.guestMAC,
                                            source: fromGuest ? L2L4.guestMAC : L2L4.ourMAC, etherType: EtherType.ipv4)
                n += fromGuest
                    ? IPv4Packet.write(to: p + n, source: L2L4.guest4, destination: L2L4.remote4, protocol: IPProtocol.icmp,
                                       payloadLength: 31, ttl: 64, identification: 0x0101, dontFragment: true)
                    : IPv4Packet.write(to: p + n, source: L2L4.remote4, destination: L2L4.guest4, protocol: IPProtocol.icmp,
                                       payloadLength: 31)
                let icmp = p + n
                n += ICMPEcho.write(to: icmp, type: type, identifier: 0x1234, sequenceNumber: 1)
                n += L2L4.copy(Self.data4, to: p, at: n)
                ICMPv4Packet.fillChecksum(icmp, count: 31)
                return n
            }
            #expect(built == (try L2L4.frame(name)), "\(name)")
        }
    }

    @Test func builderRoundTripV6() throws {
        for (name, type, fromGuest) in [("icmpv6_echo_request", ICMPv6Type.echoRequest, true),
                                        ("icmpv6_echo_reply", ICMPv6Type.echoReply, false)] {
            let (src, dst) = fromGuest ? (L2L4.guest6, L2L4.remote6) : (L2L4.remote6, L2L4.guest6)
            let built = L2L4.build { p in
                var n = EthernetFrame.write(to: p, destination: fromGuest ? L2L4.ourMAC : L2L4.guestMAC,
                                            source: fromGuest ? L2L4.guestMAC : L2L4.ourMAC, etherType: EtherType.ipv6)
                n += IPv6Packet.write(to: p + n, source: src, destination: dst, nextHeader: IPProtocol.icmpv6,
                                      payloadLength: 21, hopLimit: fromGuest ? 64 : 255)
                let icmp = p + n
                n += ICMPEcho.write(to: icmp, type: type, identifier: 0xabcd, sequenceNumber: 7)
                n += L2L4.copy(Self.data6, to: p, at: n)
                ICMPv6Packet.fillChecksum(icmp, count: 21, source: src, destination: dst)
                return n
            }
            #expect(built == (try L2L4.frame(name)), "\(name)")
        }
    }

    @Test func echoOnlyForEchoTypes() {
        var unreachable: [UInt8] = [3, 1, 0, 0, 0, 0, 0, 0, 0x45]
        #expect(ICMPv4Packet.parse(unreachable) { $0.echo == nil } == true)
        #expect(ICMPv6Packet.parse(unreachable) { $0.echo == nil } == true)
        unreachable[0] = ICMPv6Type.echoRequest
        #expect(ICMPv6Packet.parse(unreachable) { $0.echo?.identifier } == 0)
        #expect(ICMPv4Packet.parse(unreachable) { $0.echo == nil } == true)
        // An echo request too short for identifier and sequence number.
        #expect(ICMPv4Packet.parse([8, 0, 0, 0, 0x12]) { $0.echo == nil } == true)
        #expect(ICMPEcho.parse([8, 0, 0, 0, 0x12, 0x34, 0]) { $0.identifier } == nil)
        #expect(ICMPv4Packet.parse([8, 0, 0]) { $0.type } == nil)
        #expect(ICMPv6Packet.parse([128, 0, 0]) { $0.type } == nil)
    }

    @Test func everyTruncation() throws {
        for name in ["icmpv4_echo_request", "icmpv4_echo_reply", "icmpv6_echo_request", "icmpv6_echo_reply"] {
            let golden = try L2L4.frame(name)
            #expect(L2L4.walkEveryTruncation(golden) == 0, "\(name)")
            let message = Array(golden[(name.hasPrefix("icmpv6") ? 54 : 34)...])
            for length in 0...message.count {
                let prefix = Array(message[0..<length])
                #expect(ICMPv4Packet.parse(prefix) { _ in true } == (length >= 4 ? true : nil))
                #expect(ICMPv6Packet.parse(prefix) { _ in true } == (length >= 4 ? true : nil))
                #expect(ICMPEcho.parse(prefix) { $0.dataCount } == (length >= 8 ? length - 8 : nil))
            }
        }
    }
}
