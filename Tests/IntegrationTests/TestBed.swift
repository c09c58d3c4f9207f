// The integration test bed: a contained "host" network behind a "router", made of network
// namespaces this test process creates and deletes itself.
//
//   namespace "router" (ptr-<pid>-<n>)          namespace "host" (pth-<pid>-<n>)
//   veth0 192.0.2.1/24, fd00::1/64   <-veth->   eth0 192.0.2.2/24, fd00::2/64
//                                               default via 192.0.2.1, default via fd00::1
//
// Nothing here touches the machine's own interfaces, routes or /etc/resolv.conf: the veth pair is
// created inside the host namespace with its peer placed straight into the router namespace, and
// the bed's resolv.conf is a file in its own temporary directory. Names carry the test process's
// PID and a counter, so tests running in parallel (Swift Testing's default) never collide.
// DAD is switched off in both namespaces (their own sysctls) so addresses are usable at once.
//
// Use `withTestBed { bed in ... }`: it tears the bed down (background processes killed by PID,
// namespaces deleted, directory removed) whether the body returns or throws. Every external
// command runs with a time limit; output goes to files, so a chatty command cannot block on a
// full pipe, and a command's children are killed with it (each runs in its own process group).
import Foundation
import Synchronization
import Testing
import PasstSys

/// The outcome of one external command.
struct CommandResult: Sendable {
    /// Exit code, or 128 + signal number if it was killed.
    var status: Int32
    var stdout: String
    var stderr: String
    var timedOut: Bool
}

