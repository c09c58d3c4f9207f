// pasta run by an ordinary user, pasta's switch to --runas IDs (or from root to nobody), and
// set-up failures that must not leave the spawned command behind (spec §1.3, §10.1, §16.9, §16.15).
//
// The "ordinary user" is UID/GID 64123, which no account uses: `setpriv --reuid --regid
// --clear-groups` (util-linux) drops the test's root to it for one command, without touching the
// user database. That user cannot traverse SwiftPM's build directory, so pasta is copied into the
// bed's directory with mode 0755. Distributions ship /dev/net/tun with mode 0666; where the
// machine's is 0600, unprivileged pasta (upstream too) cannot open it, so pasta runs in a private
// mount namespace whose /dev/net is a tmpfs holding a fresh 0666 tun node (`withOpenTun`); nothing
// outside that command sees it. Ping sockets in the bed's host namespace are allowed for every
// group (`allowPingSockets`), as pasta's echo flows need. Leftover processes are found by a
// marker: a `sleep` with an argument no other process uses.
import Foundation
import Testing
import PasstSys

/// UID and GID of the ordinary user the tests run pasta as.
let ordinaryID = 64123

/// `arguments` run as the ordinary user, without supplementary groups.
func asOrdinaryUser(_ arguments: [String]) -> [String] {
    ["setpriv", "--reuid", "\(ordinaryID)", "--regid", "\(ordinaryID)", "--clear-groups"] + arguments
}

/// `arguments` run in a private mount namespace whose /dev/net/tun is a fresh node open to all.
func withOpenTun(_ arguments: [String]) -> [String] {
    ["unshare", "--mount", "--propagation", "private", "sh", "-c",
     "mount -t tmpfs -o mode=755 pasta-tun /dev/net && mknod -m 666 /dev/net/tun c 10 200 && exec \"$@\"",
     "sh"] + arguments
}

/// The "Uid:", "Gid:", "Groups:" and "CapEff:" values of /proc/`pid`/status, by field name.
func processStatus(_ pid: pid_t) -> [String: String] {
    let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    var fields: [String: String] = [:]
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: ":", maxSplits: 1)
        guard parts.count == 2 else { continue }
        fields[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces)
    }
    return fields
}

/// PIDs of running processes whose command line is exactly `arguments`.
func processes(withCommandLine arguments: [String]) -> [pid_t] {
    let wanted = arguments.joined(separator: "\0") + "\0"
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { pid_t($0) }.filter { pid in
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        return String(decoding: data, as: UTF8.self) == wanted
    }
}

