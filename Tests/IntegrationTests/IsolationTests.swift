// What a running pasta and passt have given up (spec §10.1): read from /proc/PID/status of the
// real binaries in the test bed. Both set no_new_privs before their loop (and clear the dumpable
// flag, which makes /proc/PID/ files root's); the seccomp filter and the empty root of the later
// stages are not there yet.
import Foundation
import Testing
import PasstSys

/// The value of `field` in /proc/`pid`/status ("NoNewPrivs", "Seccomp", "CapEff"), nil if absent.
func processStatus(_ pid: pid_t, _ field: String) -> String? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
        return line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces)
    }
    return nil
}

@Suite("Isolation of the running daemons", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct IsolationTests {
    @Test("pasta and passt run with no_new_privs and their /proc files owned by root")
    func noNewPrivileges() async throws {
        try await withTestBed { bed in
            let (_, pasta) = try bed.startPastaAttached(["-t", "none", "-u", "none", "-T", "none", "-U", "none"])
            let (_, passt) = try bed.startPasst([])
            for (name, process) in [("pasta", pasta), ("passt", passt)] {
                #expect(waitUntil(5) { processStatus(process.pid, "NoNewPrivs") == "1" },
                        "\(name): NoNewPrivs \(processStatus(process.pid, "NoNewPrivs") ?? "?")")
                var info = stat()
                #expect(stat("/proc/\(process.pid)/environ", &info) == 0 && info.st_uid == 0)
                #expect(bed.stop(process) == 0, "\(name): \(process.stderr())")
            }
        }
    }
}
