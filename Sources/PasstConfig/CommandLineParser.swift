// The command line of passt and pasta (spec §2): argv in, `Options` (or help/version) out.
//
// Theory of operation: upstream parses in three passes over the same argv, so the relative order
// of options mostly doesn't matter:
//   1. every option except -t -u -T -U -D, in order; the first bad value dies at once, -h/--version/
//      --print-capabilities end parsing at once; then the checks that need all of pass 1
//      (--no-copy-* need --config-net) and --runas resolution;
//   2. -t, -u and -D, once protocol switches and addresses are known (and -D none has cleared
//      --dns-forward/--dns-host whatever their position);
//   then the trailing operands: pasta's PID, command or --netns, passt's "Extra non-option argument";
//   3. -T and -U (upstream: after joining the namespace).
// We scan argv once with getopt_long's rules (GetoptScanner) and run the passes over the result,
// producing the same first error, warnings and values as upstream. Errors are thrown as
// `ConfigError` with upstream's text and the warnings issued before them; nothing is printed here.
// Host-dependent defaults are left to `Configuration.resolve`.
import Glibc
import PasstSys
import PasstWire

/// What the command line asks for.
public enum CommandLineRequest: Equatable, Sendable {
    /// Run with these options.
    case run(Options)
    /// -h/--help: print the usage text on stdout and exit 0.
    case help
    /// --version: print the version text on stdout and exit 0.
    case version
    /// --print-capabilities: print the vhost-user capabilities and exit 0.
    case printCapabilities
}

/// A successfully parsed command line: the request and the warnings issued while parsing.
public struct ParsedCommandLine: Equatable, Sendable {
    public var request: CommandLineRequest
    public var warnings: [String]
}

/// Parses passt/pasta command lines.
public enum CommandLineParser {
    /// Parses `arguments` (argv, argv[0] included) for `mode`; throws upstream's error on bad input.
    public static func parse(_ arguments: [String], mode: ProgramMode,
                             environment: ParseEnvironment = .system) throws(ConfigError) -> ParsedCommandLine {
        var parse = CommandLineParse(mode: mode, environment: environment)
        do {
            let request = try parse.run(GetoptScanner.scan(arguments, mode: mode))
            return ParsedCommandLine(request: request, warnings: parse.warnings)
        } catch {
            throw ConfigError(error.message, showsUsage: error.showsUsage, warnings: parse.warnings)
        }
    }
}

/// The state of one parse: options so far, warnings, and what pass 1 leaves for later checks.
private struct CommandLineParse {
    let mode: ProgramMode
    let environment: ParseEnvironment
    var options: Options
    var warnings: [String] = []
    var noCopyRoutesGiven = false
    var noCopyAddressesGiven = false
    var runAsText: String?
    var netnsOption: String?

    /// Starts a parse with upstream's defaults for `mode`.
    init(mode: ProgramMode, environment: ParseEnvironment) {
        self.mode = mode
        self.environment = environment
        options = Options(mode: mode)
    }

    /// Runs the three passes over a scanned command line.
    mutating func run(_ scan: GetoptScan) throws(ConfigError) -> CommandLineRequest {
        for event in scan.events {
            switch event {
            case .error(let diagnostic):
                throw ConfigError(diagnostic, showsUsage: true)
            case .option(let option, let argument):
                if let request = try applyGeneral(option, argument ?? "") { return request }
            }
        }
        try finishGeneralPass()

        let ephemeral = environment.ephemeralPorts()
        if let warning = ephemeral.warning { warnings.append(warning) }
        let ports = PortSpecParser(mode: mode, tcpDisabled: options.noTCP, udpDisabled: options.noUDP,
                                   ephemeralPorts: ephemeral.range)
        var tcpPorts: PortSpec?
        var udpPorts: PortSpec?
        for case .option(let option, let argument?) in scan.events {
            switch option {
            case .tcpPorts: try ports.apply(option: "t", text: argument, to: &tcpPorts, warnings: &warnings)
            case .udpPorts: try ports.apply(option: "u", text: argument, to: &udpPorts, warnings: &warnings)
            case .dns: try applyDNS(argument)
            default: break
            }
        }

        try applyOperands(scan.operands)

        var tcpNamespacePorts: PortSpec?
        var udpNamespacePorts: PortSpec?
        for case .option(let option, let argument?) in scan.events {
            switch option {
            case .tcpNamespacePorts:
                try ports.apply(option: "T", text: argument, to: &tcpNamespacePorts, warnings: &warnings)
            case .udpNamespacePorts:
                try ports.apply(option: "U", text: argument, to: &udpNamespacePorts, warnings: &warnings)
            default: break
            }
        }
        if options.configNet { options.noRA = true }
        options.tcpPorts = tcpPorts ?? options.tcpPorts
        options.udpPorts = udpPorts ?? options.udpPorts
        options.tcpNamespacePorts = tcpNamespacePorts ?? options.tcpNamespacePorts
        options.udpNamespacePorts = udpNamespacePorts ?? options.udpNamespacePorts
        return .run(options)
    }