extension TestBed {
    /// pasta copied into the bed's directory with mode 0755, so that any user can run it. The copy
    /// is written through a close-on-exec descriptor: commands other tests spawn meanwhile must
    /// not inherit it open for writing, or exec'ing the copy fails with ETXTBSY.
    func publicPastaBinary() throws -> String {
        let directory = try scratchDirectory("bin")
        let path = directory + "/pasta"
        if !FileManager.default.fileExists(atPath: path) {
            let contents = try Data(contentsOf: URL(fileURLWithPath: try pastaBinary()))
            let fd = open(path + ".new", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
            guard fd >= 0 else { throw TestBedError(description: "open \(path).new: \(String(cString: strerror(errno)))") }
            let written = contents.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
            guard written == contents.count, rename(path + ".new", path) == 0 else {
                throw TestBedError(description: "copying pasta to \(path) failed")
            }
        }
        chmod(directory, 0o755)
        chmod(path, 0o755)
        return path
    }

    /// Starts `pasta -f --config-net` attached to a new namespace with `arguments`; returns the
    /// namespace and the process once its PID file holds a PID (it is created empty at start-up).
    func startAttachedPasta(_ arguments: [String]) throws -> (String, BackgroundProcess) {
        try allowPingSockets()
        let target = try makeNamespace("usr")
        let pidFile = directory + "/usr-\(Command.nextID()).pid"
        let pasta = try startBackground(in: host, [try pastaBinary(), "-f", "--config-net", "-P", pidFile]
                                        + arguments + ["--netns", target])
        guard waitUntil(10, { pidFileWritten(pidFile) }) else {
            throw TestBedError(description: "pasta did not start: \(pasta.stderr())")
        }
        return (target, pasta)
    }
}

@Suite("pasta as an ordinary user, --runas", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct PastaUnprivilegedTests {
    @Test("An ordinary user's pasta --config-net gives the namespace addresses, routes and ping")
    func ordinaryUserConfigNet() async throws {
        try await withTestBed { bed in
            try bed.allowPingSockets()
            let script = "id -u; cat /proc/self/uid_map; ip -j addr show dev eth0; ip -j route show default; "
                + "ip -j -6 route show default; ping -c1 -W2 192.0.2.1 >/dev/null && echo ping4-ok; "
                + "ping -6 -c1 -W2 fd00::1 >/dev/null && echo ping6-ok"
            let command = withOpenTun(asOrdinaryUser([try bed.publicPastaBinary(), "--config-net", "--",
                                                      "sh", "-c", script]))
            let result = try bed.run(in: bed.host, command, timeout: 30)
            try #require(result.status == 0, "\(result.stderr)")
            let lines = result.stdout.split(separator: "\n").map(String.init)
            try #require(lines.count == 7, "\(result.stdout)")
            #expect(lines[0] == "0")
            #expect(lines[1].split(separator: " ") == ["0", "\(ordinaryID)", "1"])
            let link = try #require(try jsonObjects(lines[2]).first)
            #expect(addresses(of: link).contains("192.0.2.2/24"))
            #expect(addresses(of: link).contains("fd00::2/64"))
            #expect(link["mtu"] as? Int == 65520)
            #expect(try jsonObjects(lines[3]).contains { $0["gateway"] as? String == "192.0.2.1" })
            #expect(try jsonObjects(lines[4]).contains { $0["gateway"] as? String == "fd00::1" })
            #expect(lines[5] == "ping4-ok")
            #expect(lines[6] == "ping6-ok")
        }
    }

    @Test("Root's pasta in spawn mode maps the namespace's root to nobody, or to the --runas IDs",
          arguments: [([], 65534), (["--runas", "\(ordinaryID):\(ordinaryID)"], ordinaryID), (["--runas", "0"], 0)])
    func spawnMapsRootToRunAs(runAs: [String], expectedUID: Int) async throws {
        try await withTestBed { bed in
            try bed.allowPingSockets()
            let script = "cat /proc/self/uid_map; ping -c1 -W2 192.0.2.1 >/dev/null && echo ping4-ok"
            let result = try bed.run(in: bed.host, withOpenTun([try bed.publicPastaBinary()] + runAs
                                                                + ["--config-net", "--", "sh", "-c", script]),
                                     timeout: 30)
            try #require(result.status == 0, "\(result.stderr)")
            let lines = result.stdout.split(separator: "\n").map(String.init)
            try #require(lines.count == 2, "\(result.stdout)")
            #expect(lines[0].split(separator: " ") == ["0", "\(expectedUID)", "1"])
            #expect(lines[1] == "ping4-ok")
        }
    }

    @Test("Attached, root's pasta runs as nobody, or as --runas; it keeps only what it needs and answers ping",
          arguments: [([], true), (["--runas", "\(ordinaryID):\(ordinaryID)"], false)])
    func attachedRunsAsRunAs(runAs: [String], isDefault: Bool) async throws {
        try await withTestBed { bed in
            let nobody = try #require(getpwnam("nobody")?.pointee)
            let uid = isDefault ? Int(nobody.pw_uid) : ordinaryID
            let gid = isDefault ? Int(nobody.pw_gid) : ordinaryID
            let (target, pasta) = try bed.startAttachedPasta(runAs)
            let status = processStatus(pasta.pid)
            #expect(status["Uid"] == "\(uid)\t\(uid)\t\(uid)\t\(uid)", "\(pasta.stderr())")
            #expect(status["Gid"] == "\(gid)\t\(gid)\t\(gid)\t\(gid)")
            #expect(status["Groups"] == "")
            #expect(status["CapEff"] == pastaRuntimeCapabilities)
            #expect(pasta.stderr().contains("Started as root, will change to nobody.") == isDefault)

            let ping = try bed.run(in: target, ["ping", "-c1", "-W2", "192.0.2.1"])
            #expect(ping.status == 0, "\(ping.stdout) \(ping.stderr) \(pasta.stderr())")
            #expect(bed.stop(pasta) == 0)
        }
    }
}

@Suite("pasta set-up failures leave nothing behind", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct PastaSetupFailureTests {
    /// Runs pasta (in `wrap`) with `arguments` and the marker command; expects exit 1 with a
    /// message containing `message`, and no marker process afterwards.
    func expectCleanFailure(_ bed: TestBed, _ arguments: [String], message: String,
                            wrap: ([String]) -> [String] = { $0 }) throws {
        try bed.allowPingSockets()
        let marker = ["sleep", "\(1_234_000 + Command.nextID())"]
        let result = try bed.run(in: bed.host, wrap([try bed.publicPastaBinary()] + arguments + ["--"] + marker),
                                 timeout: 20)
        #expect(result.status == 1, "\(result.stdout) \(result.stderr)")
        #expect(result.stderr.contains(message), "\(result.stderr)")
        #expect(waitUntil(3) { processes(withCommandLine: marker).isEmpty }, "left behind: \(marker)")
        for pid in processes(withCommandLine: marker) { kill(pid, SIGKILL) }
    }

    @Test("A tap that cannot be created (-I lo) after the command was spawned")
    func tapFailureKillsChild() async throws {
        try await withTestBed { bed in
            try expectCleanFailure(bed, ["--config-net", "-I", "lo"], message: "Failed to open tap device",
                                   wrap: withOpenTun)
        }
    }

    @Test("An ordinary user's --runas to another user")
    func runAsOtherUserFails() async throws {
        try await withTestBed { bed in
            try expectCleanFailure(bed, ["--runas", "\(ordinaryID + 1)"],
                                   message: "Can't set GID to \(ordinaryID + 1): Operation not permitted",
                                   wrap: { withOpenTun(asOrdinaryUser($0)) })
        }
    }

    @Test("--netns naming a missing namespace")
    func missingNamespace() async throws {
        try await withTestBed { bed in
            try bed.allowPingSockets()
            let result = try bed.run(in: bed.host, [try bed.publicPastaBinary(), "--netns",
                                                    bed.directory + "/missing-netns"])
            #expect(result.status == 1)
            #expect(result.stderr.contains("Couldn't open network namespace \(bed.directory)/missing-netns"),
                    "\(result.stderr)")
        }
    }
}
