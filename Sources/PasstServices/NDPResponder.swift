// NDP responder (RFC 4861): neighbour advertisements for every address, router advertisements.
//
// Theory of operation: passt is the only other node on the guest's link and stands in for every
// IPv6 address there is (spec §4.3), so
//
//   - a Neighbor Solicitation for any target gets a Neighbor Advertisement: flags Router,
//     Solicited and Override, the solicited target, a Target Link-Layer Address option with our
//     MAC, sent to the solicitation's source. A solicitation from :: is duplicate address
//     detection by the guest for its own address: never answered, or the guest would give the
//     address up. This path runs for every neighbour lookup the guest makes and allocates nothing.
//   - a Router Solicitation gets a Router Advertisement sent to its source (to ff02::1 if the
//     source is ::, where upstream would address it to ::). It makes passt the default router
//     and tells the guest to use DHCPv6 for its address:
//
//       cur hop limit 255, M (managed) set, O clear, router lifetime 65535 s, reachable 0, retrans 0
//       Prefix Information: /64, L and A, valid and preferred lifetime infinite; the prefix field
//                           carries the full assigned address (host bits kept, as upstream)
//       Source Link-Layer Address: our MAC
//       MTU (unless 0)
//       RDNSS: infinite lifetime, the IPv6 name servers (unless none or --no-dhcp-dns)
//       DNSSL: infinite lifetime, the search list, zero-padded to 8 bytes (only together with
//              RDNSS, and unless --no-dhcp-search)
//
//   - Router and Neighbor Advertisements from the guest are consumed without an answer.
//
// With --no-ndp nothing is answered; with --no-ra only the router advertisements are not sent.
// Every message goes from our link-local address with hop limit 255 (RFC 4861 §6.1.2, §7.1.2 make
// receivers drop anything else), Ethernet destination the guest's MAC (also for ff02::1, as
// upstream). Solicitations must pass RFC 4861's receiver checks the view makes (code 0, whole
// options, none of length 0); upstream only checks the type and, for NS, the length.
//
// The RA is written option by option straight into the output (name servers and search list by
// the two small writers below, the search list encoded once in ServiceConfig), so in release
// builds it allocates nothing either. `unsolicitedRouterAdvertisement` builds the same RA to
// ff02::1 for the periodic timer (a later step: upstream sends it once a guest is connected, its
// first tick only scheduling), and `unsolicitedInterval` picks the timer's next interval:
// 200...599 s (RFC 4861 §6.2.1: MaxRtrAdvInterval 600 s, MinRtrAdvInterval = max / 3).
import PasstWire

/// Answers neighbour and router solicitations from the guest; builds unsolicited router advertisements.
public enum NDPResponder {
    /// Router lifetime advertised, in seconds (the maximum, RFC 8319).
    public static let routerLifetime: UInt16 = 65535
    /// Shortest interval between unsolicited router advertisements, in seconds.
    public static let minimumUnsolicitedInterval = 200
    /// Longest interval between unsolicited router advertisements, in seconds.
    public static let maximumUnsolicitedInterval = 600
    /// ff02::1, all nodes on the link: destination of unsolicited router advertisements.
    public static let allNodes = IPv6Address(high: 0xff02_0000_0000_0000, low: 1)

    /// Writes the NDP answer to the guest frame `frame` at `out` (an NA for an NS, an RA for an
    /// RS); returns its length, or nil when the frame gets no answer or `capacity` is too small.
    public static func answer(_ frame: UnsafeRawPointer, count: Int, config: ServiceConfig,
                              into out: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        guard let ipv6 = config.ipv6, !config.noNDP, let ip = ServiceFrame.exactIPv6(frame, count: count),
              ip.upperLayerProtocol == IPProtocol.icmpv6, ip.upperLayerCount >= ICMPv6Packet.headerLength
        else { return nil }
        let source = ip.source
        switch ip.upperLayer.u8(0) {
        case NDP.neighborSolicitationType:
            guard let solicitation = NDPNeighborSolicitation(ip.upperLayer, count: ip.upperLayerCount),
                  !source.isUnspecified else { return nil }
            let target = solicitation.target
            guard let length = NDPNeighborAdvertisement.write(
                to: out + ServiceFrame.icmpv6Offset, capacity: capacity &- ServiceFrame.icmpv6Offset,
                router: true, solicited: true, override: true, target: target,
                targetLinkLayerAddress: config.ourMAC) else { return nil }
            return ServiceFrame.finishICMPv6(out, messageLength: length, config: config,
                                             source: ipv6.ourLinkLocal, destination: source)
        case NDP.routerSolicitationType:
            guard !config.noRA, NDPRouterSolicitation(ip.upperLayer, count: ip.upperLayerCount) != nil
            else { return nil }
            return routerAdvertisement(config: config, ipv6: ipv6, destination: source.isUnspecified ? allNodes : source,
                                       into: out, capacity: capacity)
        default:
            return nil
        }
    }

