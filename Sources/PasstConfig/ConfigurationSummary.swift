// The configuration summary logged at start-up (spec §10.2), in upstream's wording and order.
//
// Theory of operation: upstream's conf_print() logs, at info level: template and outbound
// interfaces, outbound addresses, pasta's namespace interface, our MAC, then per enabled family
// the loopback mapping, the DHCP (IPv4) or NDP/DHCPv6 (IPv6) parameters, the name servers and the
// search list (printed once per family, as upstream does). Scripts and users read this text, so
// lines and indentation match upstream's; the logger adds prefixes and timestamps. It is logged at
// info level unless quiet, and pasta's spawn mode is quiet unless --debug.
import PasstWire

extension Configuration {
    /// Whether upstream logs the summary: not with --quiet, nor when pasta spawns a command without
    /// --debug (spawn mode forces quiet).
    public var isSummaryLogged: Bool {
        !options.quiet && !(mode == .pasta && options.netnsPath == nil && !options.debug)
    }

    /// The summary lines upstream's conf_print() logs, without log prefixes or newlines.
    public func summaryLines() -> [String] {
        var lines: [String] = []
        let template4 = isLocalMode ? nil : ipv4?.templateInterface
        let template6 = isLocalMode ? nil : ipv6?.templateInterface
        if template4 != nil || template6 != nil {
            lines.append("Template interface: " + familyPair(template4, template6))
        }
        let outbound4 = options.outboundInterface4
        let outbound6 = options.outboundInterface6
        if outbound4 != nil || outbound6 != nil {
            lines.append("Outbound interface: " + familyPair(outbound4, outbound6))
        }
        let outboundAddress4 = options.outboundAddress4?.description
        let outboundAddress6 = options.outboundAddress6?.description
        if outboundAddress4 != nil || outboundAddress6 != nil {
            lines.append("Outbound address: "
                + [outboundAddress4, outboundAddress6].compactMap { $0 }.joined(separator: ", "))
        }
        if mode == .pasta {
            lines.append("Namespace interface: \(namespaceInterfaceName)")
        }
        lines.append("MAC:")
        lines.append("    host: \(options.ourMAC)")

        if let ipv4 {
            if let mapped = ipv4.mapHostLoopback {
                lines.append("    NAT to host 127.0.0.1: \(mapped)")
            }
            if dhcpEnabled {
                lines.append("DHCP:")
                lines.append("    assign: \(ipv4.address)")
                lines.append("    mask: \(IPv4Address(IPv4Address.mask(prefixLength: ipv4.prefixLength)))")
                lines.append("    router: \(ipv4.gateway ?? .any)")
            }
            lines += listLines("DNS:", ipv4.dns.map(\.description))
            lines += listLines("DNS search list:", searchDomains)
        }
        if let ipv6 {
            if let mapped = ipv6.mapHostLoopback {
                lines.append("    NAT to host ::1: \(mapped)")
            }
            let header: String? = switch (ndpEnabled, dhcpv6Enabled) {
            case (true, true): "NDP/DHCPv6:"
            case (false, true): "DHCPv6:"
            case (true, false): "NDP:"
            case (false, false): nil
            }
            if let header {
                lines.append(header)
                lines.append("    assign: \(ipv6.address ?? .any)")
                lines.append("    router: \(ipv6.gateway ?? .any)")
                lines.append("    our link-local: \(ipv6.ourLinkLocal)")
            }
            lines += listLines("DNS:", ipv6.dns.map(\.description))
            lines += listLines("DNS search list:", searchDomains)
        }
        return lines
    }

    /// "NAME4 (IPv4), NAME6 (IPv6)" with absent parts (and the comma) left out.
    private func familyPair(_ name4: String?, _ name6: String?) -> String {
        [name4.map { "\($0) (IPv4)" }, name6.map { "\($0) (IPv6)" }].compactMap { $0 }.joined(separator: ", ")
    }

    /// A header line followed by indented items, or nothing for no items.
    private func listLines(_ header: String, _ items: [String]) -> [String] {
        items.isEmpty ? [] : [header] + items.map { "    \($0)" }
    }
}
