// The epoll event loop with timers.
//
// Theory of operation: one iteration is
//
//   epoll_wait (≤ maxEvents, timeout = min(maxTimeout, time to the earliest timer))
//     -> now = clock
//     -> handler.handleEvent(token, events) for each ready descriptor, in kernel order
//     -> handler.handleTimer(token) for each timer whose deadline is <= now, in slot order
//     -> handler.iterationDone()  (deferred work: flush egress batches, close flows)
//
// Descriptors are registered with an `EventToken`: 64 bits stored as the epoll user value and
// handed back with each event, like upstream's `union epoll_ref` (type, fd, 32 bits of data).
// The handler is a generic parameter, not a closure or an existential, so dispatch is a switch on
// the token's kind in the caller's code. Timers live in a small table allocated at registration
// (control path); an iteration allocates nothing.
//
// Time is CLOCK_MONOTONIC nanoseconds. With `.manual` time the loop never reads the clock: tests
// set `now` with `setTime`/`advanceTime` and call `runOnce`, which then does not block unless
// given a timeout, so handlers and timers run deterministically.
#if canImport(Glibc)
import Glibc
#endif

/// The 64-bit value identifying a registered descriptor or a timer to its handler.
///
///     bits 0-7: kind   bits 8-31: fd (24 bits, as upstream)   bits 32-63: data (e.g. flow index)
public struct EventToken: Hashable, Sendable {
    /// The packed value stored in epoll's user data.
    public var rawValue: UInt64

    /// Wraps a packed value.
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Packs `kind`, the low 24 bits of `fd`, and `data`.
    @inlinable public init(kind: UInt8, fd: Int32 = 0, data: UInt32 = 0) {
        rawValue = UInt64(kind) | UInt64(UInt32(bitPattern: fd) & 0xff_ffff) << 8 | UInt64(data) << 32
    }

    /// The handler kind (the caller's enumeration of descriptor types).
    @inlinable public var kind: UInt8 { UInt8(truncatingIfNeeded: rawValue) }

    /// The descriptor number packed in the token.
    @inlinable public var fd: Int32 { Int32(truncatingIfNeeded: (rawValue >> 8) & 0xff_ffff) }

    /// The 32-bit payload (flow index, port, ...).
    @inlinable public var data: UInt32 { UInt32(truncatingIfNeeded: rawValue >> 32) }
}

/// Identifies a timer of an `EventLoop` for cancelling.
public struct TimerID: Hashable, Sendable {
    @usableFromInline let slot: Int
    @usableFromInline let generation: UInt32

    /// Makes an identifier for `slot` in its `generation`.
    @inlinable init(slot: Int, generation: UInt32) { self.slot = slot; self.generation = generation }
}

/// Receives the loop's events; implemented by the daemon's context.
public protocol EventHandler: ~Copyable {
    /// Handles readiness `events` of the descriptor registered with `token`.
    mutating func handleEvent(_ token: EventToken, events: EpollEvents, loop: inout EventLoop)
    /// Handles the expiry of the timer registered with `token`.
    mutating func handleTimer(_ token: EventToken, loop: inout EventLoop)
    /// Runs once at the end of every iteration, after events and timers.
    mutating func iterationDone(loop: inout EventLoop)
}

extension EventHandler where Self: ~Copyable {
    /// Default: no timers.
    public mutating func handleTimer(_ token: EventToken, loop: inout EventLoop) {}
    /// Default: no deferred work.
    public mutating func iterationDone(loop: inout EventLoop) {}
}

/// An epoll loop with periodic and deadline timers.
public struct EventLoop: ~Copyable {
    /// Where the loop's notion of "now" comes from.
    public enum TimeSource: Sendable {
        /// CLOCK_MONOTONIC, read after every wait.
        case monotonic
        /// Set by the caller (tests); the loop never reads a clock.
        case manual
    }

    /// One timer: fires at `deadline`, then every `interval` ns if periodic.
    @usableFromInline struct Timer {
        @usableFromInline var deadline: UInt64
        @usableFromInline var interval: UInt64
        @usableFromInline var token: EventToken
        @usableFromInline var active: Bool
        @usableFromInline var generation: UInt32
    }

    /// The epoll instance (for registrations the loop does not wrap).
    public let epoll: Epoll
    /// Filled by each wait; allocated once.
    @usableFromInline var events: EpollEventBuffer
    /// Timer slots; inactive ones are reused.
    @usableFromInline var timers: [Timer] = []
    @usableFromInline let timeSource: TimeSource
    /// Upper bound of one wait, in milliseconds (upstream: 1000).
    public let maxTimeoutMilliseconds: Int32
    /// Monotonic nanoseconds at the last wake-up (or as set, with manual time).
    @inlinable public var now: UInt64 { currentTime }
    /// True once `stop()` was called; `run` returns at the end of the iteration.
    @inlinable public var isStopped: Bool { stopped }
    @usableFromInline var currentTime: UInt64
    @usableFromInline var stopped = false

    /// Creates the loop: an epoll instance and a buffer of `maxEvents` (upstream: 8) events.
    public init(maxEvents: Int = 8, maxTimeoutMilliseconds: Int32 = 1000,
                timeSource: TimeSource = .monotonic, startTime: UInt64 = 0) throws(SyscallError) {
        epoll = try Epoll.create().get()
        events = EpollEventBuffer(capacity: maxEvents)
        self.timeSource = timeSource
        self.maxTimeoutMilliseconds = maxTimeoutMilliseconds
        currentTime = timeSource == .monotonic ? SystemClock.monotonicNanoseconds() : startTime
    }

