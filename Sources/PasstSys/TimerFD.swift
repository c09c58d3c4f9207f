// timerfd.
//
// Theory of operation: a timerfd is a descriptor that becomes readable when a CLOCK_MONOTONIC
// deadline passes, so timers join the epoll loop like sockets (upstream gives each TCP connection
// one, created lazily). Reading it returns how many times it expired since the last read. Times
// are nanoseconds, relative unless stated; arming with 0 would disarm, so it is raised to 1 ns.
#if canImport(Glibc)
import Glibc
#endif
import CPasstShim

/// A non-blocking CLOCK_MONOTONIC timerfd.
public struct TimerFD: ~Copyable {
    /// The timer descriptor (register it with epoll for `.input`).
    public let descriptor: FileDescriptor

    /// The raw descriptor number.
    @inlinable public var raw: Int32 { descriptor.raw }

    /// Creates a disarmed timer (timerfd_create, non-blocking, close-on-exec).
    public static func create() -> SyscallResult<TimerFD> {
        let flags = Int32(TFD_NONBLOCK) | Int32(TFD_CLOEXEC)
        switch retryingEINTRDescriptor({ timerfd_create(CLOCK_MONOTONIC, flags) }) {
        case .success(let fd): return .success(TimerFD(descriptor: fd))
        case .wouldBlock: return .wouldBlock
        case .failure(let e): return .failure(e)
        }
    }

    /// Wraps an existing timerfd.
    public init(descriptor: consuming FileDescriptor) { self.descriptor = descriptor }

    /// Arms to expire `after` ns from now, then every `interval` ns (0: once).
    @inlinable public func arm(after: UInt64, interval: UInt64 = 0) -> SyscallResult<Void> {
        set(value: max(after, 1), interval: interval, flags: 0)
    }

    /// Arms to expire at monotonic time `deadline` ns, then every `interval` ns (0: once).
    @inlinable public func arm(deadline: UInt64, interval: UInt64 = 0) -> SyscallResult<Void> {
        set(value: max(deadline, 1), interval: interval, flags: Int32(TFD_TIMER_ABSTIME))
    }

    /// Stops the timer; pending expirations stay readable.
    @inlinable public func disarm() -> SyscallResult<Void> {
        set(value: 0, interval: 0, flags: 0)
    }

    /// Reads and resets the expiration count; `wouldBlock` if it has not expired.
    @inlinable public func readExpirations() -> SyscallResult<UInt64> {
        var count: UInt64 = 0
        let r = withUnsafeMutableBytes(of: &count) { Sys.read(descriptor.raw, into: $0) }
        switch r {
        case .success(let n): return n == 8 ? .success(count) : .failure(EIO)
        case .wouldBlock: return .wouldBlock
        case .failure(let e): return .failure(e)
        }
    }

    /// Nanoseconds until the next expiration, 0 when disarmed (timerfd_gettime).
    public func remaining() -> SyscallResult<UInt64> {
        var spec = itimerspec()
        if timerfd_gettime(descriptor.raw, &spec) != 0 { return .failure(errno) }
        return .success(UInt64(spec.it_value.tv_sec) &* SystemClock.nanosecondsPerSecond &+ UInt64(spec.it_value.tv_nsec))
    }

    /// timerfd_settime(2) with a first expiry `value` and period `interval`.
    @usableFromInline func set(value: UInt64, interval: UInt64, flags: Int32) -> SyscallResult<Void> {
        var spec = itimerspec(it_interval: timespec(nanoseconds: interval), it_value: timespec(nanoseconds: value))
        return retryingEINTRVoid { timerfd_settime(descriptor.raw, flags, &spec, nil) }
    }
}
