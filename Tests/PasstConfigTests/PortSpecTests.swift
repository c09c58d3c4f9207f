// The port specification grammar of -t/-u/-T/-U (spec §2.4): every error text and accepted form.
import PasstConfig
import PasstWire
import Testing

/// Port spec errors with upstream's texts.
let portSpecErrors: [FailingCommandLine] = [
    .init(.passt, ["-t", "auto"], "'auto' port forwarding is only allowed for pasta"),
    .init(.passt, ["-u", "auto"], "'auto' port forwarding is only allowed for pasta"),
    .init(.pasta, ["-t", "all"], "'all' port forwarding is only allowed for passt"),
    .init(.pasta, ["-U", "all"], "'all' port forwarding is only allowed for passt"),
    .init(.passt, ["-t", "22", "-t", "none"], "Port forwarding mode 'none' conflicts with previous mode"),
    .init(.passt, ["-t", "none", "-t", "all"], "Port forwarding mode 'all' conflicts with previous mode"),
    .init(.passt, ["-u", "all", "-u", "none"], "Port forwarding mode 'none' conflicts with previous mode"),
    .init(.pasta, ["-t", "auto", "-t", "auto"], "Port forwarding mode 'auto' conflicts with previous mode"),
    .init(.pasta, ["-T", "none", "-T", "auto"], "Port forwarding mode 'auto' conflicts with previous mode"),
    .init(.passt, ["-t", "all", "-t", "22"], "Specific ports cannot be specified together with all/none/auto"),
    .init(.passt, ["-u", "none", "-u", "~22"], "Specific ports cannot be specified together with all/none/auto"),
    .init(.pasta, ["-T", "auto", "-T", "22"], "Specific ports cannot be specified together with all/none/auto"),
    .init(.pasta, ["-U", "none", "-U", "53"], "Specific ports cannot be specified together with all/none/auto"),
    .init(.passt, ["--no-tcp", "-t", "22"], "TCP port forwarding requested but TCP is disabled"),
    .init(.passt, ["-t", "all", "--no-tcp"], "TCP port forwarding requested but TCP is disabled"),
    .init(.pasta, ["--no-tcp", "-t", "auto"], "TCP port forwarding requested but TCP is disabled"),
    .init(.pasta, ["--no-tcp", "-T", "22"], "TCP port forwarding requested but TCP is disabled"),
    .init(.passt, ["--no-udp", "-u", "53"], "UDP port forwarding requested but UDP is disabled"),
    .init(.pasta, ["-U", "53", "--no-udp"], "UDP port forwarding requested but UDP is disabled"),
    .init(.passt, ["-t", "~20-30,~25"], "Overlapping excluded ranges ~20-30,~25"),
    .init(.passt, ["-t", "~22,~22"], "Overlapping excluded ranges ~22,~22"),
    .init(.pasta, ["-u", "1-100,~50-60,~60-70"], "Overlapping excluded ranges 1-100,~50-60,~60-70"),
] + [
    "", "x", "22x", "22-", "-22", "30-20", "65536", "0-65536", "22:", "22:x", "22-23:30", "22-23:30-32",
    "22:23-24", "22,,23", "22,", ",22", "~", "~x", "~22x", "~30-20", "22:23:24", "/22", "1.2.3.4/",
    "256.1.1.1/22", "[1.2.3.4/22", "1.2.3.4]/22", "[]/22", "::1::2/22", "%abcdefghijklmnop/22",
    "192.0.2.1%abcdefghijklmnop/22", "1.2.3.4%eth0/x",
].map { spec in .init(.passt, ["-t", spec], "Invalid port specifier \(spec)") } + [
    .init(.pasta, ["-T", "127.0.0.1/22"], "Invalid port specifier 127.0.0.1/22"),
    .init(.pasta, ["-U", "%lo/53"], "Invalid port specifier %lo/53"),
    .init(.pasta, ["-u", "53,54x"], "Invalid port specifier 53,54x"),
    // Exclusions are all checked before base ranges: the overlap is reported, not the bad base.
    .init(.passt, ["-t", "x,~1,~1"], "Overlapping excluded ranges x,~1,~1"),
]