    /// Writes an unsolicited router advertisement to ff02::1 at `out`; returns its length, or nil
    /// if router advertisements are off (no IPv6, --no-ndp, --no-ra) or `capacity` is too small.
    public static func unsolicitedRouterAdvertisement(config: ServiceConfig, into out: UnsafeMutableRawPointer,
                                                      capacity: Int) -> Int? {
        guard let ipv6 = config.ipv6, !config.noNDP, !config.noRA else { return nil }
        return routerAdvertisement(config: config, ipv6: ipv6, destination: allNodes, into: out, capacity: capacity)
    }

    /// Seconds until the next unsolicited router advertisement for a random value `random`:
    /// 200...599, as upstream draws it (min + random % (max - min)).
    public static func unsolicitedInterval(random: UInt32) -> Int {
        minimumUnsolicitedInterval + Int(random % UInt32(maximumUnsolicitedInterval - minimumUnsolicitedInterval))
    }

    /// Writes the router advertisement frame to `destination` at `out`; returns its length, or nil
    /// if it does not fit in `capacity`.
    static func routerAdvertisement(config: ServiceConfig, ipv6: ServiceConfig.IPv6, destination: IPv6Address,
                                    into out: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        let message = out + ServiceFrame.icmpv6Offset
        let room = capacity &- ServiceFrame.icmpv6Offset
        guard var end = NDPRouterAdvertisement.write(
            to: message, capacity: room, currentHopLimit: NDP.hopLimit, managed: true, other: false,
            routerLifetime: routerLifetime, reachableTime: 0, retransTimer: 0, options: []) else { return nil }
        guard append(.prefixInformation(prefix: ipv6.address ?? .any, prefixLength: 64, onLink: true, autonomous: true,
                                        validLifetime: NDP.infiniteLifetime, preferredLifetime: NDP.infiniteLifetime),
                     to: message, at: &end, capacity: room),
              append(.sourceLinkLayerAddress(config.ourMAC), to: message, at: &end, capacity: room)
        else { return nil }
        if config.mtu != 0 {
            guard append(.mtu(UInt32(clamping: config.mtu)), to: message, at: &end, capacity: room) else { return nil }
        }
        if !config.noDHCPDNS && !ipv6.dns.isEmpty {
            guard let n = writeNameServers(ipv6.dns, to: message + end, capacity: room &- end) else { return nil }
            end &+= n
            if !config.noDHCPSearch && !config.searchListWire.isEmpty {
                guard let n = writeSearchList(config.searchListWire, to: message + end, capacity: room &- end)
                else { return nil }
                end &+= n
            }
        }
        return ServiceFrame.finishICMPv6(out, messageLength: end, config: config,
                                         source: ipv6.ourLinkLocal, destination: destination)
    }

    /// Writes `option` at offset `end` of `message` and advances `end`; false if it does not fit.
    static func append(_ option: NDPOptionValue, to message: UnsafeMutableRawPointer, at end: inout Int,
                       capacity: Int) -> Bool {
        guard let n = option.write(to: message + end, capacity: capacity &- end) else { return false }
        end &+= n
        return true
    }

    /// Writes an RDNSS option (RFC 8106 §5.1) with `addresses` and infinite lifetime; returns its
    /// length, or nil if it does not fit.
    static func writeNameServers(_ addresses: [IPv6Address], to option: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        let length = 8 &+ 16 &* addresses.count
        guard length / 8 <= 255, length <= capacity else { return nil }
        option.setU8(0, NDPOptionType.recursiveDNSServers)
        option.setU8(1, UInt8(length / 8))
        option.setBE16(2, 0)
        option.setBE32(4, NDP.infiniteLifetime)
        var offset = 8
        for address in addresses {
            address.store(to: option, offset: offset)
            offset &+= 16
        }
        return length
    }

    /// Writes a DNSSL option (RFC 8106 §5.2) carrying the encoded names `wire`, infinite lifetime,
    /// zero-padded to a multiple of 8 bytes; returns its length, or nil if it does not fit.
    static func writeSearchList(_ wire: [UInt8], to option: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        let length = (8 &+ wire.count &+ 7) / 8 &* 8
        guard length / 8 <= 255, length <= capacity else { return nil }
        option.setU8(0, NDPOptionType.dnsSearchList)
        option.setU8(1, UInt8(length / 8))
        option.setBE16(2, 0)
        option.setBE32(4, NDP.infiniteLifetime)
        wire.withUnsafeBytes { bytes in
            if let base = bytes.baseAddress { (option + 8).copyMemory(from: base, byteCount: bytes.count) }
        }
        let padding = option + (8 &+ wire.count)
        padding.initializeMemory(as: UInt8.self, repeating: 0, count: length &- 8 &- wire.count)
        return length
    }
}
