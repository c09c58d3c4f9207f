// The resolved configuration: parsed options combined with what host discovery found (spec §3.1-§3.3).
//
// Theory of operation: `Configuration.resolve(options:host:)` is upstream's conf() after the first
// option pass, minus the syscalls: `HostNetwork` stands for netlink and resolv.conf, and
// `ProcessIdentity` for the process credentials. Per family: no template (or -4/-6 for the other
// family) disables it; otherwise -a/-g override the host's address and gateway, the prefix is the
// host's (with -a: -n, else classful), and a family without an address (IPv6: or without a
// link-local address) is disabled. With no family left we fall back to local mode (169.254.2.1/16
// via 169.254.2.2, fe80::1, tap0). Then, in upstream's order: --map-host-loopback defaults to the
// gateway, no gateway disables DHCP, disabled families disable their services, --config-net
// disables router advertisements, the MTU defaults to 65520, and DNS comes from resolv.conf where
// -D doesn't cover a family (loopback name servers become the map-host-loopback address, which then
// also becomes the DNS redirect match address). Warnings and informational messages are collected
// in upstream's order and wording for the caller to log.
import PasstWire

/// A message resolution asks the caller to log.
public struct ConfigurationMessage: Equatable, Sendable {
    public var level: LogLevel
    public var text: String

    /// Creates a message of `level`.
    public init(_ level: LogLevel, _ text: String) {
        self.level = level
        self.text = text
    }
}

/// Resolved IPv4 parameters (the family is enabled when a `Configuration` has them).
public struct IPv4Settings: Equatable, Sendable {
    /// Host template interface; nil in local mode.
    public var templateInterface: String?
    /// Address assigned to the guest (DHCP, --config-net).
    public var address: IPv4Address
    public var prefixLength: Int
    /// Gateway given to the guest; nil if the host has no default route (then no DHCP).
    public var gateway: IPv4Address?
    /// Our address on the tap link (DHCP server identifier, source of unmappable host traffic): the gateway.
    public var ourTapAddress: IPv4Address?
    /// Guest-side address meaning the host's 127.0.0.1; nil for none.
    public var mapHostLoopback: IPv4Address?
    /// Guest-side address meaning the host's address that equals the guest's; nil for none.
    public var mapGuestAddress: IPv4Address?
    /// Name servers for the guest, at most 3.
    public var dns: [IPv4Address]
    /// DNS queries to this address are redirected to `dnsHost`; nil for none.
    public var dnsMatch: IPv4Address?
    /// The host's resolver for redirected DNS queries.
    public var dnsHost: IPv4Address?
    /// -o: source address of outbound sockets.
    public var outboundAddress: IPv4Address?
    /// --outbound-if4: interface outbound sockets are bound to.
    public var outboundInterface: String?
    /// pasta --config-net: copy the template interface's addresses (else assign `address` only).
    public var copyAddresses: Bool
    /// pasta --config-net: copy the template interface's routes (else only a default route).
    public var copyRoutes: Bool
}

/// Resolved IPv6 parameters (the family is enabled when a `Configuration` has them).
public struct IPv6Settings: Equatable, Sendable {
    /// Host template interface; nil in local mode.
    public var templateInterface: String?
    /// Address assigned to the guest (DHCPv6, --config-net); nil in local mode (learned from the guest).
    public var address: IPv6Address?
    /// Gateway given to the guest (router of RAs); nil if the host has no default route.
    public var gateway: IPv6Address?
    /// Our link-local address (source of NDP and DHCPv6): the gateway if link-local, else the host's.
    public var ourLinkLocal: IPv6Address
    /// Guest-side address meaning the host's ::1; nil for none.
    public var mapHostLoopback: IPv6Address?
    /// Guest-side address meaning the host's address that equals the guest's; nil for none.
    public var mapGuestAddress: IPv6Address?
    /// Name servers for the guest, at most 3.
    public var dns: [IPv6Address]
    /// DNS queries to this address are redirected to `dnsHost`; nil for none.
    public var dnsMatch: IPv6Address?
    /// The host's resolver for redirected DNS queries.
    public var dnsHost: IPv6Address?
    /// -o: source address of outbound sockets.
    public var outboundAddress: IPv6Address?
    /// --outbound-if6: interface outbound sockets are bound to.
    public var outboundInterface: String?
    /// pasta --config-net: copy the template interface's addresses (else assign `address` only).
    public var copyAddresses: Bool
    /// pasta --config-net: copy the template interface's routes (else only a default route).
    public var copyRoutes: Bool
}