@Suite("Port specifications", .serialized)
struct PortSpecTests {
    @Test("invalid specs die with upstream's text", arguments: portSpecErrors)
    func invalidSpec(_ case_: FailingCommandLine) {
        let error = parseError(case_.mode, case_.arguments)
        #expect(error?.message == case_.message)
        #expect(error?.showsUsage == false)
    }

    @Test("defaults: passt forwards nothing, pasta follows (auto) in all four directions")
    func defaults() throws {
        let passt = try parseOptions(.passt, [])
        #expect(passt.tcpPorts.mode == .none && passt.udpPorts.mode == .none)
        let pasta = try parseOptions(.pasta, [])
        for spec in [pasta.tcpPorts, pasta.udpPorts, pasta.tcpNamespacePorts, pasta.udpNamespacePorts] {
            #expect(spec.mode == .auto)
            #expect(spec.forwarded.isEmpty)
        }
    }

    @Test("none in every direction (podman's default)")
    func noneEverywhere() throws {
        let options = try parseOptions(.pasta, ["-t", "none", "-u", "none", "-T", "none", "-U", "none"])
        for spec in [options.tcpPorts, options.udpPorts, options.tcpNamespacePorts, options.udpNamespacePorts] {
            #expect(spec == PortSpec(mode: .none))
        }
    }

