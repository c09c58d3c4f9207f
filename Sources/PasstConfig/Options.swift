// The parsed command line of passt and pasta, before any host discovery.
//
// Theory of operation: `Options` records what the user asked for, one field per option of spec §2,
// with upstream's defaults and nothing derived from the host. Fields that upstream leaves "unset"
// until configuration resolution (template addresses, gateway, DNS from resolv.conf, the default
// user) are optionals here; `Configuration.resolve(options:host:)` fills them from `HostNetwork`.
// The few values that depend on the order of options on the command line (last one wins, -s
// versus -F, --userns versus --netns-only) are already settled by the parser, so a consumer never
// needs to know the order. Port forwarding specs already have their per-mode default applied
// (passt: none, pasta: auto).
import PasstWire

/// Which program we are: chosen from the name we were invoked by (spec §1.1).
public enum ProgramMode: String, Equatable, Sendable {
    case passt
    case pasta

    /// The mode for an argv[0]: basename containing "pasta", else "passt"; nil for any other name.
    public init?(programPath: String) {
        let name = programPath.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? ""
        if name.contains("pasta") {
            self = .pasta
        } else if name.contains("passt") {
            self = .passt
        } else {
            return nil
        }
    }
}

/// The user and group to run as (--runas, or the default chosen at resolution).
public struct RunAs: Equatable, Sendable {
    public var uid: UInt32
    public var gid: UInt32

    /// Creates a UID/GID pair.
    public init(uid: UInt32, gid: UInt32) {
        self.uid = uid
        self.gid = gid
    }
}

/// The namespace pasta connects (spec §1.3): a command to spawn, a PID's namespaces, or a netns path.
public enum PastaTarget: Equatable, Sendable {
    /// Create new namespaces and run this command (empty: the user's login shell).
    case spawn(command: [String])
    /// Join the network namespace of this process (/proc/PID/ns/net).
    case pid(Int32)
    /// Join the network namespace at this path (--netns, NAME already expanded to /run/netns/NAME).
    case netns(path: String)
}

/// Every option of spec §2, as given on the command line (order already resolved).
public struct Options: Equatable, Sendable {
    public var mode: ProgramMode
    /// --vhost-user (passt only): vhost-user back-end instead of the qemu stream socket.
    public var vhostUser = false

    // Logging and process.
    public var debug = false
    public var trace = false
    public var quiet = false
    public var foreground = false
    /// -l: log only to this file.
    public var logFile: String?
    /// --log-size in bytes; nil means the default of 1 MiB.
    public var logSize: UInt?
    /// --runas, resolved to numeric IDs; nil means the default user (see `Configuration.runAs`).
    public var runAs: RunAs?
    /// -P: PID file.
    public var pidFile: String?
    /// -p: pcap capture file.
    public var pcapFile: String?

    // Tap side transport.
    /// -s (passt): UNIX socket path; nil means probing /tmp/passt_N.socket.
    public var socketPath: String?
    /// -F: inherited, already connected socket (passt) or tap device (pasta), always > 2.
    public var tapFD: Int32?
    /// -1, or implied by -F: exit when the client disconnects.
    public var oneOff = false

    // Link and addresses.
    /// -m: nil means the default (65520); 0 means "don't advertise an MTU".
    public var mtu: Int?
    /// -M: our own MAC address on the tap link.
    public var ourMAC = MACAddress.passtDefault
    /// --ns-mac-addr (pasta): MAC to set on the namespace's tap interface.
    public var namespaceMAC: MACAddress?
    /// -I (pasta): tap interface name in the namespace.
    public var namespaceInterfaceName: String?
    /// -a: addresses to assign to the guest, at most one per family.
    public var address4: IPv4Address?
    public var address6: IPv6Address?
    /// -n: IPv4 prefix length; nil (or 0, as upstream) means classful, and it only applies with -a.
    public var prefixLength4: Int?
    /// -g: gateway addresses given to the guest.
    public var gateway4: IPv4Address?
    public var gateway6: IPv6Address?
    /// -i: template interface for both families (checked to exist at parse time).
    public var interface: String?
    /// -o: source address for outbound sockets.
    public var outboundAddress4: IPv4Address?
    public var outboundAddress6: IPv6Address?
    /// --outbound-if4/--outbound-if6: interface outbound sockets are bound to.
    public var outboundInterface4: String?
    public var outboundInterface6: String?
    /// -4 and -6 (the later one wins).
    public var ipv4Only = false
    public var ipv6Only = false