/// Everything the daemon needs to know before it starts: options plus host-derived defaults.
public struct Configuration: Equatable, Sendable {
    /// The parsed command line (port specs, paths, switches).
    public var options: Options
    /// IPv4 parameters; nil when IPv4 is disabled.
    public var ipv4: IPv4Settings?
    /// IPv6 parameters; nil when IPv6 is disabled.
    public var ipv6: IPv6Settings?
    /// No usable host template for either family: link-local defaults, both families enabled.
    public var isLocalMode: Bool
    /// Search domains for the guest.
    public var searchDomains: [String]
    /// MTU advertised to the guest; 0 means none is advertised (-m 0).
    public var mtu: Int
    /// pasta's tap interface name in the namespace (-I, else the template's name, tap0 in local mode).
    public var namespaceInterfaceName: String
    /// DHCP server: IPv4 enabled, a gateway known, no --no-dhcp.
    public var dhcpEnabled: Bool
    /// NDP answers: IPv6 enabled, no --no-ndp.
    public var ndpEnabled: Bool
    /// DHCPv6 server: IPv6 enabled with an address to assign, no --no-dhcpv6.
    public var dhcpv6Enabled: Bool
    /// Router advertisements: NDP enabled, no --no-ra (nor --config-net, which implies it).
    public var routerAdvertisementsEnabled: Bool
    /// The user and group to switch to.
    public var runAs: RunAs
    /// Messages to log, in upstream's order, wording and level.
    public var messages: [ConfigurationMessage]

    /// The program mode.
    public var mode: ProgramMode { options.mode }

    /// The texts of the warning-level `messages`.
    public var warnings: [String] { messages.filter { $0.level == .warning }.map(\.text) }

    /// The texts of the info-level `messages`.
    public var notices: [String] { messages.filter { $0.level == .info }.map(\.text) }

    /// Guest IPv4 address in local mode.
    public static let localGuestAddress4 = IPv4Address(169, 254, 2, 1)
    /// Gateway and our own IPv4 address in local mode.
    public static let localGateway4 = IPv4Address(169, 254, 2, 2)
    /// IPv4 prefix length in local mode.
    public static let localPrefixLength4 = 16
    /// Gateway and our link-local IPv6 address in local mode: fe80::1.
    public static let localGateway6 = IPv6Address(high: 0xfe80_0000_0000_0000, low: 1)
    /// pasta's tap interface name in local mode.
    public static let localInterfaceName = "tap0"
    /// Default MTU: 65535 minus the Ethernet header, rounded down to a multiple of 4.
    public static let defaultMTU = 65520

    /// Combines parsed options with the discovered host network; throws upstream's fatal errors.
    public static func resolve(options: Options, host: HostNetwork,
                               identity: ProcessIdentity? = nil) throws(ConfigError) -> Configuration {
        var messages: [ConfigurationMessage] = []
        let runAs = try resolveRunAs(options, identity: identity, messages: &messages)

        var ipv4 = options.ipv6Only ? nil : templateIPv4(options, host.ipv4)
        var ipv6 = options.ipv4Only ? nil : templateIPv6(options, host.ipv6)
        if (options.outboundInterface4 != nil && ipv4 == nil) || (options.outboundInterface6 != nil && ipv6 == nil) {
            throw ConfigError("External interface not usable")
        }
        let isLocalMode = ipv4 == nil && ipv6 == nil
        if isLocalMode {
            messages.append(ConfigurationMessage(.info, "No external interface as template, switch to local mode"))
            ipv4 = localIPv4(options)
            ipv6 = localIPv6(options)
        }
        if !options.noMapGateway {
            if let gateway = ipv4?.gateway, ipv4?.mapHostLoopback == nil { ipv4?.mapHostLoopback = gateway }
            if let gateway = ipv6?.gateway, ipv6?.mapHostLoopback == nil { ipv6?.mapHostLoopback = gateway }
        }

        let dhcpEnabled = !options.noDHCP && ipv4 != nil && ipv4?.gateway != nil
        let ndpEnabled = !options.noNDP && ipv6 != nil
        let dhcpv6Enabled = !options.noDHCPv6 && ipv6 != nil && ipv6?.address != nil
        let routerAdvertisementsEnabled = ndpEnabled && !options.noRA

        var configuration = Configuration(
            options: options, ipv4: ipv4, ipv6: ipv6, isLocalMode: isLocalMode,
            searchDomains: options.searchDomains, mtu: options.mtu ?? defaultMTU,
            namespaceInterfaceName: options.namespaceInterfaceName
                ?? (isLocalMode ? localInterfaceName : ipv4?.templateInterface ?? ipv6?.templateInterface ?? ""),
            dhcpEnabled: dhcpEnabled, ndpEnabled: ndpEnabled, dhcpv6Enabled: dhcpv6Enabled,
            routerAdvertisementsEnabled: routerAdvertisementsEnabled, runAs: runAs, messages: messages)
        configuration.resolveDNS(host.resolver)
        return configuration
    }

