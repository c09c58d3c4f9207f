// pasta's spawned child: exit status mapping, the new namespaces and their setup, the hold
// before exec, and that an aborted or dropped child leaves no process behind.
//
// Commands write what they observe to a temporary file (the child closes every descriptor above
// stderr and shares our stdout, so files are the simple channel). Every wait is bounded.
import Foundation
import Testing
import PasstSys

/// Spawns, releases and waits (bounded) for `command`; returns its exit code.
private func runToExit(_ command: SpawnCommand, userNamespace: UserNamespaceMapping? = nil,
                       sourceLocation: SourceLocation = #_sourceLocation) throws -> Int32? {
    let pending = try PendingChild.spawn(command, userNamespace: userNamespace)
    #expect(pending.warnings.isEmpty, "setup warnings \(pending.warnings)", sourceLocation: sourceLocation)
    let child = pending.release()
    #expect(child.execError == nil, sourceLocation: sourceLocation)
    let code = NamespaceTestSupport.value(child.wait(timeoutMilliseconds: 10_000), sourceLocation: sourceLocation)
    if code == nil || code! == nil { _ = child.signal(SIGKILL); _ = child.wait(timeoutMilliseconds: 5_000) }
    return code ?? nil
}

/// A temporary file path for a command's output, removed by the caller.
private func outputPath() -> String {
    NSTemporaryDirectory() + NamespaceTestSupport.uniqueName("passt-spawn") + ".txt"
}

/// The lines of a file written by a spawned command.
private func lines(_ path: String) -> [String] {
    ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
}

/// True if `pid` names no process (not even a zombie).
private func isGone(_ pid: pid_t) -> Bool {
    kill(pid, 0) == -1 && errno == ESRCH
}

@Suite struct SpawnCommandTests {
    @Test func loginShellForm() {
        #expect(SpawnCommand.loginShell("/bin/bash") == SpawnCommand(file: "/bin/bash", arguments: ["-/bin/bash"]))
        #expect(SpawnCommand.loginShell(nil) == SpawnCommand(file: "/bin/sh", arguments: ["-/bin/sh"]))
        #expect(SpawnCommand(["ip", "link"]) == SpawnCommand(file: "ip", arguments: ["ip", "link"]))
    }

    @Test func exitCodeFromSignalInfo() {
        #expect(RunningChild.exitCode(exited: true, status: 3) == 3)
        #expect(RunningChild.exitCode(exited: false, status: SIGKILL) == 137)
    }
}

