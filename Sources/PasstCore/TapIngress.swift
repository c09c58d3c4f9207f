// Classifying frames from the guest, and what the guest's addresses are (spec §5.1, §3.1, §4.6).
//
// Theory of operation: every frame read from the tap is looked at once, here, and sorted into
// one of a few kinds, each with the views its handler needs; the daemon then switches over the
// kind and calls the handler (services, ICMP echo, TCP and UDP flows). Classification follows
// upstream's tap4_handler/tap6_handler:
//   - EtherType ARP -> ARP; IPv4 and IPv6 are parsed further; anything else is dropped.
//   - IPv4: the header must be sane (version, IHL, total length within the frame); fragments are
//     dropped (a warning at most every 10 s); a packet with a loopback source or destination is
//     dropped; ICMP -> echo; UDP to port 67 -> DHCP; TCP and UDP -> the L4 flows.
//   - IPv6: the payload length must match the frame exactly; extension headers are skipped (the
//     view walks them); fragments and loopback addresses are dropped; ICMPv6 types 133-136 ->
//     NDP, other ICMPv6 -> echo; UDP to port 547 -> DHCPv6; TCP and UDP -> the L4 flows.
// The source address of every IPv4/IPv6 packet updates `GuestAddresses`, which the reply paths
// use as destination (upstream's addr_seen / addr_ll_seen). Views point into the caller's frame
// buffer: nothing is copied or allocated. No transport checksum is verified (the guest kernel
// made them), and through pasta's offloading tap TCP and UDP checksums are partial and TCP
// frames may hold up to 64 KiB of segments (PasstWire's VirtioNet.swift): the handlers take the
// payload whatever its size or checksum.
import PasstConfig
import PasstWire

/// The guest's addresses as last seen in its packets (spec §3.1, "guest address seen").
public struct GuestAddresses: Equatable, Sendable {
    /// IPv4: starts as the assigned address, follows every non-zero source address.
    public var seen4: IPv4Address?
    /// IPv6 global (or unique local) source address last seen.
    public var seen6: IPv6Address?
    /// IPv6 link-local source address last seen.
    public var linkLocalSeen6: IPv6Address?

    /// Starts from the assigned addresses.
    public init(assigned4: IPv4Address?, assigned6: IPv6Address?) {
        seen4 = assigned4
        seen6 = assigned6
    }

    /// Follows the source of an IPv4 packet from the guest.
    public mutating func observe(_ source: IPv4Address) {
        if !source.isUnspecified { seen4 = source }
    }

    /// Follows the source of an IPv6 packet from the guest: link-local sources update the
    /// link-local address (and the global one while still unknown), others the global one.
    public mutating func observe(_ source: IPv6Address) {
        if source.isUnspecified || source.isMulticast { return }
        if source.isLinkLocal {
            linkLocalSeen6 = source
            if seen6 == nil { seen6 = source }
        } else {
            seen6 = source
        }
    }
}

/// What one frame from the guest is, with the views its handler needs.
public enum TapFrameKind {
    /// An ARP packet (to the ARP responder).
    case arp
    /// A DHCP message: UDP to port 67 over IPv4.
    case dhcp(IPv4Packet)
    /// A DHCPv6 message: UDP to port 547 over IPv6.
    case dhcpv6(IPv6Packet)
    /// An NDP message (ICMPv6 133-136).
    case ndp(IPv6Packet)
    /// Any other ICMP message (to the echo handler).
    case icmp4(IPv4Packet)
    /// Any other ICMPv6 message (to the echo handler).
    case icmp6(IPv6Packet)
    /// TCP or UDP over IPv4, for the L4 flows.
    case transport4(IPv4Packet)
    /// TCP or UDP over IPv6, for the L4 flows.
    case transport6(IPv6Packet)
    /// An IPv4 fragment (dropped, with a rate-limited warning).
    case fragment
    /// Anything else: malformed, unknown EtherType or protocol, loopback addresses.
    case dropped
}

/// The tap ingress classifier.
public enum TapIngress {
    /// UDP port of DHCP servers.
    public static let dhcpServerPort: UInt16 = 67
    /// UDP port of DHCPv6 servers and relays.
    public static let dhcpv6ServerPort: UInt16 = 547

    /// Classifies `frame` and records its source address in `guest`.
    public static func classify(_ frame: EthernetFrame, guest: inout GuestAddresses) -> TapFrameKind {
        switch frame.etherType {
        case EtherType.arp:
            return .arp
        case EtherType.ipv4:
            guard let packet = IPv4Packet(frame.payload, count: frame.payloadCount) else { return .dropped }
            return classify(packet, guest: &guest)
        case EtherType.ipv6:
            guard frame.payloadCount >= IPv6Packet.headerLength,
                  let packet = IPv6Packet(frame.payload, count: frame.payloadCount),
                  IPv6Packet.headerLength &+ packet.payloadLength == frame.payloadCount else { return .dropped }
            return classify(packet, guest: &guest)
        default:
            return .dropped
        }
    }

    /// Classifies an IPv4 packet from the guest.
    static func classify(_ packet: IPv4Packet, guest: inout GuestAddresses) -> TapFrameKind {
        if packet.isFragment { return .fragment }
        if packet.source.isLoopback || packet.destination.isLoopback { return .dropped }
        guest.observe(packet.source)
        switch packet.protocol {
        case IPProtocol.icmp:
            return .icmp4(packet)
        case IPProtocol.udp:
            guard let udp = UDPDatagram(packet.payload, count: packet.payloadCount) else { return .dropped }
            return udp.destinationPort == dhcpServerPort ? .dhcp(packet) : .transport4(packet)
        case IPProtocol.tcp:
            return .transport4(packet)
        default:
            return .dropped
        }
    }

    /// Classifies an IPv6 packet from the guest.
    static func classify(_ packet: IPv6Packet, guest: inout GuestAddresses) -> TapFrameKind {
        if packet.isFragment || packet.source.isLoopback || packet.destination.isLoopback { return .dropped }
        guest.observe(packet.source)
        switch packet.upperLayerProtocol {
        case IPProtocol.icmpv6:
            guard let icmp = ICMPv6Packet(packet.upperLayer, count: packet.upperLayerCount) else { return .dropped }
            switch icmp.type {
            case ICMPv6Type.routerSolicitation...ICMPv6Type.neighborAdvertisement: return .ndp(packet)
            default: return .icmp6(packet)
            }
        case IPProtocol.udp:
            guard let udp = UDPDatagram(packet.upperLayer, count: packet.upperLayerCount) else { return .dropped }
            return udp.destinationPort == dhcpv6ServerPort ? .dhcpv6(packet) : .transport6(packet)
        case IPProtocol.tcp:
            return .transport6(packet)
        default:
            return .dropped
        }
    }
}
