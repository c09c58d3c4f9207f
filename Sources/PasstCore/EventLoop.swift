// The daemon's side of the event loop: what the kinds of registered descriptors are, how the
// loop is sized, and which signals it takes.
//
// Theory of operation: the loop machinery (epoll, tokens, timers, the `EventHandler` protocol)
// lives in PasstSys as `EventLoop`, so it can be tested without the daemon. This file fixes the
// daemon's choices on top of it, following upstream passt.c:
//   - every registered descriptor's token carries an `EventKind` (upstream's enum epoll_type) in
//     its kind byte, so the context's `handleEvent` is one switch over `token.eventKind`;
//   - at most 8 events per wait and a 1000 ms cap on the wait (EPOLL_EVENTS, TIMER_INTERVAL);
//   - SIGTERM and SIGQUIT end the process with status 0; pasta also takes SIGCHLD (its spawned
//     command) and ignores SIGPIPE. The signals are blocked and read from a signalfd registered
//     as `.signal`, instead of upstream's asynchronous handlers.
import PasstConfig
import PasstSys
#if canImport(Glibc)
import Glibc
#endif

/// What a registered descriptor is: the kind byte of its `EventToken` (upstream epoll_type).
public enum EventKind: UInt8, CaseIterable, Sendable {
    /// Connected TCP socket of a tap-side flow.
    case tcp = 1
    /// Connected TCP socket of a spliced (pasta loopback) flow.
    case tcpSplice
    /// Listening TCP socket of a forwarded port.
    case tcpListen
    /// The timerfd the tap-side TCP connections share.
    case tcpTimer
    /// Bound UDP socket of a forwarded port.
    case udpListen
    /// UDP socket waiting for replies of a flow.
    case udpReply
    /// ICMP/ICMPv6 echo (ping) socket.
    case ping
    /// inotify watch on the namespace's directory (pasta: exit when the netns goes away).
    case nsQuitInotify
    /// Timer polling for the namespace's disappearance (pasta fallback).
    case nsQuitTimer
    /// /dev/net/tun device (pasta).
    case tapPasta
    /// Connected qemu UNIX socket (passt).
    case tapPasst
    /// Listening qemu UNIX socket (passt).
    case tapListen
    /// The signalfd taking SIGTERM, SIGQUIT and SIGCHLD.
    case signal

    /// Human-readable name for trace messages (upstream's epoll_type_str).
    public var name: String {
        switch self {
        case .tcp: return "connected TCP socket"
        case .tcpSplice: return "connected spliced TCP socket"
        case .tcpListen: return "listening TCP socket"
        case .tcpTimer: return "TCP timer"
        case .udpListen: return "listening UDP socket"
        case .udpReply: return "UDP reply socket"
        case .ping: return "ICMP/ICMPv6 ping socket"
        case .nsQuitInotify: return "namespace inotify watch"
        case .nsQuitTimer: return "namespace timer watch"
        case .tapPasta: return "/dev/net/tun device"
        case .tapPasst: return "connected qemu socket"
        case .tapListen: return "listening qemu socket"
        case .signal: return "signal descriptor"
        }
    }
}

extension EventToken {
    /// A token for a descriptor of `kind`, number `fd`, with 32 bits of handler data.
    @inlinable public init(_ kind: EventKind, fd: Int32, data: UInt32 = 0) {
        self.init(kind: kind.rawValue, fd: fd, data: data)
    }

    /// The daemon's kind of the token; nil for a kind byte no `EventKind` has.
    @inlinable public var eventKind: EventKind? { EventKind(rawValue: kind) }
}

extension EventLoop {
    /// The daemon's loop: ≤ 8 events per wait, waits capped at 1000 ms, monotonic clock.
    public static func daemon() throws(SyscallError) -> EventLoop {
        try EventLoop(maxEvents: 8, maxTimeoutMilliseconds: 1000)
    }
}

/// What the daemon must do after draining its signalfd.
public enum SignalAction: Equatable, Sendable {
    /// Nothing pending.
    case none
    /// SIGTERM or SIGQUIT: exit with status 0.
    case exit
    /// SIGCHLD (pasta): reap children with `Signals.reapChild`.
    case childStateChanged
}

/// The daemon's signal set-up: the blocked signals and the signalfd that receives them.
public struct DaemonSignals: ~Copyable {
    /// The signalfd; register it with `EventToken(.signal, fd: signals.descriptor.raw)`.
    public let signals: SignalFD
    /// The mask before blocking: restore it in a child before exec (pasta's command).
    public let previousMask: SignalSet

    /// Blocks SIGTERM and SIGQUIT (pasta: SIGCHLD too, and ignores SIGPIPE) and opens the
    /// signalfd; call before creating any thread.
    public init(mode: ProgramMode) throws(SyscallError) {
        var set = SignalSet([SIGTERM, SIGQUIT])
        if mode == .pasta {
            set.insert(SIGCHLD)
            try Signals.ignore(SIGPIPE).get()
        }
        let previous = try Signals.block(set).get()
        switch SignalFD.create(set) {
        case .success(let fd):
            signals = fd
            previousMask = previous
        case .wouldBlock:
            _ = Signals.setMask(previous)
            throw SyscallError(EAGAIN)
        case .failure(let code):
            _ = Signals.setMask(previous)
            throw SyscallError(code)
        }
    }

    /// Reads every pending signal; `.exit` wins over `.childStateChanged`.
    public func drain() -> SignalAction {
        var action = SignalAction.none
        while case .success(let info) = signals.read() {
            Log.debug("Received signal \(info.signal) from PID \(info.senderPID)")
            if info.signal == SIGTERM || info.signal == SIGQUIT {
                action = .exit
            } else if info.signal == SIGCHLD && action == .none {
                action = .childStateChanged
            }
        }
        return action
    }
}