    // DNS.
    /// -D: name servers handed to the guest verbatim, at most 3 per family.
    public var dns4: [IPv4Address] = []
    public var dns6: [IPv6Address] = []
    /// -D none (the last one given): no DNS at all, not even from resolv.conf.
    public var noDNS = false
    /// --dns-forward: guest-visible address redirected to the host's resolver (cleared by -D none).
    public var dnsForward4: IPv4Address?
    public var dnsForward6: IPv6Address?
    /// --dns-host: host resolver for redirected queries (cleared by -D none).
    public var dnsHost4: IPv4Address?
    public var dnsHost6: IPv6Address?
    /// -S: search domains, each value one entry, at most 6.
    public var searchDomains: [String] = []
    /// -S none: no search list, not even from resolv.conf.
    public var noSearch = false
    /// Whether DHCP/DHCPv6/NDP carry name servers (passt default on, --no-dhcp-dns; pasta --dhcp-dns).
    public var dhcpDNS: Bool
    /// Whether DHCP/DHCPv6/NDP carry the search list (passt default on; pasta --dhcp-search).
    public var dhcpSearch: Bool

    // Protocol handlers and services.
    public var noTCP = false
    public var noUDP = false
    public var noICMP = false
    public var noDHCP = false
    public var noNDP = false
    public var noDHCPv6 = false
    /// --no-ra, also implied by --config-net.
    public var noRA = false
    /// --no-splice; always true in passt mode.
    public var noSplice = false
    public var freebind = false

    // Address translation.
    /// --map-host-loopback: guest-side address meaning the host's loopback; nil = default (gateway).
    public var mapHostLoopback4: IPv4Address?
    public var mapHostLoopback6: IPv6Address?
    /// --map-guest-addr: guest-side address meaning the host's address equal to the guest's.
    public var mapGuestAddress4: IPv4Address?
    public var mapGuestAddress6: IPv6Address?
    /// --no-map-gw (or --map-host-loopback none): no default for --map-host-loopback.
    public var noMapGateway = false

    // Port forwarding, defaults applied (passt: none; pasta: auto).
    /// -t: TCP, host (init namespace) towards the guest.
    public var tcpPorts: PortSpec
    /// -u: UDP, host towards the guest.
    public var udpPorts: PortSpec
    /// -T (pasta): TCP, namespace loopback towards the host's loopback.
    public var tcpNamespacePorts: PortSpec
    /// -U (pasta): UDP, namespace loopback towards the host's loopback.
    public var udpNamespacePorts: PortSpec

    // pasta namespaces.
    /// What pasta attaches to: trailing PID, --netns, or a command (default: login shell).
    public var pastaTarget = PastaTarget.spawn(command: [])
    /// User namespace to join: --userns, or /proc/PID/ns/user for a PID target without --userns.
    public var userNamespace: String?
    /// --netns-only, also implied by --netns without --userns: join or create no user namespace.
    public var netnsOnly = false
    public var noNetnsQuit = false
    /// --config-net: configure the namespace's tap interface (addresses, routes, MTU).
    public var configNet = false
    /// Don't copy host addresses / routes into the namespace, per family: --no-copy-addrs and
    /// --no-copy-routes set both, -a and -g (pasta) set their family.
    public var noCopyAddresses4 = false
    public var noCopyAddresses6 = false
    public var noCopyRoutes4 = false
    public var noCopyRoutes6 = false
    /// --host-lo-to-ns-lo (deprecated): spliced host-loopback traffic arrives on ns loopback.
    public var hostLoopbackToNamespaceLoopback = false

    /// Options with every upstream default for `mode` and nothing given.
    public init(mode: ProgramMode) {
        self.mode = mode
        dhcpDNS = mode == .passt
        dhcpSearch = mode == .passt
        noSplice = mode == .passt
        let defaultPorts = PortSpec(mode: mode == .pasta ? .auto : .none)
        tcpPorts = defaultPorts
        udpPorts = defaultPorts
        tcpNamespacePorts = defaultPorts
        udpNamespacePorts = defaultPorts
    }

    /// The network namespace path pasta joins, nil when it spawns a command in new namespaces.
    public var netnsPath: String? {
        switch pastaTarget {
        case .spawn: nil
        case .pid(let pid): "/proc/\(pid)/ns/net"
        case .netns(let path): path
        }
    }

    /// The interface host discovery must use as IPv4 template: -i, else --outbound-if4, else nil (auto).
    public var templateInterface4: String? { interface ?? outboundInterface4 }

    /// The interface host discovery must use as IPv6 template: -i, else --outbound-if6, else nil (auto).
    public var templateInterface6: String? { interface ?? outboundInterface6 }
}
