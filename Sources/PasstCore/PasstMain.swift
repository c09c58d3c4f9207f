// Entry point shared by the passt and pasta executables: program name -> mode, command line ->
// options, logger set-up, host discovery -> configuration.
//
// Theory of operation: as upstream, one program serves both modes and argv[0]'s basename picks one
// (pasta is usually a symlink to passt). While the command line is parsed the logger is still
// unconfigured, so every message goes to stderr as plain text; a fatal option error is logged
// there (after getopt's diagnostics, followed by the usage text) and we exit 1. -h and --version
// print on stdout and exit 0. After parsing, the logger is set up as upstream's conf() does
// (log file, or syslog; level from -d/--trace/-q, debug meaning timestamped stderr), then the
// configuration is resolved against the host (rtnetlink and resolv.conf) and its summary logged at
// info level. pasta then runs its daemon (PastaDaemon), passt its qemu front end (PasstDaemon).
import Glibc
import PasstConfig
import PasstSys

/// Runs passt or pasta.
public enum PasstMain {
    /// Runs the program named by argv[0] and returns its exit status.
    public static func run(_ arguments: [String]) -> Int32 {
        let log = Logger.shared
        let programName = arguments.first ?? ""
        guard let mode = ProgramMode(programPath: programName) else {
            log.error("\(programName): program name must contain 'passt' or 'pasta'")
            return 1
        }

        let parsed: ParsedCommandLine
        do {
            parsed = try CommandLineParser.parse(arguments, mode: mode)
        } catch {
            error.warnings.forEach { log.warning($0) }
            log.error(error.message)
            if error.showsUsage { write(Usage.text(mode: mode, programName: programName), to: STDERR_FILENO) }
            return 1
        }
        parsed.warnings.forEach { log.warning($0) }

        switch parsed.request {
        case .help:
            write(Usage.text(mode: mode, programName: programName), to: STDOUT_FILENO)
            return 0
        case .version:
            write(Usage.versionText(mode: mode), to: STDOUT_FILENO)
            return 0
        case .printCapabilities:
            Usage.capabilityLines.forEach { log.info($0) }
            return 0
        case .run(let options):
            Isolation.startUp(keeping: options.tapFD)
            return configure(options, log: log)
        }
    }

    /// Sets up logging for `options`, resolves and logs the configuration; returns the exit status.
    private static func configure(_ options: Options, log: Logger) -> Int32 {
        if let path = options.logFile {
            do {
                try log.openFile(name: options.mode.rawValue, version: Usage.version, path: path,
                                 maxSize: options.logSize)
            } catch {
                log.error("Couldn't open log file \(path): \(error)")
                return 1
            }
        } else {
            log.openSyslog(ident: options.mode.rawValue)
        }
        log.configure(level: options.trace ? .trace : options.debug ? .debug : options.quiet ? .warning : .info)

        let configuration: Configuration
        do {
            configuration = try Configuration.resolve(options: options, host: discoverHost(options, log: log))
        } catch {
            error.warnings.forEach { log.warning($0) }
            log.error(error.message)
            return 1
        }
        configuration.messages.forEach { log.emit($0.level, $0.text) }
        if configuration.isSummaryLogged {
            configuration.summaryLines().forEach { log.info($0) }
        }
        switch options.mode {
        case .pasta:
            return PastaDaemon.run(configuration: configuration)
        case .passt:
            return PasstDaemon.run(configuration: configuration)
        }
    }

    /// What the host's network looks like (spec §3.1, §3.2): per-family templates from rtnetlink
    /// (nil where no template exists or netlink fails, with a warning) and resolv.conf.
    static func discoverHost(_ options: Options, log: Logger) -> HostNetwork {
        let resolver = ResolvConf.load()
        let netlink: Netlink
        do {
            netlink = try Netlink()
        } catch {
            log.warning("Couldn't open netlink socket: \(error)")
            return HostNetwork(resolver: resolver)
        }
        var host = HostNetwork(resolver: resolver)
        do {
            host.ipv4 = try HostDiscovery.discoverIPv4(using: netlink, interface: options.templateInterface4)
        } catch {
            log.warning("IPv4 host discovery failed: \(error)")
        }
        do {
            host.ipv6 = try HostDiscovery.discoverIPv6(using: netlink, interface: options.templateInterface6)
        } catch {
            log.warning("IPv6 host discovery failed: \(error)")
        }
        return host
    }

    /// Writes `text` whole to file descriptor `fd` (usage and version texts, not log messages).
    private static func write(_ text: String, to fd: Int32) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            bytes = bytes.dropFirst(written)
        }
    }
}
