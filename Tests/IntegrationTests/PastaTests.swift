// pasta end to end: the real binary in the test bed's host namespace, the real kernel, real
// clients (ip, ping, dhclient, tshark) inside the namespaces pasta creates or attaches to.
//
// Every test runs pasta inside the bed's "host" namespace (eth0 192.0.2.2/24, fd00::2/64, default
// routes via the "router" 192.0.2.1 / fd00::1), so pasta's template, addresses and routes are the
// bed's and all traffic stays in namespaces the bed made. The bed's host namespace gets
// ping_group_range "0 2147483647" so that pasta's ping sockets work there. The binary is
// $PASTA_BINARY if set, else the `pasta` SwiftPM built next to the tests.
import Foundation
import Testing
import PasstSys

/// The pasta binary under test.
func pastaBinary() throws -> String {
    if let path = ProcessInfo.processInfo.environment["PASTA_BINARY"] { return path }
    guard let path = TestBed.binary("pasta") else { throw TestBedError(description: "pasta binary not built") }
    return path
}

extension TestBed {
    /// Runs pasta with `arguments` in the host namespace (ping sockets allowed there first), with
    /// /dev/net/tun open to all as distributions ship it: in spawn mode pasta started as root
    /// opens the tap as nobody.
    func pasta(_ arguments: [String], timeout: Double = 20) throws -> CommandResult {
        try allowPingSockets()
        return try run(in: host, withOpenTun([try pastaBinary()] + arguments), timeout: timeout)
    }

