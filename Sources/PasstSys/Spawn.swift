// pasta's spawn mode: a command started in new namespaces and held until pasta is ready.
//
// Theory of operation (spec §1.3, steps 2-5): `PendingChild.spawn` clones a child into new
// network, UTS, IPC, mount and PID namespaces (plus, on request, a new user namespace whose
// uid_map/gid_map the parent writes before the child goes on). The child, PID 1 of its PID
// namespace, mounts a fresh /proc, writes "0 0" to net.ipv4.ping_group_range so that ping sockets
// work for root, sets its hostname to "pasta-<old hostname>", then waits. When `spawn` returns,
// that setup is done and its namespaces exist: the caller opens /proc/PID/ns/net, creates the tap,
// configures the namespace, and finally calls `release()`, which lets the child execvp(3) the
// command and returns once it has (or once execvp failed, with its errno). Everything between
// clone and exec runs in C (shim_ns.c), from async-signal-safe calls only: the parent may be
// multi-threaded (the test runner is), and no Swift code may run in such a child.
//
// Differences from upstream: the child is held on a socket pair rather than by SIGUSR1, so if
// pasta gives up (throws, exits, crashes) before `release()`, the child sees EOF and exits instead
// of staying blocked forever (spec §16.15); dropping a `PendingChild` without releasing it kills
// and reaps the child. The child closes every descriptor above stderr, so nothing pasta opened
// leaks into the command (upstream closes them at start-up anyway), puts caught signals and
// SIGPIPE back to their defaults, and starts the command with no signals blocked.
//
// Exit status (spec §1.3 step 5): pasta exits with the command's status, or 128 + signal number
// if it was killed. When execvp fails the child exits with status 1, as upstream. Note that PID 1
// of a PID namespace only receives signals it has a handler for, except SIGKILL and SIGSTOP from
// an ancestor namespace: `RunningChild.signal(SIGTERM)` does not stop a plain `sleep`.
#if canImport(Glibc)
import Glibc
#endif
import CPasstShim

/// A command for pasta to run: the file execvp(3) looks up in PATH, and the argument vector.
public struct SpawnCommand: Equatable, Sendable {
    /// What execvp searches for (a name without "/" is looked up in PATH).
    public var file: String
    /// The argument vector, argv[0] included.
    public var arguments: [String]

    /// Runs `file` with the argument vector `arguments` (argv[0] included).
    public init(file: String, arguments: [String]) {
        self.file = file
        self.arguments = arguments
    }

    /// Runs `arguments[0]` with `arguments` (pasta [OPTIONS] COMMAND [ARG...]); must not be empty.
    public init(_ arguments: [String]) {
        precondition(!arguments.isEmpty, "a command needs at least argv[0]")
        self.init(file: arguments[0], arguments: arguments)
    }

    /// `shell` (/bin/sh when nil) as a login shell: argv[0] is "-" followed by its path.
    public static func loginShell(_ shell: String?) -> SpawnCommand {
        let path = shell ?? "/bin/sh"
        return SpawnCommand(file: path, arguments: ["-" + path])
    }

    /// The login shell named by $SHELL, /bin/sh if unset (pasta without a command).
    public static func loginShellFromEnvironment() -> SpawnCommand {
        loginShell(getenv("SHELL").map { String(cString: $0) })
    }
}

/// Setup steps of a spawned child that failed; each is a warning, as upstream.
public struct SpawnSetupWarnings: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32

    /// Wraps SHIM_NS_WARN_* bits.
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Mounting a fresh /proc failed ("Couldn't mount /proc").
    public static let procMount = SpawnSetupWarnings(rawValue: UInt32(SHIM_NS_WARN_PROC_MOUNT))
    /// Writing ping_group_range failed ("Cannot set ping_group_range, ICMP requests might fail").
    public static let pingGroupRange = SpawnSetupWarnings(rawValue: UInt32(SHIM_NS_WARN_PING_GROUP))
    /// Setting the hostname failed ("Unable to set pasta-prefixed hostname").
    public static let hostname = SpawnSetupWarnings(rawValue: UInt32(SHIM_NS_WARN_HOSTNAME))
}

/// Why a child could not be spawned.
public enum SpawnError: Error, Equatable, Sendable, CustomStringConvertible {
    /// socketpair(2), mmap(2) or clone(2) failed with this errno.
    case cloneFailed(Int32)
    /// The child died before finishing its setup; its exit code, nil if it could not be reaped.
    case childDied(exitCode: Int32?)

    /// A message for the log.
    public var description: String {
        switch self {
        case .cloneFailed(let code): return "clone: \(SyscallError(code))"
        case .childDied(let code): return "Child died during namespace setup (status \(code.map(String.init) ?? "unknown"))"
        }
    }
}

/// A spawned child, set up in its new namespaces and waiting to exec its command. Dropping it
/// without `release()` kills and reaps the child.
public struct PendingChild: ~Copyable {
    /// The namespaces every spawned child gets (a user namespace is added on request).
    public static let namespaces: NamespaceTypes = [.network, .uts, .ipc, .mount, .pid]

    /// The child's PID in our PID namespace (/proc/PID/ns/net is its network namespace).
    public let pid: pid_t
    /// Setup steps that failed in the child.
    public let warnings: SpawnSetupWarnings
    /// ID map files that could not be written (only with a new user namespace).
    public let idMapFailures: [IDMapFailure]
    /// Our end of the control socket pair (see shim_ns.h).
    private let control: FileDescriptor
    /// Set once `release()` or `abort()` took over the child's fate.
    private var settled = false