    @Test("a single port, dual-stack, not tolerant of bind failures")
    func singlePort() throws {
        let spec = try parseOptions(.passt, ["-t", "22"]).tcpPorts
        #expect(spec.mode == .spec)
        #expect(spec.forwarded.ports == [22])
        #expect(spec.targetPort(for: 22) == 22)
        #expect(spec.listeners == [PortListenerSet(option: "t", specText: "22", address: nil, interface: nil,
                                                   ports: spec.forwarded, bindFailuresTolerated: false)])
    }

    @Test("-t does not forward UDP (spec §16.2)")
    func tcpOnly() throws {
        let options = try parseOptions(.passt, ["-t", "53"])
        #expect(options.udpPorts.mode == .none)
    }

    @Test("mapping to another port: 22:23")
    func mappedPort() throws {
        let spec = try parseOptions(.passt, ["-t", "22:23"]).tcpPorts
        #expect(spec.forwarded.ports == [22])
        #expect(spec.offset(for: 22) == 1)
        #expect(spec.targetPort(for: 22) == 23)
    }

    @Test("lists and ranges: 22,25 and 22-80")
    func listsAndRanges() throws {
        #expect(try parseOptions(.passt, ["-t", "22,25"]).tcpPorts.forwarded.ports == [22, 25])
        let range = try parseOptions(.passt, ["-u", "22-80"]).udpPorts
        #expect(range.forwarded.ports == Array(22...80))
        #expect(range.listeners.first?.option == "u")
    }

    @Test("range mapping with a constant offset: 22-80:32-90")
    func rangeMapping() throws {
        let spec = try parseOptions(.passt, ["-t", "22-80:32-90"]).tcpPorts
        #expect(spec.forwarded.ports == Array(22...80))
        #expect((22...80).allSatisfy { spec.targetPort(for: UInt16($0)) == UInt16($0) + 10 })
    }

    @Test("downward mapping wraps mod 65536: podman's 8080-8080:80-80")
    func downwardMapping() throws {
        let spec = try parseOptions(.pasta, ["-t", "8080-8080:80-80"]).tcpPorts
        #expect(spec.forwarded.ports == [8080])
        #expect(spec.offset(for: 8080) == UInt16(truncatingIfNeeded: 80 - 8080))
        #expect(spec.targetPort(for: 8080) == 80)
        #expect(try parseOptions(.passt, ["-t", "65535:0"]).tcpPorts.targetPort(for: 65535) == 0)
    }

    @Test("exclusions before or after base ranges: 5-25,~10-20 and ~10-20,5-25")
    func exclusions() throws {
        let expected = Array(5...9) + Array(21...25)
        #expect(try parseOptions(.passt, ["-t", "5-25,~10-20"]).tcpPorts.forwarded.ports.map(Int.init) == expected)
        #expect(try parseOptions(.passt, ["-t", "~10-20,5-25"]).tcpPorts.forwarded.ports.map(Int.init) == expected)
    }

    @Test("exclusion-only: every non-ephemeral port but the excluded, failures tolerated")
    func exclusionOnly() throws {
        let spec = try parseOptions(.passt, ["-t", "~25"]).tcpPorts
        #expect(spec.mode == .spec)
        #expect(spec.forwarded.count == nonEphemeralPortCount - 1)
        #expect(!spec.forwarded.contains(25) && !spec.forwarded.contains(0) && !spec.forwarded.contains(40000))
        #expect(spec.forwarded.contains(24) && spec.forwarded.contains(32767) && spec.forwarded.contains(61000))
        #expect(spec.listeners.count == 1 && spec.listeners[0].bindFailuresTolerated)

        let ranged = try parseOptions(.passt, ["-t", "~20000-20010,~30000"]).tcpPorts
        #expect(ranged.forwarded.count == nonEphemeralPortCount - 12)
    }

    @Test("exclusion-only with a bind address")
    func exclusionOnlyBound() throws {
        let spec = try parseOptions(.passt, ["-u", "192.0.2.1/~25"]).udpPorts
        #expect(spec.listeners.first?.address == .v4(IPv4Address(192, 0, 2, 1)))
        #expect(spec.forwarded.count == nonEphemeralPortCount - 1)
    }

    @Test("pasta -T exclusion-only")
    func namespaceExclusionOnly() throws {
        let spec = try parseOptions(.pasta, ["-T", "~22"]).tcpNamespacePorts
        #expect(spec.forwarded.count == nonEphemeralPortCount - 1)
        #expect(spec.listeners.first?.option == "T")
    }

    @Test("passt 'all': every non-ephemeral port 1-65535, failures tolerated")
    func allPorts() throws {
        let spec = try parseOptions(.passt, ["-t", "all"]).tcpPorts
        #expect(spec.mode == .all)
        #expect(spec.forwarded.count == nonEphemeralPortCount)
        #expect(!spec.forwarded.contains(0) && !spec.forwarded.contains(32768) && spec.forwarded.contains(65535))
        #expect(spec.listeners.first?.bindFailuresTolerated == true)
    }

    @Test("bind address forms", arguments: [
        ("192.0.2.1/5", BindAddress.v4(IPv4Address(192, 0, 2, 1)), nil as String?),
        ("[192.0.2.1]/5", BindAddress.v4(IPv4Address(192, 0, 2, 1)), nil),
        ("[2001:db8::1]/5", BindAddress.v6(IPv6Address("2001:db8::1")!), nil),
        ("2001:db8::1/5", BindAddress.v6(IPv6Address("2001:db8::1")!), nil),
        ("::/5", BindAddress.v6(IPv6Address.any), nil),
        ("192.0.2.1%eth0/5", BindAddress.v4(IPv4Address(192, 0, 2, 1)), "eth0"),
        ("[2001:db8::1]%eth0/5", BindAddress.v6(IPv6Address("2001:db8::1")!), "eth0"),
        ("192.0.2.1%abcdefghijklmno/5", BindAddress.v4(IPv4Address(192, 0, 2, 1)), "abcdefghijklmno"),
    ])
    func bindAddress(spec: String, address: BindAddress, interface: String?) throws {
        let ports = try parseOptions(.passt, ["-t", spec]).tcpPorts
        #expect(ports.forwarded.ports == [5])
        #expect(ports.listeners.first?.address == address)
        #expect(ports.listeners.first?.interface == interface)
    }

    @Test("interface without address: %eth0/5")
    func interfaceOnly() throws {
        let listener = try parseOptions(.pasta, ["-u", "%eth0/5"]).udpPorts.listeners.first
        #expect(listener?.address == nil)
        #expect(listener?.interface == "eth0")
    }

    @Test("several explicit specs accumulate, each with its own binding")
    func accumulate() throws {
        let spec = try parseOptions(.passt, ["-t", "127.0.0.1/80", "-t", "8080:80"]).tcpPorts
        #expect(spec.forwarded.ports == [80, 8080])
        #expect(spec.listeners.count == 2)
        #expect(spec.listeners[0].address == .v4(.loopback) && spec.listeners[0].ports.ports == [80])
        #expect(spec.listeners[1].address == nil && spec.listeners[1].ports.ports == [8080])
        #expect(spec.targetPort(for: 8080) == 80)
    }

    @Test("re-specifying a port warns once per port and takes the new mapping")
    func alteredMapping() throws {
        let parsed = try parseCommandLine(.passt, ["-t", "22-23", "-t", "23-24:33-34"])
        #expect(parsed.warnings == ["Altering mapping of already mapped port number: 23-24:33-34"])
        guard case .run(let options) = parsed.request else { Issue.record("not run"); return }
        #expect(options.tcpPorts.targetPort(for: 22) == 22)
        #expect(options.tcpPorts.targetPort(for: 23) == 33)
        #expect(options.tcpPorts.targetPort(for: 24) == 34)

        let twice = try parseWarnings(.passt, ["-u", "5-6", "-u", "5-6"])
        #expect(twice == Array(repeating: "Altering mapping of already mapped port number: 5-6", count: 2))
        #expect(try parseWarnings(.passt, ["-t", "1-3:11-13,2"]) == ["Altering mapping of already mapped port number: 1-3:11-13,2"])
    }

    @Test("explicit specs after an exclusion-only spec see its ports as mapped")
    func afterExclusionOnly() throws {
        #expect(try parseWarnings(.passt, ["-t", "~25", "-t", "80"])
            == ["Altering mapping of already mapped port number: 80"])
    }

    @Test("numbers are read as strtoul reads them")
    func strtoulQuirks() throws {
        #expect(try parseOptions(.passt, ["-t", " 22"]).tcpPorts.forwarded.ports == [22])
        #expect(try parseOptions(.passt, ["-t", "+22"]).tcpPorts.forwarded.ports == [22])
        #expect(try parseOptions(.passt, ["-t", "0"]).tcpPorts.forwarded.ports == [0])
        #expect(try parseOptions(.passt, ["-t", "65535"]).tcpPorts.forwarded.ports == [65535])
    }

    @Test("the ephemeral range comes from the environment, with its warning")
    func ephemeralRange() throws {
        let environment = ParseEnvironment(interfaceIndex: { _ in 1 },
                                           ephemeralPorts: { (EphemeralPortRange.rfc6335, "Unable to parse X") })
        let parsed = try CommandLineParser.parse(["passt", "-t", "~22"], mode: .passt, environment: environment)
        #expect(parsed.warnings == ["Unable to parse X"])
        guard case .run(let options) = parsed.request else { Issue.record("not run"); return }
        #expect(options.tcpPorts.forwarded.count == 49151 - 1)
    }

    @Test("the kernel's ephemeral range is probed as upstream does")
    func probeEphemeral() {
        let probed = EphemeralPortRange.probe()
        #expect(probed.warning == nil)
        #expect(probed.range.first <= probed.range.last)
        let missing = EphemeralPortRange.probe(path: "/nonexistent/ip_local_port_range")
        #expect(missing.range == .rfc6335)
        #expect(missing.warning == "Unable to open /nonexistent/ip_local_port_range: No such file or directory")
    }

    @Test("listener error messages name the option and spec")
    func listenerMessages() throws {
        let listener = try #require(try parseOptions(.passt, ["-t", "22"]).tcpPorts.listeners.first)
        #expect(listener.bindFailureMessage(port: 22, errorText: "Address already in use")
            == "Failed to bind port 22 (Address already in use) for option '-t 22', exiting")
        #expect(listener.noPortBoundMessage == "Failed to bind any port for '-t 22', exiting")
        #expect(listener.tooManySocketsMessage == "Can't open enough sockets for port specifier: 22")
    }
}