    /// Throws "--OPT is for pasta mode only" unless in pasta mode.
    private func requirePasta(_ name: String) throws(ConfigError) {
        if mode != .pasta { throw ConfigError("--\(name) is for pasta mode only") }
    }

    /// Throws "--OPT is for passt mode only" in pasta mode.
    private func requirePasst(_ name: String) throws(ConfigError) {
        if mode == .pasta { throw ConfigError("--\(name) is for passt mode only") }
    }

    /// Pass 1: applies one option; returns a request when the option ends parsing (-h, --version).
    private mutating func applyGeneral(_ option: CommandLineOption,
                                       _ argument: String) throws(ConfigError) -> CommandLineRequest? {
        switch option {
        case .userNamespace:
            try requirePasta("userns")
            guard (1..<ConfigLimits.pathMax).contains(argument.utf8.count) else {
                throw ConfigError("Invalid userns: \(argument)")
            }
            options.userNamespace = argument
            options.netnsOnly = false
        case .netns:
            try requirePasta("netns")
            let path = argument.contains("/") ? argument : "/run/netns/" + argument
            guard path.utf8.count <= ConfigLimits.pathMax else {
                throw ConfigError("Network namespace name/path \(argument) too long")
            }
            netnsOption = path
        case .namespaceMAC:
            try requirePasta("ns-mac-addr")
            options.namespaceMAC = try mac(argument)
        case .dhcpDNS:
            try requirePasta("dhcp-dns")
            options.dhcpDNS = true
        case .noDHCPDNS:
            try requirePasst("no-dhcp-dns")
            options.dhcpDNS = false
        case .dhcpSearch:
            try requirePasta("dhcp-search")
            options.dhcpSearch = true
        case .noDHCPSearch:
            try requirePasst("no-dhcp-search")
            options.dhcpSearch = false
        case .dnsForward:
            if let address = IPv6Address(argument), !address.isUnspecified, !address.isLoopback {
                options.dnsForward6 = address
            } else if let address = IPv4Address(argument), !address.isUnspecified, !address.isBroadcast,
                      !address.isLoopback {
                options.dnsForward4 = address
            } else {
                throw ConfigError("Invalid DNS forwarding address: \(argument)")
            }
        case .noNetnsQuit:
            try requirePasta("no-netns-quit")
            options.noNetnsQuit = true
        case .trace:
            options.trace = true
            options.debug = true
            options.quiet = false
        case .runAs:
            runAsText = argument
        case .logSize:
            let size = CNumber.long(argument, base: 0)
            let bytes = UInt(bitPattern: size.value)
            guard !size.outOfRange, bytes >= ConfigLimits.minimumLogSize else {
                throw ConfigError("Invalid --log-size: \(argument)")
            }
            options.logSize = bytes
        case .version:
            return .version
        case .outboundInterface4:
            options.outboundInterface4 = try interfaceName(argument)
        case .outboundInterface6:
            options.outboundInterface6 = try interfaceName(argument)
        case .configNet:
            try requirePasta("config-net")
            options.configNet = true
        case .noCopyRoutes:
            try requirePasta("no-copy-routes")
            warnings.append("--no-copy-routes will be dropped soon")
            options.noCopyRoutes4 = true
            options.noCopyRoutes6 = true
            noCopyRoutesGiven = true
        case .noCopyAddresses:
            try requirePasta("no-copy-addrs")
            warnings.append("--no-copy-addrs will be dropped soon")
            options.noCopyAddresses4 = true
            options.noCopyAddresses6 = true
            noCopyAddressesGiven = true
        case .netnsOnly:
            try requirePasta("netns-only")
            options.netnsOnly = true
            options.userNamespace = nil
        case .mapHostLoopback:
            if argument == "none" {
                options.mapHostLoopback4 = nil
                options.mapHostLoopback6 = nil
                options.noMapGateway = true
            } else if let address = IPv6Address(argument), OptionValues.isMappable(address) {
                options.mapHostLoopback6 = address
            } else if let address = IPv4Address(argument), OptionValues.isMappable(address) {
                options.mapHostLoopback4 = address
            } else {
                throw ConfigError("Invalid address to remap to host: \(argument)")
            }
        case .mapGuestAddress:
            if argument == "none" {
                options.mapGuestAddress4 = nil
                options.mapGuestAddress6 = nil
            } else if let address = IPv6Address(argument), OptionValues.isMappable(address) {
                options.mapGuestAddress6 = address
            } else if let address = IPv4Address(argument), OptionValues.isMappable(address) {
                options.mapGuestAddress4 = address
            } else {
                throw ConfigError("Invalid address to remap to host: \(argument)")
            }
        case .hostLoopbackToNamespaceLoopback:
            try requirePasta("host-lo-to-ns-lo")
            options.hostLoopbackToNamespaceLoopback = true
        case .dnsHost:
            if let address = IPv6Address(argument), !address.isUnspecified {
                options.dnsHost6 = address
            } else if let address = IPv4Address(argument), !address.isUnspecified, !address.isBroadcast {
                options.dnsHost4 = address
            } else {
                throw ConfigError("Invalid host nameserver address: \(argument)")
            }
        case .vhostUser:
            try requirePasst("vhost-user")
            options.vhostUser = true
        case .printCapabilities:
            return .printCapabilities
        case .noTCP: options.noTCP = true
        case .noUDP: options.noUDP = true
        case .noICMP: options.noICMP = true
        case .noDHCP: options.noDHCP = true
        case .noDHCPv6: options.noDHCPv6 = true
        case .noNDP: options.noNDP = true
        case .noRA: options.noRA = true
        case .noSplice: options.noSplice = true
        case .freebind: options.freebind = true
        case .noMapGateway: options.noMapGateway = true
        case .debug:
            options.debug = true
            options.quiet = false
        case .stderr:
            warnings.append("--stderr will be dropped soon")
        case .logFile:
            options.logFile = argument
        case .quiet:
            options.quiet = true
            options.debug = false
            options.trace = false
        case .foreground:
            options.foreground = true
        case .socket:
            guard (1..<ConfigLimits.unixPathMax).contains(argument.utf8.count) else {
                throw ConfigError("Invalid socket path: \(argument)")
            }
            options.socketPath = argument
            options.tapFD = nil
        case .fd:
            let fd = CNumber.long(argument, base: 0)
            guard !fd.outOfRange, fd.value > 2, fd.value <= Int(Int32.max) else {
                throw ConfigError("Invalid --fd: \(argument)")
            }
            options.tapFD = Int32(fd.value)
            options.oneOff = true
            options.socketPath = nil
        case .namespaceInterfaceName:
            options.namespaceInterfaceName = try interfaceName(argument)
        case .pcap:
            guard (1..<ConfigLimits.pathMax).contains(argument.utf8.count) else {
                throw ConfigError("Invalid pcap path: \(argument)")
            }
            options.pcapFile = argument
        case .pid:
            guard (1..<ConfigLimits.pathMax).contains(argument.utf8.count) else {
                throw ConfigError("Invalid PID file: \(argument)")
            }
            options.pidFile = argument
        case .mtu:
            let mtu = CNumber.long(argument, base: 0)
            if mtu.value == 0 {
                options.mtu = 0
            } else {
                guard !mtu.outOfRange, (68...65535).contains(mtu.value) else {
                    throw ConfigError("Invalid MTU: \(argument)")
                }
                options.mtu = mtu.value
            }
        case .address:
            if let address = IPv6Address(argument), OptionValues.isAssignable(address) {
                options.address6 = address
                if mode == .pasta { options.noCopyAddresses6 = true }
            } else if let address = IPv4Address(argument), OptionValues.isAssignable(address) {
                options.address4 = address
                if mode == .pasta { options.noCopyAddresses4 = true }
            } else {
                throw ConfigError("Invalid address: \(argument)")
            }
        case .netmask:
            guard let length = OptionValues.prefixLength(argument) else {
                throw ConfigError("Invalid netmask: \(argument)")
            }
            options.prefixLength4 = length
        case .macAddress:
            options.ourMAC = try mac(argument)
        case .gateway:
            if let address = IPv6Address(argument), !address.isUnspecified, !address.isLoopback {
                options.gateway6 = address
                if mode == .pasta { options.noCopyRoutes6 = true }
            } else if let address = IPv4Address(argument), !address.isUnspecified, !address.isBroadcast,
                      !address.isLoopback {
                options.gateway4 = address
                if mode == .pasta { options.noCopyRoutes4 = true }
            } else {
                throw ConfigError("Invalid gateway address: \(argument)")
            }
        case .interface:
            let index = environment.interfaceIndex(argument)
            guard index > 0 else {
                throw ConfigError("Invalid interface name \(argument): \(SyscallError(-index))")
            }
            options.interface = argument
        case .outbound:
            if let address = IPv6Address(argument), OptionValues.isAssignable(address) {
                options.outboundAddress6 = address
            } else if let address = IPv4Address(argument), !address.isUnspecified, !address.isBroadcast,
                      !address.isMulticast {
                options.outboundAddress4 = address
            } else {
                throw ConfigError("Invalid or redundant outbound address: \(argument)")
            }
        case .search:
            if argument == "none" {
                options.noSearch = true
                options.searchDomains = []
            } else {
                options.noSearch = false
                guard options.searchDomains.count < ConfigLimits.searchDomains,
                      argument.utf8.count < ConfigLimits.domainNameSize else {
                    throw ConfigError("Cannot use DNS search domain \(argument)")
                }
                options.searchDomains.append(argument)
            }
        case .ipv4Only:
            options.ipv4Only = true
            options.ipv6Only = false
        case .ipv6Only:
            options.ipv6Only = true
            options.ipv4Only = false
        case .oneOff:
            try requirePasst("one-off")
            options.oneOff = true
        case .tcpPorts, .udpPorts, .tcpNamespacePorts, .udpNamespacePorts, .dns:
            break
        case .help:
            return .help
        }
        return nil
    }