@Suite(.enabled(if: NamespaceTestSupport.isRoot, "needs root")) struct SpawnTests {
    @Test func exitStatusIsPassedThrough() throws {
        #expect(try runToExit(SpawnCommand(["sh", "-c", "exit 7"])) == 7)
        #expect(try runToExit(SpawnCommand(["true"])) == 0)
    }

    @Test func killedChildMapsTo128PlusSignal() throws {
        let child = try PendingChild.spawn(SpawnCommand(["sleep", "30"])).release()
        #expect(child.execError == nil)
        #expect(NamespaceTestSupport.value(child.tryWait()) == .some(nil))
        #expect(child.signal(SIGKILL).errorCode == nil)
        #expect(NamespaceTestSupport.value(child.wait(timeoutMilliseconds: 10_000)) == 128 + SIGKILL)
    }

    @Test func childSeesNewNamespacesAndSetup() throws {
        let path = outputPath()
        defer { unlink(path) }
        let script = """
            cat /proc/sys/kernel/hostname > \(path)
            readlink /proc/self/ns/net >> \(path)
            cat /proc/sys/net/ipv4/ping_group_range >> \(path)
            echo $$ >> \(path)
            """
        let pending = try PendingChild.spawn(SpawnCommand(["sh", "-c", script]))
        #expect(pending.warnings.isEmpty)

        // Held before exec: its network namespace already exists and is not ours.
        let ours = try Namespaces.identity(path: "/proc/self/ns/net").get()
        let childNetns = try Namespaces.identity(path: Namespaces.path(.network, pid: pending.pid)).get()
        #expect(childNetns != ours)
        #expect(lines(path).isEmpty)

        let child = pending.release()
        #expect(NamespaceTestSupport.value(child.wait(timeoutMilliseconds: 10_000)) == 0)

        let hostname = String(try String(contentsOfFile: "/proc/sys/kernel/hostname", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines))
        let expectedHostname = String(("pasta-" + hostname).prefix(64))
        #expect(lines(path) == [expectedHostname, "net:\(childNetns)", "0\t0", "1"])
    }

    @Test func loginShellGetsDashArgv0() throws {
        let path = outputPath()
        defer { unlink(path) }
        let command = SpawnCommand(file: "/bin/sh", arguments: ["-/bin/sh", "-c", "echo \"$0\" > \(path)"])
        #expect(try runToExit(command) == 0)
        #expect(lines(path) == ["-/bin/sh"])
    }

    @Test func execFailureIsReported() throws {
        let child = try PendingChild.spawn(SpawnCommand(["/nonexistent/passt-test-command"])).release()
        #expect(child.execError == ENOENT)
        #expect(NamespaceTestSupport.value(child.wait(timeoutMilliseconds: 10_000)) == 1)
    }

    @Test func abortedChildLeavesNothingBehind() throws {
        let pending = try PendingChild.spawn(SpawnCommand(["sleep", "30"]))
        let pid = pending.pid
        #expect(kill(pid, 0) == 0)
        #expect(pending.abort() == 128 + SIGKILL)
        #expect(isGone(pid))
    }

    @Test func droppedChildLeavesNothingBehind() throws {
        var pid: pid_t = 0
        do {
            let pending = try PendingChild.spawn(SpawnCommand(["sleep", "30"]))
            pid = pending.pid
            #expect(kill(pid, 0) == 0)
        }
        #expect(pid != 0 && isGone(pid))
    }

    @Test func procMountStaysInsideTheChild() throws {
        let procMounts = {
            ((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "")
                .split(separator: "\n").filter { $0.contains(" - proc ") }.count
        }
        let before = procMounts()
        let pending = try PendingChild.spawn(SpawnCommand(["true"]))
        let childMountinfo = try String(contentsOfFile: "/proc/\(pending.pid)/mountinfo", encoding: .utf8)
        #expect(childMountinfo.split(separator: "\n").filter { $0.contains(" - proc ") }.count == before + 1)
        #expect(procMounts() == before)
        #expect(pending.abort() != nil)
    }

    @Test func descriptorsDoNotLeakIntoTheCommand() throws {
        let path = outputPath()
        defer { unlink(path) }
        let leaky = open("/dev/null", O_RDONLY)  // deliberately without O_CLOEXEC
        #expect(leaky > 2)
        defer { close(leaky) }
        #expect(try runToExit(SpawnCommand(["sh", "-c", "ls /proc/$$/fd > \(path)"])) == 0)
        let fds = lines(path)
        #expect(fds.contains("0") && fds.contains("1") && fds.contains("2"))
        #expect(!fds.contains(String(leaky)), "fds seen by the command: \(fds)")
    }

    @Test func newUserNamespaceGetsMaps() throws {
        let path = outputPath()
        defer { unlink(path) }
        let script = "cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups > \(path); readlink /proc/self/ns/user >> \(path)"
        let pending = try PendingChild.spawn(SpawnCommand(["sh", "-c", script]), userNamespace: .currentUser())
        #expect(pending.idMapFailures.isEmpty)
        #expect(pending.warnings.isEmpty, "setup warnings \(pending.warnings)")
        let ours = try Namespaces.identity(path: "/proc/self/ns/user").get()
        let childUserns = try Namespaces.identity(path: Namespaces.path(.user, pid: pending.pid)).get()
        #expect(childUserns != ours)

        let child = pending.release()
        #expect(NamespaceTestSupport.value(child.wait(timeoutMilliseconds: 10_000)) == 0)
        let words = lines(path).map { $0.split(separator: " ").joined(separator: " ") }
        #expect(words == ["0 \(getuid()) 1", "0 \(getgid()) 1", "deny", "user:\(childUserns)"])
    }
}
