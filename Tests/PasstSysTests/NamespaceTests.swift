// Namespace files, setns/unshare, and sockets created inside another network namespace.
//
// Tests that change namespaces need root; they create their own scratch namespaces (`ip netns
// add` with the test process's PID in the name) and delete them whatever happens. Every external
// command runs with a time limit (`NamespaceTestSupport.run`).
import Foundation
import Testing
import PasstSys

/// Helpers shared by NamespaceTests, SpawnTests and TapDeviceTests.
enum NamespaceTestSupport {
    /// True when the tests may create namespaces and devices.
    static let isRoot = getuid() == 0

    /// Distinguishes scratch names within this process.
    nonisolated(unsafe) static var counter = 0
    static let counterLock = NSLock()

    /// A name unique within this machine: prefix, PID and a per-process counter.
    static func uniqueName(_ prefix: String) -> String {
        counterLock.lock()
        defer { counterLock.unlock() }
        counter += 1
        return "\(prefix)-\(getpid())-\(counter)"
    }

    /// Runs `arguments` (argv[0] looked up in the usual bin directories), bounded by `timeout`
    /// seconds; returns the exit status (-1 on timeout) and stdout+stderr.
    static func run(_ arguments: [String], timeout: Double = 10) throws -> (status: Int32, output: String) {
        let dirs = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        let tool = dirs.map { $0 + "/" + arguments[0] }.first { FileManager.default.isExecutableFile(atPath: $0) }
        let outPath = NSTemporaryDirectory() + uniqueName("passt-ns-cmd") + ".out"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        defer { unlink(outPath) }
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        defer { try? out.close() }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool ?? arguments[0])
        process.arguments = Array(arguments.dropFirst())
        process.standardOutput = out
        process.standardError = out
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(5000) }
        var status: Int32 = -1
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        } else {
            status = process.terminationStatus
        }
        return (status, (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "")
    }

    /// Runs `arguments` and fails the test unless they exit with status 0; returns the output.
    @discardableResult
    static func check(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let (status, output) = try run(arguments)
        #expect(status == 0, "\(arguments.joined(separator: " ")): \(output)", sourceLocation: sourceLocation)
        return output
    }

    /// Creates a scratch network namespace, runs `body` with its name, and deletes it.
    static func withScratchNamespace<R>(_ body: (String) throws -> R) throws -> R {
        let name = uniqueName("passt-ns")
        try check(["ip", "netns", "add", name])
        defer { _ = try? run(["ip", "netns", "del", name]) }
        return try body(name)
    }

    /// The value of a result, or nil after recording the failure.
    static func value<T>(_ result: SyscallResult<T>, sourceLocation: SourceLocation = #_sourceLocation) -> T? {
        switch result {
        case .success(let v): return v
        case .wouldBlock: Issue.record("would block", sourceLocation: sourceLocation)
        case .failure(let e): Issue.record("errno \(e): \(SyscallError(e))", sourceLocation: sourceLocation)
        }
        return nil
    }

    /// The errno of a failed result (EAGAIN for wouldBlock), nil on success; for move-only values.
    static func errorCode<T: ~Copyable>(_ result: consuming SyscallResult<T>) -> Int32? {
        switch consume result {
        case .success: return nil
        case .wouldBlock: return EAGAIN
        case .failure(let e): return e
        }
    }

    /// The identity of the calling thread's network namespace.
    static func currentNetns() -> NamespaceID? {
        value(Namespaces.identity(path: Namespaces.currentThreadPath(.network)))
    }
}

@Suite struct NamespacePathTests {
    @Test func netnsValueWithoutSlashIsUnderRunNetns() {
        #expect(Namespaces.networkNamespacePath("podman-1") == "/run/netns/podman-1")
        #expect(Namespaces.networkNamespacePath("/var/run/netns/x") == "/var/run/netns/x")
        #expect(Namespaces.networkNamespacePath("./rel") == "./rel")
    }

    @Test func procPaths() {
        #expect(Namespaces.path(.network, pid: 42) == "/proc/42/ns/net")
        #expect(Namespaces.path(.user, pid: 42) == "/proc/42/ns/user")
        #expect(Namespaces.path(.mount, pid: 1) == "/proc/1/ns/mnt")
        #expect(Namespaces.currentThreadPath(.uts) == "/proc/thread-self/ns/uts")
        #expect(NamespaceTypes([.network, .user]).procEntry == nil)
    }

