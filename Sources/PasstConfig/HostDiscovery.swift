// Host discovery: the template interface, address, prefix, gateway and link-local address of each
// IP family, read over rtnetlink (spec §3.1).
//
// Theory of operation: the host's view of the network is what its main routing table and its
// interface addresses say. Per family, unless the user named an interface (-i, --outbound-if4/6):
// 1. Dump the main table. Only unicast routes count; a route without an output interface (no
//    RTA_OIF, no nexthop device) and a route to a link-local prefix (169.254.0.0/16 or inside it,
//    fe80::/10 or inside it) are skipped. The interface of a multipath route is its first
//    nexthop's. The template is the interface of the first default route, else the interface of
//    the first remaining route, else there is none and the family is unusable.
// 2. Gateway: the first default route on the template interface that names one; for a multipath
//    route, the gateway of its heaviest nexthop on that interface (the first among equal weights).
//    No default route there means no gateway, which does not make the family unusable.
// 3. Address: among the template interface's non-deprecated addresses, the one with the longest
//    prefix (the first among equals); for IPv6 only global-scope ones count, and the link-local
//    address is chosen the same way among link-scope ones.
// `discoverIPv4`/`discoverIPv6` return what was found, with nil address fields when the host
// has none (a caller given -a needs the interface and gateway anyway); `discover` applies the
// usability rule: IPv4 needs an address, IPv6 a global and a link-local address.
// The selection steps are pure functions over dumped values so that they can be tested on
// hand-made routes; only the `discover*` functions talk to the kernel.
#if canImport(Glibc)
import Glibc
#endif
import PasstSys
import PasstWire

/// Finds the host's per-family network parameters over rtnetlink (spec §3.1).
public enum HostDiscovery {
    /// Discovers both families; an unusable family or a netlink error gives nil (errors go to `warn`).
    public static func discover(using netlink: Netlink, interface4: String? = nil, interface6: String? = nil,
                                warn: (String) -> Void = { _ in }) -> (HostIPv4?, HostIPv6?) {
        var ipv4: HostIPv4?
        var ipv6: HostIPv6?
        do {
            ipv4 = try discoverIPv4(using: netlink, interface: interface4)
        } catch {
            warn("Couldn't discover IPv4 host configuration: \(error)")
        }
        do {
            ipv6 = try discoverIPv6(using: netlink, interface: interface6)
        } catch {
            warn("Couldn't discover IPv6 host configuration: \(error)")
        }
        if ipv4?.address == nil { ipv4 = nil }
        if ipv6?.address == nil || ipv6?.linkLocal == nil { ipv6 = nil }
        return (ipv4, ipv6)
    }

    /// IPv4 template on `interface` (or the one routes choose); nil if there is no template.
    public static func discoverIPv4(using netlink: Netlink, interface: String? = nil) throws(NetlinkError) -> HostIPv4? {
        let routes = try netlink.routes(family: .ipv4)
        guard let link = try templateLink(using: netlink, routes: routes, interface: interface) else { return nil }
        let best = bestAddress(try netlink.addresses(family: .ipv4, interfaceIndex: link.index),
                               interface: link.index, scope: nil)
        return HostIPv4(interfaceName: link.name, interfaceIndex: link.index,
                        address: best?.localAddress.flatMap(ipv4), prefixLength: best?.prefixLength ?? 0,
                        gateway: gateway(routes: routes, interface: link.index).flatMap(ipv4))
    }

