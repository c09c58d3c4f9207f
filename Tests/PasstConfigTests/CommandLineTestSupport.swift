// Helpers shared by the command line tests: a fixed system environment and short parse calls.
//
// The environment makes tests independent of the machine: interfaces "lo" and "eth0" exist, every
// other name fails with ENODEV, and the ephemeral port range is Linux's default 32768-60999.
import Glibc
import PasstConfig
import PasstWire

/// Interfaces lo (1) and eth0 (2), ephemeral ports 32768...60999.
let testEnvironment = ParseEnvironment(
    interfaceIndex: { name in ["lo": 1, "eth0": 2][name] ?? -ENODEV },
    ephemeralPorts: { (EphemeralPortRange(first: 32768, last: 60999), nil) })

/// Ports 1...65535 outside the test environment's ephemeral range.
let nonEphemeralPortCount = 65535 - (60999 - 32768 + 1)

/// Parses `arguments` (without argv[0]) as `mode`, returning the full result.
func parseCommandLine(_ mode: ProgramMode, _ arguments: [String]) throws(ConfigError) -> ParsedCommandLine {
    try CommandLineParser.parse([mode.rawValue] + arguments, mode: mode, environment: testEnvironment)
}

/// Parses `arguments` as `mode` and returns the options; the command line must ask to run.
func parseOptions(_ mode: ProgramMode, _ arguments: [String]) throws -> Options {
    let parsed = try parseCommandLine(mode, arguments)
    guard case .run(let options) = parsed.request else { throw UnexpectedRequest(request: parsed.request) }
    return options
}

/// The warnings of a successful parse.
func parseWarnings(_ mode: ProgramMode, _ arguments: [String]) throws -> [String] {
    try parseCommandLine(mode, arguments).warnings
}

/// The error a parse fails with, or nil if it succeeds.
func parseError(_ mode: ProgramMode, _ arguments: [String]) -> ConfigError? {
    do {
        _ = try parseCommandLine(mode, arguments)
        return nil
    } catch {
        return error
    }
}

/// Thrown when a command line asks for help/version instead of running.
struct UnexpectedRequest: Error {
    let request: CommandLineRequest
}

/// A host with IPv4 192.0.2.2/24 via 192.0.2.1 and IPv6 2001:db8::2 via fe80::1 on eth0.
func typicalHost(nameservers4: [IPv4Address] = [], nameservers6: [IPv6Address] = [],
                 search: [String] = []) -> HostNetwork {
    HostNetwork(
        ipv4: HostIPv4(interfaceName: "eth0", interfaceIndex: 2, address: IPv4Address(192, 0, 2, 2), prefixLength: 24,
                       gateway: IPv4Address(192, 0, 2, 1)),
        ipv6: HostIPv6(interfaceName: "eth0", interfaceIndex: 2, address: IPv6Address("2001:db8::2"),
                       prefixLength: 64, gateway: IPv6Address("fe80::1"), linkLocal: IPv6Address("fe80::2")),
        resolver: ResolverConfig(nameservers4: nameservers4, nameservers6: nameservers6, search: search))
}

/// An unprivileged process identity (UID/GID 1000).
let userIdentity = ProcessIdentity(effectiveUID: 1000, effectiveGID: 1000, isInInitUserNamespace: true,
                                   nobody: RunAs(uid: 65534, gid: 65534))

/// Parses `arguments` as `mode` and resolves them against `host` as an unprivileged user.
func resolveConfiguration(_ mode: ProgramMode, _ arguments: [String], host: HostNetwork) throws -> Configuration {
    try Configuration.resolve(options: parseOptions(mode, arguments), host: host, identity: userIdentity)
}