    /// --runas, else the effective IDs, except root in the init user namespace becomes nobody.
    private static func resolveRunAs(_ options: Options, identity: ProcessIdentity?,
                                     messages: inout [ConfigurationMessage]) throws(ConfigError) -> RunAs {
        if let runAs = options.runAs { return runAs }
        let identity = if let identity { identity } else { try ProcessIdentity.current() }
        if identity.effectiveUID != 0 || !identity.isInInitUserNamespace {
            return RunAs(uid: identity.effectiveUID, gid: identity.effectiveGID)
        }
        messages.append(ConfigurationMessage(.warning, "Started as root, will change to nobody."))
        guard let nobody = identity.nobody else {
            throw ConfigError("Can't get password file entry for nobody")
        }
        return nobody
    }

    /// IPv4 from the host template and -a/-n/-g; nil if there is no template or no address.
    private static func templateIPv4(_ options: Options, _ host: HostIPv4?) -> IPv4Settings? {
        guard let host, let address = options.address4 ?? host.address else { return nil }
        var prefixLength = options.address4 == nil ? host.prefixLength : options.prefixLength4 ?? 0
        if prefixLength == 0 { prefixLength = classfulPrefixLength(address) }
        let gateway = options.gateway4 ?? host.gateway
        return IPv4Settings(
            templateInterface: host.interfaceName, address: address, prefixLength: prefixLength,
            gateway: gateway, ourTapAddress: gateway, mapHostLoopback: options.mapHostLoopback4,
            mapGuestAddress: options.mapGuestAddress4, dns: options.dns4, dnsMatch: options.dnsForward4,
            dnsHost: options.dnsHost4, outboundAddress: options.outboundAddress4,
            outboundInterface: options.outboundInterface4, copyAddresses: !options.noCopyAddresses4,
            copyRoutes: !options.noCopyRoutes4)
    }

    /// IPv6 from the host template and -a/-g; nil without template, global address or link-local address.
    private static func templateIPv6(_ options: Options, _ host: HostIPv6?) -> IPv6Settings? {
        guard let host, let address = options.address6 ?? host.address else { return nil }
        let gateway = options.gateway6 ?? host.gateway
        guard let ourLinkLocal = gateway.flatMap({ $0.isLinkLocal ? $0 : nil }) ?? host.linkLocal else {
            return nil
        }
        return IPv6Settings(
            templateInterface: host.interfaceName, address: address, gateway: gateway, ourLinkLocal: ourLinkLocal,
            mapHostLoopback: options.mapHostLoopback6, mapGuestAddress: options.mapGuestAddress6,
            dns: options.dns6, dnsMatch: options.dnsForward6, dnsHost: options.dnsHost6,
            outboundAddress: options.outboundAddress6, outboundInterface: options.outboundInterface6,
            copyAddresses: !options.noCopyAddresses6, copyRoutes: !options.noCopyRoutes6)
    }

    /// Local mode IPv4: 169.254.2.1/16, gateway and our address 169.254.2.2, nothing copied.
    private static func localIPv4(_ options: Options) -> IPv4Settings {
        IPv4Settings(
            templateInterface: nil, address: localGuestAddress4, prefixLength: localPrefixLength4,
            gateway: localGateway4, ourTapAddress: localGateway4, mapHostLoopback: options.mapHostLoopback4,
            mapGuestAddress: options.mapGuestAddress4, dns: options.dns4, dnsMatch: options.dnsForward4,
            dnsHost: options.dnsHost4, outboundAddress: options.outboundAddress4,
            outboundInterface: options.outboundInterface4, copyAddresses: false, copyRoutes: false)
    }