    // MARK: Descriptors

    /// Registers `fd` for `events` with handler `token`.
    @inlinable public func register(_ fd: Int32, events: EpollEvents, token: EventToken) -> SyscallResult<Void> {
        epoll.add(fd, events: events, data: token.rawValue)
    }

    /// Changes the events and token of registered `fd`.
    @inlinable public func modify(_ fd: Int32, events: EpollEvents, token: EventToken) -> SyscallResult<Void> {
        epoll.modify(fd, events: events, data: token.rawValue)
    }

    /// Removes `fd` (closing a descriptor also removes it).
    @inlinable public func unregister(_ fd: Int32) -> SyscallResult<Void> {
        epoll.remove(fd)
    }

    // MARK: Timers

    /// Adds a timer firing every `interval` ns (first at now + interval) with `token`.
    public mutating func addPeriodicTimer(every interval: UInt64, token: EventToken) -> TimerID {
        addTimer(Timer(deadline: now &+ max(interval, 1), interval: max(interval, 1), token: token,
                       active: true, generation: 0))
    }

    /// Adds a one-shot timer firing once `now` reaches `deadline` ns, with `token`.
    public mutating func addDeadlineTimer(at deadline: UInt64, token: EventToken) -> TimerID {
        addTimer(Timer(deadline: deadline, interval: 0, token: token, active: true, generation: 0))
    }

    /// Cancels a timer; cancelling one that fired (one-shot) or was cancelled does nothing.
    public mutating func cancelTimer(_ id: TimerID) {
        guard id.slot < timers.count, timers[id.slot].generation == id.generation else { return }
        timers[id.slot].active = false
        timers[id.slot].generation &+= 1
    }

    /// The earliest deadline of an active timer, nil if none.
    @inlinable public var nextDeadline: UInt64? {
        var earliest: UInt64?
        for i in timers.indices where timers[i].active {
            earliest = min(earliest ?? .max, timers[i].deadline)
        }
        return earliest
    }

    /// Stores `timer` in a free slot (or a new one) and returns its identifier.
    mutating func addTimer(_ timer: Timer) -> TimerID {
        var timer = timer
        if let slot = timers.firstIndex(where: { !$0.active }) {
            timer.generation = timers[slot].generation
            timers[slot] = timer
            return TimerID(slot: slot, generation: timer.generation)
        }
        timers.append(timer)
        return TimerID(slot: timers.count - 1, generation: 0)
    }

    // MARK: Running

    /// Makes `run` return after the current iteration.
    public mutating func stop() { stopped = true }

    /// Sets the manual clock to `time` ns (manual time source only).
    public mutating func setTime(_ time: UInt64) {
        precondition(timeSource == .manual, "setTime needs a manual time source")
        currentTime = time
    }

    /// Advances the manual clock by `nanoseconds`.
    public mutating func advanceTime(by nanoseconds: UInt64) { setTime(now &+ nanoseconds) }

    /// Runs iterations until `stop()`; returns the error if epoll_wait fails.
    @inlinable public mutating func run<Handler: EventHandler & ~Copyable>(_ handler: inout Handler) -> SyscallResult<Void> {
        while !isStopped {
            if case .failure(let e) = runOnce(&handler) { return .failure(e) }
        }
        return .success(())
    }

    /// Runs one iteration; waits at most `timeoutMilliseconds` (default: until the next timer,
    /// capped at `maxTimeoutMilliseconds`; 0 with manual time). Returns the number of events.
    @inlinable public mutating func runOnce<Handler: EventHandler & ~Copyable>(
        _ handler: inout Handler, timeoutMilliseconds: Int32? = nil
    ) -> SyscallResult<Int> {
        let timeout = timeoutMilliseconds ?? defaultTimeout()
        let count: Int
        switch epoll.wait(into: &events, timeoutMilliseconds: timeout) {
        case .success(let n): count = n
        case .wouldBlock: count = 0
        case .failure(let e): return .failure(e)
        }
        if timeSource == .monotonic { currentTime = SystemClock.monotonicNanoseconds() }

        for i in 0..<count {
            let token = EventToken(rawValue: events.data(at: i))
            handler.handleEvent(token, events: events.events(at: i), loop: &self)
        }
        var slot = 0
        while slot < timers.count {
            if timers[slot].active && timers[slot].deadline <= now {
                let token = timers[slot].token
                if timers[slot].interval == 0 {
                    timers[slot].active = false
                    timers[slot].generation &+= 1
                } else {
                    let next = timers[slot].deadline &+ timers[slot].interval
                    timers[slot].deadline = next > now ? next : now &+ timers[slot].interval
                }
                handler.handleTimer(token, loop: &self)
            }
            slot += 1
        }
        handler.iterationDone(loop: &self)
        return .success(count)
    }

    /// The wait timeout in ms: until the earliest timer (rounded up), capped; 0 with manual time.
    @inlinable func defaultTimeout() -> Int32 {
        if timeSource == .manual { return 0 }
        guard let deadline = nextDeadline else { return maxTimeoutMilliseconds }
        let current = SystemClock.monotonicNanoseconds()
        if deadline <= current { return 0 }
        let ms = (deadline - current + 999_999) / 1_000_000
        return ms < UInt64(maxTimeoutMilliseconds) ? Int32(ms) : maxTimeoutMilliseconds
    }
}