    /// End of pass 1: checks needing every general option, then --runas.
    private mutating func finishGeneralPass() throws(ConfigError) {
        if mode == .pasta && !options.configNet {
            if noCopyRoutesGiven { throw ConfigError("--no-copy-routes needs --config-net") }
            if noCopyAddressesGiven { throw ConfigError("--no-copy-addrs needs --config-net") }
        }
        if let runAsText {
            guard let ids = OptionValues.runAs(runAsText) else {
                let userPart = runAsText.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)[0]
                throw ConfigError("Invalid --runas option: \(userPart)")
            }
            options.runAs = ids
        }
    }

    /// Pass 2: one -D option; "none" clears every DNS setting including --dns-forward/--dns-host.
    private mutating func applyDNS(_ argument: String) throws(ConfigError) {
        if argument == "none" {
            options.noDNS = true
            options.dns4 = []
            options.dns6 = []
            options.dnsForward4 = nil
            options.dnsForward6 = nil
            options.dnsHost4 = nil
            options.dnsHost6 = nil
            return
        }
        options.noDNS = false
        if let address = IPv4Address(argument) {
            if options.dns4.count < ConfigLimits.nameservers { options.dns4.append(address) }
        } else if let address = IPv6Address(argument) {
            if options.dns6.count < ConfigLimits.nameservers { options.dns6.append(address) }
        } else {
            throw ConfigError("Cannot use DNS address \(argument)")
        }
    }

    /// The trailing non-option arguments: pasta's PID, command or --netns; none allowed for passt.
    private mutating func applyOperands(_ operands: [String]) throws(ConfigError) {
        guard mode == .pasta else {
            if let first = operands.first { throw ConfigError("Extra non-option argument: \(first)") }
            return
        }
        if let netnsOption {
            guard operands.isEmpty else { throw ConfigError("Both --netns and PID or command given") }
            options.pastaTarget = .netns(path: netnsOption)
            if options.userNamespace == nil { options.netnsOnly = true }
            return
        }
        if operands.count == 1 {
            let pid = CNumber.long(operands[0], base: 10)
            if pid.consumedAll {
                guard !pid.outOfRange, (0...Int(Int32.max)).contains(pid.value) else {
                    throw ConfigError("Invalid PID \(operands[0])")
                }
                options.pastaTarget = .pid(Int32(pid.value))
                if options.userNamespace == nil { options.userNamespace = "/proc/\(pid.value)/ns/user" }
                return
            }
        }
        options.pastaTarget = .spawn(command: operands)
    }

    /// A strict MAC address, or upstream's error.
    private func mac(_ text: String) throws(ConfigError) -> MACAddress {
        guard let address = OptionValues.mac(text) else { throw ConfigError("Invalid MAC address: \(text)") }
        return address
    }

    /// An interface name of 1...15 bytes, or upstream's error.
    private func interfaceName(_ text: String) throws(ConfigError) -> String {
        guard (1..<ConfigLimits.interfaceNameSize).contains(text.utf8.count) else {
            throw ConfigError("Invalid interface name: \(text)")
        }
        return text
    }
}
