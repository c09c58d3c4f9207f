// One TCP connection between the guest and a host socket, as a plain record (spec §6.1, §6.2, §6.5).
//
// Theory of operation: passt has no TCP stack. The host kernel runs the real TCP connection on
// a socket; towards the guest we only mirror that socket's state with four sequence counters:
//
//   guest -> us:  seqFromTap     next byte expected from the guest (everything before it was
//                                 written to the socket);
//                 seqAckToTap    what we acknowledged to the guest (== seqFromTap when local,
//                                 else the initial sequence + the socket's tcpi_bytes_acked);
//   us -> guest:  seqToTap       next byte we send (bytes from seqAckFromTap on were peeked from
//                                 the socket, still queued there, and are in flight);
//                 seqAckFromTap  the guest's highest acknowledgment (bytes before it were
//                                 discarded from the socket with recv(MSG_TRUNC)).
//
// Sending to the guest therefore never copies into a buffer of ours: the socket's receive queue
// is the retransmission buffer. Rewinding seqToTap to seqAckFromTap (a duplicate ACK, the ACK
// timeout) and peeking again retransmits. The state is a set of upstream's "events" (what
// happened) and "flags" (conditions), not a classic state machine: setting one of
// sockAccepted / tapSynReceived / established clears all other events; no event left means
// closed. The record lives in a calloc'ed array: the all-zero record is a free slot.
import PasstWire

/// What happened on a connection (upstream's conn->events).
public struct TCPEvents: OptionSet, Sendable, Equatable {
    public let rawValue: UInt16
    /// Makes events from their bits.
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// A host connection was accepted and our SYN sent to the guest.
    public static let sockAccepted = TCPEvents(rawValue: 1 << 0)
    /// The guest's SYN arrived; the host socket is connecting.
    public static let tapSynReceived = TCPEvents(rawValue: 1 << 1)
    /// Our SYN-ACK went to the guest.
    public static let tapSynAckSent = TCPEvents(rawValue: 1 << 2)
    /// Both handshakes done.
    public static let established = TCPEvents(rawValue: 1 << 3)
    /// The host peer closed its side (EPOLLRDHUP or end of file).
    public static let sockFinReceived = TCPEvents(rawValue: 1 << 4)
    /// shutdown(SHUT_WR) done on the socket.
    public static let sockFinSent = TCPEvents(rawValue: 1 << 5)
    /// The guest's FIN arrived.
    public static let tapFinReceived = TCPEvents(rawValue: 1 << 6)
    /// Our FIN went to the guest.
    public static let tapFinSent = TCPEvents(rawValue: 1 << 7)
    /// The guest acknowledged our FIN.
    public static let tapFinAcked = TCPEvents(rawValue: 1 << 8)
    /// Events that replace all others when set.
    static let exclusive: TCPEvents = [.sockAccepted, .tapSynReceived, .established]
    /// Combinations tested per segment, as constants (an option-set array literal allocates in
    /// unoptimised builds, which the allocation tests run): both directions finished;
    static let bothFinished: TCPEvents = [.tapFinReceived, .tapFinAcked]
    /// our FIN passed to the socket and the guest's ACK of our FIN (the FIN timeout applies);
    static let finSentAndAcked: TCPEvents = [.sockFinSent, .tapFinAcked]
    /// either side's FIN arrived.
    static let eitherFinReceived: TCPEvents = [.tapFinReceived, .sockFinReceived]
}

/// Conditions of a connection (upstream's conn->flags).
public struct TCPConnectionFlags: OptionSet, Sendable, Equatable {
    public let rawValue: UInt8
    /// Makes flags from their bits.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The guest's window is full or nothing was left to read.
    public static let stalled = TCPConnectionFlags(rawValue: 1 << 0)
    /// The destination is a local address: acknowledge everything written at once.
    public static let local = TCPConnectionFlags(rawValue: 1 << 1)
    /// The guest sent its FIN first.
    public static let activeClose = TCPConnectionFlags(rawValue: 1 << 2)
    /// An ACK (or window update) to the guest is due: re-check after the ACK interval.
    public static let ackToTapDue = TCPConnectionFlags(rawValue: 1 << 3)
    /// Data or a SYN/FIN to the guest is unacknowledged: retransmit after the timeout.
    public static let ackFromTapDue = TCPConnectionFlags(rawValue: 1 << 4)
    /// The tcpi_bytes_acked base and the local test were taken at the host handshake's end.
    public static let handshakeNoted = TCPConnectionFlags(rawValue: 1 << 5)
    /// The guest wrote data since the re-checks last found nothing new `idleRecheckLimit` times
    /// in a row: a window below one of its frames is worth re-checking.
    public static let guestSending = TCPConnectionFlags(rawValue: 1 << 6)
    /// Waiting for the guest: its window is full, our data unacknowledged.
    static let waitingForGuest: TCPConnectionFlags = [.stalled, .ackFromTapDue]
}

/// Sequence number comparisons modulo 2^32 (RFC 9293 §3.4).
public enum TCPSequence {
    /// a < b in sequence space.
    @inlinable @inline(__always) public static func less(_ a: UInt32, _ b: UInt32) -> Bool {
        Int32(bitPattern: a &- b) < 0
    }
    /// a <= b in sequence space.
    @inlinable @inline(__always) public static func lessOrEqual(_ a: UInt32, _ b: UInt32) -> Bool {
        Int32(bitPattern: a &- b) <= 0
    }
}