/// A command that failed (non-zero status or time limit), with its output.
struct CommandError: Error, CustomStringConvertible {
    var command: [String]
    var result: CommandResult
    var description: String {
        "\(command.joined(separator: " ")): status \(result.status)\(result.timedOut ? " (timed out)" : ""): "
            + result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A failure of the bed's own plumbing (spawn, setns, missing output).
struct TestBedError: Error, CustomStringConvertible {
    var description: String
}

/// A process started in the background; stop it with `TestBed.stop` (or let teardown kill it).
struct BackgroundProcess: Sendable {
    var pid: pid_t
    var stdoutPath: String
    var stderrPath: String

    /// What the process wrote to stdout so far.
    func stdout() -> String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    /// What the process wrote to stderr so far.
    func stderr() -> String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
}

/// Spawning and waiting for external commands with time limits.
enum Command {
    /// Distinguishes output files and namespace names of this process.
    static let counter = Atomic<Int>(0)

    /// A number unique within this test process.
    static func nextID() -> Int { counter.add(1, ordering: .relaxed).newValue }

    /// Runs `arguments` (argv[0] looked up in PATH and the sbin directories), bounded by `timeout` seconds.
    static func run(_ arguments: [String], timeout: Double = 10) throws -> CommandResult {
        let base = NSTemporaryDirectory() + "passt-cmd-\(getpid())-\(nextID())"
        defer {
            unlink(base + ".out")
            unlink(base + ".err")
        }
        let pid = try spawn(arguments, stdoutPath: base + ".out", stderrPath: base + ".err")
        let (status, timedOut) = wait(pid: pid, timeout: timeout)
        return CommandResult(status: status,
                             stdout: (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? "",
                             stderr: (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? "",
                             timedOut: timedOut)
    }

    /// Runs `arguments` and returns stdout; throws `CommandError` unless it exits with status 0.
    @discardableResult
    static func check(_ arguments: [String], timeout: Double = 10) throws -> String {
        let result = try run(arguments, timeout: timeout)
        guard result.status == 0, !result.timedOut else { throw CommandError(command: arguments, result: result) }
        return result.stdout
    }

    /// Starts `arguments` in a new process group with stdout/stderr to the given files; returns its PID.
    static func spawn(_ arguments: [String], stdoutPath: String, stderrPath: String) throws -> pid_t {
        guard let program = arguments.first, let path = resolve(program) else {
            throw TestBedError(description: "command not found: \(arguments.first ?? "(empty)")")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM] {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, &argv, environ)
        guard rc == 0 else {
            throw TestBedError(description: "posix_spawn \(path): \(String(cString: strerror(rc)))")
        }
        return pid
    }

    /// Waits for `pid` up to `timeout` seconds, then kills its process group; returns (status, timed out).
    static func wait(pid: pid_t, timeout: Double) -> (Int32, Bool) {
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { return (decode(status), false) }
            if r < 0 && errno != EINTR { return (-1, false) }
            if Date() >= deadline { break }
            usleep(2000)
        }
        kill(-pid, SIGKILL)
        kill(pid, SIGKILL)
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (decode(status), true)
    }

    /// Exit code from a wait status, or 128 + signal for a killed process.
    static func decode(_ status: Int32) -> Int32 {
        status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// The full path of `program`: itself if it contains "/", else the first match in PATH or sbin.
    static func resolve(_ program: String) -> String? {
        if program.contains("/") { return program }
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where access("\(directory)/\(program)", X_OK) == 0 {
            return "\(directory)/\(program)"
        }
        return nil
    }
}

/// One host/router namespace pair, its resolv.conf and everything started in it.
final class TestBed: Sendable {
    static let hostInterface = "eth0"
    static let routerInterface = "veth0"
    static let hostIPv4 = "192.0.2.2"
    static let routerIPv4 = "192.0.2.1"
    static let hostIPv6 = "fd00::2"
    static let routerIPv6 = "fd00::1"
    static let resolvConfText = "nameserver 192.0.2.1\nnameserver fd00::1\nsearch example.test other.test\n"

    /// Name of the "host" namespace (the machine pasta/passt would run on).
    let host: String
    /// Name of the "router" namespace (holds the gateway addresses).
    let router: String
    /// Private temporary directory, removed on teardown.
    let directory: String
    /// The bed's resolv.conf (nameserver 192.0.2.1, nameserver fd00::1, search example.test other.test).
    let resolvConfPath: String
    /// /etc/netns/HOST: `ip netns exec HOST` bind-mounts its resolv.conf (a copy of the bed's)
    /// over /etc/resolv.conf for the command, so programs in the host namespace see the bed's DNS.
    let hostEtcDirectory: String

    private struct Owned {
        var namespaces: [String] = []
        var processes: [pid_t] = []
    }
    private let owned = Mutex(Owned())

    /// Builds the bed; on failure removes whatever part of it was made.
    init() throws {
        let id = "\(getpid())-\(Command.nextID())"
        host = "pth-\(id)"
        router = "ptr-\(id)"
        directory = NSTemporaryDirectory() + "passt-bed-\(id)"
        resolvConfPath = directory + "/resolv.conf"
        hostEtcDirectory = "/etc/netns/" + host
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try TestBed.resolvConfText.write(toFile: resolvConfPath, atomically: true, encoding: .utf8)
            try addNamespace(router)
            try addNamespace(host)
            try FileManager.default.createDirectory(atPath: hostEtcDirectory, withIntermediateDirectories: true)
            try TestBed.resolvConfText.write(toFile: hostEtcDirectory + "/resolv.conf", atomically: true, encoding: .utf8)
            try ip(host, "link", "add", TestBed.hostInterface, "type", "veth", "peer", "name", TestBed.routerInterface,
                   "netns", router)
            try ip(router, "addr", "add", TestBed.routerIPv4 + "/24", "dev", TestBed.routerInterface)
            try ip(router, "addr", "add", TestBed.routerIPv6 + "/64", "dev", TestBed.routerInterface, "nodad")
            try ip(host, "addr", "add", TestBed.hostIPv4 + "/24", "dev", TestBed.hostInterface)
            try ip(host, "addr", "add", TestBed.hostIPv6 + "/64", "dev", TestBed.hostInterface, "nodad")
            try ip(router, "link", "set", TestBed.routerInterface, "up")
            try ip(host, "link", "set", TestBed.hostInterface, "up")
            try ip(host, "route", "add", "default", "via", TestBed.routerIPv4)
            try ip(host, "-6", "route", "add", "default", "via", TestBed.routerIPv6)
            try waitForLinkLocal(in: host, interface: TestBed.hostInterface)
        } catch {
            tearDown()
            throw error
        }
    }

    /// Creates another namespace owned by this bed (lo up, DAD off), named after `role`; returns its name.
    func makeNamespace(_ role: String) throws -> String {
        let name = "pt\(role)-\(getpid())-\(Command.nextID())"
        try addNamespace(name)
        return name
    }

    /// Runs `arguments` inside namespace `namespace` (`ip netns exec`), bounded by `timeout` seconds.
    func run(in namespace: String, _ arguments: [String], timeout: Double = 10) throws -> CommandResult {
        try Command.run(["ip", "netns", "exec", namespace] + arguments, timeout: timeout)
    }

    /// Runs `ip -n NAMESPACE ARGS...`; returns stdout, throws unless it succeeds.
    @discardableResult
    func ip(_ namespace: String, _ arguments: String...) throws -> String {
        try Command.check(["ip", "-n", namespace] + arguments)
    }

    /// Runs `ip -j -n NAMESPACE ARGS...` and returns the decoded JSON array.
    func ipJSON(_ namespace: String, _ arguments: String...) throws -> [[String: Any]] {
        let text = try Command.check(["ip", "-j", "-n", namespace] + arguments)
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty { return [] }
        guard let array = try JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [[String: Any]] else {
            throw TestBedError(description: "ip -j \(arguments.joined(separator: " ")): not a JSON array: \(trimmed)")
        }
        return array
    }

    /// Starts `arguments` in the background (inside `namespace` if given); teardown kills it.
    func startBackground(in namespace: String?, _ arguments: [String]) throws -> BackgroundProcess {
        let base = directory + "/bg-\(Command.nextID())"
        let argv = namespace.map { ["ip", "netns", "exec", $0] + arguments } ?? arguments
        let pid = try Command.spawn(argv, stdoutPath: base + ".out", stderrPath: base + ".err")
        owned.withLock { $0.processes.append(pid) }
        return BackgroundProcess(pid: pid, stdoutPath: base + ".out", stderrPath: base + ".err")
    }

    /// Sends `signal` to a background process, waits up to `timeout` s (then SIGKILL); returns its status.
    @discardableResult
    func stop(_ process: BackgroundProcess, signal: Int32 = SIGTERM, timeout: Double = 5) -> Int32 {
        let mine = owned.withLock { owned -> Bool in
            guard let i = owned.processes.firstIndex(of: process.pid) else { return false }
            owned.processes.remove(at: i)
            return true
        }
        guard mine else { return -1 }
        kill(process.pid, signal)
        return Command.wait(pid: process.pid, timeout: timeout).0
    }

    /// Opens a socket inside `namespace` (setns on a fresh thread of ours); the socket stays in that namespace.
    func openSocket(in namespace: String, domain: Int32, type: Int32, protocol proto: Int32) throws -> FileDescriptor {
        FileDescriptor(taking: try NamespaceThread.socket(namespace: namespace, domain: domain, type: type, protocol: proto))
    }

    /// An rtnetlink client talking to `namespace`.
    func netlink(in namespace: String) throws -> Netlink {
        Netlink(socket: try openSocket(in: namespace, domain: AF_NETLINK, type: RTNetlink.socketType,
                                       protocol: RTNetlink.NETLINK_ROUTE))
    }

    /// Kills what the bed started, deletes its namespaces and directory; safe to call twice.
    func tearDown() {
        let (processes, namespaces) = owned.withLock { owned in
            defer { owned = Owned() }
            return (owned.processes, owned.namespaces)
        }
        for pid in processes {
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
            _ = Command.wait(pid: pid, timeout: 5)
        }
        for name in namespaces.reversed() {
            _ = try? Command.run(["ip", "netns", "del", name])
        }
        try? FileManager.default.removeItem(atPath: directory)
        try? FileManager.default.removeItem(atPath: hostEtcDirectory)
    }

    /// Where the `passt`/`pasta` binaries under test are: PASST_TEST_BINARIES if set (the sanitizer
    /// builds of scripts/sanitizer-test.sh), else the running test executable's directory, where
    /// SwiftPM puts them.
    static var binaryDirectory: String {
        if let directory = ProcessInfo.processInfo.environment["PASST_TEST_BINARIES"] { return directory }
        let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return (target as NSString).deletingLastPathComponent
    }

    /// Whether the binaries under test are sanitizer builds (PASST_TEST_SANITIZED=1): slower, with
    /// more memory, and without their seccomp filter.
    static let sanitizedBinaries = ProcessInfo.processInfo.environment["PASST_TEST_SANITIZED"] == "1"

    /// Full path of the built binary `name` ("passt", "pasta") next to the tests, if it exists.
    static func binary(_ name: String) -> String? {
        let path = binaryDirectory + "/" + name
        return access(path, X_OK) == 0 ? path : nil
    }

    /// Creates namespace `name`, records it for teardown, brings `lo` up and turns DAD off in it.
    private func addNamespace(_ name: String) throws {
        try Command.check(["ip", "netns", "add", name])
        owned.withLock { $0.namespaces.append(name) }
        try ip(name, "link", "set", "lo", "up")
        try Command.check(["ip", "netns", "exec", name, "sysctl", "-q", "-w",
                           "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"])
    }

    /// Waits (up to 5 s) until `interface` in `namespace` has an IPv6 link-local address.
    private func waitForLinkLocal(in namespace: String, interface: String) throws {
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            let info = try ipJSON(namespace, "-6", "addr", "show", "dev", interface, "scope", "link")
            if let addresses = info.first?["addr_info"] as? [[String: Any]], !addresses.isEmpty { return }
            usleep(20_000)
        }
        throw TestBedError(description: "no link-local address on \(interface) in \(namespace)")
    }
}

/// Builds a test bed, runs `body` with it and tears it down, also when `body` throws.
func withTestBed<T>(_ body: (TestBed) async throws -> T) async throws -> T {
    let bed = try TestBed()
    do {
        let result = try await body(bed)
        bed.tearDown()
        return result
    } catch {
        bed.tearDown()
        throw error
    }
}

/// Creating a socket inside a named network namespace from a dedicated, short-lived pthread.
enum NamespaceThread {
    /// Work handed to the thread and its result.
    private final class Job {
        let namespace: String, domain: Int32, type: Int32, proto: Int32
        var fd: Int32 = -1
        var failure: String?

        /// Records what socket to create in which namespace.
        init(namespace: String, domain: Int32, type: Int32, proto: Int32) {
            self.namespace = namespace; self.domain = domain; self.type = type; self.proto = proto
        }

        /// Runs on the new thread: join the namespace, create the socket.
        func run() {
            typealias SetNS = @convention(c) (Int32, Int32) -> Int32
            guard let symbol = dlsym(nil, "setns") else { failure = "setns not found"; return }
            let setns = unsafeBitCast(symbol, to: SetNS.self)
            let nsfd = open("/run/netns/\(namespace)", O_RDONLY | O_CLOEXEC)
            guard nsfd >= 0 else { failure = "open /run/netns/\(namespace): \(String(cString: strerror(errno)))"; return }
            defer { close(nsfd) }
            let cloneNewNet: Int32 = 0x4000_0000
            guard setns(nsfd, cloneNewNet) == 0 else { failure = "setns: \(String(cString: strerror(errno)))"; return }
            // Close-on-exec: a listener must not outlive its close in a process another test spawns.
            fd = Glibc.socket(domain, type | Int32(SOCK_CLOEXEC.rawValue), proto)
            if fd < 0 { failure = "socket: \(String(cString: strerror(errno)))" }
        }
    }

    /// Returns a new socket created inside namespace `namespace` (the calling thread stays where it is).
    static func socket(namespace: String, domain: Int32, type: Int32, protocol proto: Int32) throws -> Int32 {
        let job = Job(namespace: namespace, domain: domain, type: type, proto: proto)
        let context = Unmanaged.passRetained(job).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let job = Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue()
            job.run()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Job>.fromOpaque(context).release()
            throw TestBedError(description: "pthread_create: \(String(cString: strerror(rc)))")
        }
        pthread_join(thread, nil)
        if let failure = job.failure { throw TestBedError(description: failure) }
        return job.fd
    }
}

extension Trait where Self == TimeLimitTrait {
    /// The time limit of every integration suite: a guard against hangs, not a speed check. The
    /// tests block their threads (processes, sockets), and Swift's pool has one thread per core,
    /// so on 2 cores a test may wait minutes behind the bulk transfers before it runs, while its
    /// limit already counts.
    static var integrationTimeLimit: Self { .timeLimit(.minutes(10)) }
}
