// Signals.
//
// Theory of operation: the daemon is one thread around epoll, so signals are read as data from a
// signalfd instead of interrupting it: block the signals (`Signals.block`), create a `SignalFD`
// for the same set, register it with the loop and read `SignalInfo` records when it is readable.
// Blocked signals are still queued when we are PID 1 of a new PID namespace, where a default
// disposition would make the kernel drop SIGTERM (upstream works around that with handlers).
// SIGPIPE is ignored outright (`Signals.ignore`): a write to a closed socket then fails with EPIPE.
//
// Caveats: the mask is per thread and inherited by threads created afterwards, so block before
// starting any; a signal sent to the process is queued for any thread that does not block it.
// The mask also survives fork and exec: restore the previous mask (`Signals.setMask`) in a child
// before exec'ing a command (pasta's spawned shell). SIGCHLD records coalesce; after one, call
// `Signals.reapChild` until it returns nil.
#if canImport(Glibc)
import Glibc
#endif
import CPasstShim

/// A set of signal numbers (sigset_t).
public struct SignalSet: Sendable {
    @usableFromInline var storage: sigset_t

    /// The empty set.
    public init() {
        storage = sigset_t()
        sigemptyset(&storage)
    }

    /// The set of `signals`.
    public init(_ signals: some Sequence<Int32>) {
        self.init()
        for s in signals { insert(s) }
    }

    /// Adds `signal` to the set.
    public mutating func insert(_ signal: Int32) { sigaddset(&storage, signal) }

    /// True if `signal` is in the set.
    public func contains(_ signal: Int32) -> Bool {
        var copy = storage
        return sigismember(&copy, signal) == 1
    }
}

/// One signal read from a signalfd.
public struct SignalInfo: Equatable, Sendable {
    /// The signal number (SIGTERM, SIGCHLD, ...).
    public var signal: Int32
    /// PID of the sender (the child, for SIGCHLD).
    public var senderPID: Int32
    /// si_code of the signal (SI_USER, CLD_EXITED, ...).
    public var code: Int32
    /// Exit status or signal for SIGCHLD; 0 otherwise.
    public var status: Int32
}

/// A child process reaped by `Signals.reapChild`.
public struct ChildExit: Equatable, Sendable {
    /// The child's PID.
    public var pid: Int32
    /// True if it exited (status is the exit code), false if killed (status is the signal).
    public var exited: Bool
    /// Exit code or terminating signal.
    public var status: Int32
}

/// Signal mask and disposition helpers.
public enum Signals {
    /// Adds `set` to the calling thread's blocked mask; returns the previous mask.
    public static func block(_ set: SignalSet) -> SyscallResult<SignalSet> {
        var set = set
        var old = SignalSet()
        let r = pthread_sigmask(SIG_BLOCK, &set.storage, &old.storage)
        return r == 0 ? .success(old) : .failure(r)
    }

    /// Replaces the calling thread's blocked mask with `set`.
    public static func setMask(_ set: SignalSet) -> SyscallResult<Void> {
        var set = set
        let r = pthread_sigmask(SIG_SETMASK, &set.storage, nil)
        return r == 0 ? .success(()) : .failure(r)
    }

    /// Sets the disposition of `signal` to SIG_IGN (e.g. SIGPIPE).
    public static func ignore(_ signal: Int32) -> SyscallResult<Void> {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = SIG_IGN
        sigemptyset(&action.sa_mask)
        return retryingEINTRVoid { sigaction(signal, &action, nil) }
    }

    /// Reaps one exited child without blocking; nil when none has exited (or there are none).
    public static func reapChild() -> SyscallResult<ChildExit?> {
        var exit = shim_child_exit()
        switch retryingEINTR({ shim_waitid_nohang(&exit) }) {
        case .success(0): return .success(nil)
        case .success: return .success(ChildExit(pid: exit.pid, exited: exit.code == CLD_EXITED, status: exit.status))
        case .wouldBlock: return .wouldBlock
        case .failure(ECHILD): return .success(nil)
        case .failure(let e): return .failure(e)
        }
    }
}

/// A non-blocking signalfd receiving the signals of a set (which the caller must block).
public struct SignalFD: ~Copyable {
    /// The signalfd descriptor (register it with epoll for `.input`).
    public let descriptor: FileDescriptor

    /// The raw descriptor number.
    @inlinable public var raw: Int32 { descriptor.raw }

    /// Creates a signalfd for `set` (non-blocking, close-on-exec); block `set` first.
    public static func create(_ set: SignalSet) -> SyscallResult<SignalFD> {
        var set = set
        let flags = Int32(SFD_NONBLOCK) | Int32(SFD_CLOEXEC)
        switch retryingEINTRDescriptor({ signalfd(-1, &set.storage, flags) }) {
        case .success(let fd): return .success(SignalFD(descriptor: fd))
        case .wouldBlock: return .wouldBlock
        case .failure(let e): return .failure(e)
        }
    }

    /// Wraps an existing signalfd.
    public init(descriptor: consuming FileDescriptor) { self.descriptor = descriptor }

    /// Reads one pending signal; `wouldBlock` when none is pending.
    public func read() -> SyscallResult<SignalInfo> {
        var info = signalfd_siginfo()
        let r = withUnsafeMutableBytes(of: &info) { Sys.read(descriptor.raw, into: $0) }
        switch r {
        case .success(let n) where n == MemoryLayout<signalfd_siginfo>.size:
            return .success(SignalInfo(signal: Int32(info.ssi_signo), senderPID: Int32(bitPattern: info.ssi_pid),
                                       code: info.ssi_code, status: info.ssi_status))
        case .success: return .failure(EIO)
        case .wouldBlock: return .wouldBlock
        case .failure(let e): return .failure(e)
        }
    }
}
