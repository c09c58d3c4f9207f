// PasstServices: which guest frames the local services own, the one-call dispatcher, and the
// Ethernet/IP/UDP framing every reply shares.
//
// Theory of operation: passt answers four protocols itself instead of relaying them to the host:
// ARP (ARPResponder), DHCP (DHCPServer), NDP (NDPResponder) and DHCPv6 (DHCPv6Server). Each is a
// pure function: the whole guest Ethernet frame in, at most one reply frame out, written into a
// buffer the caller owns; the return value is the reply's length, or nil for "no reply". None
// of them makes a syscall, logs, or keeps state between calls; what they read is `ServiceConfig`.
//
// Ownership follows upstream's tap ingress (spec §5.1), so a frame a service owns is never also
// relayed to the host, whether or not it gets an answer:
//
//     EtherType ARP                                       -> ARP
//     IPv4, protocol UDP, destination port 67             -> DHCP     (any destination address)
//     IPv6, ICMPv6 (after extension headers) type 133-136 -> NDP      (RS, RA, NS, NA)
//     IPv6, UDP, destination port 547                     -> DHCPv6   (unicast ones are dropped)
//
// `LocalService.classify` says which service owns a frame; `LocalService.answer` classifies and
// answers in one call. The tap ingress still does its own checks first (loopback addresses,
// IPv4 fragments, --no-icmp drops ICMPv6 and thus NDP), as upstream does before its handlers.
//
// Replies are built back to front: the service writes its payload at the fixed offset it will
// have in the frame (42 for IPv4/UDP, 54 for ICMPv6, 62 for IPv6/UDP; no IP options, no
// extension headers), then `ServiceFrame` writes the headers in front of it and the checksums
// over it. Generated headers are upstream's: IPv4 TOS 0, ID 0, no DF, TTL 255; IPv6 traffic
// class 0, hop limit 255; Ethernet source our MAC.
import PasstWire

/// The locally answered services.
public enum LocalService: Sendable, Equatable {
    /// ARP requests (proxy ARP for every address but the guest's own).
    case arp
    /// DHCP/BOOTP requests to UDP port 67.
    case dhcp
    /// NDP: router and neighbour solicitations answered, advertisements consumed.
    case ndp
    /// DHCPv6 requests to UDP port 547.
    case dhcpv6

    /// The service that owns `frame` (a whole Ethernet frame), or nil if no service does.
    public static func classify(_ frame: UnsafeRawPointer, count: Int) -> LocalService? {
        guard let ethernet = EthernetFrame(frame, count: count) else { return nil }
        switch ethernet.etherType {
        case EtherType.arp:
            return .arp
        case EtherType.ipv4:
            guard let ip = IPv4Packet(ethernet.payload, count: ethernet.payloadCount),
                  ip.protocol == IPProtocol.udp, ip.payloadCount >= UDPDatagram.headerLength,
                  ip.payload.be16(2) == DHCP.serverPort else { return nil }
            return .dhcp
        case EtherType.ipv6:
            guard let ip = IPv6Packet(ethernet.payload, count: ethernet.payloadCount) else { return nil }
            if ip.upperLayerProtocol == IPProtocol.icmpv6, ip.upperLayerCount >= ICMPv6Packet.headerLength {
                let type = ip.upperLayer.u8(0)
                return type >= NDP.routerSolicitationType && type <= NDP.neighborAdvertisementType ? .ndp : nil
            }
            guard ip.upperLayerProtocol == IPProtocol.udp, ip.upperLayerCount >= UDPDatagram.headerLength,
                  ip.upperLayer.be16(2) == DHCPv6.serverPort else { return nil }
            return .dhcpv6
        default:
            return nil
        }
    }

    /// Answers `frame` with the service that owns it: the reply's length written at `out` (at most
    /// `capacity` bytes), or nil if no service owns the frame or its service does not answer it.
    public static func answer(_ frame: UnsafeRawPointer, count: Int, config: ServiceConfig,
                              into out: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        switch classify(frame, count: count) {
        case .arp: ARPResponder.answer(frame, count: count, config: config, into: out, capacity: capacity)
        case .dhcp: DHCPServer.answer(frame, count: count, config: config, into: out, capacity: capacity)
        case .ndp: NDPResponder.answer(frame, count: count, config: config, into: out, capacity: capacity)
        case .dhcpv6: DHCPv6Server.answer(frame, count: count, config: config, into: out, capacity: capacity)
        case nil: nil
        }
    }
}

