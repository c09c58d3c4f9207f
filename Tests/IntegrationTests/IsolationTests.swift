// What a running pasta and passt have given up (spec §10.1), read from /proc/PID of the real
// binaries in the test bed: the seccomp filter (Seccomp: 2), no_new_privs, no capabilities for
// passt and only SYS_ADMIN and NET_BIND_SERVICE for pasta, empty bounding sets, a root of their
// own that is empty, mount, IPC and UTS namespaces of their own, and /proc/PID files owned by root
// (not dumpable). That a listed call works and any other kills is shown on the real allow-lists
// in forked children of the test process; every other integration test runs the daemons under
// their filter, so a missing entry fails those. passt as an ordinary user carries a TCP
// connection with all of this in place.
import Foundation
import Testing
import PasstConfig
@testable import PasstCore
import PasstSys

/// The value of `field` in /proc/`pid`/status ("NoNewPrivs", "Seccomp", "CapEff"), nil if absent.
func processStatus(_ pid: pid_t, _ field: String) -> String? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
        return line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces)
    }
    return nil
}

/// CapEff of a running pasta: CAP_SYS_ADMIN and CAP_NET_BIND_SERVICE, what upstream keeps.
let pastaRuntimeCapabilities = "0000000000200400"

/// The namespace `type` ("mnt", "ipc", ...) of process `pid`, as the ns link reads.
func namespaceLink(_ pid: String, _ type: String) -> String? {
    try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/\(type)")
}

/// Every isolation property of running daemon `pid` that differs from `capabilities` expected;
/// empty when all hold.
func isolationFailures(_ pid: pid_t, capabilities: String) -> [String] {
    var failures: [String] = []
    // Sanitizer builds run without their filter (Seccomp 0); everything else holds for them too.
    let seccomp = TestBed.sanitizedBinaries ? "0" : "2"
    for (field, wanted) in [("Seccomp", seccomp), ("NoNewPrivs", "1"), ("CapEff", capabilities),
                            ("CapPrm", capabilities), ("CapInh", "0000000000000000"),
                            ("CapBnd", "0000000000000000")] {
        let value = processStatus(pid, field)
        if value != wanted { failures.append("\(field) \(value ?? "?"), expected \(wanted)") }
    }
    let root = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/root")) ?? ["unreadable"]
    if !root.isEmpty { failures.append("root holds \(root)") }
    for type in ["mnt", "ipc", "uts"] where namespaceLink("\(pid)", type) == namespaceLink("self", type) {
        failures.append("shares our \(type) namespace")
    }
    var info = stat()
    if stat("/proc/\(pid)/environ", &info) != 0 || info.st_uid != 0 { failures.append("dumpable") }
    return failures
}

/// Runs `call` in a forked child after installing `filter`; returns the child's wait status.
/// Only raw system calls run in the child (the test process has other threads).
func statusAfterFilter(_ filter: SeccompFilter, _ call: @convention(c) () -> Void) -> Int32 {
    let pid = fork()
    if pid == 0 {
        guard case .success = Sys.prctl(Isolation.setNoNewPrivileges, 1) else { _exit(90) }
        guard case .success = filter.install() else { _exit(91) }
        call()
        _exit(0)
    }
    var status: Int32 = 0
    _ = waitpid(pid, &status, 0)
    return status
}

@Suite("Isolation of the running daemons", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct IsolationTests {
    @Test("pasta and passt run under seccomp with no_new_privs, no spare capability, an empty root")
    func isolated() async throws {
        try await withTestBed { bed in
            let (_, pasta) = try bed.startPastaAttached(["-t", "none", "-u", "none", "-T", "none", "-U", "none"])
            let (_, passt) = try bed.startPasst([])
            for (name, process, capabilities) in [("pasta", pasta, pastaRuntimeCapabilities),
                                                  ("passt", passt, "0000000000000000")] {
                var failures: [String] = []
                let settled = waitUntil(5) {
                    failures = isolationFailures(process.pid, capabilities: capabilities)
                    return failures.isEmpty
                }
                #expect(settled, "\(name): \(failures)")
                #expect(bed.stop(process) == 0, "\(name): \(process.stderr())")
            }
        }
    }

    @Test("A system call outside the allow-list kills with SIGSYS; a listed one does not", arguments: [
        ProgramMode.passt, .pasta,
    ])
    func forbiddenCallKills(mode: ProgramMode) throws {
        let filter = try SeccompFilter(allowing: Isolation.allowedSyscalls(mode))
        let listed = statusAfterFilter(filter) { _ = getpid() }
        #expect(listed == 0, "wait status \(listed) after getpid")
        let forbidden = statusAfterFilter(filter) { _ = mkdir("/nonexistent-seccomp-test", 0o700) }
        #expect(forbidden & 0x7f == SIGSYS, "wait status \(forbidden) after mkdir")
        #expect(!Isolation.allowedSyscalls(mode).contains("mkdir"))
    }

    @Test("The README's allow-lists are the code's, in the same order")
    func readmeListsTheAllowLists() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        /// The backquoted words of the README line starting with `prefix`.
        func listed(_ prefix: String) -> [String] {
            guard let line = readme.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else { return [] }
            return line.split(separator: "`").last.map { $0.split(separator: " ").map(String.init) } ?? []
        }
        let passt = Isolation.allowedSyscalls(.passt)
        let pastaOnly = Array(Isolation.allowedSyscalls(.pasta).dropFirst(passt.count))
        #expect(listed("- passt (\(passt.count)): ") == passt)
        #expect(listed("- pasta (\(passt.count + pastaOnly.count)): passt's and ") == pastaOnly)
        #expect(Isolation.allowedSyscalls(.pasta).starts(with: passt))
    }

    @Test("passt as an ordinary user: isolated, and a guest's TCP connection reaches the host")
    func ordinaryUserPasst() async throws {
        try await withTestBed { bed in
            try bed.allowPingSockets()
            let directory = try bed.scratchDirectory("passt-user")
            let binary = directory + "/passt"
            try FileManager.default.createSymbolicLink(atPath: binary, withDestinationPath: try bed.publicPastaBinary())
            let socketPath = directory + "/passt.socket"
            let pidFile = directory + "/passt.pid"
            let passt = try bed.startBackground(in: bed.host, asOrdinaryUser([binary, "-f", "-s", socketPath,
                                                                              "-P", pidFile]))
            try #require(waitUntil(10) { pidFileWritten(pidFile) }, "\(passt.stderr())")
            #expect(processStatus(passt.pid)["Uid"]?.split(separator: "\t").first == "\(ordinaryID)")
            var failures: [String] = []
            #expect(waitUntil(5) {
                failures = isolationFailures(passt.pid, capabilities: "0000000000000000")
                return failures.isEmpty
            }, "\(failures)")

            let (guest, relay) = try bed.startGuest(socketPath: socketPath)
            defer { relay.stop() }
            let server = TCPEchoServer(listener: try TCPTestSocket.listen(bed, in: bed.host, address: "::", port: 7290,
                                                                          dualStack: true))
            defer { server.stop() }
            let payload = tcpTestPayload(65536)
            let client = try TCPTestSocket.connect(bed, in: guest, to: "192.0.2.1", port: 7290)
            let echoed = TCPTestSocket.echo(client, payload: payload)
            close(client)
            #expect(echoed == payload, "\(echoed.count) bytes back; relay \(relay.counts)")
            #expect(bed.stop(passt) == 0, "\(passt.stderr())")
        }
    }
}