    /// Local mode IPv6: gateway and our link-local fe80::1, no address (learned from the guest).
    private static func localIPv6(_ options: Options) -> IPv6Settings {
        IPv6Settings(
            templateInterface: nil, address: options.address6, gateway: localGateway6, ourLinkLocal: localGateway6,
            mapHostLoopback: options.mapHostLoopback6, mapGuestAddress: options.mapGuestAddress6,
            dns: options.dns6, dnsMatch: options.dnsForward6, dnsHost: options.dnsHost6,
            outboundAddress: options.outboundAddress6, outboundInterface: options.outboundInterface6,
            copyAddresses: false, copyRoutes: false)
    }

    /// The classful prefix length of an address: A /8, B /16, C /24, else /32.
    static func classfulPrefixLength(_ address: IPv4Address) -> Int {
        switch address.value >> 29 {
        case 0b000...0b011: 8
        case 0b100...0b101: 16
        case 0b110: 24
        default: 32
        }
    }

    /// Adds one family's resolv.conf name servers to `dns` (spec §3.2): the first becomes `dnsHost`,
    /// a loopback one is replaced by the map-host-loopback address (which becomes the redirect match
    /// address) or skipped without one. Returns how many were added.
    private static func adoptNameservers<Address>(_ nameservers: [Address], isLoopback: (Address) -> Bool,
                                                  mapHostLoopback: Address?, dns: inout [Address],
                                                  dnsHost: inout Address?, dnsMatch: inout Address?) -> Int {
        var added = 0
        for nameserver in nameservers {
            if dnsHost == nil { dnsHost = nameserver }
            var guestVisible = nameserver
            if isLoopback(nameserver) {
                guard let mapped = mapHostLoopback else { continue }
                guestVisible = mapped
                if dnsMatch == nil { dnsMatch = mapped }
            }
            if dns.count < ConfigLimits.nameservers {
                dns.append(guestVisible)
                added += 1
            }
        }
        return added
    }

    /// Fills name servers and search domains from resolv.conf where options don't cover them (spec §3.2).
    private mutating func resolveDNS(_ resolver: ResolverConfig) {
        let dns4Covered = ipv4 == nil || !(ipv4?.dns.isEmpty ?? true)
        let dns6Covered = ipv6 == nil || !(ipv6?.dns.isEmpty ?? true)
        let searchCovered = !options.searchDomains.isEmpty || options.noSearch
        let dnsCovered = (dns4Covered && dns6Covered) || options.noDNS
        if dnsCovered && searchCovered { return }

        var addedFromResolver = 0
        if !dnsCovered && !dns4Covered, var settings = ipv4 {
            addedFromResolver += Self.adoptNameservers(resolver.nameservers4, isLoopback: \.isLoopback,
                                                       mapHostLoopback: settings.mapHostLoopback, dns: &settings.dns,
                                                       dnsHost: &settings.dnsHost, dnsMatch: &settings.dnsMatch)
            ipv4 = settings
        }
        if !dnsCovered && !dns6Covered, var settings = ipv6 {
            addedFromResolver += Self.adoptNameservers(resolver.nameservers6, isLoopback: \.isLoopback,
                                                       mapHostLoopback: settings.mapHostLoopback, dns: &settings.dns,
                                                       dnsHost: &settings.dnsHost, dnsMatch: &settings.dnsMatch)
            ipv6 = settings
        }
        if !searchCovered {
            // Upstream keeps one slot of its table as terminator here: at most 5 from resolv.conf.
            searchDomains = Array(resolver.search.prefix(ConfigLimits.searchDomains - 1))
        }
        if dnsCovered { return }
        if addedFromResolver == 0 {
            messages.append(ConfigurationMessage(.warning, "Couldn't get any nameserver address"))
        }
        if !options.dhcpDNS { return }
        if let ipv4, dhcpEnabled, ipv4.dns.isEmpty {
            messages.append(ConfigurationMessage(.warning, "No IPv4 nameserver available for DHCP"))
        }
        if let ipv6, routerAdvertisementsEnabled || dhcpv6Enabled, ipv6.dns.isEmpty {
            messages.append(ConfigurationMessage(.warning, "No IPv6 nameserver available for NDP/DHCPv6"))
        }
    }
}