    /// Wraps a child whose setup is done.
    private init(pid: pid_t, control: consuming FileDescriptor, warnings: SpawnSetupWarnings,
                 idMapFailures: [IDMapFailure]) {
        self.pid = pid
        self.control = control
        self.warnings = warnings
        self.idMapFailures = idMapFailures
    }

    /// Clones a child for `command` in new namespaces (with `userNamespace`, also a new user
    /// namespace mapped as given) and returns once its setup is done and it waits for `release()`.
    public static func spawn(_ command: SpawnCommand,
                             userNamespace: UserNamespaceMapping? = nil) throws(SpawnError) -> PendingChild {
        var types = namespaces
        if userNamespace != nil { types.insert(.user) }

        var child = shim_ns_spawn()
        let code = withCStringArray(command.arguments) { argv in
            command.file.withCString { file in
                shim_ns_spawn(file, argv, types.rawValue, userNamespace == nil ? 0 : 1, &child) == 0 ? 0 : errno
            }
        }
        if code != 0 { throw .cloneFailed(code) }

        let control = FileDescriptor(taking: child.control_fd)
        var failures: [IDMapFailure] = []
        if let userNamespace {
            failures = Namespaces.writeIDMaps(userNamespace, pid: child.pid)
            sendByte(control)
        }
        guard let word = readWord(control) else {
            throw .childDied(exitCode: killAndReap(child.pid))
        }
        return PendingChild(pid: child.pid, control: control, warnings: SpawnSetupWarnings(rawValue: word),
                            idMapFailures: failures)
    }

    /// Lets the child execvp its command; returns once it has, or once execvp failed.
    public consuming func release() -> RunningChild {
        settled = true
        Self.sendByte(control)
        let execError = Self.readWord(control).map { Int32(bitPattern: $0) }
        return RunningChild(pid: pid, execError: execError)
    }

    /// Kills the held child (and with it its PID namespace) and reaps it; returns its exit code,
    /// nil if it could not be reaped.
    public consuming func abort() -> Int32? {
        settled = true
        return Self.killAndReap(pid)
    }

    deinit {
        if !settled { _ = Self.killAndReap(pid) }
    }

    /// Sends the one-byte "go on" to the child (lost if the child is gone: it is then reaped later).
    private static func sendByte(_ control: borrowing FileDescriptor) {
        var byte: UInt8 = 1
        let raw = control.raw
        _ = retryingEINTR { send(raw, &byte, 1, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads one 4-byte word from the child; nil on EOF (exec'd or dead) or error.
    private static func readWord(_ control: borrowing FileDescriptor) -> UInt32? {
        var word: UInt32 = 0
        var filled = 0
        let raw = control.raw
        while filled < 4 {
            let result = withUnsafeMutableBytes(of: &word) { buffer in
                retryingEINTR { Glibc.read(raw, buffer.baseAddress! + filled, 4 - filled) }
            }
            guard case .success(let n) = result, n > 0 else { return nil }
            filled += n
        }
        return word
    }

    /// Sends SIGKILL to `pid` and waits for it; returns its exit code, nil if it was not our child.
    private static func killAndReap(_ pid: pid_t) -> Int32? {
        _ = kill(pid, SIGKILL)
        var status: Int32 = 0
        guard case .success = retryingEINTR({ waitpid(pid, &status, 0) }) else { return nil }
        return shim_ns_exit_code(status)
    }
}

/// A spawned child after `release()`: its command runs (unless `execError` says otherwise).
public struct RunningChild: Sendable {
    /// The child's PID in our PID namespace.
    public let pid: pid_t
    /// The errno of a failed execvp (the child then exits with status 1); nil if the command
    /// started, or if the child had already died (then its exit code tells).
    public let execError: Int32?

    /// Reaps the child if it has exited: its exit code (status, or 128 + signal), nil if it runs.
    public func tryWait() -> SyscallResult<Int32?> {
        var status: Int32 = 0
        switch retryingEINTR({ waitpid(pid, &status, WNOHANG) }) {
        case .success(0): return .success(nil)
        case .success: return .success(shim_ns_exit_code(status))
        case .wouldBlock: return .wouldBlock
        case .failure(let e): return .failure(e)
        }
    }

    /// Waits up to `timeoutMilliseconds` for the child to exit: its exit code, nil if still running.
    public func wait(timeoutMilliseconds: Int) -> SyscallResult<Int32?> {
        let deadline = Self.monotonicMilliseconds() + Int64(timeoutMilliseconds)
        while true {
            let result = tryWait()
            guard case .success(nil) = result, Self.monotonicMilliseconds() < deadline else { return result }
            usleep(5000)
        }
    }

    /// Sends `signal` to the child.
    public func signal(_ signal: Int32) -> SyscallResult<Void> {
        retryingEINTRVoid { kill(pid, signal) }
    }

    /// pasta's exit code for a child reaped through waitid/SIGCHLD info: `status` if it `exited`
    /// (CLD_EXITED), else 128 + `status` (the signal number).
    public static func exitCode(exited: Bool, status: Int32) -> Int32 {
        exited ? status : 128 + status
    }

    /// CLOCK_MONOTONIC in milliseconds.
    private static func monotonicMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

/// Calls `body` with a NULL-terminated C array of copies of `strings`, freed afterwards.
private func withCStringArray<R>(_ strings: [String],
                                 _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) } + [nil]
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