/// Reply framing shared by the services: payload offsets and header writers.
enum ServiceFrame {
    /// Offset of a UDP payload in an IPv4 reply (Ethernet 14 + IPv4 20 + UDP 8).
    static let ipv4UDPPayloadOffset = 42
    /// Offset of the ICMPv6 message in an IPv6 reply (Ethernet 14 + IPv6 40).
    static let icmpv6Offset = 54
    /// Offset of a UDP payload in an IPv6 reply (Ethernet 14 + IPv6 40 + UDP 8).
    static let ipv6UDPPayloadOffset = 62

    /// Writes Ethernet, IPv4 and UDP headers in front of the `payloadLength` bytes already at
    /// `ipv4UDPPayloadOffset` of `out`, with both checksums; returns the frame length.
    static func finishIPv4UDP(_ out: UnsafeMutableRawPointer, payloadLength: Int, config: ServiceConfig,
                              source: IPv4Address, sourcePort: UInt16,
                              destination: IPv4Address, destinationPort: UInt16) -> Int {
        let udpLength = UDPDatagram.headerLength &+ payloadLength
        EthernetFrame.write(to: out, destination: config.guestMAC, source: config.ourMAC, etherType: EtherType.ipv4)
        let ip = out + EthernetFrame.headerLength
        let headerLength = IPv4Packet.write(to: ip, source: source, destination: destination,
                                            protocol: IPProtocol.udp, payloadLength: udpLength)
        let udp = ip + headerLength
        UDPDatagram.write(to: udp, sourcePort: sourcePort, destinationPort: destinationPort, payloadLength: payloadLength)
        UDPDatagram.fillChecksum(udp, count: udpLength, source: source, destination: destination)
        return ipv4UDPPayloadOffset &+ payloadLength
    }

    /// Writes Ethernet, IPv6 and UDP headers in front of the `payloadLength` bytes already at
    /// `ipv6UDPPayloadOffset` of `out`, with the UDP checksum; returns the frame length.
    static func finishIPv6UDP(_ out: UnsafeMutableRawPointer, payloadLength: Int, config: ServiceConfig,
                              source: IPv6Address, sourcePort: UInt16, destination: IPv6Address,
                              destinationPort: UInt16, flowLabel: UInt32) -> Int {
        let udpLength = UDPDatagram.headerLength &+ payloadLength
        EthernetFrame.write(to: out, destination: config.guestMAC, source: config.ourMAC, etherType: EtherType.ipv6)
        let ip = out + EthernetFrame.headerLength
        IPv6Packet.write(to: ip, source: source, destination: destination, nextHeader: IPProtocol.udp,
                         payloadLength: udpLength, flowLabel: flowLabel)
        let udp = ip + IPv6Packet.headerLength
        UDPDatagram.write(to: udp, sourcePort: sourcePort, destinationPort: destinationPort, payloadLength: payloadLength)
        UDPDatagram.fillChecksum(udp, count: udpLength, source: source, destination: destination)
        return ipv6UDPPayloadOffset &+ payloadLength
    }

    /// Writes Ethernet and IPv6 headers in front of the `messageLength`-byte ICMPv6 message already
    /// at `icmpv6Offset` of `out` and fills the ICMPv6 checksum; returns the frame length.
    static func finishICMPv6(_ out: UnsafeMutableRawPointer, messageLength: Int, config: ServiceConfig,
                             source: IPv6Address, destination: IPv6Address) -> Int {
        EthernetFrame.write(to: out, destination: config.guestMAC, source: config.ourMAC, etherType: EtherType.ipv6)
        IPv6Packet.write(to: out + EthernetFrame.headerLength, source: source, destination: destination,
                         nextHeader: IPProtocol.icmpv6, payloadLength: messageLength)
        NDP.fillChecksum(out + icmpv6Offset, count: messageLength, source: source, destination: destination)
        return icmpv6Offset &+ messageLength
    }

    /// The IPv6 packet in `frame` if the frame ends exactly where its payload does (upstream's tap
    /// ingress drops IPv6 frames whose payload length disagrees with the frame) and it is not a fragment.
    static func exactIPv6(_ frame: UnsafeRawPointer, count: Int) -> IPv6Packet? {
        guard let ethernet = EthernetFrame(frame, count: count), ethernet.etherType == EtherType.ipv6,
              let ip = IPv6Packet(ethernet.payload, count: ethernet.payloadCount),
              IPv6Packet.headerLength &+ ip.payloadLength == ethernet.payloadCount, !ip.isFragment
        else { return nil }
        return ip
    }
}
