// Linux namespaces: opening, entering, creating, and user-namespace ID maps.
//
// Theory of operation: a namespace is named by a file (/proc/PID/ns/net, /run/netns/NAME, or any
// bind mount of one); opening it gives an fd that keeps the namespace alive and can be passed to
// setns(2). pasta works in two network namespaces: the one it started in ("home", where host
// sockets live) and the target (where the tap device and the guest-side sockets live).
//
// setns(2) and unshare(2) of a network namespace change the *calling thread* only, never the
// process. `TargetNetworkNamespace.run` uses that: it moves the current thread into the target,
// runs a closure, and moves the thread back. Anything created meanwhile keeps the namespace it
// was created in: a socket stays bound to the target's stack, a tap device is made in the target,
// after the thread has left. The daemon is single-threaded, so `run` is called on its main
// thread; other code that calls it must use a dedicated thread (or at least one that runs nothing
// else meanwhile: the closure must not suspend), and the thread must be the one that created the
// value, because "home" is that thread's namespace. Swift concurrency's executors may run other
// work on a thread between two suspension points, never in the middle of a synchronous closure.
//
// User and mount namespaces are per process, not per thread: unshare(CLONE_NEWUSER) fails with
// EINVAL in a multi-threaded process, and so does unshare(CLONE_NEWNS) while threads share the
// filesystem context. Those calls belong to the daemon's start-up, before any thread exists.
//
// Paths under /proc/thread-self are opened at start-up: after pasta's pivot_root (spec §10.1)
// there is no /proc any more, so a `TargetNetworkNamespace` keeps both descriptors open.
#if canImport(Glibc)
import Glibc
#endif
import CPasstShim

/// A set of namespace types, as the CLONE_NEW* flags of clone(2), setns(2) and unshare(2).
public struct NamespaceTypes: OptionSet, Hashable, Sendable {
    public let rawValue: Int32

    /// Wraps CLONE_NEW* bits.
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Mount namespace (CLONE_NEWNS).
    public static let mount = NamespaceTypes(rawValue: SHIM_CLONE_NEWNS)
    /// Cgroup namespace (CLONE_NEWCGROUP).
    public static let cgroup = NamespaceTypes(rawValue: SHIM_CLONE_NEWCGROUP)
    /// UTS (hostname) namespace (CLONE_NEWUTS).
    public static let uts = NamespaceTypes(rawValue: SHIM_CLONE_NEWUTS)
    /// IPC namespace (CLONE_NEWIPC).
    public static let ipc = NamespaceTypes(rawValue: SHIM_CLONE_NEWIPC)
    /// User namespace (CLONE_NEWUSER).
    public static let user = NamespaceTypes(rawValue: SHIM_CLONE_NEWUSER)
    /// PID namespace (CLONE_NEWPID).
    public static let pid = NamespaceTypes(rawValue: SHIM_CLONE_NEWPID)
    /// Network namespace (CLONE_NEWNET).
    public static let network = NamespaceTypes(rawValue: SHIM_CLONE_NEWNET)

    /// The file name under /proc/PID/ns/ of a single type ("net", "user", ...), nil for sets.
    public var procEntry: String? {
        switch self {
        case .mount: return "mnt"
        case .cgroup: return "cgroup"
        case .uts: return "uts"
        case .ipc: return "ipc"
        case .user: return "user"
        case .pid: return "pid"
        case .network: return "net"
        default: return nil
        }
    }
}

/// The identity of a namespace: device and inode of its nsfs file, equal for the same namespace.
public struct NamespaceID: Hashable, Sendable, CustomStringConvertible {
    /// st_dev of the namespace file (the nsfs instance).
    public var device: UInt64
    /// st_ino of the namespace file (what `readlink /proc/PID/ns/net` shows as net:[INODE]).
    public var inode: UInt64

    /// Makes an identity from device and inode numbers.
    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }

    /// "[INODE]", as in the target of /proc/PID/ns links.
    public var description: String { "[\(inode)]" }
}