    /// IPv6 template on `interface` (or the one routes choose); nil if there is no template.
    public static func discoverIPv6(using netlink: Netlink, interface: String? = nil) throws(NetlinkError) -> HostIPv6? {
        let routes = try netlink.routes(family: .ipv6)
        guard let link = try templateLink(using: netlink, routes: routes, interface: interface) else { return nil }
        let addresses = try netlink.addresses(family: .ipv6, interfaceIndex: link.index)
        let global = bestAddress(addresses, interface: link.index, scope: RTNetlink.RT_SCOPE_UNIVERSE)
        let linkLocal = bestAddress(addresses, interface: link.index, scope: RTNetlink.RT_SCOPE_LINK)
        return HostIPv6(interfaceName: link.name, interfaceIndex: link.index,
                        address: global?.localAddress.flatMap(ipv6), prefixLength: global?.prefixLength ?? 0,
                        gateway: gateway(routes: routes, interface: link.index).flatMap(ipv6),
                        linkLocal: linkLocal?.localAddress.flatMap(ipv6))
    }

    /// The template interface index chosen from `routes` (first default route's, else first route's).
    public static func templateInterface(routes: [NetlinkRoute]) -> Int32? {
        let usable = routes.filter { route in
            guard route.type == RTNetlink.RTN_UNICAST, route.interfaceIndex != nil else { return false }
            return !isLinkLocalPrefix(route)
        }
        return (usable.first { $0.isDefault } ?? usable.first)?.interfaceIndex
    }

    /// The gateway of the first default route on `interface` that has one (heaviest nexthop if multipath).
    public static func gateway(routes: [NetlinkRoute], interface: Int32) -> [UInt8]? {
        for route in routes where route.type == RTNetlink.RTN_UNICAST && route.isDefault {
            if route.outputInterface == interface, let gateway = route.gateway { return gateway }
            var best: NetlinkNexthop?
            for hop in route.nexthops where hop.interfaceIndex == interface && hop.gateway != nil {
                if best == nil || hop.weight > best!.weight { best = hop }
            }
            if let gateway = best?.gateway { return gateway }
        }
        return nil
    }

    /// The non-deprecated address of `interface` (of `scope`, if given) with the longest prefix, first among equals.
    public static func bestAddress(_ addresses: [NetlinkAddress], interface: Int32, scope: UInt8?) -> NetlinkAddress? {
        var best: NetlinkAddress?
        for address in addresses where address.interfaceIndex == interface && !address.isDeprecated
            && (scope == nil || address.scope == scope) && address.localAddress != nil {
            if best == nil || address.prefixLength > best!.prefixLength { best = address }
        }
        return best
    }

    /// Whether `route` goes to a link-local prefix (169.254.0.0/16, fe80::/10, or longer inside them).
    static func isLinkLocalPrefix(_ route: NetlinkRoute) -> Bool {
        guard let dst = route.destination, dst.count >= 2 else { return false }
        switch route.family {
        case .ipv4: return route.prefixLength >= 16 && dst[0] == 169 && dst[1] == 254
        case .ipv6: return route.prefixLength >= 10 && dst[0] == 0xfe && dst[1] & 0xc0 == 0x80
        }
    }

    /// The link called `interface`, or the template chosen from `routes`; nil if none.
    private static func templateLink(using netlink: Netlink, routes: [NetlinkRoute],
                                     interface: String?) throws(NetlinkError) -> NetlinkLink? {
        let links = try netlink.links()
        if let interface {
            guard let link = links.first(where: { $0.name == interface }) else {
                throw NetlinkError(errno: ENODEV, operation: "find interface \(interface)")
            }
            return link
        }
        guard let index = templateInterface(routes: routes) else { return nil }
        guard let link = links.first(where: { $0.index == index }) else {
            throw NetlinkError(errno: ENODEV, operation: "find interface \(index)")
        }
        return link
    }

    /// An IPv4 address from 4 network-order bytes.
    private static func ipv4(_ bytes: [UInt8]) -> IPv4Address? {
        bytes.count == 4 ? IPv4Address(bytes[0], bytes[1], bytes[2], bytes[3]) : nil
    }

    /// An IPv6 address from 16 network-order bytes.
    private static func ipv6(_ bytes: [UInt8]) -> IPv6Address? { IPv6Address(bytes: bytes) }
}
