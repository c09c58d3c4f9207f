// What host discovery (rtnetlink, resolv.conf) found out about the host's network: the input from
// which the configuration derives every default of spec §3. Filled in by HostDiscovery, consumed by
// configuration resolution; a plain value so tests can build one by hand.
import PasstWire

/// The host's IPv4 template: interface, address, prefix and gateway (spec §3.1).
public struct HostIPv4: Equatable, Sendable {
    public var interfaceName: String
    public var interfaceIndex: Int32
    /// Non-deprecated address with the longest prefix on the template interface; nil if none.
    public var address: IPv4Address?
    public var prefixLength: Int
    /// RTA_GATEWAY of the default route on the template interface; nil if no default route.
    public var gateway: IPv4Address?

    public init(interfaceName: String, interfaceIndex: Int32, address: IPv4Address?, prefixLength: Int,
                gateway: IPv4Address?) {
        self.interfaceName = interfaceName; self.interfaceIndex = interfaceIndex
        self.address = address; self.prefixLength = prefixLength; self.gateway = gateway
    }
}

/// The host's IPv6 template: interface, global address, prefix, gateway and link-local address.
public struct HostIPv6: Equatable, Sendable {
    public var interfaceName: String
    public var interfaceIndex: Int32
    /// Non-deprecated global-scope address with the longest prefix; nil if none.
    public var address: IPv6Address?
    public var prefixLength: Int
    public var gateway: IPv6Address?
    /// The host's link-local address on the template interface; nil if none.
    public var linkLocal: IPv6Address?

    public init(interfaceName: String, interfaceIndex: Int32, address: IPv6Address?, prefixLength: Int,
                gateway: IPv6Address?, linkLocal: IPv6Address?) {
        self.interfaceName = interfaceName; self.interfaceIndex = interfaceIndex
        self.address = address; self.prefixLength = prefixLength; self.gateway = gateway
        self.linkLocal = linkLocal
    }
}

/// Name servers and search domains read from resolv.conf (spec §3.2).
public struct ResolverConfig: Equatable, Sendable {
    /// Up to 3 IPv4 name servers, in file order.
    public var nameservers4: [IPv4Address]
    /// Up to 3 IPv6 name servers, in file order.
    public var nameservers6: [IPv6Address]
    /// Domains of the first `search` line, at most 6.
    public var search: [String]

    public init(nameservers4: [IPv4Address] = [], nameservers6: [IPv6Address] = [], search: [String] = []) {
        self.nameservers4 = nameservers4; self.nameservers6 = nameservers6; self.search = search
    }
}

/// Everything discovered about the host: per-family templates (nil = family unusable) and DNS.
public struct HostNetwork: Equatable, Sendable {
    public var ipv4: HostIPv4?
    public var ipv6: HostIPv6?
    public var resolver: ResolverConfig

    public init(ipv4: HostIPv4? = nil, ipv6: HostIPv6? = nil, resolver: ResolverConfig = ResolverConfig()) {
        self.ipv4 = ipv4; self.ipv6 = ipv6; self.resolver = resolver
    }
}
