// Every fatal option error of spec §2 with upstream's exact text, for both modes.
import PasstConfig
import Testing

/// One command line that must fail, and upstream's message for it.
struct FailingCommandLine: Sendable, CustomTestStringConvertible {
    let mode: ProgramMode
    let arguments: [String]
    let message: String

    init(_ mode: ProgramMode, _ arguments: [String], _ message: String) {
        self.mode = mode
        self.arguments = arguments
        self.message = message
    }

    var testDescription: String { "\(mode.rawValue) \(arguments.joined(separator: " "))" }
}

private let longPath = String(repeating: "p", count: 4096)

/// Option value errors (no usage text follows them).
let optionValueErrors: [FailingCommandLine] = [
    // Mode restrictions.
    .init(.passt, ["--userns", "/proc/1/ns/user"], "--userns is for pasta mode only"),
    .init(.passt, ["--netns", "ns1"], "--netns is for pasta mode only"),
    .init(.passt, ["--ns-mac-addr", "12:34:56:78:9a:bc"], "--ns-mac-addr is for pasta mode only"),
    .init(.passt, ["--dhcp-dns"], "--dhcp-dns is for pasta mode only"),
    .init(.passt, ["--dhcp-search"], "--dhcp-search is for pasta mode only"),
    .init(.passt, ["--no-netns-quit"], "--no-netns-quit is for pasta mode only"),
    .init(.passt, ["--config-net"], "--config-net is for pasta mode only"),
    .init(.passt, ["--no-copy-routes"], "--no-copy-routes is for pasta mode only"),
    .init(.passt, ["--no-copy-addrs"], "--no-copy-addrs is for pasta mode only"),
    .init(.passt, ["--netns-only"], "--netns-only is for pasta mode only"),
    .init(.passt, ["--host-lo-to-ns-lo"], "--host-lo-to-ns-lo is for pasta mode only"),
    .init(.pasta, ["--no-dhcp-dns"], "--no-dhcp-dns is for passt mode only"),
    .init(.pasta, ["--no-dhcp-search"], "--no-dhcp-search is for passt mode only"),
    .init(.pasta, ["--vhost-user"], "--vhost-user is for passt mode only"),
    .init(.pasta, ["--one-off"], "--one-off is for passt mode only"),
    // Paths and names.
    .init(.pasta, ["--userns", ""], "Invalid userns: "),
    .init(.pasta, ["--userns", longPath], "Invalid userns: \(longPath)"),
    .init(.pasta, ["--netns", "/" + longPath], "Network namespace name/path /\(longPath) too long"),
    .init(.passt, ["-s", ""], "Invalid socket path: "),
    .init(.passt, ["-s", String(repeating: "s", count: 108)], "Invalid socket path: \(String(repeating: "s", count: 108))"),
    .init(.passt, ["-p", ""], "Invalid pcap path: "),
    .init(.passt, ["-p", longPath], "Invalid pcap path: \(longPath)"),
    .init(.passt, ["-P", ""], "Invalid PID file: "),
    .init(.pasta, ["-I", ""], "Invalid interface name: "),
    .init(.pasta, ["-I", "abcdefghijklmnop"], "Invalid interface name: abcdefghijklmnop"),
    .init(.passt, ["--outbound-if4", "abcdefghijklmnop"], "Invalid interface name: abcdefghijklmnop"),
    .init(.passt, ["--outbound-if6", ""], "Invalid interface name: "),
    .init(.passt, ["-i", "eth9"], "Invalid interface name eth9: No such device"),
    .init(.pasta, ["--interface", "wlan0"], "Invalid interface name wlan0: No such device"),
    // MAC addresses.
    .init(.passt, ["-M", "9a:55:9a:55:9a"], "Invalid MAC address: 9a:55:9a:55:9a"),
    .init(.passt, ["-M", "9a:55:9a:55:9a:5"], "Invalid MAC address: 9a:55:9a:55:9a:5"),
    .init(.passt, ["-M", "9a:55:9a:55:9a:555"], "Invalid MAC address: 9a:55:9a:55:9a:555"),
    .init(.passt, ["-M", "9a-55-9a-55-9a-55"], "Invalid MAC address: 9a-55-9a-55-9a-55"),
    .init(.passt, ["-M", "9g:55:9a:55:9a:55"], "Invalid MAC address: 9g:55:9a:55:9a:55"),
    .init(.pasta, ["--ns-mac-addr", "9a:55:9a:55:9a:5:"], "Invalid MAC address: 9a:55:9a:55:9a:5:"),
    // Numbers.
    .init(.passt, ["--log-size", "1000"], "Invalid --log-size: 1000"),
    .init(.passt, ["--log-size", "40959"], "Invalid --log-size: 40959"),
    .init(.passt, ["--log-size", "size"], "Invalid --log-size: size"),
    .init(.passt, ["-F", "2"], "Invalid --fd: 2"),
    .init(.passt, ["-F", "0"], "Invalid --fd: 0"),
    .init(.pasta, ["--fd", "-1"], "Invalid --fd: -1"),
    .init(.passt, ["-F", "2147483648"], "Invalid --fd: 2147483648"),
    .init(.passt, ["-m", "67"], "Invalid MTU: 67"),
    .init(.passt, ["-m", "65536"], "Invalid MTU: 65536"),
    .init(.pasta, ["--mtu", "-1"], "Invalid MTU: -1"),
    .init(.passt, ["-n", "33"], "Invalid netmask: 33"),
    .init(.passt, ["-n", "-1"], "Invalid netmask: -1"),
    .init(.passt, ["-n", "255.0.255.0"], "Invalid netmask: 255.0.255.0"),
    .init(.passt, ["-n", "0.255.255.255"], "Invalid netmask: 0.255.255.255"),
    // Addresses.
    .init(.passt, ["-a", "0.0.0.0"], "Invalid address: 0.0.0.0"),
    .init(.passt, ["-a", "255.255.255.255"], "Invalid address: 255.255.255.255"),
    .init(.passt, ["-a", "127.0.0.1"], "Invalid address: 127.0.0.1"),
    .init(.passt, ["-a", "127.1.2.3"], "Invalid address: 127.1.2.3"),
    .init(.passt, ["-a", "224.0.0.1"], "Invalid address: 224.0.0.1"),
    .init(.passt, ["-a", "::"], "Invalid address: ::"),
    .init(.passt, ["-a", "::1"], "Invalid address: ::1"),
    .init(.passt, ["-a", "::ffff:192.0.2.1"], "Invalid address: ::ffff:192.0.2.1"),
    .init(.passt, ["-a", "::192.0.2.1"], "Invalid address: ::192.0.2.1"),
    .init(.pasta, ["-a", "ff02::1"], "Invalid address: ff02::1"),
    .init(.pasta, ["-a", "192.0.2"], "Invalid address: 192.0.2"),
    .init(.pasta, ["-a", "192.0.2.01"], "Invalid address: 192.0.2.01"),
    .init(.passt, ["-g", "0.0.0.0"], "Invalid gateway address: 0.0.0.0"),
    .init(.passt, ["-g", "255.255.255.255"], "Invalid gateway address: 255.255.255.255"),
    .init(.passt, ["-g", "127.0.0.1"], "Invalid gateway address: 127.0.0.1"),
    .init(.passt, ["-g", "::"], "Invalid gateway address: ::"),
    .init(.pasta, ["-g", "::1"], "Invalid gateway address: ::1"),
    .init(.pasta, ["-g", "gateway"], "Invalid gateway address: gateway"),
    .init(.passt, ["-o", "0.0.0.0"], "Invalid or redundant outbound address: 0.0.0.0"),
    .init(.passt, ["-o", "255.255.255.255"], "Invalid or redundant outbound address: 255.255.255.255"),
    .init(.passt, ["-o", "224.0.0.1"], "Invalid or redundant outbound address: 224.0.0.1"),
    .init(.passt, ["-o", "::"], "Invalid or redundant outbound address: ::"),
    .init(.passt, ["-o", "::1"], "Invalid or redundant outbound address: ::1"),
    .init(.pasta, ["-o", "::ffff:192.0.2.1"], "Invalid or redundant outbound address: ::ffff:192.0.2.1"),
    .init(.pasta, ["-o", "ff02::1"], "Invalid or redundant outbound address: ff02::1"),
    .init(.passt, ["--dns-forward", "0.0.0.0"], "Invalid DNS forwarding address: 0.0.0.0"),
    .init(.passt, ["--dns-forward", "255.255.255.255"], "Invalid DNS forwarding address: 255.255.255.255"),
    .init(.passt, ["--dns-forward", "127.0.0.53"], "Invalid DNS forwarding address: 127.0.0.53"),
    .init(.pasta, ["--dns-forward", "::"], "Invalid DNS forwarding address: ::"),
    .init(.pasta, ["--dns-forward", "::1"], "Invalid DNS forwarding address: ::1"),
    .init(.pasta, ["--dns-forward", "dns"], "Invalid DNS forwarding address: dns"),
    .init(.passt, ["--dns-host", "0.0.0.0"], "Invalid host nameserver address: 0.0.0.0"),
    .init(.passt, ["--dns-host", "255.255.255.255"], "Invalid host nameserver address: 255.255.255.255"),
    .init(.pasta, ["--dns-host", "::"], "Invalid host nameserver address: ::"),
    .init(.pasta, ["--dns-host", "resolver"], "Invalid host nameserver address: resolver"),
    .init(.passt, ["--map-host-loopback", "0.0.0.0"], "Invalid address to remap to host: 0.0.0.0"),
    .init(.passt, ["--map-host-loopback", "127.0.0.1"], "Invalid address to remap to host: 127.0.0.1"),
    .init(.passt, ["--map-host-loopback", "224.0.0.1"], "Invalid address to remap to host: 224.0.0.1"),
    .init(.pasta, ["--map-host-loopback", "::"], "Invalid address to remap to host: ::"),
    .init(.pasta, ["--map-host-loopback", "::1"], "Invalid address to remap to host: ::1"),
    .init(.pasta, ["--map-host-loopback", "ff02::1"], "Invalid address to remap to host: ff02::1"),
    .init(.pasta, ["--map-guest-addr", "127.0.0.1"], "Invalid address to remap to host: 127.0.0.1"),
    .init(.pasta, ["--map-guest-addr", "::"], "Invalid address to remap to host: ::"),
    .init(.passt, ["--map-guest-addr", "guest"], "Invalid address to remap to host: guest"),
    // DNS lists.
    .init(.passt, ["-D", "dns.example"], "Cannot use DNS address dns.example"),
    .init(.pasta, ["-S", "a", "-S", "b", "-S", "c", "-S", "d", "-S", "e", "-S", "f", "-S", "g"],
          "Cannot use DNS search domain g"),
    .init(.passt, ["-S", String(repeating: "d", count: 1025)],
          "Cannot use DNS search domain \(String(repeating: "d", count: 1025))"),
    // Checks after the first pass.
    .init(.pasta, ["--no-copy-routes"], "--no-copy-routes needs --config-net"),
    .init(.pasta, ["--no-copy-addrs"], "--no-copy-addrs needs --config-net"),
    .init(.passt, ["--runas", "no-such-user"], "Invalid --runas option: no-such-user"),
    .init(.passt, ["--runas", "root"], "Invalid --runas option: root"),
    .init(.passt, ["--runas", "no-such-user:root"], "Invalid --runas option: no-such-user"),
    .init(.pasta, ["--runas", "1000:no-such-group"], "Invalid --runas option: 1000"),
    // Operands.
    .init(.passt, ["extra"], "Extra non-option argument: extra"),
    .init(.passt, ["-f", "--", "-d"], "Extra non-option argument: -d"),
    .init(.pasta, ["--netns", "ns1", "1234"], "Both --netns and PID or command given"),
    .init(.pasta, ["--netns", "/run/netns/ns1", "sh", "-c", "true"], "Both --netns and PID or command given"),
    .init(.pasta, ["--", "-1"], "Invalid PID -1"),
    .init(.pasta, ["99999999999"], "Invalid PID 99999999999"),
]

