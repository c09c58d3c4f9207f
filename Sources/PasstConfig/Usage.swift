// The informational texts of the command line: usage (-h), version (--version) and the vhost-user
// capabilities (--print-capabilities).
//
// Theory of operation: the usage text is ours (upstream's wording is not copied) but covers the
// same ground: every option the mode accepts, its argument, and its default, one option per line
// with indented detail lines; options the shared long option table lets through but the mode
// ignores are listed last, so the text names exactly what the parser accepts (doc/passt.1 and
// doc/pasta.1 do the same; a test checks all three against the parser). As upstream, the first
// lines use the program name exactly as invoked (argv[0]); -h prints it on stdout, and after a
// getopt error it goes to stderr. The version text follows upstream's shape ("pasta VERSION", then
// copyright and licence lines) with our project's own copyright.

/// Help, version and capability texts for passt and pasta.
public enum Usage {
    /// Our version number, printed after the program name by --version.
    public static let version = "0.1.0"

    /// The --version text: "passt VERSION" or "pasta VERSION", then our copyright and licence.
    public static func versionText(mode: ProgramMode) -> String {
        """
        \(mode.rawValue) \(version)
        Copyright the swift-passt authors
        GNU General Public License, version 2 or later
          <https://www.gnu.org/licenses/old-licenses/gpl-2.0.html>
        This is free software: you are free to change and redistribute it.
        There is NO WARRANTY, to the extent permitted by law.


        """
    }

    /// The three lines --print-capabilities logs (vhost-user back-end convention).
    public static let capabilityLines = ["{", "  \"type\": \"net\"", "}"]