    /// Lets every group open ping sockets in the host namespace (where pasta's sockets live).
    func allowPingSockets() throws {
        try Command.check(["ip", "netns", "exec", host, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647"])
    }

    /// A world-writable scratch directory inside the bed's directory (for clients running as
    /// pasta's namespace root, which maps to our user but may be subject to ownership checks).
    func scratchDirectory(_ name: String) throws -> String {
        let path = directory + "/" + name
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        chmod(directory, 0o755)
        chmod(path, 0o1777)
        return path
    }
}

/// Decodes `text` as a JSON array of objects (ip -j output).
func jsonObjects(_ text: String) throws -> [[String: Any]] {
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    guard let array = try JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [[String: Any]] else {
        throw TestBedError(description: "not a JSON array: \(trimmed)")
    }
    return array
}

/// The "local/prefixlen" strings of an `ip -j addr show` entry.
func addresses(of link: [String: Any]) -> [String] {
    ((link["addr_info"] as? [[String: Any]]) ?? []).compactMap { info in
        guard let local = info["local"] as? String, let prefix = info["prefixlen"] as? Int else { return nil }
        return "\(local)/\(prefix)"
    }
}

/// Whether the PID file at `path` holds a PID yet (pasta creates it empty at start-up and writes
/// it once ready).
func pidFileWritten(_ path: String) -> Bool {
    (try? String(contentsOfFile: path, encoding: .utf8))?.hasSuffix("\n") == true
}

/// Waits up to `timeout` seconds for `condition`; returns whether it became true.
func waitUntil(_ timeout: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}

@Suite("pasta namespaces and --config-net", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct PastaNamespaceTests {
    @Test("--config-net copies the host's addresses, routes and sets MTU 65520")
    func configNetCopiesHost() async throws {
        try await withTestBed { bed in
            let addr = try bed.pasta(["--config-net", "--", "ip", "-j", "addr", "show", "dev", "eth0"])
            try #require(addr.status == 0, "\(addr.stderr)")
            let link = try #require(try jsonObjects(addr.stdout).first)
            #expect(link["mtu"] as? Int == 65520)
            #expect((link["flags"] as? [String])?.contains("UP") == true)
            #expect(addresses(of: link).contains("192.0.2.2/24"))
            #expect(addresses(of: link).contains("fd00::2/64"))

            let routes = try bed.pasta(["--config-net", "--", "ip", "-j", "route", "show", "default"])
            try #require(routes.status == 0, "\(routes.stderr)")
            #expect(try jsonObjects(routes.stdout).contains { $0["gateway"] as? String == "192.0.2.1" && $0["dev"] as? String == "eth0" })

            let routes6 = try bed.pasta(["--config-net", "--", "ip", "-j", "-6", "route", "show", "default"])
            try #require(routes6.status == 0, "\(routes6.stderr)")
            #expect(try jsonObjects(routes6.stdout).contains { $0["gateway"] as? String == "fd00::1" })

            let lo = try bed.pasta(["--config-net", "--", "ip", "-j", "link", "show", "lo"])
            #expect((try jsonObjects(lo.stdout).first?["flags"] as? [String])?.contains("UP") == true)
        }
    }

    @Test("An uplink without carrier: its routes, dumped with LINKDOWN, are copied without it")
    func configNetCopiesLinkdownRoutes() async throws {
        try await withTestBed { bed in
            _ = try bed.ip(bed.host, "route", "add", "198.51.100.0/24", "nexthop", "via", TestBed.routerIPv4,
                           "nexthop", "via", "192.0.2.4")
            _ = try bed.ip(bed.router, "link", "set", TestBed.routerInterface, "down")
            // The kernel's link watch marks the routes within a second or so.
            let marked = waitUntil(5) {
                let routes = (try? bed.ipJSON(bed.host, "route", "show", "default")) ?? []
                return routes.contains { ($0["flags"] as? [String])?.contains("linkdown") == true }
            }
            try #require(marked, "the host's default route never showed linkdown")
            let result = try bed.pasta(["--config-net", "--", "sh", "-c",
                                        "ip -j route show default; echo; ip -j -6 route show default; echo; "
                                        + "ip -j route show 198.51.100.0/24"])
            try #require(result.status == 0, "\(result.stderr)")
            let parts = result.stdout.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
            try #require(parts.count == 3, "\(result.stdout)")
            // The multipath route's nexthops carried LINKDOWN too.
            let multipath = try #require(try jsonObjects(parts[2]).first, "\(parts[2])")
            let hops = multipath["nexthops"] as? [[String: Any]] ?? []
            #expect(hops.count == 2 && hops.allSatisfy { ($0["flags"] as? [String] ?? []).isEmpty }, "\(multipath)")
            for (part, gateway) in zip(parts.prefix(2), [TestBed.routerIPv4, TestBed.routerIPv6]) {
                let route = try #require(try jsonObjects(part).first { $0["gateway"] as? String == gateway }, "\(part)")
                #expect(route["dev"] as? String == TestBed.hostInterface)
                #expect((route["flags"] as? [String] ?? []).isEmpty, "\(route)")
            }
        }
    }

    @Test("Copied routes keep their metrics (mtu) and IPv6 router preference")
    func configNetCopiesRouteMetrics() async throws {
        try await withTestBed { bed in
            _ = try bed.ip(bed.host, "route", "add", "198.51.100.0/24", "via", TestBed.routerIPv4, "mtu", "1400",
                           "advmss", "1360")
            _ = try bed.ip(bed.host, "-6", "route", "add", "2001:db8:7::/48", "via", TestBed.routerIPv6, "pref", "high")
            let result = try bed.pasta(["--config-net", "--", "sh", "-c",
                                        "ip -j -d route show 198.51.100.0/24; echo; ip -j -6 route show 2001:db8:7::/48"])
            try #require(result.status == 0, "\(result.stderr)")
            let parts = result.stdout.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
            try #require(parts.count == 2, "\(result.stdout)")
            let route4 = try #require(try jsonObjects(parts[0]).first, "\(parts[0])")
            let metrics = (route4["metrics"] as? [[String: Any]] ?? []).reduce(into: [String: Int]()) {
                for (key, value) in $1 { if let number = value as? Int { $0[key] = number } }
            }
            #expect(metrics["mtu"] == 1400 && metrics["advmss"] == 1360, "\(route4)")
            let route6 = try #require(try jsonObjects(parts[1]).first, "\(parts[1])")
            #expect(route6["pref"] as? String == "high" && route6["dev"] as? String == TestBed.hostInterface, "\(route6)")
        }
    }

    @Test("-m, -I, -a, -n and -g are honoured")
    func configNetOptions() async throws {
        try await withTestBed { bed in
            let result = try bed.pasta(["--config-net", "-m", "1500", "-I", "ptap7", "-a", "192.0.2.77", "-n", "25",
                                        "-g", "192.0.2.1", "--", "sh", "-c",
                                        "ip -j addr show dev ptap7; echo; ip -j route show default"])
            try #require(result.status == 0, "\(result.stderr)")
            let parts = result.stdout.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
            try #require(parts.count == 2, "\(result.stdout)")
            let link = try #require(try jsonObjects(parts[0]).first)
            #expect(link["mtu"] as? Int == 1500)
            #expect(addresses(of: link).contains("192.0.2.77/25"))
            #expect(!addresses(of: link).contains("192.0.2.2/24"))
            #expect(try jsonObjects(parts[1]).contains { $0["gateway"] as? String == "192.0.2.1" })
        }
    }

    @Test("Without --config-net the tap stays down with its own MAC; --ns-mac-addr sets it")
    func noConfigNet() async throws {
        try await withTestBed { bed in
            let result = try bed.pasta(["--ns-mac-addr", "02:00:00:00:00:42", "--", "ip", "-j", "link", "show", "eth0"])
            try #require(result.status == 0, "\(result.stderr)")
            let link = try #require(try jsonObjects(result.stdout).first)
            #expect((link["flags"] as? [String])?.contains("UP") == false)
            #expect(link["address"] as? String == "02:00:00:00:00:42")
        }
    }

    @Test("Exit status is the command's, or 128 + signal")
    func exitStatus() async throws {
        try await withTestBed { bed in
            #expect(try bed.pasta(["--config-net", "--", "sh", "-c", "exit 7"]).status == 7)
            #expect(try bed.pasta(["--", "true"]).status == 0)

            let pasta = try bed.startBackground(in: bed.host, withOpenTun([try pastaBinary(), "--", "sleep", "30"]))
            var child: pid_t?
            #expect(waitUntil(10) {
                let children = (try? String(contentsOfFile: "/proc/\(pasta.pid)/task/\(pasta.pid)/children",
                                            encoding: .utf8)) ?? ""
                child = children.split(separator: " ").first.flatMap { pid_t($0) }
                guard let child else { return false }
                let comm = (try? String(contentsOfFile: "/proc/\(child)/comm", encoding: .utf8)) ?? ""
                return comm.hasPrefix("sleep")
            })
            let sleeper = try #require(child)
            kill(sleeper, SIGKILL)
            var status: Int32 = 0
            #expect(waitUntil(5) { waitpid(pasta.pid, &status, WNOHANG) == pasta.pid })
            #expect(Command.decode(status) == 128 + SIGKILL)
            bed.stop(pasta)
        }
    }

    @Test("Attached to --netns: quits with 0 once the namespace is deleted")
    func attachQuitsWhenNamespaceGoes() async throws {
        try await withTestBed { bed in
            try bed.allowPingSockets()
            let target = try bed.makeNamespace("tgt")
            let pidFile = bed.directory + "/attach.pid"
            let pasta = try bed.startBackground(in: bed.host, [try pastaBinary(), "-f", "--config-net", "-P", pidFile,
                                                               "--netns", target])
            try #require(waitUntil(10) { pidFileWritten(pidFile) }, "\(pasta.stderr())")
            let link = try bed.ipJSON(target, "addr", "show", "dev", "eth0")
            #expect(addresses(of: try #require(link.first)).contains("192.0.2.2/24"))
            try Command.check(["ip", "netns", "del", target])
            var status: Int32 = 0
            #expect(waitUntil(5) { waitpid(pasta.pid, &status, WNOHANG) == pasta.pid }, "\(pasta.stderr())")
            #expect(Command.decode(status) == 0)
            bed.stop(pasta)
        }
    }

    @Test("Attached by PID: SIGTERM exits 0")
    func attachByPIDAndTerminate() async throws {
        try await withTestBed { bed in
            try bed.allowPingSockets()
            let holder = try bed.startBackground(in: nil, ["unshare", "--net", "sleep", "30"])
            let unshared = waitUntil(5) {
                (try? Sys.readLink("/proc/\(holder.pid)/ns/net").get()) != (try? Sys.readLink("/proc/self/ns/net").get())
            }
            try #require(unshared)
            let pidFile = bed.directory + "/pid.pid"
            let pasta = try bed.startBackground(in: bed.host, [try pastaBinary(), "-f", "--config-net", "-P", pidFile,
                                                               "\(holder.pid)"])
            try #require(waitUntil(10) { pidFileWritten(pidFile) }, "\(pasta.stderr())")
            let shown = try Command.check(["nsenter", "-t", "\(holder.pid)", "-n", "ip", "-j", "addr", "show", "dev", "eth0"])
            #expect(addresses(of: try #require(try jsonObjects(shown).first)).contains("192.0.2.2/24"))
            #expect(bed.stop(pasta, signal: SIGTERM) == 0)
            bed.stop(holder)
        }
    }

    @Test("Without -f: returns 0 once ready, the PID file names the running daemon")
    func daemonises() async throws {
        try await withTestBed { bed in
            let target = try bed.makeNamespace("dmn")
            let pidFile = bed.directory + "/daemon.pid"
            let result = try bed.pasta(["--config-net", "-P", pidFile, "--netns", target])
            try #require(result.status == 0, "\(result.stderr)")
            let text = try String(contentsOfFile: pidFile, encoding: .utf8)
            let attributes = try FileManager.default.attributesOfItem(atPath: pidFile)
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
            let pid = try #require(pid_t(text.trimmingCharacters(in: .newlines)))
            #expect(text == "\(pid)\n")
            #expect(kill(pid, 0) == 0)
            let link = try bed.ipJSON(target, "addr", "show", "dev", "eth0")
            #expect(addresses(of: try #require(link.first)).contains("192.0.2.2/24"))
            kill(pid, SIGTERM)
            #expect(waitUntil(5) { kill(pid, 0) != 0 })
            if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        }
    }
}
