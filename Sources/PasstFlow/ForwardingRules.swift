// Address translation between the guest's view and the host's (spec §3.3, §3.2; upstream fwd.c).
//
// Theory of operation: a flow has a guest side and a host side, and the addresses differ between
// them in a few fixed ways, applied in priority order:
//   guest -> host (a new flow from the tap): a DNS query (port 53 or 853) to the DNS match address
//   goes to the host's resolver (`dnsHost`); the map-host-loopback address means the host's
//   127.0.0.1 / ::1; the map-guest-addr address means the guest's assigned address (which is the
//   host's own by default); anything else is used as is. Ports never change.
//   host -> guest (a datagram or connection on a forwarded port): the source seen by the guest is
//   the map-host-loopback address for 127.0.0.1 / ::1 exactly, the map-guest-addr address for the
//   guest's assigned address, our tap address (IPv4) or our link-local address (IPv6) for anything
//   else the guest could not use (other loopback, unspecified, its own addresses), else unchanged.
// IPv4 addresses travel as v4-mapped IPv6 addresses, as in the flow table.
import PasstConfig
import PasstWire

/// The translation rules of one configuration.
public struct ForwardingRules: Equatable, Sendable {
    /// -o: IPv4 source address of outbound sockets.
    public var outboundAddress4: IPv4Address?
    /// -o: IPv6 source address of outbound sockets.
    public var outboundAddress6: IPv6Address?
    /// --outbound-if4: interface of IPv4 outbound sockets.
    public var outboundInterface4: String?
    /// --outbound-if6: interface of IPv6 outbound sockets.
    public var outboundInterface6: String?
    /// Guest-side IPv4 address meaning the host's 127.0.0.1.
    public var mapHostLoopback4: IPv4Address?
    /// Guest-side IPv6 address meaning the host's ::1.
    public var mapHostLoopback6: IPv6Address?
    /// Guest-side IPv4 address meaning the guest's assigned address on the host.
    public var mapGuestAddress4: IPv4Address?
    /// Guest-side IPv6 address meaning the guest's assigned address on the host.
    public var mapGuestAddress6: IPv6Address?
    /// The guest's assigned IPv4 address.
    public var guestAddress4: IPv4Address?
    /// The guest's assigned IPv6 address.
    public var guestAddress6: IPv6Address?
    /// DNS queries to this IPv4 address go to `dnsHost4`.
    public var dnsMatch4: IPv4Address?
    /// The host's IPv4 resolver for redirected queries.
    public var dnsHost4: IPv4Address?
    /// DNS queries to this IPv6 address go to `dnsHost6`.
    public var dnsMatch6: IPv6Address?
    /// The host's IPv6 resolver for redirected queries.
    public var dnsHost6: IPv6Address?
    /// Our IPv4 address on the tap (the gateway): source of unmappable host traffic.
    public var ourTapAddress4: IPv4Address?
    /// Our IPv6 link-local address: source of unmappable host traffic.
    public var ourLinkLocal6: IPv6Address?
    /// Interface index for link-local IPv6 destinations (the template interface); 0 for none.
    public var linkLocalScope6: UInt32 = 0

    /// No translation at all.
    public init() {}

    /// The rules of `configuration`; `linkLocalScope6` is the template interface's index.
    public init(_ configuration: Configuration, linkLocalScope6: UInt32) {
        if let ipv4 = configuration.ipv4 {
            outboundAddress4 = ipv4.outboundAddress
            outboundInterface4 = ipv4.outboundInterface
            mapHostLoopback4 = ipv4.mapHostLoopback
            mapGuestAddress4 = ipv4.mapGuestAddress
            guestAddress4 = ipv4.address
            dnsMatch4 = ipv4.dnsMatch
            dnsHost4 = ipv4.dnsHost
            ourTapAddress4 = ipv4.ourTapAddress
        }
        if let ipv6 = configuration.ipv6 {
            outboundAddress6 = ipv6.outboundAddress
            outboundInterface6 = ipv6.outboundInterface
            mapHostLoopback6 = ipv6.mapHostLoopback
            mapGuestAddress6 = ipv6.mapGuestAddress
            guestAddress6 = ipv6.address
            dnsMatch6 = ipv6.dnsMatch
            dnsHost6 = ipv6.dnsHost
            ourLinkLocal6 = ipv6.ourLinkLocal
        }
        self.linkLocalScope6 = linkLocalScope6
    }

    /// Whether `port` is a DNS port (53, or 853 for DNS over TLS).
    @inlinable static func isDNSPort(_ port: UInt16) -> Bool { port == 53 || port == 853 }

    /// The host-side destination of a new guest flow to `destination` (v4-mapped for IPv4) and `port`.
    public func hostDestination(_ destination: IPv6Address, port: UInt16) -> IPv6Address {
        if let v4 = destination.v4Mapped {
            if ForwardingRules.isDNSPort(port), let match = dnsMatch4, v4 == match, let host = dnsHost4 {
                return IPv6Address(v4Mapped: host)
            }
            if let map = mapHostLoopback4, v4 == map { return IPv6Address(v4Mapped: .loopback) }
            if let map = mapGuestAddress4, v4 == map, let guest = guestAddress4 { return IPv6Address(v4Mapped: guest) }
            return destination
        }
        if ForwardingRules.isDNSPort(port), let match = dnsMatch6, destination == match, let host = dnsHost6 {
            return host
        }
        if let map = mapHostLoopback6, destination == map { return .loopback }
        if let map = mapGuestAddress6, destination == map, let guest = guestAddress6 { return guest }
        return destination
    }

    /// The source the guest sees for host peer `peer` (v4-mapped for IPv4); nil if there is none
    /// (the datagram or connection is dropped). `seen` is the guest's current address.
    public func guestSource(_ peer: IPv6Address, seen: IPv6Address?) -> IPv6Address? {
        if let v4 = peer.v4Mapped {
            if v4 == .loopback, let map = mapHostLoopback4 { return IPv6Address(v4Mapped: map) }
            if let guest = guestAddress4, v4 == guest, let map = mapGuestAddress4 { return IPv6Address(v4Mapped: map) }
            if v4.isLoopback || v4.isUnspecified || v4 == guestAddress4 || peer == seen {
                return ourTapAddress4.map { IPv6Address(v4Mapped: $0) }
            }
            return peer
        }
        if peer == .loopback, let map = mapHostLoopback6 { return map }
        if let guest = guestAddress6, peer == guest, let map = mapGuestAddress6 { return map }
        if peer.isLoopback || peer.isUnspecified || peer == guestAddress6 || peer == seen { return ourLinkLocal6 }
        return peer
    }
}