/// The single-ID mapping pasta writes for a new user namespace: 0 inside is `uid`/`gid` outside.
public struct UserNamespaceMapping: Equatable, Sendable {
    /// The user ID outside that becomes root inside.
    public var uid: uid_t
    /// The group ID outside that becomes root inside.
    public var gid: gid_t

    /// Maps root inside to `uid`/`gid` outside.
    public init(uid: uid_t, gid: gid_t) {
        self.uid = uid
        self.gid = gid
    }

    /// Maps root inside to the caller's real user and group IDs.
    public static func currentUser() -> UserNamespaceMapping {
        UserNamespaceMapping(uid: getuid(), gid: getgid())
    }
}

/// One /proc file of a user-namespace setup that could not be written (a warning upstream).
public struct IDMapFailure: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file: /proc/PID/uid_map, /proc/PID/setgroups or /proc/PID/gid_map.
    public var path: String
    /// The errno of the failed open or write.
    public var code: Int32

    /// A failure to write `path` with errno `code`.
    public init(path: String, code: Int32) {
        self.path = path
        self.code = code
    }

    /// "Couldn't write PATH: strerror".
    public var description: String { "Couldn't write \(path): \(SyscallError(code))" }
}

/// Namespace files and the setns/unshare system calls.
public enum Namespaces {
    /// The network namespace path for pasta's `--netns VALUE`: VALUE if it has a "/", else /run/netns/VALUE.
    public static func networkNamespacePath(_ value: String) -> String {
        value.contains("/") ? value : "/run/netns/" + value
    }

    /// The file of namespace `type` of process `pid`: /proc/PID/ns/ENTRY.
    public static func path(_ type: NamespaceTypes, pid: pid_t) -> String {
        "/proc/\(pid)/ns/" + entry(type)
    }

    /// The file of the calling thread's namespace of `type`: /proc/thread-self/ns/ENTRY.
    public static func currentThreadPath(_ type: NamespaceTypes) -> String {
        "/proc/thread-self/ns/" + entry(type)
    }

    /// Opens a namespace file read-only and close-on-exec.
    public static func open(path: String) -> SyscallResult<FileDescriptor> {
        retryingEINTRDescriptor { Glibc.open(path, O_RDONLY | O_CLOEXEC) }
    }

    /// Opens namespace `type` of process `pid`.
    public static func open(_ type: NamespaceTypes, pid: pid_t) -> SyscallResult<FileDescriptor> {
        open(path: path(type, pid: pid))
    }

    /// Opens the calling thread's namespace of `type` (needs /proc: call before pivot_root).
    public static func openCurrent(_ type: NamespaceTypes) -> SyscallResult<FileDescriptor> {
        open(path: currentThreadPath(type))
    }

