// epoll.
//
// Theory of operation: one epoll instance drives the daemon. Each registered descriptor carries a
// 64-bit user value (the event loop stores a handler token there, upstream's `union epoll_ref`),
// returned with every readiness event, so dispatch needs no lookup. `wait` fills a caller-owned
// `EpollEventBuffer` allocated once at start-up; a wait allocates nothing. A wait interrupted by a
// signal returns zero events rather than retrying, so the caller re-checks its timers.
//
//   epoll_event (12 bytes, packed on x86_64):  | events: UInt32 | data: UInt64 |
#if canImport(Glibc)
import Glibc
#endif
import CPasstShim

/// Readiness and trigger flags of an epoll registration or event (EPOLLIN, EPOLLOUT, ...).
public struct EpollEvents: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32

    /// Wraps EPOLL* bits.
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let input = EpollEvents(rawValue: EPOLLIN.rawValue)
    public static let output = EpollEvents(rawValue: EPOLLOUT.rawValue)
    public static let priority = EpollEvents(rawValue: EPOLLPRI.rawValue)
    public static let error = EpollEvents(rawValue: EPOLLERR.rawValue)
    public static let hangup = EpollEvents(rawValue: EPOLLHUP.rawValue)
    public static let readHangup = EpollEvents(rawValue: EPOLLRDHUP.rawValue)
    public static let edgeTriggered = EpollEvents(rawValue: EPOLLET.rawValue)
    public static let oneShot = EpollEvents(rawValue: EPOLLONESHOT.rawValue)
    /// Either hang-up (constants: an option-set array literal allocates in unoptimised builds).
    public static let hangups = EpollEvents(rawValue: EPOLLRDHUP.rawValue | EPOLLHUP.rawValue)
    /// Something to read or the end of it.
    public static let readable = EpollEvents(rawValue: EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue)
    /// A failed socket.
    public static let failed = EpollEvents(rawValue: EPOLLERR.rawValue | EPOLLHUP.rawValue)
}

/// A fixed array of epoll_event filled by `Epoll.wait`; allocated once, reused for every wait.
public struct EpollEventBuffer: ~Copyable {
    @usableFromInline let storage: UnsafeMutablePointer<epoll_event>
    /// Maximum number of events one wait returns.
    public let capacity: Int
    /// Number of events the last wait returned.
    @inlinable public var count: Int { filled }
    @usableFromInline var filled: Int

    /// Allocates room for `capacity` events (at least 1).
    public init(capacity: Int) {
        self.capacity = max(capacity, 1)
        storage = .allocate(capacity: self.capacity)
        storage.initialize(repeating: epoll_event(), count: self.capacity)
        filled = 0
    }

    /// The readiness flags of event `index` (< count).
    @inlinable public func events(at index: Int) -> EpollEvents {
        EpollEvents(rawValue: storage[index].events)
    }

    /// The user value registered with the descriptor of event `index` (< count).
    @inlinable public func data(at index: Int) -> UInt64 {
        storage[index].data.u64
    }

    deinit { storage.deallocate() }
}

/// An epoll instance.
public struct Epoll: ~Copyable {
    /// The epoll descriptor.
    public let descriptor: FileDescriptor

    /// Creates an epoll instance (epoll_create1 with close-on-exec).
    public static func create() -> SyscallResult<Epoll> {
        switch retryingEINTRDescriptor({ epoll_create1(Int32(EPOLL_CLOEXEC)) }) {
        case .success(let fd): return .success(Epoll(descriptor: fd))
        case .wouldBlock: return .wouldBlock
        case .failure(let e): return .failure(e)
        }
    }

    /// Wraps an existing epoll descriptor.
    public init(descriptor: consuming FileDescriptor) { self.descriptor = descriptor }

    /// Registers `fd` for `events`; `data` comes back with each event.
    @inlinable public func add(_ fd: Int32, events: EpollEvents, data: UInt64) -> SyscallResult<Void> {
        control(EPOLL_CTL_ADD, fd, events, data)
    }

    /// Changes the events and user value of registered `fd`.
    @inlinable public func modify(_ fd: Int32, events: EpollEvents, data: UInt64) -> SyscallResult<Void> {
        control(EPOLL_CTL_MOD, fd, events, data)
    }

    /// Removes `fd` from the interest list.
    @inlinable public func remove(_ fd: Int32) -> SyscallResult<Void> {
        control(EPOLL_CTL_DEL, fd, [], 0)
    }

    /// Waits up to `timeoutMilliseconds` (-1: forever) and fills `buffer`; returns the event count.
    @inlinable public func wait(into buffer: inout EpollEventBuffer, timeoutMilliseconds: Int32) -> SyscallResult<Int> {
        let n = epoll_wait(descriptor.raw, buffer.storage, Int32(buffer.capacity), timeoutMilliseconds)
        if n >= 0 {
            buffer.filled = Int(n)
            return .success(Int(n))
        }
        buffer.filled = 0
        let e = errno
        return e == EINTR ? .success(0) : .failure(e)
    }

    /// epoll_ctl(2) with operation `op`.
    @usableFromInline func control(_ op: Int32, _ fd: Int32, _ events: EpollEvents, _ data: UInt64) -> SyscallResult<Void> {
        var event = epoll_event()
        event.events = events.rawValue
        event.data.u64 = data
        return retryingEINTRVoid { epoll_ctl(descriptor.raw, op, fd, &event) }
    }
}