/// getopt's own diagnostics (upstream prints the usage text on stderr after them).
let getoptErrors: [FailingCommandLine] = [
    .init(.passt, ["--foo"], "passt: unrecognized option '--foo'"),
    .init(.pasta, ["--map-gw"], "pasta: unrecognized option '--map-gw'"),
    .init(.passt, ["-x"], "passt: invalid option -- 'x'"),
    .init(.passt, ["-T", "22"], "passt: invalid option -- 'T'"),
    .init(.passt, ["-I", "tap0"], "passt: invalid option -- 'I'"),
    .init(.pasta, ["-1"], "pasta: invalid option -- '1'"),
    .init(.pasta, ["-s", "/tmp/sock"], "pasta: invalid option -- 's'"),
    .init(.passt, ["-p"], "passt: option requires an argument -- 'p'"),
    .init(.pasta, ["--pcap"], "pasta: option '--pcap' requires an argument"),
    .init(.passt, ["--debug=yes"], "passt: option '--debug' doesn't allow an argument"),
    .init(.pasta, ["--no-dh"], "pasta: option '--no-dh' is ambiguous; possibilities: '--no-dhcp' '--no-dhcpv6' '--no-dhcp-dns' '--no-dhcp-search'"),
]

@Suite("Option errors", .serialized)
struct OptionErrorTests {
    @Test("option value errors carry upstream's message", arguments: optionValueErrors)
    func valueError(_ case_: FailingCommandLine) {
        let error = parseError(case_.mode, case_.arguments)
        #expect(error?.message == case_.message)
        #expect(error?.showsUsage == false)
    }

