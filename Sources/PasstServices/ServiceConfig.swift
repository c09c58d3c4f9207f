// ServiceConfig: everything the locally answered services (ARP, DHCP, NDP, DHCPv6) need to know.
//
// Theory of operation: the services are pure functions of (frame, ServiceConfig); this value is
// the part of upstream's execution context they read, and nothing else. It is deliberately
// independent of PasstConfig's `Configuration` (a later step maps one onto the other), so the
// services can be tested, fuzzed and benchmarked without a command line.
//
// A family is enabled when its settings are present (`ipv4`, `ipv6` non-nil), as upstream's
// ifi4/ifi6. Most fields are fixed for the life of the process; two follow the guest, and the
// tap ingress keeps them current before it hands a frame to a service (spec §3.1, §5.1):
//
//   guestMAC       learned from the source MAC of every guest frame (upstream starts with
//                  ff:ff:ff:ff:ff:ff); replies other than ARP go to this MAC, as upstream's do.
//   ipv6.address   in local mode there is no assigned IPv6 address until the guest sends from
//                  a link-local source; upstream then adopts that address (RA prefix source).
//
// The `no*` switches mirror upstream's flags: noDHCP (--no-dhcp, or no IPv4 gateway), noNDP,
// noRA (--no-ra, implied by --config-net), noDHCPv6 (also set when no IPv6 address is assigned),
// noDHCPDNS (no name servers in DHCP option 6, RA RDNSS, DHCPv6 option 23) and noDHCPSearch
// (no search list in DHCP option 119, RA DNSSL, DHCPv6 option 24).
//
// The router advertisement must not allocate, so the search list's uncompressed wire form is
// encoded once here (and again whenever `searchDomains` is assigned), not per RA.
import PasstWire

/// The configuration the locally answered services read.
public struct ServiceConfig: Sendable, Equatable {
    /// IPv4 parameters handed to the guest.
    public struct IPv4: Sendable, Equatable {
        /// Address assigned to the guest (DHCP yiaddr; ARP requests for it are not answered).
        public var address: IPv4Address
        /// Prefix length of the guest's subnet (DHCP option 1).
        public var prefixLength: Int
        /// Default gateway for the guest (DHCP option 3); nil: no DHCP at all (upstream: no default route).
        public var gateway: IPv4Address?
        /// Our own address on the tap link: DHCP server identifier and reply source (upstream: the gateway).
        public var ourTapAddress: IPv4Address?
        /// Name servers for DHCP option 6, at most 3 as configured.
        public var dns: [IPv4Address]

        /// Creates IPv4 settings; `ourTapAddress` defaults to the gateway, as upstream.
        public init(address: IPv4Address, prefixLength: Int, gateway: IPv4Address?,
                    ourTapAddress: IPv4Address? = nil, dns: [IPv4Address] = []) {
            self.address = address
            self.prefixLength = prefixLength
            self.gateway = gateway
            self.ourTapAddress = ourTapAddress ?? gateway
            self.dns = dns
        }
    }

    /// IPv6 parameters handed to the guest.
    public struct IPv6: Sendable, Equatable {
        /// Address assigned to the guest (RA prefix field, DHCPv6 IAADDR); nil until known in local mode.
        public var address: IPv6Address?
        /// Our link-local address: source of every NDP and DHCPv6 reply.
        public var ourLinkLocal: IPv6Address
        /// Name servers for RA RDNSS and DHCPv6 option 23, at most 3 as configured.
        public var dns: [IPv6Address]

        /// Creates IPv6 settings.
        public init(address: IPv6Address?, ourLinkLocal: IPv6Address, dns: [IPv6Address] = []) {
            self.address = address
            self.ourLinkLocal = ourLinkLocal
            self.dns = dns
        }
    }

    /// Our MAC address: source of every reply, ARP/NDP link-layer answer, DHCPv6 DUID.
    public var ourMAC: MACAddress
    /// The guest's MAC address as last learned by the tap ingress (destination of DHCP, NDP, DHCPv6 replies).
    public var guestMAC: MACAddress
    /// IPv4 settings; nil when IPv4 is disabled (no ARP, no DHCP).
    public var ipv4: IPv4?
    /// IPv6 settings; nil when IPv6 is disabled (no NDP, no DHCPv6).
    public var ipv6: IPv6?
    /// Search domains for DHCP option 119, RA DNSSL and DHCPv6 option 24.
    public var searchDomains: [String] { didSet { searchListWire = Self.encodeSearchList(searchDomains) } }
    /// MTU advertised in DHCP option 26 and the RA MTU option; 0: none advertised (-m 0).
    public var mtu: Int
    /// --no-dhcp, or no IPv4 gateway: DHCP requests are dropped unanswered.
    public var noDHCP: Bool
    /// --no-ndp: no neighbour or router advertisements at all.
    public var noNDP: Bool
    /// --no-ra (or --config-net): no router advertisements; neighbour advertisements still sent.
    public var noRA: Bool
    /// --no-dhcpv6, or no IPv6 address assigned: DHCPv6 requests are dropped unanswered.
    public var noDHCPv6: Bool
    /// No name servers in DHCP, RA and DHCPv6 (--no-dhcp-dns; pasta's default).
    public var noDHCPDNS: Bool
    /// No search list in DHCP, RA and DHCPv6 (--no-dhcp-search; pasta's default).
    public var noDHCPSearch: Bool
    /// Time field of our DHCPv6 DUID-LLT: seconds since 2000-01-01 UTC when the process started.
    public var dhcpv6DUIDTime: UInt32
    /// `searchDomains` in uncompressed RFC 1035 wire form, back to back (invalid names skipped).
    public private(set) var searchListWire: [UInt8]

    /// Creates a configuration; defaults are upstream's (our MAC 9a:55:9a:55:9a:55, guest MAC not
    /// yet learned, MTU 65520, every service on).
    public init(ourMAC: MACAddress = .passtDefault, guestMAC: MACAddress = .broadcast,
                ipv4: IPv4? = nil, ipv6: IPv6? = nil, searchDomains: [String] = [], mtu: Int = 65520,
                noDHCP: Bool = false, noNDP: Bool = false, noRA: Bool = false, noDHCPv6: Bool = false,
                noDHCPDNS: Bool = false, noDHCPSearch: Bool = false, dhcpv6DUIDTime: UInt32 = 0) {
        self.ourMAC = ourMAC
        self.guestMAC = guestMAC
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.searchDomains = searchDomains
        self.mtu = mtu
        self.noDHCP = noDHCP
        self.noNDP = noNDP
        self.noRA = noRA
        self.noDHCPv6 = noDHCPv6
        self.noDHCPDNS = noDHCPDNS
        self.noDHCPSearch = noDHCPSearch
        self.dhcpv6DUIDTime = dhcpv6DUIDTime
        self.searchListWire = Self.encodeSearchList(searchDomains)
    }

    /// Our DHCPv6 server identifier: DUID-LLT, hardware type Ethernet, `dhcpv6DUIDTime`, `ourMAC`.
    public var dhcpv6ServerDUID: [UInt8] { DHCPv6.duidLLT(time: dhcpv6DUIDTime, mac: ourMAC) }

    /// The uncompressed wire form of `names`, back to back; invalid and root names are skipped.
    private static func encodeSearchList(_ names: [String]) -> [UInt8] {
        DNSName.encodeList(names, compress: false)
    }
}