    /// The identity of the namespace behind an open namespace file.
    public static func identity(of fd: borrowing FileDescriptor) -> SyscallResult<NamespaceID> {
        var st = stat()
        let raw = fd.raw
        switch retryingEINTRVoid({ fstat(raw, &st) }) {
        case .success: return .success(NamespaceID(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)))
        case .wouldBlock: return .wouldBlock
        case .failure(let e): return .failure(e)
        }
    }

    /// The identity of the namespace named by a path (following /proc/PID/ns symlinks).
    public static func identity(path: String) -> SyscallResult<NamespaceID> {
        var st = stat()
        switch retryingEINTRVoid({ stat(path, &st) }) {
        case .success: return .success(NamespaceID(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)))
        case .wouldBlock: return .wouldBlock
        case .failure(let e): return .failure(e)
        }
    }

    /// Moves the calling thread into the namespace of `fd`; an empty `type` accepts any type,
    /// otherwise the kernel checks the file is a namespace of that type (EINVAL if not).
    public static func enter(_ fd: borrowing FileDescriptor, type: NamespaceTypes = []) -> SyscallResult<Void> {
        let raw = fd.raw
        return retryingEINTRVoid { shim_setns(raw, type.rawValue) }
    }

    /// Gives the caller new namespaces of `types`: network, UTS, IPC per thread; user and mount
    /// only in a single-threaded process (EINVAL otherwise).
    public static func unshare(_ types: NamespaceTypes) -> SyscallResult<Void> {
        retryingEINTRVoid { shim_unshare(types.rawValue) }
    }

    /// Sets up a new user namespace of process `pid` (nil: this process) as pasta does (spec §1.3
    /// step 1): uid_map "0 UID 1", setgroups "deny", gid_map "0 GID 1". Tries all three and
    /// returns the failures (empty on success).
    public static func writeIDMaps(_ mapping: UserNamespaceMapping, pid: pid_t? = nil) -> [IDMapFailure] {
        let base = pid.map { "/proc/\($0)/" } ?? "/proc/self/"
        let files = [("uid_map", "0 \(mapping.uid) 1"), ("setgroups", "deny"), ("gid_map", "0 \(mapping.gid) 1")]
        var failures: [IDMapFailure] = []
        for (name, contents) in files {
            if case .failure(let code) = writeFile(base + name, contents) {
                failures.append(IDMapFailure(path: base + name, code: code))
            }
        }
        return failures
    }

    /// The /proc/PID/ns entry name of a single namespace type.
    private static func entry(_ type: NamespaceTypes) -> String {
        guard let name = type.procEntry else { preconditionFailure("not a single namespace type: \(type.rawValue)") }
        return name
    }

    /// Writes `contents` to the existing file at `path` in one write(2), as /proc files require.
    private static func writeFile(_ path: String, _ contents: String) -> SyscallResult<Void> {
        let fd: FileDescriptor
        switch retryingEINTRDescriptor({ Glibc.open(path, O_WRONLY | O_CLOEXEC) }) {
        case .success(let opened): fd = opened
        case .wouldBlock: return .wouldBlock
        case .failure(let e): return .failure(e)
        }
        let raw = fd.raw
        let bytes = Array(contents.utf8)
        let count = bytes.count
        let written = bytes.withUnsafeBytes { buffer in
            retryingEINTR { Glibc.write(raw, buffer.baseAddress, buffer.count) }
        }
        switch written {
        case .success(count): return fd.close()
        case .success: return .failure(EIO)
        case .wouldBlock: return .wouldBlock
        case .failure(let e): return .failure(e)
        }
    }
}

/// A network namespace the calling thread can step into and back out of: pasta's target netns,
/// with the netns of the thread that made this value as "home".
public struct TargetNetworkNamespace: ~Copyable, Sendable {
    /// The target network namespace.
    public let target: FileDescriptor
    /// The network namespace `run` returns to.
    public let home: FileDescriptor

    /// Uses `target` and `home` (both network namespace files) as given.
    public init(target: consuming FileDescriptor, home: consuming FileDescriptor) {
        self.target = target
        self.home = home
    }

    /// Uses `target`, with the calling thread's current network namespace as home (opens /proc).
    public init(target: consuming FileDescriptor) throws(SyscallError) {
        let home = try Namespaces.openCurrent(.network).get()
        self.init(target: target, home: home)
    }

    /// Opens the network namespace at `path` as the target, the calling thread's netns as home.
    public init(path: String) throws(SyscallError) {
        try self.init(target: Namespaces.open(path: path).get())
    }

    /// Runs `body` with the calling thread in the target namespace, then moves it back home;
    /// throws if the target cannot be entered. Failing to return is fatal (the thread would be
    /// left in the wrong namespace).
    public func run<R: ~Copyable>(_ body: () throws(SyscallError) -> R) throws(SyscallError) -> R {
        try Namespaces.enter(target, type: .network).get()
        defer {
            if case .failure(let e) = Namespaces.enter(home, type: .network) {
                fatalError("cannot return to the home network namespace: \(SyscallError(e))")
            }
        }
        return try body()
    }

    /// Creates a close-on-exec socket that lives in the target namespace.
    public func socket(domain: Int32, type: Int32, protocol proto: Int32 = 0) -> SyscallResult<FileDescriptor> {
        do {
            return try run { () throws(SyscallError) -> SyscallResult<FileDescriptor> in
                retryingEINTRDescriptor { Glibc.socket(domain, type | Int32(SOCK_CLOEXEC.rawValue), proto) }
            }
        } catch {
            return .failure(error.code)
        }
    }
}