/// One connection's record; all zero means a free slot.
struct TCPConnection {
    /// True while the slot holds a connection.
    var inUse: Bool
    /// IPv6 on the guest side.
    var isIPv6: Bool
    /// Guest's window scale (0...14) and ours towards the guest (0...8).
    var wsFromTap: UInt8
    var wsToTap: UInt8
    /// What happened, and conditions.
    var events: TCPEvents
    var flags: TCPConnectionFlags
    /// Consecutive retransmissions without progress.
    var retransmits: UInt8
    /// The host socket.
    var socket: Int32
    /// The guest's address and port, and the peer as the guest sees it (v4-mapped for IPv4).
    var guestAddress: IPv6Address
    var guestPort: UInt16
    var peerAddress: IPv6Address
    var peerPort: UInt16
    /// Guest's MSS (bytes of payload per segment we send).
    var tapMSS: UInt16
    /// Whether the guest uses window scaling (its SYN or SYN-ACK carried the option).
    var windowScaling: Bool
    /// The counters described at the top of the file.
    var seqToTap: UInt32
    var seqAckFromTap: UInt32
    var seqFromTap: UInt32
    var seqAckToTap: UInt32
    /// First sequence number of the guest's data, and tcpi_bytes_acked at that point.
    var seqInitFromTap: UInt32
    var bytesAckedBase: UInt64
    /// Guest's receive window (scaled, bytes) and the window we last advertised (bytes).
    var wndFromTap: UInt32
    var wndToTap: UInt32
    /// The socket's SO_SNDBUF, read once.
    var sendBuffer: UInt32
    /// Acknowledgment number of the last duplicate ACKs we sent, and of the last fast retransmit.
    var lastDupAckSent: UInt32
    var lastFastRetransmit: UInt32
    /// What the armed timer is for (TCPFlows.TimerClass).
    var timerClass: UInt8
    /// Re-checks of a due ACK in a row that found nothing new (TCPFlows.ackRecheckDelay).
    var idleRechecks: UInt8
    /// The epoll events the socket is registered with.
    var epollEvents: UInt32

    /// The tap-side flow table key.
    var tapKey: FlowKey {
        FlowKey(proto: IPProtocol.tcp, interface: .tap, ourAddress: peerAddress, ourPort: peerPort,
                endpointAddress: guestAddress, endpointPort: guestPort)
    }

    /// Sets `event`; one of the exclusive events clears all others (upstream's conn_event).
    mutating func set(_ event: TCPEvents) {
        if !event.intersection(TCPEvents.exclusive).isEmpty {
            events = event
        } else {
            events.formUnion(event)
        }
    }

    /// Bytes sent to the guest and not yet acknowledged (a FIN counts one).
    var inFlight: UInt32 { seqToTap &- seqAckFromTap }

    /// The sequence number after the last data byte sent (excludes a FIN).
    var dataEnd: UInt32 { events.contains(.tapFinSent) ? seqToTap &- 1 : seqToTap }
}

/// MSS and window arithmetic of spec §6.2 and §6.5 (pure functions).
public enum TCPWindow {
    /// Largest window advertised to the guest (upstream MAX_WINDOW).
    public static let maximum: UInt32 = 16 * 1024 * 1024
    /// Smallest window advertised before the connection is established.
    public static let minimumBeforeEstablished: UInt32 = 14600
    /// Largest window scale we use.
    public static let maximumScale: UInt8 = 8
    /// MSS assumed when the guest's SYN carries none.
    public static let defaultMSS: UInt16 = 536

    /// Our MSS towards the guest for `mtu`: MTU - 40 (IPv4) / - 60 (IPv6), rounded down to a
    /// multiple of `pageSize` when larger than a page.
    public static func ourMSS(mtu: Int, isIPv6: Bool, pageSize: Int = 4096) -> UInt16 {
        var mss = mtu - (isIPv6 ? 60 : 40)
        if mss > pageSize { mss -= mss % pageSize }
        return UInt16(clamping: max(mss, 1))
    }

    /// The guest's MSS from its SYN option: default 536, capped to what fits an IP packet,
    /// rounded down to a multiple of 4.
    public static func guestMSS(_ option: UInt16?, isIPv6: Bool) -> UInt16 {
        let cap: UInt16 = isIPv6 ? 65472 : 65492
        let mss = min(option ?? defaultMSS, cap) & ~3
        return max(mss, 4)
    }

    /// The share of SO_SNDBUF offered as window: all of it below 128 KiB, half from 4 MiB on,
    /// linearly interpolated in between.
    public static func scaledSendBuffer(_ sendBuffer: UInt32) -> UInt32 {
        let low: UInt64 = 128 * 1024, high: UInt64 = 4 * 1024 * 1024
        let buffer = UInt64(sendBuffer)
        if buffer < low { return sendBuffer }
        if buffer >= high { return sendBuffer / 2 }
        return UInt32(buffer - buffer * (buffer - low) / (high - low) / 2)
    }

    /// The window for the guest: the peer's window (the socket's send window, if known) bounded
    /// by the share of the send buffer data may fill, less `outstanding`, the bytes already
    /// written to the socket, acknowledged to the guest and not yet to the peer. Offering no
    /// more than that is what keeps the guest from sending what send() would refuse.
    public static func toTap(sendWindow: UInt32?, sendBuffer: UInt32, outstanding: UInt32 = 0,
                             established: Bool) -> UInt32 {
        var window = scaledSendBuffer(sendBuffer)
        if let sendWindow { window = min(window, sendWindow) }
        window = window > outstanding ? window - outstanding : 0
        window = min(window, maximum)
        if !established { window = max(window, minimumBeforeEstablished) }
        return window
    }
}
