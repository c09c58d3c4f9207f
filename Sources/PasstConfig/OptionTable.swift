// The table of command line options: long names, short letters and whether an argument follows.
//
// Theory of operation: getopt_long's behaviour depends on the table itself, not only on what the
// options mean: unambiguous abbreviations are accepted ("--netn" is --netns), and an ambiguous one
// is reported with the candidates in table order. So the long option table lists upstream's names in
// upstream's order, both modes share it (as upstream does: e.g. --socket is accepted, and ignored,
// by pasta), and only the short option strings differ per mode (spec §2). Two names of one option
// (--socket, --socket-path) are one candidate for getopt, as upstream's equal table entries are.

/// One command line option, whatever name it was given by.
enum CommandLineOption: CaseIterable {
    case debug, quiet, foreground, stderr, logFile, help, socket, fd, namespaceInterfaceName, pcap, pid
    case mtu, address, netmask, macAddress, gateway, interface, outbound, dns, search
    case noTCP, noUDP, noICMP, noDHCP, noDHCPv6, noNDP, noRA, noSplice, freebind, noMapGateway
    case ipv4Only, ipv6Only, oneOff, tcpPorts, udpPorts, tcpNamespacePorts, udpNamespacePorts
    case userNamespace, netns, namespaceMAC, dhcpDNS, noDHCPDNS, dhcpSearch, noDHCPSearch, dnsForward
    case noNetnsQuit, trace, runAs, logSize, version, outboundInterface4, outboundInterface6, configNet
    case noCopyRoutes, noCopyAddresses, netnsOnly, mapHostLoopback, mapGuestAddress
    case hostLoopbackToNamespaceLoopback, dnsHost, vhostUser, printCapabilities

    /// Long option names in upstream's table order (ambiguity messages list candidates in this order).
    static let longNames: [(name: String, option: CommandLineOption)] = [
        ("debug", .debug), ("quiet", .quiet), ("foreground", .foreground), ("stderr", .stderr),
        ("log-file", .logFile), ("help", .help), ("socket", .socket), ("fd", .fd),
        ("ns-ifname", .namespaceInterfaceName), ("pcap", .pcap), ("pid", .pid), ("mtu", .mtu),
        ("address", .address), ("netmask", .netmask), ("mac-addr", .macAddress), ("gateway", .gateway),
        ("interface", .interface), ("outbound", .outbound), ("dns", .dns), ("search", .search),
        ("no-tcp", .noTCP), ("no-udp", .noUDP), ("no-icmp", .noICMP), ("no-dhcp", .noDHCP),
        ("no-dhcpv6", .noDHCPv6), ("no-ndp", .noNDP), ("no-ra", .noRA), ("no-splice", .noSplice),
        ("freebind", .freebind), ("no-map-gw", .noMapGateway), ("ipv4-only", .ipv4Only),
        ("ipv6-only", .ipv6Only), ("one-off", .oneOff), ("tcp-ports", .tcpPorts), ("udp-ports", .udpPorts),
        ("tcp-ns", .tcpNamespacePorts), ("udp-ns", .udpNamespacePorts), ("userns", .userNamespace),
        ("netns", .netns), ("ns-mac-addr", .namespaceMAC), ("dhcp-dns", .dhcpDNS),
        ("no-dhcp-dns", .noDHCPDNS), ("dhcp-search", .dhcpSearch), ("no-dhcp-search", .noDHCPSearch),
        ("dns-forward", .dnsForward), ("no-netns-quit", .noNetnsQuit), ("trace", .trace),
        ("runas", .runAs), ("log-size", .logSize), ("version", .version),
        ("outbound-if4", .outboundInterface4), ("outbound-if6", .outboundInterface6),
        ("config-net", .configNet), ("no-copy-routes", .noCopyRoutes), ("no-copy-addrs", .noCopyAddresses),
        ("netns-only", .netnsOnly), ("map-host-loopback", .mapHostLoopback),
        ("map-guest-addr", .mapGuestAddress), ("host-lo-to-ns-lo", .hostLoopbackToNamespaceLoopback),
        ("dns-host", .dnsHost), ("vhost-user", .vhostUser), ("print-capabilities", .printCapabilities),
        ("socket-path", .socket),
    ]

    /// Upstream's short option string for `mode`, '+' first: stop at the first non-option.
    static func shortOptions(for mode: ProgramMode) -> String {
        switch mode {
        case .passt: "+dqfel:hs:F:p:P:m:a:n:M:g:i:o:D:S:461t:u:"
        case .pasta: "+dqfel:hF:I:p:P:m:a:n:M:g:i:o:D:S:46t:u:T:U:"
        }
    }

    /// The short option letter, if the option has one.
    var shortName: Character? {
        switch self {
        case .debug: "d"
        case .quiet: "q"
        case .foreground: "f"
        case .stderr: "e"
        case .logFile: "l"
        case .help: "h"
        case .socket: "s"
        case .fd: "F"
        case .namespaceInterfaceName: "I"
        case .pcap: "p"
        case .pid: "P"
        case .mtu: "m"
        case .address: "a"
        case .netmask: "n"
        case .macAddress: "M"
        case .gateway: "g"
        case .interface: "i"
        case .outbound: "o"
        case .dns: "D"
        case .search: "S"
        case .ipv4Only: "4"
        case .ipv6Only: "6"
        case .oneOff: "1"
        case .tcpPorts: "t"
        case .udpPorts: "u"
        case .tcpNamespacePorts: "T"
        case .udpNamespacePorts: "U"
        default: nil
        }
    }

    /// Whether the option takes a (required) argument.
    var takesArgument: Bool {
        switch self {
        case .logFile, .socket, .fd, .namespaceInterfaceName, .pcap, .pid, .mtu, .address, .netmask,
             .macAddress, .gateway, .interface, .outbound, .dns, .search, .tcpPorts, .udpPorts,
             .tcpNamespacePorts, .udpNamespacePorts, .userNamespace, .netns, .namespaceMAC, .dnsForward,
             .runAs, .logSize, .outboundInterface4, .outboundInterface6, .mapHostLoopback,
             .mapGuestAddress, .dnsHost:
            true
        default:
            false
        }
    }
}