    @Test("getopt diagnostics are glibc's text and ask for usage", arguments: getoptErrors)
    func getoptError(_ case_: FailingCommandLine) {
        let error = parseError(case_.mode, case_.arguments)
        #expect(error?.message == case_.message)
        #expect(error?.showsUsage == true)
    }

    @Test("the diagnostic names the program as invoked")
    func diagnosticUsesArgvZero() {
        #expect(throws: ConfigError("/usr/bin/pasta: unrecognized option '--map-guest-adr'", showsUsage: true)) {
            try CommandLineParser.parse(["/usr/bin/pasta", "--map-guest-adr", "x"], mode: .pasta,
                                        environment: testEnvironment)
        }
    }

    @Test("warnings before a failure travel with the error")
    func warningsBeforeFailure() {
        let error = parseError(.pasta, ["-e", "--no-copy-routes"])
        #expect(error?.message == "--no-copy-routes needs --config-net")
        #expect(error?.warnings == ["--stderr will be dropped soon", "--no-copy-routes will be dropped soon"])
    }

    @Test("the first bad option in order wins")
    func firstErrorWins() {
        #expect(parseError(.passt, ["-m", "1", "-M", "x"])?.message == "Invalid MTU: 1")
        #expect(parseError(.passt, ["-M", "x", "-m", "1"])?.message == "Invalid MAC address: x")
        #expect(parseError(.passt, ["-m", "1", "--foo"])?.message == "Invalid MTU: 1")
        #expect(parseError(.passt, ["--foo", "-m", "1"])?.message == "passt: unrecognized option '--foo'")
    }

    @Test("pass-1 errors precede -t/-D errors whatever the order")
    func generalPassFirst() {
        #expect(parseError(.passt, ["-t", "x", "-m", "1"])?.message == "Invalid MTU: 1")
        #expect(parseError(.passt, ["-D", "x", "--runas", "no-such-user"])?.message
            == "Invalid --runas option: no-such-user")
        #expect(parseError(.pasta, ["-T", "x", "-t", "y"])?.message == "Invalid port specifier y")
        #expect(parseError(.pasta, ["-T", "x", "--netns", "n", "1"])?.message == "Both --netns and PID or command given")
    }

    @Test("-h ends parsing where it appears")
    func helpPosition() throws {
        #expect(try parseCommandLine(.passt, ["-h", "--foo"]).request == .help)
        #expect(parseError(.passt, ["--foo", "-h"])?.message == "passt: unrecognized option '--foo'")
        #expect(parseError(.passt, ["--userns", "x", "-h"])?.message == "--userns is for pasta mode only")
        #expect(try parseCommandLine(.passt, ["-h", "-t", "auto"]).request == .help)
    }
}
