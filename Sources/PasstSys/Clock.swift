// Clocks.
//
// Theory of operation: everything that measures intervals (timers, log timestamps, flow ageing)
// uses CLOCK_MONOTONIC in nanoseconds as a plain UInt64, so that time can be passed around and
// faked in tests as a number. Wall-clock time (CLOCK_REALTIME) is needed only for pcap record
// headers and is returned as seconds plus nanoseconds.
#if canImport(Glibc)
import Glibc
#endif

/// Wall-clock time: seconds and nanoseconds since the Unix epoch.
public struct WallTime: Equatable, Sendable {
    public var seconds: Int64
    public var nanoseconds: Int32

    /// Makes a wall time from its two parts.
    @inlinable public init(seconds: Int64, nanoseconds: Int32) {
        self.seconds = seconds; self.nanoseconds = nanoseconds
    }
}

/// The kernel clocks used by the daemon.
public enum SystemClock {
    /// Nanoseconds per second.
    public static let nanosecondsPerSecond: UInt64 = 1_000_000_000

    /// CLOCK_MONOTONIC now, in nanoseconds.
    @inlinable public static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* nanosecondsPerSecond &+ UInt64(ts.tv_nsec)
    }

    /// CLOCK_REALTIME now, as seconds and nanoseconds.
    @inlinable public static func realtime() -> WallTime {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return WallTime(seconds: Int64(ts.tv_sec), nanoseconds: Int32(ts.tv_nsec))
    }
}

extension timespec {
    /// Makes a timespec from a nanosecond count.
    @inlinable init(nanoseconds: UInt64) {
        self.init(tv_sec: Int(nanoseconds / SystemClock.nanosecondsPerSecond),
                  tv_nsec: Int(nanoseconds % SystemClock.nanosecondsPerSecond))
    }
}