    /// The usage text for `mode`, naming the program `programName` (argv[0] as invoked).
    public static func text(mode: ProgramMode, programName: String) -> String {
        var lines: [String] = []
        switch mode {
        case .pasta:
            lines += [
                "Usage: \(programName) [OPTION]... [COMMAND [ARG]...]",
                "       \(programName) [OPTION]... PID",
                "       \(programName) [OPTION]... --netns PATH|NAME",
                "",
                "Connect a network namespace to the host's network through a tap interface,",
                "using unprivileged sockets on the host. Without PID or --netns, start COMMAND",
                "(default: your login shell) in new user and network namespaces.",
            ]
        case .passt:
            lines += [
                "Usage: \(programName) [OPTION]...",
                "",
                "Connect a virtual machine (qemu, libvirt) to the host's network through a UNIX",
                "domain socket, using unprivileged sockets on the host.",
            ]
        }
        lines += ["", "General:"]
        lines += [
            "  -d, --debug               Log debug messages (to stderr, with timestamps)",
            "      --trace               Log per-packet traces too; implies --debug",
            "  -q, --quiet               Log warnings and errors only",
            "  -f, --foreground          Stay in the foreground",
            "                              default: go to the background once ready",
            "  -e, --stderr              Deprecated, no effect",
            "  -l, --log-file PATH       Log to this file only",
            "      --log-size BYTES      Maximum size of the log file",
            "                              default: 1 MiB",
            "      --runas UID[:GID]     Run as this user and group, numeric or names",
            "                              default: current user; \"nobody\" if root",
            "  -h, --help                Show this help and exit",
            "      --version             Show version information and exit",
        ]
        switch mode {
        case .pasta:
            lines += [
                "  -I, --ns-ifname NAME      Name of the tap interface in the namespace",
                "                              default: name of the host's template interface",
                "  -F, --fd FD               Use FD as an already opened tap device",
                "      --print-capabilities  Print vhost-user back-end capabilities and exit",
            ]
        case .passt:
            lines += [
                "  -s, --socket, --socket-path PATH",
                "                            UNIX domain socket to listen on",
                "                              default: first free /tmp/passt_N.socket",
                "      --vhost-user          Act as vhost-user back-end on the -s socket",
                "      --print-capabilities  Print vhost-user back-end capabilities and exit",
                "  -F, --fd FD               Use FD as an already connected socket",
                "  -1, --one-off             Exit when the guest disconnects",
            ]
        }
        lines += [
            "  -p, --pcap FILE           Capture guest-side frames to a pcap file",
            "  -P, --pid FILE            Write our process ID to FILE",
            "",
            "Addresses and link:",
            "  -m, --mtu MTU             MTU to advertise (68-65535; 0: don't advertise)",
            "                              default: 65520",
            "  -a, --address ADDR        Address to assign to the guest, once per family",
            "                              default: the host's address on the template interface",
            "  -n, --netmask MASK        IPv4 netmask, dotted or prefix length",
            "                              default: the host's, or classful with -a",
            "  -M, --mac-addr ADDR       Our own MAC address on the tap link",
            "                              default: 9a:55:9a:55:9a:55",
            "  -g, --gateway ADDR        Gateway address for the guest, once per family",
            "                              default: the host's default gateway",
            "  -i, --interface NAME      Template interface for addresses and routes",
            "                              default: --outbound-if4/6, else the interface of",
            "                              the first default route",
            "  -o, --outbound ADDR       Source address of outbound sockets, once per family",
            "      --outbound-if4 NAME   Bind outbound IPv4 sockets to this interface",
            "      --outbound-if6 NAME   Bind outbound IPv6 sockets to this interface",
            "  -4, --ipv4-only           Disable IPv6",
            "  -6, --ipv6-only           Disable IPv4",
            "",
            "DNS:",
            "  -D, --dns ADDR            Name server for the guest, repeatable; 'none': no DNS",
            "                              default: name servers of /etc/resolv.conf",
            "      --dns-forward ADDR    Redirect guest DNS queries sent to ADDR to the host",
            "      --dns-host ADDR       Host name server those queries go to",
            "                              default: first name server of /etc/resolv.conf",
            "  -S, --search DOMAIN       Search domain, repeatable; 'none': no search list",
            "                              default: search list of /etc/resolv.conf",
        ]
        switch mode {
        case .pasta:
            lines += [
                "      --dhcp-dns            Send name servers via DHCP, DHCPv6 and NDP",
                "      --dhcp-search         Send the search list via DHCP, DHCPv6 and NDP",
            ]
        case .passt:
            lines += [
                "      --no-dhcp-dns         Don't send name servers via DHCP, DHCPv6 and NDP",
                "      --no-dhcp-search      Don't send the search list via DHCP, DHCPv6 and NDP",
            ]
        }
        lines += [
            "",
            "Address translation:",
            "      --map-host-loopback ADDR",
            "                            Guest address meaning the host's loopback; 'none'",
            "                              default: the gateway address",
            "      --map-guest-addr ADDR Guest address meaning the host's own address; 'none'",
            "                              default: none",
            "      --no-map-gw           No default for --map-host-loopback",
            "",
            "Protocols and services:",
            "      --no-tcp              Disable TCP",
            "      --no-udp              Disable UDP",
            "      --no-icmp             Disable ICMP and ICMPv6 echo",
            "      --no-dhcp             Disable the DHCP server",
            "      --no-ndp              Disable NDP answers",
            "      --no-dhcpv6           Disable the DHCPv6 server",
            "      --no-ra               Disable router advertisements",
            "      --freebind            Allow listening on addresses the host doesn't have",
            "",
            "Port forwarding:",
        ]
        switch mode {
        case .passt:
            lines += [
                "  -t, --tcp-ports SPEC      TCP ports forwarded from the host to the guest",
                "  -u, --udp-ports SPEC      UDP ports forwarded from the host to the guest",
                "                              default: none",
                "    SPEC is 'none', 'all' (every non-ephemeral port), or [BIND/]ITEM[,ITEM]...",
            ]
        case .pasta:
            lines += [
                "  -t, --tcp-ports SPEC      TCP ports forwarded from the host to the namespace",
                "  -u, --udp-ports SPEC      UDP ports forwarded from the host to the namespace",
                "  -T, --tcp-ns SPEC         TCP ports forwarded from namespace loopback to host",
                "  -U, --udp-ns SPEC         UDP ports forwarded from namespace loopback to host",
                "                              default: auto",
                "    SPEC is 'none', 'auto' (ports bound on the other side, rescanned), or",
                "    [BIND/]ITEM[,ITEM]...",
            ]
        }
        lines += [
            "    ITEM is PORT[-PORT][:PORT[-PORT]] (optionally to other ports, same length)",
            "    or ~PORT[-PORT] (exclude; only exclusions: all non-ephemeral ports but those)",
            "    BIND is ADDR, [ADDR], ADDR%IFNAME or %IFNAME (-t and -u only)",
            "    Without BIND, listeners are dual-stack when both IPv4 and IPv6 are enabled",
            "    Examples: -t 22   -t 2222:22   -t 8000-8010:80-90   -t 192.0.2.1/80",
            "              -t 1000-2000,~1500   -t ~22   -u %eth0/53",
        ]
        if mode == .pasta {
            lines += [
                "",
                "Namespaces:",
                "      --userns PATH         User namespace to join",
                "      --netns PATH|NAME     Network namespace to join (NAME: /run/netns/NAME)",
                "      --netns-only          Join or create no user namespace",
                "                              implied by --netns without --userns",
                "      --no-netns-quit       Keep running if the namespace's file is removed",
                "      --config-net          Configure addresses, routes and MTU of the tap",
                "                            interface (implies --no-ra)",
                "      --no-copy-routes      Deprecated: with --config-net, copy no routes",
                "      --no-copy-addrs       Deprecated: with --config-net, copy no addresses",
                "      --ns-mac-addr ADDR    MAC address of the tap interface in the namespace",
                "      --no-splice           Don't bypass the tap for loopback connections",
                "      --host-lo-to-ns-lo    Deprecated: host loopback connections arrive on",
                "                            namespace loopback",
                "",
                "Accepted for compatibility, no effect in pasta mode:",
                "      --socket, --socket-path PATH",
                "                            passt's socket path (cancels an earlier --fd)",
            ]
        } else {
            lines += [
                "",
                "Accepted for compatibility, no effect in passt mode (values are still checked):",
                "      --ns-ifname NAME      pasta's interface name",
                "      --tcp-ns SPEC         pasta's namespace-to-host TCP ports",
                "      --udp-ns SPEC         pasta's namespace-to-host UDP ports",
                "      --no-splice           pasta's loopback bypass switch (passt has none)",
            ]
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