    @Test func openOwnNamespaceThreeWays() throws {
        let byPID = try Namespaces.open(.network, pid: getpid()).get()
        let byThread = try Namespaces.openCurrent(.network).get()
        let a = try Namespaces.identity(of: byPID).get()
        let b = try Namespaces.identity(of: byThread).get()
        let c = try Namespaces.identity(path: "/proc/self/ns/net").get()
        #expect(a == b && b == c)
        let link = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")
        #expect(link == "net:\(a)")
    }

    @Test func missingNamespaceFile() {
        let result = Namespaces.open(path: "/run/netns/passt-no-such-namespace-\(getpid())")
        #expect(NamespaceTestSupport.errorCode(result) == ENOENT)
    }

    @Test func enterChecksTheNamespaceType() throws {
        let uts = try Namespaces.openCurrent(.uts).get()
        #expect(Namespaces.enter(uts, type: .network).errorCode == EINVAL)
    }

    @Test func idMapFailureText() {
        let failure = IDMapFailure(path: "/proc/1/uid_map", code: EPERM)
        #expect(failure.description == "Couldn't write /proc/1/uid_map: Operation not permitted")
    }
}

@Suite(.enabled(if: NamespaceTestSupport.isRoot, "needs root")) struct NamespaceEntryTests {
    @Test func runEntersTargetAndReturns() throws {
        try NamespaceTestSupport.withScratchNamespace { name in
            let before = NamespaceTestSupport.currentNetns()
            let target = try TargetNetworkNamespace(path: Namespaces.networkNamespacePath(name))
            let targetID = try Namespaces.identity(of: target.target).get()
            #expect(targetID != before)
            let inside = try target.run { () throws(SyscallError) -> NamespaceID in
                try Namespaces.identity(path: Namespaces.currentThreadPath(.network)).get()
            }
            #expect(inside == targetID)
            #expect(NamespaceTestSupport.currentNetns() == before)

            // A throwing body still brings the thread home.
            #expect(throws: SyscallError(EBADMSG)) {
                try target.run { () throws(SyscallError) in throw SyscallError(EBADMSG) }
            }
            #expect(NamespaceTestSupport.currentNetns() == before)
        }
    }

    @Test func socketKeepsItsNamespace() throws {
        try NamespaceTestSupport.withScratchNamespace { name in
            let before = NamespaceTestSupport.currentNetns()
            let target = try TargetNetworkNamespace(path: Namespaces.networkNamespacePath(name))
            let socket = try target.socket(domain: AF_INET, type: Int32(SOCK_STREAM.rawValue)).get()
            #expect(NamespaceTestSupport.currentNetns() == before)

            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    bind(socket.raw, sa, length) == 0 && listen(socket.raw, 1) == 0
                        && getsockname(socket.raw, sa, &length) == 0
                }
            }
            #expect(bound)
            let port = UInt16(bigEndian: address.sin_port)
            #expect(port != 0)

            let inNamespace = try NamespaceTestSupport.check(["ip", "netns", "exec", name, "ss", "-ltnH"])
            #expect(inNamespace.contains("0.0.0.0:\(port) "), "ss in \(name): \(inNamespace)")
            let onHost = try NamespaceTestSupport.check(["ss", "-ltnH"])
            #expect(!onHost.contains("0.0.0.0:\(port) "), "listener leaked to the host namespace")
        }
    }

    @Test func unshareNetworkOnADedicatedThread() throws {
        let processNetns = try Namespaces.identity(path: "/proc/self/ns/net").get()
        let results = NSLock()
        nonisolated(unsafe) var seen: (before: NamespaceID?, after: NamespaceID?, error: Int32?) = (nil, nil, nil)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            let before = try? Namespaces.identity(path: Namespaces.currentThreadPath(.network)).get()
            let error = Namespaces.unshare(.network).errorCode
            let after = try? Namespaces.identity(path: Namespaces.currentThreadPath(.network)).get()
            results.lock()
            seen = (before, after, error)
            results.unlock()
            done.signal()
        }
        thread.start()
        #expect(done.wait(timeout: .now() + 10) == .success)
        results.lock()
        defer { results.unlock() }
        #expect(seen.error == nil)
        #expect(seen.before == processNetns)
        #expect(seen.after != nil && seen.after != processNetns)
        #expect(try Namespaces.identity(path: "/proc/self/ns/net").get() == processNetns)
    }
}
