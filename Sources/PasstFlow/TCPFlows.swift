// TCP between the guest and host sockets, without a TCP stack of our own (spec §6; upstream tcp.c).
//
// Theory of operation: every guest connection is a host socket, and what the guest sees mirrors
// what the host kernel does with that socket (TCPConnection.swift describes the four counters).
//
// Set-up. A guest SYN (no ACK) for an unknown tap-side pair creates a connection: a non-blocking
// socket (largest buffers when the kernel allows 4 MiB or more, TCP_MAXSEG from the guest's
// MSS unless the peer is on this host, bound to -o / --outbound-ifN), connecting to the
// destination translated by ForwardingRules. The SYN-ACK goes to the guest only once the
// connect completes (EPOLLOUT and SO_ERROR 0; to a local address connect(2) itself completes
// it, and TCP_INFO says so at once), with our MSS (MTU - 40/60, page-rounded) and window
// scale; a failed connect is a RST (with ACK, so the guest's connect sees "refused").
// The guest's ACK establishes it. Any other segment for an unknown pair is answered with a
// RST (RFC 9293 3.10.7.1; a RST never), so a guest whose connection was closed while our RST
// to it was lost learns it at its next retransmission. A connection accepted on a -t listener
// (TCPListeners.swift) becomes our SYN to the guest, with the source rewritten per §3.3 and the
// port offset applied; the guest's SYN-ACK establishes it.
// The initial sequence numbers follow RFC 6528: SipHash of the four-tuple under a secret, plus
// the monotonic clock in 32 ns ticks.
//
// Socket -> guest. Nothing is read from the socket until the guest acknowledges it. When data
// may be sent (EPOLLIN, a guest ACK, a window update, a retransmission), we peek with MSG_PEEK
// at offset seqToTap - seqAckFromTap (SO_PEEK_OFF when the kernel has it, else the already
// sent bytes are peeked into a discard buffer first), at most the guest's window minus what is
// in flight, straight into frame slots whose header room is then filled in: one copy from the
// socket to the frame. Frames leave with only the pseudo-header sum in the checksum field and a
// virtio-net header (PasstWire's VirtioNet.swift) saying so: a link with segmentation offload
// (pasta's tap) hands both to the kernel, and then a frame carries as many whole segments of
// the guest's MSS as fit 64 KiB, marked GSO with that segment size, which the guest's stack
// takes whole; any other link (passt's qemu socket, tests) completes the checksum itself and
// gets frames of one MSS. A guest ACK discards the acknowledged bytes with recv(MSG_TRUNC). A
// duplicate ACK, or no ACK within 2 s, rewinds seqToTap to the last ACK and peeks again; 7
// timeouts in a row reset the connection. End of file on the socket becomes our FIN once
// everything before it was sent.
//
// Guest -> socket. In-order payload is queued while the caller reads a pass of frames, and a run
// of one connection's segments is written with one sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL), so the
// kernel builds large segments out of small frames (through pasta's offloading tap a frame is
// already up to 64 KiB of segments, taken as one payload); what does not fit is dropped
// unacknowledged (the guest retransmits it), a short write advances by what was written, a gap
// gets three duplicate ACKs (fast retransmit in a guest without SACK). The ACK we send is what
// was written, or, for remote peers, the initial sequence plus tcpi_bytes_acked (only what the
// peer acknowledged); the window is the socket's tcpi_snd_wnd bounded by SO_SNDBUF (§6.5), less
// what was written and acknowledged to the guest but not yet to the peer, in our window scale:
// the guest is never offered room the socket does not have, so nothing it sends within the
// window is dropped (upstream offers the peer's whole window and stalls on retransmission
// timeouts when the socket refuses the excess). When that ACK lags or the window is below one
// frame of the guest (a segment, and at least the 64 KiB it sends through an offloading tap), a
// timer re-checks: after 10 ms for a remote peer, whose ACKs follow its round trip;
// for a peer on this host, whose reader frees the socket within a scheduling delay, after 1 ms,
// doubled after every re-check that found nothing new up to 10 ms (the guest waits for that
// window update: 10 ms each time had left it idle for a third of a bulk upload). An open window
// is re-checked only while the guest is sending: from its data written to the socket until 8
// re-checks in a row found nothing new, so an idle connection costs no CPU (a guest with data
// for a window too small probes it after its retransmission timeout). The guest's
// FIN is a shutdown(SHUT_WR); when both sides finished and the guest acknowledged our FIN, the
// connection is closed. A RST from the guest closes the socket; a socket error is a RST to the
// guest.
//
// Events: each socket is registered edge-triggered (IN | OUT | RDHUP once established; OUT while
// connecting), with the connection's slot in the token, so data left in the socket because the
// guest's window is full costs no wake-ups: the guest's next ACK resumes sending. Each
// connection has one timer at a time: the ACK re-check (1 to 10 ms), the ACK timeout (2 s,
// which also repeats our SYN to the guest), the handshake timeout (10 s) or the FIN timeout
// (60 s); its deadline in the heap below decides, so a test's clock drives the timers. All
// connections share one timerfd (upstream has one per connection: two descriptors and five
// more syscalls per connection): a heap of deadlines (DeadlineHeap.swift) orders them, and the
// timerfd is set only when the earliest deadline moves before the time it is set for. One
// that fires early, or for a deadline since dropped, finds nothing due and is set for the
// earliest again; a request/response exchange costs no timerfd syscall at all. Frames go to a
// `TCPTap` (the daemon's tap writer, or a test's memory); records and buffers are allocated once.
import PasstConfig
import PasstSys
import PasstWire
import CPasstShim
#if canImport(Glibc)
import Glibc
#endif

/// Where TCP frames towards the guest go.
public protocol TCPTap: ~Copyable {
    /// Our MAC address (source of the frames).
    var ourMAC: MACAddress { get }
    /// The guest's MAC address (destination of the frames).
    var guestMAC: MACAddress { get }
    /// Whether the link takes TCP frames of many segments (up to 64 KiB of payload) and cuts
    /// or delivers them itself (pasta's tap with a virtio-net header); false: every frame must
    /// fit the guest's MTU.
    var segmentationOffload: Bool { get }
    /// Sends one frame (Ethernet header first) to the guest.
    mutating func send(_ frame: UnsafeRawBufferPointer)
    /// Sends one TCP frame whose checksum field holds only the pseudo-header sum, as `offload`
    /// describes it (partial checksum; segment size when it is longer than one segment).
    mutating func send(_ frame: UnsafeMutableRawBufferPointer, offload: VirtioNetHeader)
}

extension TCPTap where Self: ~Copyable {
    /// Links without a virtio-net header: frames no longer than the guest's MTU.
    public var segmentationOffload: Bool { false }

    /// Links without a virtio-net header: completes the checksum here and sends a plain frame.
    public mutating func send(_ frame: UnsafeMutableRawBufferPointer, offload: VirtioNetHeader) {
        offload.completeChecksum(frame.baseAddress!, count: frame.count)
        send(UnsafeRawBufferPointer(frame))
    }
}

/// The addressing and header fields of one TCP frame towards the guest.
struct TCPFrameHeader {
    var isIPv6: Bool
    /// The far end the guest talks to (source of the frame; v4-mapped for IPv4).
    var ourAddress: IPv6Address
    var ourPort: UInt16
    var guestAddress: IPv6Address
    var guestPort: UInt16
    var sequence: UInt32
    var acknowledgment: UInt32
    var flags: TCPFlags
    var window: UInt16
    /// MSS and window scale options (SYNs only).
    var mss: UInt16?
    var windowScale: UInt8?
    var flowLabel: UInt32
}

/// The TCP connections of the tap path, their sockets, timers and frame buffers.
public struct TCPFlows: ~Copyable {
    /// ACK interval: a due ACK or window update is re-checked this often for remote peers, at
    /// most this late for local ones (ns).
    public static let ackInterval: UInt64 = 10_000_000
    /// First re-check of a due ACK or window to a peer on this host (ns): doubled after each
    /// re-check that found nothing new, up to `ackInterval`.
    public static let localAckRecheck: UInt64 = 1_000_000
    /// A window below this is re-checked soon while the guest sends: the largest frame its stack
    /// sends, 64 KiB through an offloading tap at any MTU (our MSS, at most 61440, is smaller).
    static let guestFrameWindow: UInt32 = 65536
    /// Re-checks in a row that found nothing new after which the guest counts as not sending
    /// (`guestSending` cleared): its re-check delay reached `ackInterval` long before, and a
    /// window it can send a segment into is no longer re-checked (1,000 idle connections had
    /// cost 16 % of a CPU, 100 re-checks a second each).
    static let idleRecheckLimit: UInt8 = 8
    /// Handshake timeout (ns).
    public static let synTimeout: UInt64 = 10 * SystemClock.nanosecondsPerSecond
    /// Unacknowledged data is retransmitted after this long (ns).
    public static let ackTimeout: UInt64 = 2 * SystemClock.nanosecondsPerSecond
    /// A half-closed connection without progress is reset after this long (ns).
    public static let finTimeout: UInt64 = 60 * SystemClock.nanosecondsPerSecond
    /// Retransmission timeouts in a row before the connection is reset.
    public static let maximumRetransmits: UInt8 = 7
    /// Times our SYN to the guest is repeated (every ACK timeout) before the handshake times out.
    public static let synRetransmits: UInt8 = 4
    /// Frames peeked with one recvmsg(2).
    public static let batchFrames = 64
    /// Room in front of each payload: Ethernet, IPv6 and TCP header with options.
    static let headroom = 96
    /// Largest payload of one frame (IPv4 total length limit minus IP and TCP headers).
    static let maximumPayload = 65535 - 40
    /// Bytes per frame slot.
    static let slotSize = (headroom + maximumPayload + 63) & ~63
    /// Size of the discard buffer used when SO_PEEK_OFF is missing.
    static let discardSize = Int(TCPWindow.maximum)
    /// SO_PEEK_OFF (asm-generic/socket.h).
    static let soPeekOff: Int32 = 42
    /// Below this SO_SNDBUF, tcpi_bytes_acked is not mirrored (§6.5).
    static let smallSendBuffer: UInt32 = 128 * 1024

    /// Timer purposes, kept in `TCPConnection.timerClass`.
    enum TimerClass: UInt8 {
        case none = 0, ackInterval, synTimeout, ackTimeout, finTimeout
    }

    /// Connection records (calloc: all zero is free).
    let connections: UnsafeMutablePointer<TCPConnection>
    /// Free and used slots, and the generations their epoll tokens carry.
    var slots: SlotStack
    /// Most connections.
    public let capacity: Int
    /// Open connections.
    public private(set) var count = 0
    /// Address translation and outbound binding.
    public let rules: ForwardingRules
    /// The -t listeners (fixed once the daemon starts).
    public let listeners: [TCPListener]
    /// The tap MTU (our MSS is derived from it).
    public let mtu: Int
    /// The epoll instance sockets and timers are registered with (set before the first flow).
    public var epollFD: Int32 = -1
    /// Token kinds of connection sockets and of their shared timer.
    public let socketKind: UInt8
    public let timerKind: UInt8
    /// The connections' timer deadlines, the timerfd they share (-1 until first needed) and the
    /// time it is set to fire (0: not set; not after now: fired, its event still to come).
    var timers: DeadlineHeap
    var timerFD: Int32 = -1
    var timerFDFiresAt: UInt64 = 0
    /// The RFC 6528 secret.
    let isnSecret: SipHashKey
    /// Whether the kernel supports SO_PEEK_OFF on TCP sockets.
    public let peekOffsetSupported: Bool

    /// Frame slots for peeked data, the recvmsg vectors, flag-only frames, the discard buffer.
    let pool: UnsafeMutableRawPointer
    let vectors: UnsafeMutablePointer<iovec>
    let control: UnsafeMutableRawPointer
    let discard: UnsafeMutableRawPointer?
    /// In-order guest payload of one connection collected during a tap read pass (pointing into
    /// the caller's frames), written with one sendmsg by `flushGuestData`: slot (-1: none),
    /// vectors and bytes.
    var pendingSlot = -1
    var pendingCount = 0
    var pendingBytes = 0
    let pendingVectors: UnsafeMutablePointer<iovec>

    /// Allocates room for `capacity` connections with `rules` and `listeners` for a tap of `mtu`;
    /// sockets and timers get tokens of kind `socketKind` / `timerKind`.
    public init(capacity: Int = FlowTable.upstreamCapacity, rules: ForwardingRules, listeners: [TCPListener] = [],
                mtu: Int, socketKind: UInt8, timerKind: UInt8, isnSecret: SipHashKey = .random()) {
        let records = calloc(capacity, MemoryLayout<TCPConnection>.stride)
        precondition(records != nil, "Can't allocate the TCP connection table")
        connections = records!.bindMemory(to: TCPConnection.self, capacity: capacity)
        slots = SlotStack(capacity: capacity)
        timers = DeadlineHeap(capacity: capacity)
        self.capacity = capacity
        self.rules = rules
        self.listeners = listeners
        self.mtu = mtu
        self.socketKind = socketKind
        self.timerKind = timerKind
        self.isnSecret = isnSecret
        peekOffsetSupported = TCPFlows.probePeekOffset()
        pool = .allocate(byteCount: TCPFlows.slotSize * TCPFlows.batchFrames, alignment: 64)
        vectors = .allocate(capacity: TCPFlows.batchFrames + 1)
        pendingVectors = .allocate(capacity: TCPFlows.batchFrames)
        vectors.initialize(repeating: iovec(), count: TCPFlows.batchFrames + 1)
        control = .allocate(byteCount: TCPFlows.headroom + 64, alignment: 64)
        discard = peekOffsetSupported ? nil : .allocate(byteCount: TCPFlows.discardSize, alignment: 64)
    }

    deinit {
        for slot in 0..<slots.neverUsed where connections[slot].inUse { close(connections[slot].socket) }
        if timerFD >= 0 { close(timerFD) }
        TCPListeners.closeAll(listeners)
        free(connections)
        pool.deallocate()
        vectors.deallocate()
        pendingVectors.deallocate()
        control.deallocate()
        discard?.deallocate()
    }

    // MARK: Queries

    /// The socket of connection `slot`, -1 if the slot is free.
    public func socket(ofSlot slot: Int) -> Int32 {
        slot >= 0 && slot < slots.neverUsed && connections[slot].inUse ? connections[slot].socket : -1
    }

    /// The events of connection `slot` (empty if free).
    public func events(ofSlot slot: Int) -> TCPEvents {
        slot >= 0 && slot < slots.neverUsed && connections[slot].inUse ? connections[slot].events : []
    }

    /// The flags of connection `slot` (empty if free).
    public func flags(ofSlot slot: Int) -> TCPConnectionFlags {
        slot >= 0 && slot < slots.neverUsed && connections[slot].inUse ? connections[slot].flags : []
    }

    /// When connection `slot`'s timer fires (the caller's clock), nil if none is armed.
    public func timerDeadline(ofSlot slot: Int) -> UInt64? {
        slot >= 0 && slot < slots.neverUsed && connections[slot].inUse ? timers.deadline(of: slot) : nil
    }

    // MARK: Set-up helpers

    /// Whether setting SO_PEEK_OFF on a TCP socket works on this kernel.
    static func probePeekOffset() -> Bool {
        guard case .success(let owned) = Sys.socket(domain: AF_INET, type: SocketType.stream) else { return false }
        let fd = owned.release()
        defer { close(fd) }
        if case .success = Sys.setOption(fd, level: SOL_SOCKET, name: soPeekOff, Int32(0)) { return true }
        return false
    }

    /// Whether net.core.rmem_max and wmem_max are both at least 4 MiB (read once).
    public static let largeBuffersAllowed: Bool = {
        func value(_ path: String) -> Int {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return 0 }
            defer { close(fd) }
            var bytes = [UInt8](repeating: 0, count: 32)
            let count = read(fd, &bytes, bytes.count)
            guard count > 0 else { return 0 }
            return Int(String(decoding: bytes[..<count].prefix { $0 >= 0x30 && $0 <= 0x39 }, as: UTF8.self)) ?? 0
        }
        let limit = 4 * 1024 * 1024
        return value("/proc/sys/net/core/rmem_max") >= limit && value("/proc/sys/net/core/wmem_max") >= limit
    }()

    /// Sets SO_RCVBUF and SO_SNDBUF to INT_MAX / 2 when the kernel allows large buffers.
    static func setLargeBuffers(_ fd: Int32) {
        guard largeBuffersAllowed else { return }
        _ = Sys.setOption(fd, level: SOL_SOCKET, name: SO_RCVBUF, Int32.max / 2)
        _ = Sys.setOption(fd, level: SOL_SOCKET, name: SO_SNDBUF, Int32.max / 2)
    }

    /// The RFC 6528 initial sequence number of a connection with tap-side `key` at `now`.
    func initialSequence(_ key: FlowKey, now: UInt64) -> UInt32 {
        let hash = key.hash(secret: isnSecret)
        return UInt32(truncatingIfNeeded: hash >> 32 ^ hash) &+ UInt32(truncatingIfNeeded: now >> 5)
    }

    /// The slot an event token's payload names, if that slot still holds the connection the
    /// token was made for (a closed connection's descriptor number and slot can both be reused
    /// by a new one while the old one's events of the same wake-up wait in the batch).
    func liveSlot(_ data: UInt32) -> Int? {
        guard let (slot, _) = slots.decode(data), connections[slot].inUse else { return nil }
        return slot
    }

    /// The epoll token of `slot`'s socket (tests drive events through it).
    public func socketToken(slot: Int) -> EventToken {
        EventToken(kind: socketKind, fd: connections[slot].socket, data: slots.tokenData(slot))
    }

    /// Whether `address` can be a TCP endpoint (unicast, specified).
    static func isUnicast(_ address: IPv6Address) -> Bool {
        if let v4 = address.v4Mapped { return !v4.isUnspecified && !v4.isBroadcast && !v4.isMulticast }
        return !address.isUnspecified && !address.isMulticast
    }

    // MARK: Guest segments

    /// Handles one TCP segment from the guest, `source` -> `destination` (v4-mapped for IPv4).
    public mutating func handleGuestSegment<Tap: TCPTap & ~Copyable>(
        isIPv6: Bool, source: IPv6Address, destination: IPv6Address, segment: TCPSegment, now: UInt64,
        table: inout FlowTable, tap: inout Tap
    ) {
        let key = FlowKey(proto: IPProtocol.tcp, interface: .tap, ourAddress: destination,
                          ourPort: segment.destinationPort, endpointAddress: source, endpointPort: segment.sourcePort)
        guard let reference = table.lookup(key) else {
            let flags = segment.flags
            if flags.contains(.syn) && flags.isDisjoint(with: .ackRstFin) {
                openOutbound(isIPv6: isIPv6, key: key, segment: segment, now: now, table: &table, tap: &tap)
            } else {
                resetStray(isIPv6: isIPv6, source: source, destination: destination, segment: segment, tap: &tap)
            }
            return
        }
        let slot = Int(reference)
        let c = connections + slot
        let flags = segment.flags
        if pendingSlot >= 0 && (pendingSlot != slot || flags.contains(.rst)) {
            flushGuestData(now: now, table: &table, tap: &tap)
        }
        if flags.contains(.rst) {
            closeConnection(slot, table: &table)
            return
        }
        if c.pointee.events.contains(.tapSynReceived) {
            guard c.pointee.events.contains(.tapSynAckSent) else {
                // Still connecting: a retransmitted SYN waits, anything else is a reset.
                if !flags.contains(.syn) || flags.contains(.ack) { reset(slot, table: &table, tap: &tap) }
                return
            }
            if flags.contains(.syn) {
                if !flags.contains(.ack) { resendSynAck(slot, now: now, tap: &tap) }
                return
            }
            guard flags.contains(.ack) else { return }
            guard segment.acknowledgmentNumber == c.pointee.seqToTap else {
                reset(slot, table: &table, tap: &tap)
                return
            }
            c.pointee.wndFromTap = UInt32(segment.window) << c.pointee.wsFromTap
            establish(slot, now: now)
        } else if c.pointee.events.contains(.sockAccepted) {
            guard flags.contains(.synAck), segment.acknowledgmentNumber == c.pointee.seqToTap else {
                reset(slot, table: &table, tap: &tap)
                return
            }
            let options = segment.options
            c.pointee.tapMSS = TCPWindow.guestMSS(options.mss, isIPv6: c.pointee.isIPv6)
            if let scale = options.windowScale {
                c.pointee.wsFromTap = min(scale, 14)
            } else {
                c.pointee.wsFromTap = 0
                c.pointee.wsToTap = 0
            }
            c.pointee.seqFromTap = segment.sequenceNumber &+ 1
            c.pointee.seqInitFromTap = c.pointee.seqFromTap
            c.pointee.seqAckToTap = c.pointee.seqFromTap
            c.pointee.seqAckFromTap = c.pointee.seqToTap
            c.pointee.wndFromTap = UInt32(segment.window)
            establish(slot, now: now)
            _ = refreshAckAndWindow(slot, acknowledgeAll: true)
            sendFlags(slot, .ack, tap: &tap)
            sendFromSocket(slot, now: now, table: &table, tap: &tap)
            updateTimer(slot, now: now)
            return
        } else if flags.contains(.syn) {
            // A retransmitted SYN or SYN-ACK after the handshake: our ACK went missing.
            sendFlags(slot, .ack, tap: &tap)
            return
        }
        handleEstablishedSegment(slot, segment: segment, now: now, table: &table, tap: &tap)
    }

    /// Processes the ACK, window, payload and FIN of `segment` on established connection `slot`.
    mutating func handleEstablishedSegment<Tap: TCPTap & ~Copyable>(
        _ slot: Int, segment: TCPSegment, now: UInt64, table: inout FlowTable, tap: inout Tap
    ) {
        let c = connections + slot
        let flags = segment.flags
        let length = segment.payloadCount
        var resend = false
        if flags.contains(.ack) {
            let ack = segment.acknowledgmentNumber
            let window = UInt32(segment.window) << c.pointee.wsFromTap
            let previousAck = c.pointee.seqAckFromTap
            // More room for the guest matters only to data waiting in the socket (stalled): any
            // data arriving later is sent on the socket's own input event.
            let stalled = c.pointee.flags.contains(.stalled)
            if TCPSequence.less(previousAck, ack) && TCPSequence.lessOrEqual(ack, c.pointee.seqToTap) {
                acknowledge(slot, upTo: ack, now: now)
                resend = stalled
            } else if ack == previousAck && length == 0 && !flags.contains(.fin) && window == c.pointee.wndFromTap
                        && c.pointee.inFlight > 0 && c.pointee.lastFastRetransmit != ack {
                // A pure duplicate ACK: the guest lost something we sent.
                c.pointee.lastFastRetransmit = ack
                rewind(slot)
                resend = true
            }
            if window != c.pointee.wndFromTap {
                // A window closing to 0 while data is in flight is ignored (Linux zero-window ACKs).
                if window != 0 || c.pointee.inFlight == 0 {
                    resend = resend || (stalled && window > c.pointee.wndFromTap)
                    c.pointee.wndFromTap = window
                }
            }
        }
        if length > 0 || flags.contains(.fin) {
            guard receiveFromGuest(slot, segment: segment, now: now, table: &table, tap: &tap) else { return }
        }
        if resend {
            c.pointee.flags.remove(.stalled)
            sendFromSocket(slot, now: now, table: &table, tap: &tap)
            guard c.pointee.inUse else { return }
        }
        if finished(slot) {
            closeConnection(slot, table: &table)
            return
        }
        if length > 0 && c.pointee.timerClass == TimerClass.finTimeout.rawValue {
            restartTimer(slot, now: now)
        } else {
            updateTimer(slot, now: now)
        }
    }

    /// Queues the guest's in-order payload of `segment` for the socket (written by
    /// `flushGuestData`, with the ACK) and handles its FIN; returns false if the connection was
    /// reset.
    mutating func receiveFromGuest<Tap: TCPTap & ~Copyable>(
        _ slot: Int, segment: TCPSegment, now: UInt64, table: inout FlowTable, tap: inout Tap
    ) -> Bool {
        let c = connections + slot
        let length = segment.payloadCount
        let fin = segment.flags.contains(.fin)
        if c.pointee.events.contains(.tapFinReceived) {
            sendFlags(slot, .ack, tap: &tap)
            return true
        }
        let queued = pendingSlot == slot ? pendingBytes : 0
        let offset = Int32(bitPattern: segment.sequenceNumber &- (c.pointee.seqFromTap &+ UInt32(queued)))
        if offset > 0 {
            // A gap: the segment is dropped, and three duplicate ACKs (once per acknowledgment
            // number) are the RFC 5681 threshold at which a guest without SACK retransmits at once.
            flushGuestData(now: now, table: &table, tap: &tap)
            guard c.pointee.inUse else { return false }
            if c.pointee.lastDupAckSent != c.pointee.seqAckToTap {
                c.pointee.lastDupAckSent = c.pointee.seqAckToTap
                for _ in 0..<3 { sendFlags(slot, .ack, tap: &tap) }
            }
            return true
        }
        let skip = -Int(offset)   // widen first: -Int32.min would trap
        if skip > length || (skip == length && !fin) {
            // Old data or a keep-alive: answer with an ACK.
            flushGuestData(now: now, table: &table, tap: &tap)
            guard c.pointee.inUse else { return false }
            sendFlags(slot, .ack, tap: &tap)
            return true
        }
        if skip < length {
            if pendingSlot != slot || pendingCount == TCPFlows.batchFrames {
                flushGuestData(now: now, table: &table, tap: &tap)
                pendingSlot = slot
            }
            pendingVectors[pendingCount] = iovec(iov_base: UnsafeMutableRawPointer(mutating: segment.payload + skip),
                                                 iov_len: length - skip)
            pendingCount += 1
            pendingBytes += length - skip
        }
        guard fin else { return true }
        let end = segment.sequenceNumber &+ UInt32(length)
        flushGuestData(now: now, table: &table, tap: &tap)
        guard c.pointee.inUse else { return false }
        if c.pointee.seqFromTap == end {
            c.pointee.seqFromTap &+= 1
            c.pointee.set(.tapFinReceived)
            if !c.pointee.events.contains(.tapFinSent) { c.pointee.flags.insert(.activeClose) }
            _ = Sys.shutdown(c.pointee.socket, Int32(SHUT_WR))
            c.pointee.set(.sockFinSent)
            _ = refreshAckAndWindow(slot, acknowledgeAll: false)
            sendFlags(slot, .ack, tap: &tap)
        }
        return true
    }

    /// Writes the guest payload queued for one connection with one sendmsg and acknowledges it;
    /// what the socket does not take is dropped unacknowledged (the guest sends it again).
    /// Called when a tap read pass ends, before its frames are reused, and whenever a segment
    /// must see the connection up to date.
    public mutating func flushGuestData<Tap: TCPTap & ~Copyable>(now: UInt64, table: inout FlowTable, tap: inout Tap) {
        guard pendingSlot >= 0 else { return }
        let slot = pendingSlot
        let c = connections + slot
        var message = msghdr()
        message.msg_iov = pendingVectors
        message.msg_iovlen = pendingCount
        pendingSlot = -1
        pendingCount = 0
        pendingBytes = 0
        var written = 0
        switch Sys.sendmsg(c.pointee.socket, &message, flags: Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL)) {
        case .success(let count):
            written = count
        case .wouldBlock:
            break
        case .failure(let code):
            Log.debug("TCP: write to socket failed: \(SyscallError(code))")
            reset(slot, table: &table, tap: &tap)
            return
        }
        c.pointee.seqFromTap &+= UInt32(written)
        if written > 0 { c.pointee.flags.insert(.guestSending) }
        if refreshAckAndWindow(slot, acknowledgeAll: false) || written > 0 {
            sendFlags(slot, .ack, tap: &tap)
        }
        updateTimer(slot, now: now)
    }

    /// Records the guest's acknowledgment `ack`: discards the acknowledged bytes from the socket.
    mutating func acknowledge(_ slot: Int, upTo ack: UInt32, now: UInt64) {
        let c = connections + slot
        let dataEnd = c.pointee.dataEnd
        let dataAck = TCPSequence.less(dataEnd, ack) ? dataEnd : ack
        let discarded = Int(dataAck &- c.pointee.seqAckFromTap)
        if discarded > 0 && TCPSequence.less(c.pointee.seqAckFromTap, dataAck) {
            _ = Glibc.recv(c.pointee.socket, nil, discarded, Int32(MSG_TRUNC) | Int32(MSG_DONTWAIT))
        }
        c.pointee.seqAckFromTap = ack
        c.pointee.retransmits = 0
        if c.pointee.events.contains(.tapFinSent) && ack == c.pointee.seqToTap { c.pointee.set(.tapFinAcked) }
        if ack == c.pointee.seqToTap {
            c.pointee.flags.remove(.ackFromTapDue)
        } else {
            restartTimer(slot, now: now)
        }
    }

    /// Moves seqToTap back to the guest's last ACK so that everything after it is sent again.
    mutating func rewind(_ slot: Int) {
        let c = connections + slot
        if c.pointee.events.contains(.tapFinSent) && c.pointee.seqAckFromTap != c.pointee.seqToTap {
            c.pointee.events.remove(.tapFinSent)
        }
        c.pointee.seqToTap = c.pointee.seqAckFromTap
        if peekOffsetSupported {
            _ = Sys.setOption(c.pointee.socket, level: SOL_SOCKET, name: TCPFlows.soPeekOff, Int32(0))
        }
    }

    /// Whether both directions finished: the guest's FIN passed on, ours acknowledged.
    func finished(_ slot: Int) -> Bool {
        connections[slot].events.isSuperset(of: TCPEvents.bothFinished)
    }

    // MARK: Outbound set-up

    /// Creates the connection for the guest's SYN `segment` with tap-side `key`.
    mutating func openOutbound<Tap: TCPTap & ~Copyable>(
        isIPv6: Bool, key: FlowKey, segment: TCPSegment, now: UInt64, table: inout FlowTable, tap: inout Tap
    ) {
        guard key.ourPort != 0, key.endpointPort != 0, TCPFlows.isUnicast(key.ourAddress),
              TCPFlows.isUnicast(key.endpointAddress), table.count < table.capacity, epollFD >= 0 else { return }
        let target = rules.hostDestination(key.ourAddress, port: key.ourPort)
        let ipv4Socket = target.v4Mapped != nil
        var address = SocketAddress(target, port: key.ourPort, ipv4Socket: ipv4Socket, scope: rules.linkLocalScope6)
        guard let (fd, local) = TCPFlows.openConnectionSocket(to: &address) else { return }
        guard let slot = slots.allocate() else {
            close(fd)
            return
        }
        let options = segment.options
        let c = connections + slot
        c.initialize(to: TCPConnection(
            inUse: true, isIPv6: isIPv6, wsFromTap: options.windowScale.map { min($0, 14) } ?? 0, wsToTap: 0,
            events: .tapSynReceived, flags: local ? .local : [], retransmits: 0, socket: fd,
            guestAddress: key.endpointAddress, guestPort: key.endpointPort, peerAddress: key.ourAddress,
            peerPort: key.ourPort, tapMSS: TCPWindow.guestMSS(options.mss, isIPv6: isIPv6),
            windowScaling: options.windowScale != nil, seqToTap: 0, seqAckFromTap: 0,
            seqFromTap: segment.sequenceNumber &+ 1, seqAckToTap: segment.sequenceNumber &+ 1,
            seqInitFromTap: segment.sequenceNumber &+ 1, bytesAckedBase: 0, wndFromTap: UInt32(segment.window),
            wndToTap: TCPWindow.minimumBeforeEstablished, sendBuffer: 0, lastDupAckSent: 0, lastFastRetransmit: 0,
            timerClass: 0, idleRechecks: 0, epollEvents: 0))
        c.pointee.seqToTap = initialSequence(key, now: now)
        c.pointee.seqAckFromTap = c.pointee.seqToTap
        count += 1
        guard table.insert(key, reference: UInt32(slot)) else {
            releaseSlot(slot)
            return
        }
        TCPFlows.setLargeBuffers(fd)
        // The guest's MSS goes into the SYN towards a remote peer, as upstream sends it. A server on
        // this host is reached over loopback (MTU 65536), where the clamp would only cut the
        // kernel's own segments small (44 per 64 KiB at MTU 1500, 15 % of the throughput).
        if !local { _ = Sys.setOption(fd, level: Int32(IPPROTO_TCP), name: TCP_MAXSEG, Int32(c.pointee.tapMSS)) }
        c.pointee.sendBuffer = TCPFlows.sendBufferSize(fd)
        bindOutbound(fd, ipv4Socket: ipv4Socket)
        let connected = withUnsafeBytes(of: &address.storage) { Sys.connect(fd, $0.baseAddress!, length: address.length) }
        if case .failure(let code) = connected, code != EINPROGRESS {
            Log.debug("TCP: connect to \(target) port \(key.ourPort) failed: \(SyscallError(code))")
            reset(slot, table: &table, tap: &tap)
            return
        }
        c.pointee.flags.insert(.ackFromTapDue)
        // No timerfd (EMFILE at the descriptor limit): the handshake could never time out. Refused
        // before any SYN-ACK, so that the guest's connect reports it.
        guard openTimerFD() else {
            reset(slot, table: &table, tap: &tap)
            return
        }
        // A connection over loopback (to a local address) is established within connect(2) itself,
        // which still returns EINPROGRESS on a non-blocking socket: then the SYN-ACK goes to the
        // guest at once, without waiting for the socket's EPOLLOUT and reading SO_ERROR.
        if local, case .success(let info) = Sys.tcpInfo(fd), info.isEstablished {
            finishConnect(slot, now: now, info: info, tap: &tap)
        } else {
            watch(slot, EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue)
            updateTimer(slot, now: now)
        }
    }

    /// Opens the non-blocking socket for a connection to `address`, and tells whether a socket of
    /// this host is bound there (spec §6.2, LOCAL): binding to the destination fails with
    /// EADDRNOTAVAIL or EACCES for a remote address and with EADDRINUSE for a bound one, and
    /// either way leaves the socket unbound for the connection; a bind that succeeds (a local
    /// address nobody listens on) costs a fresh socket, as upstream's pool socket does. Nil if
    /// no socket can be opened.
    static func openConnectionSocket(to address: inout SocketAddress) -> (fd: Int32, local: Bool)? {
        func open() -> Int32? {
            guard case .success(let owned) = Sys.socket(domain: address.family,
                                                         type: SocketType.stream | SocketType.nonBlocking) else {
                Log.debug("TCP: can't open a socket: \(SyscallError(errno))")
                return nil
            }
            return owned.release()
        }
        guard let fd = open() else { return nil }
        let bound = withUnsafeBytes(of: &address.storage) { Sys.bind(fd, $0.baseAddress!, length: address.length) }
        if case .failure(let code) = bound { return (fd, code != EADDRNOTAVAIL && code != EACCES) }
        close(fd)
        return open().map { ($0, false) }
    }

    /// The socket's SO_SNDBUF.
    static func sendBufferSize(_ fd: Int32) -> UInt32 {
        if case .success(let size) = Sys.getOption(fd, level: SOL_SOCKET, name: SO_SNDBUF, as: Int32.self) {
            return UInt32(clamping: size)
        }
        return 0
    }

    /// Binds an outbound socket to the -o address and --outbound-ifN interface, if configured.
    func bindOutbound(_ fd: Int32, ipv4Socket: Bool) {
        let interface = ipv4Socket ? rules.outboundInterface4 : rules.outboundInterface6
        if let interface {
            _ = Sys.bindToDevice(fd, interface)
        }
        let source = ipv4Socket ? rules.outboundAddress4.map { IPv6Address(v4Mapped: $0) } : rules.outboundAddress6
        guard let source else { return }
        var local = SocketAddress(source, port: 0, ipv4Socket: ipv4Socket, scope: rules.linkLocalScope6)
        _ = withUnsafeBytes(of: &local.storage) { Sys.bind(fd, $0.baseAddress!, length: local.length) }
    }

    /// Sends the SYN-ACK once the host connect of `slot` completed; `known` is the socket's
    /// TCP_INFO when the caller has just read it.
    mutating func finishConnect<Tap: TCPTap & ~Copyable>(_ slot: Int, now: UInt64, info known: TCPInfo? = nil,
                                                          tap: inout Tap) {
        let c = connections + slot
        var info = known
        if info == nil, case .success(let value) = Sys.tcpInfo(c.pointee.socket) { info = value }
        if let info { noteHandshake(slot, info: info) }
        if c.pointee.windowScaling, let info {
            c.pointee.wsToTap = min(TCPWindow.maximumScale, info.sendWindowScale)
        }
        _ = refreshAckAndWindow(slot, acknowledgeAll: true, info: info)
        c.pointee.set(.tapSynAckSent)
        sendFlags(slot, .synAck, tap: &tap)
        watch(slot, EPOLLRDHUP.rawValue | EPOLLET.rawValue)
        restartTimer(slot, now: now)
    }

    /// Sends our SYN-ACK again (the guest repeated its SYN).
    mutating func resendSynAck<Tap: TCPTap & ~Copyable>(_ slot: Int, now: UInt64, tap: inout Tap) {
        connections[slot].seqToTap = connections[slot].seqAckFromTap
        sendFlags(slot, .synAck, tap: &tap)
    }

    /// Whether the socket's minimum RTT (at most 10 µs) says its peer is on this host.
    static func peerIsLocal(_ info: TCPInfo) -> Bool {
        info.hasMinRTT && info.minRTTMicroseconds > 0 && info.minRTTMicroseconds <= 10
    }

    /// Takes from `info`, the socket's TCP_INFO at the end of the host handshake, the base of
    /// tcpi_bytes_acked and whether the peer is local (`peerIsLocal`). Nothing is written to the
    /// socket before the guest's handshake ends too, so both still hold then.
    func noteHandshake(_ slot: Int, info: TCPInfo) {
        let c = connections + slot
        c.pointee.bytesAckedBase = info.bytesAcked
        if TCPFlows.peerIsLocal(info) { c.pointee.flags.insert(.local) }
        c.pointee.flags.insert(.handshakeNoted)
    }

    /// Marks `slot` established: edge-triggered input, output and read hang-up, peek offset 0.
    mutating func establish(_ slot: Int, now: UInt64) {
        let c = connections + slot
        c.pointee.set(.established)
        c.pointee.seqAckFromTap = c.pointee.seqToTap
        c.pointee.flags.remove(.ackFromTapDue)
        c.pointee.retransmits = 0
        if !c.pointee.flags.contains(.handshakeNoted), case .success(let info) = Sys.tcpInfo(c.pointee.socket) {
            noteHandshake(slot, info: info)
        }
        if peekOffsetSupported {
            _ = Sys.setOption(c.pointee.socket, level: SOL_SOCKET, name: TCPFlows.soPeekOff, Int32(0))
        }
        watch(slot, EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue)
        updateTimer(slot, now: now)
    }

    // MARK: Inbound set-up

    /// Accepts every pending connection on listener `index` and sends a SYN to the guest for each;
    /// `seen4`, `seen6` and `linkLocalSeen6` are the guest's current addresses.
    public mutating func acceptConnections<Tap: TCPTap & ~Copyable>(
        listener index: Int, now: UInt64, seen4: IPv4Address?, seen6: IPv6Address?, linkLocalSeen6: IPv6Address?,
        table: inout FlowTable, tap: inout Tap
    ) {
        guard index >= 0 && index < listeners.count else { return }
        let listener = listeners[index]
        while true {
            guard let (fd, peer) = SocketAddress.accept(from: listener.socket) else { return }
            if !openInbound(fd, peer: peer, listener: listener, now: now, seen4: seen4, seen6: seen6,
                            linkLocalSeen6: linkLocalSeen6, table: &table, tap: &tap) {
                close(fd)
            }
        }
    }

    /// Makes socket `fd`, accepted from `peer` on a listener forwarding to guest port `targetPort`,
    /// a tap-path connection and sends our SYN; false (the caller closes `fd`) if it can't be.
    public mutating func openAccepted<Tap: TCPTap & ~Copyable>(
        _ fd: Int32, peer: SocketAddress, targetPort: UInt16, now: UInt64, seen4: IPv4Address?,
        seen6: IPv6Address?, linkLocalSeen6: IPv6Address?, table: inout FlowTable, tap: inout Tap
    ) -> Bool {
        openInbound(fd, peer: peer, listener: TCPListener(socket: -1, port: 0, targetPort: targetPort), now: now,
                    seen4: seen4, seen6: seen6, linkLocalSeen6: linkLocalSeen6, table: &table, tap: &tap)
    }

    /// Makes accepted socket `fd` from `peer` a connection and sends our SYN; false if it can't be.
    mutating func openInbound<Tap: TCPTap & ~Copyable>(
        _ fd: Int32, peer: SocketAddress, listener: TCPListener, now: UInt64, seen4: IPv4Address?,
        seen6: IPv6Address?, linkLocalSeen6: IPv6Address?, table: inout FlowTable, tap: inout Tap
    ) -> Bool {
        let peerAddress = peer.address
        let isIPv4Peer = peerAddress.v4Mapped != nil
        guard peer.port != 0, TCPFlows.isUnicast(peerAddress), epollFD >= 0, table.count < table.capacity,
              let source = rules.guestSource(peerAddress, seen: isIPv4Peer ? seen4.map { IPv6Address(v4Mapped: $0) } : seen6)
        else { return false }
        let isIPv6 = source.v4Mapped == nil
        let destination = isIPv6 ? (source.isLinkLocal ? linkLocalSeen6 : seen6) : seen4.map { IPv6Address(v4Mapped: $0) }
        guard let destination else { return false }
        let key = FlowKey(proto: IPProtocol.tcp, interface: .tap, ourAddress: source, ourPort: peer.port,
                          endpointAddress: destination, endpointPort: listener.targetPort)
        guard let slot = slots.allocate() else { return false }
        let c = connections + slot
        var info: TCPInfo?
        if case .success(let value) = Sys.tcpInfo(fd) { info = value }
        let isn = initialSequence(key, now: now)
        let loopback = peerAddress.isLoopback || (peerAddress.v4Mapped?.isLoopback ?? false)
        c.initialize(to: TCPConnection(
            inUse: true, isIPv6: isIPv6, wsFromTap: 0,
            wsToTap: min(TCPWindow.maximumScale, info?.sendWindowScale ?? 0), events: .sockAccepted,
            flags: loopback ? .local : [], retransmits: 0, socket: fd, guestAddress: destination,
            guestPort: listener.targetPort, peerAddress: source, peerPort: peer.port, tapMSS: TCPWindow.defaultMSS,
            windowScaling: true, seqToTap: isn, seqAckFromTap: isn, seqFromTap: 0, seqAckToTap: 0,
            seqInitFromTap: 0, bytesAckedBase: 0, wndFromTap: 0, wndToTap: TCPWindow.minimumBeforeEstablished,
            sendBuffer: TCPFlows.sendBufferSize(fd), lastDupAckSent: 0, lastFastRetransmit: 0,
            timerClass: 0, idleRechecks: 0, epollEvents: 0))
        count += 1
        guard table.insert(key, reference: UInt32(slot)) else {
            c.pointee.socket = -1
            releaseSlot(slot)
            return false
        }
        if let info { noteHandshake(slot, info: info) }
        if let sendWindow = info?.sendWindow, info?.hasSendWindow == true {
            c.pointee.wndToTap = TCPWindow.toTap(sendWindow: sendWindow, sendBuffer: c.pointee.sendBuffer,
                                                 established: false)
        }
        watch(slot, EPOLLRDHUP.rawValue | EPOLLET.rawValue)
        sendFlags(slot, .syn, tap: &tap)
        c.pointee.flags.insert(.ackFromTapDue)
        updateTimer(slot, now: now)
        // No timerfd (EMFILE at the descriptor limit): the handshake could never time out.
        if timerFD < 0 { reset(slot, table: &table, tap: &tap) }
        return true
    }

    // MARK: Socket events

    /// Handles readiness `events` of the connection socket that `token` names (stale tokens
    /// are ignored).
    public mutating func handleSocketEvent<Tap: TCPTap & ~Copyable>(
        _ token: EventToken, events: EpollEvents, now: UInt64, table: inout FlowTable, tap: inout Tap
    ) {
        guard let slot = liveSlot(token.data), connections[slot].socket & 0xff_ffff == token.fd else { return }
        let c = connections + slot
        let state = c.pointee.events
        if state.contains(.tapSynReceived) && !state.contains(.tapSynAckSent) {
            var error: Int32 = 0
            if case .success(let value) = Sys.getOption(c.pointee.socket, level: SOL_SOCKET, name: SO_ERROR,
                                                        as: Int32.self) { error = value }
            if error != 0 || !events.isDisjoint(with: .failed) {
                Log.debug("TCP: connect failed: \(SyscallError(error))")
                reset(slot, table: &table, tap: &tap)
            } else if events.contains(.output) {
                finishConnect(slot, now: now, tap: &tap)
            }
            return
        }
        if events.contains(.error) || (!state.contains(.established) && events.contains(.hangup)) {
            reset(slot, table: &table, tap: &tap)
            return
        }
        guard state.contains(.established) else { return }
        if !events.isDisjoint(with: .hangups) { c.pointee.set(.sockFinReceived) }
        var refreshed = false
        if !events.isDisjoint(with: .readable) {
            refreshed = sendFromSocket(slot, now: now, table: &table, tap: &tap)
            guard c.pointee.inUse else { return }
        }
        // Edge-triggered, OUT comes with every IN: frames just sent carry a fresh ACK and window.
        if events.contains(.output) && !refreshed && refreshAckAndWindow(slot, acknowledgeAll: false) {
            sendFlags(slot, .ack, tap: &tap)
        }
        updateTimer(slot, now: now)
    }

    // MARK: Socket to guest

    /// Peeks what the guest's window allows from the socket of `slot` and sends it as segments;
    /// sends our FIN once the socket reached end of file and everything was sent. Returns whether
    /// frames went out with an ACK and window freshly read from the socket.
    @discardableResult
    mutating func sendFromSocket<Tap: TCPTap & ~Copyable>(
        _ slot: Int, now: UInt64, table: inout FlowTable, tap: inout Tap
    ) -> Bool {
        let c = connections + slot
        guard c.pointee.events.contains(.established), !c.pointee.events.contains(.tapFinSent) else { return false }
        // Segments of at most half the guest's window: Linux takes the largest segment it saw as
        // its receive MSS and advertises a zero window whenever its free space is below that, so
        // one segment filling a young connection's whole window (64 KiB at MTU 65520) can leave
        // the guest at window 0 for good once its reader has emptied the buffer. With
        // segmentation offload a frame carries as many whole segments as fit 64 KiB and half the
        // window; the guest measures its receive MSS by the segment size it is marked with.
        let halfWindow = max(Int(c.pointee.wndFromTap / 2), Int(TCPWindow.defaultMSS))
        let mss = min(Int(c.pointee.tapMSS), TCPFlows.maximumPayload, halfWindow)
        let frameBytes = tap.segmentationOffload ? max(mss, min(TCPFlows.maximumPayload, halfWindow) / mss * mss) : mss
        var refreshed = false
        while true {
            let inFlight = c.pointee.inFlight
            let window = min(c.pointee.wndFromTap, TCPWindow.maximum)
            if inFlight >= window {
                c.pointee.flags.insert(TCPConnectionFlags.waitingForGuest)
                return refreshed
            }
            let budget = Int(window - inFlight)
            let frames = min(TCPFlows.batchFrames, (budget + frameBytes - 1) / frameBytes)
            var vectorCount = 0
            var skipped = 0
            if let discard, inFlight > 0 {
                skipped = min(Int(inFlight), TCPFlows.discardSize)
                vectors[0] = iovec(iov_base: discard, iov_len: skipped)
                vectorCount = 1
            }
            var requested = 0
            for index in 0..<frames {
                let length = min(frameBytes, budget - index * frameBytes)
                vectors[vectorCount] = iovec(iov_base: pool + index * TCPFlows.slotSize + TCPFlows.headroom,
                                             iov_len: length)
                vectorCount += 1
                requested += length
            }
            var message = msghdr()
            message.msg_iov = vectors
            message.msg_iovlen = vectorCount
            var fresh = 0
            var endOfFile = false
            switch Sys.recvmsg(c.pointee.socket, &message, flags: Int32(MSG_PEEK) | Int32(MSG_DONTWAIT)) {
            case .success(let count):
                fresh = max(0, count - skipped)
                endOfFile = count == 0
            case .wouldBlock:
                break
            case .failure(let code):
                Log.debug("TCP: peek failed: \(SyscallError(code))")
                reset(slot, table: &table, tap: &tap)
                return refreshed
            }
            if fresh == 0 {
                if endOfFile || c.pointee.events.contains(.sockFinReceived) {
                    c.pointee.set(.sockFinReceived)
                    _ = refreshAckAndWindow(slot, acknowledgeAll: true)
                    sendFlags(slot, .finAck, tap: &tap)
                    c.pointee.set(.tapFinSent)
                    c.pointee.flags.insert(.ackFromTapDue)
                    return true
                } else if inFlight > 0 {
                    c.pointee.flags.insert(TCPConnectionFlags.waitingForGuest)
                }
                return refreshed
            }
            if !refreshed {
                _ = refreshAckAndWindow(slot, acknowledgeAll: false)
                refreshed = true
            }
            var sent = 0
            var index = 0
            while sent < fresh {
                let length = min(frameBytes, fresh - sent)
                emit(slot, payload: pool + index * TCPFlows.slotSize + TCPFlows.headroom, length: length,
                     sequence: c.pointee.seqToTap, flags: .ack, segmentSize: mss, tap: &tap)
                c.pointee.seqToTap &+= UInt32(length)
                sent += length
                index += 1
            }
            if !c.pointee.flags.contains(.ackFromTapDue) {
                c.pointee.flags.insert(.ackFromTapDue)
                restartTimer(slot, now: now)
            }
            // The socket is drained; after its end of file, one more peek finds it and sends our FIN
            // now rather than on an ACK from the guest, which need not come.
            if fresh < requested && !c.pointee.events.contains(.sockFinReceived) { return refreshed }
        }
    }

    // MARK: ACK and window towards the guest

    /// Recomputes the ACK and window for the guest from the socket's TCP_INFO (`info`, when the
    /// caller has just read it; spec §6.5); returns whether what the guest would see changed.
    /// Schedules a re-check while the ACK lags or the window is 0.
    mutating func refreshAckAndWindow(_ slot: Int, acknowledgeAll: Bool, info knownInfo: TCPInfo? = nil) -> Bool {
        let c = connections + slot
        var info = knownInfo
        if info == nil, case .success(let value) = Sys.tcpInfo(c.pointee.socket) { info = value }
        let local = c.pointee.flags.contains(.local) || (info.map(TCPFlows.peerIsLocal) ?? false)
        let closing = !c.pointee.events.isDisjoint(with: TCPEvents.eitherFinReceived)
        var ack = c.pointee.seqFromTap
        if let info, info.hasBytesAcked, !acknowledgeAll, !local, !closing,
           c.pointee.sendBuffer >= TCPFlows.smallSendBuffer {
            ack = c.pointee.seqInitFromTap &+ UInt32(truncatingIfNeeded: info.bytesAcked &- c.pointee.bytesAckedBase)
            if TCPSequence.less(ack, c.pointee.seqAckToTap) { ack = c.pointee.seqAckToTap }
            if TCPSequence.less(c.pointee.seqFromTap, ack) { ack = c.pointee.seqFromTap }
        }
        let established = c.pointee.events.contains(.established)
        var outstanding: UInt32 = 0
        if established, ack == c.pointee.seqFromTap, let info, info.hasBytesAcked {
            // Everything written is acknowledged to the guest, but what the peer has not yet
            // acknowledged still fills the socket and the peer's window.
            let peerAcked = UInt32(truncatingIfNeeded: info.bytesAcked &- c.pointee.bytesAckedBase)
            outstanding = (c.pointee.seqFromTap &- c.pointee.seqInitFromTap) &- peerAcked
            if Int32(bitPattern: outstanding) < 0 { outstanding = 0 }   // a FIN counted on one side only
        }
        if !TCPFlows.largeBuffersAllowed { c.pointee.sendBuffer = TCPFlows.sendBufferSize(c.pointee.socket) }
        let window = TCPWindow.toTap(sendWindow: info.flatMap { $0.hasSendWindow ? $0.sendWindow : nil },
                                     sendBuffer: c.pointee.sendBuffer, outstanding: outstanding,
                                     established: established)
        let before = windowField(slot)
        let changed = ack != c.pointee.seqAckToTap
        c.pointee.seqAckToTap = ack
        c.pointee.wndToTap = window
        let field = windowField(slot)
        if changed || field != before { c.pointee.idleRechecks = 0 }
        // Re-check soon what the guest would otherwise wait on until we ask: a lagging ACK, a
        // closed window, and, while it is sending (`guestSending`), a window below one of its
        // frames. A guest that sends nothing waits on no open window: it would probe it first.
        let sending = c.pointee.flags.contains(.guestSending)
        if established && (ack != c.pointee.seqFromTap || field == 0
                           || (sending && window < TCPFlows.guestFrameWindow)) {
            c.pointee.flags.insert(.ackToTapDue)
        }
        return changed || field != before
    }

    /// The window field of our next segment: unscaled in SYNs, else shifted by our scale.
    func windowField(_ slot: Int) -> UInt16 {
        let c = connections[slot]
        if !c.events.contains(.established) { return UInt16(min(c.wndToTap, 65535)) }
        return UInt16(min(c.wndToTap >> c.wsToTap, 65535))
    }

    // MARK: Frames

    /// Sends a segment without payload with `flags` (SYN and FIN take a sequence number).
    mutating func sendFlags<Tap: TCPTap & ~Copyable>(_ slot: Int, _ flags: TCPFlags, tap: inout Tap) {
        let c = connections + slot
        emit(slot, payload: control + TCPFlows.headroom, length: 0, sequence: c.pointee.seqToTap, flags: flags,
             tap: &tap)
        if !flags.isDisjoint(with: .synOrFin) { c.pointee.seqToTap &+= 1 }
    }

    /// Writes Ethernet, IP and TCP headers in front of the `length` payload bytes at `payload`
    /// and sends the frame, with the pseudo-header sum as checksum for the link to complete or
    /// offload, as one GSO frame of `segmentSize` segments if longer; SYNs carry our MSS and,
    /// if used, window scale.
    mutating func emit<Tap: TCPTap & ~Copyable>(
        _ slot: Int, payload: UnsafeMutableRawPointer, length: Int, sequence: UInt32, flags: TCPFlags,
        segmentSize: Int = Int.max, tap: inout Tap
    ) {
        let c = connections[slot]
        let isSyn = flags.contains(.syn)
        let header = TCPFrameHeader(
            isIPv6: c.isIPv6, ourAddress: c.peerAddress, ourPort: c.peerPort, guestAddress: c.guestAddress,
            guestPort: c.guestPort, sequence: sequence, acknowledgment: flags.contains(.ack) ? c.seqAckToTap : 0,
            flags: flags, window: windowField(slot), mss: isSyn ? TCPWindow.ourMSS(mtu: mtu, isIPv6: c.isIPv6) : nil,
            windowScale: isSyn && c.windowScaling ? c.wsToTap : nil, flowLabel: UInt32(bitPattern: c.socket) & 0xf_ffff)
        TCPFlows.send(header, payload: payload, length: length, segmentSize: segmentSize, tap: &tap)
    }

    /// Writes `header`'s Ethernet, IP and TCP headers in front of the `length` bytes at `payload`
    /// and sends the frame (the room in front is at least `headroom`).
    @inline(__always)
    static func send<Tap: TCPTap & ~Copyable>(
        _ header: TCPFrameHeader, payload: UnsafeMutableRawPointer, length: Int, segmentSize: Int, tap: inout Tap
    ) {
        let headerLength = TCPSegment.headerLength(mss: header.mss, windowScale: header.windowScale)
        let tcp = payload - headerLength
        TCPSegment.write(to: tcp, sourcePort: header.ourPort, destinationPort: header.guestPort,
                         sequenceNumber: header.sequence, acknowledgmentNumber: header.acknowledgment,
                         flags: header.flags, window: header.window, mss: header.mss, windowScale: header.windowScale)
        let segmentLength = headerLength + length
        let frame: UnsafeMutableRawPointer
        if header.isIPv6 {
            TCPSegment.fillPartialChecksum(tcp, count: segmentLength, source: header.ourAddress,
                                           destination: header.guestAddress)
            let ip = tcp - IPv6Packet.headerLength
            IPv6Packet.write(to: ip, source: header.ourAddress, destination: header.guestAddress,
                             nextHeader: IPProtocol.tcp, payloadLength: segmentLength, flowLabel: header.flowLabel)
            frame = ip - EthernetFrame.headerLength
            EthernetFrame.write(to: frame, destination: tap.guestMAC, source: tap.ourMAC, etherType: EtherType.ipv6)
        } else {
            let source = header.ourAddress.v4Mapped ?? .any
            let destination = header.guestAddress.v4Mapped ?? .any
            TCPSegment.fillPartialChecksum(tcp, count: segmentLength, source: source, destination: destination)
            let ip = tcp - IPv4Packet.minimumHeaderLength
            IPv4Packet.write(to: ip, source: source, destination: destination, protocol: IPProtocol.tcp,
                             payloadLength: segmentLength)
            frame = ip - EthernetFrame.headerLength
            EthernetFrame.write(to: frame, destination: tap.guestMAC, source: tap.ourMAC, etherType: EtherType.ipv4)
        }
        let offload = VirtioNetHeader.tcp(tcpOffset: tcp - frame, tcpHeaderLength: headerLength, payload: length,
                                          segmentSize: segmentSize, isIPv6: header.isIPv6)
        tap.send(UnsafeMutableRawBufferPointer(start: frame, count: payload + length - frame), offload: offload)
    }

    /// Answers a guest segment that belongs to no connection with a RST (RFC 9293 3.10.7.1, as
    /// current upstream does): one that acknowledges something gets a RST at that sequence, which
    /// the guest's stack takes as exactly in order; one without ACK gets RST and ACK of all it
    /// occupied. A RST is never answered, nor a segment to or from port 0 or an address that is
    /// not unicast. So a guest whose connection we closed (our RST lost on a congested tap, or a
    /// restarted pasta) learns it at its next retransmission.
    func resetStray<Tap: TCPTap & ~Copyable>(
        isIPv6: Bool, source: IPv6Address, destination: IPv6Address, segment: TCPSegment, tap: inout Tap
    ) {
        let flags = segment.flags
        guard !flags.contains(.rst), segment.sourcePort != 0, segment.destinationPort != 0,
              TCPFlows.isUnicast(source), TCPFlows.isUnicast(destination) else { return }
        let occupied = UInt32(truncatingIfNeeded: segment.payloadCount)
            &+ (flags.contains(.syn) ? 1 : 0) &+ (flags.contains(.fin) ? 1 : 0)
        let acknowledges = flags.contains(.ack)
        let header = TCPFrameHeader(
            isIPv6: isIPv6, ourAddress: destination, ourPort: segment.destinationPort, guestAddress: source,
            guestPort: segment.sourcePort, sequence: acknowledges ? segment.acknowledgmentNumber : 0,
            acknowledgment: acknowledges ? 0 : segment.sequenceNumber &+ occupied,
            flags: acknowledges ? .rst : .rstAck, window: 0, mss: nil, windowScale: nil, flowLabel: 0)
        TCPFlows.send(header, payload: control + TCPFlows.headroom, length: 0, segmentSize: Int.max, tap: &tap)
    }

    // MARK: Timers

    /// Handles the expiry of the shared timerfd: runs the timer of every connection due by `now`,
    /// then sets the timerfd for the earliest deadline left.
    public mutating func handleTimerEvent<Tap: TCPTap & ~Copyable>(
        _ token: EventToken, now: UInt64, table: inout FlowTable, tap: inout Tap
    ) {
        guard timerFD >= 0, timerFD & 0xff_ffff == token.fd else { return }
        var expirations: UInt64 = 0
        _ = read(timerFD, &expirations, 8)
        timerFDFiresAt = now   // fired: the handlers' new deadlines wait for the setting below
        while let slot = timers.popDue(now: now) {
            runTimer(slot, now: now, table: &table, tap: &tap)
        }
        if let earliest = timers.earliest { setTimerFD(earliest, now: now) } else { timerFDFiresAt = 0 }
    }

    /// Runs connection `slot`'s timer if it is due at `now` (tests call it to drive the clock).
    public mutating func handleTimer<Tap: TCPTap & ~Copyable>(
        slot: Int, now: UInt64, table: inout FlowTable, tap: inout Tap
    ) {
        guard slot >= 0 && slot < slots.neverUsed, let deadline = timers.deadline(of: slot), deadline <= now
        else { return }
        timers.remove(slot)
        runTimer(slot, now: now, table: &table, tap: &tap)
    }

    /// Does what connection `slot`'s expired timer was for (its deadline already unscheduled).
    mutating func runTimer<Tap: TCPTap & ~Copyable>(_ slot: Int, now: UInt64, table: inout FlowTable, tap: inout Tap) {
        guard connections[slot].inUse else { return }
        let c = connections + slot
        c.pointee.timerClass = TimerClass.none.rawValue
        if c.pointee.flags.contains(.ackToTapDue) {
            c.pointee.flags.remove(.ackToTapDue)
            if refreshAckAndWindow(slot, acknowledgeAll: false) {
                sendFlags(slot, .ack, tap: &tap)
            } else if c.pointee.idleRechecks < TCPFlows.idleRecheckLimit {
                c.pointee.idleRechecks += 1
            } else {
                c.pointee.flags.remove(.guestSending)
            }
            if c.pointee.flags.contains(.stalled) && windowField(slot) != 0 {
                sendFromSocket(slot, now: now, table: &table, tap: &tap)
            }
        } else if c.pointee.flags.contains(.ackFromTapDue) {
            if c.pointee.events.contains(.sockAccepted) && c.pointee.retransmits < TCPFlows.synRetransmits {
                // Our SYN may have been lost: send it again, every 2 s within the 10 s handshake timeout.
                c.pointee.retransmits += 1
                c.pointee.seqToTap = c.pointee.seqAckFromTap
                sendFlags(slot, .syn, tap: &tap)
                restartTimer(slot, now: now)
                return
            }
            if !c.pointee.events.contains(.established) {
                Log.debug("TCP: handshake timeout")
                reset(slot, table: &table, tap: &tap)
                return
            }
            if c.pointee.inFlight == 0 {
                // Nothing in flight but the guest's window is 0: probe it with an old ACK.
                emit(slot, payload: control + TCPFlows.headroom, length: 0, sequence: c.pointee.seqToTap &- 1,
                     flags: .ack, tap: &tap)
            } else if c.pointee.retransmits >= TCPFlows.maximumRetransmits {
                Log.debug("TCP: retransmission limit reached")
                reset(slot, table: &table, tap: &tap)
                return
            } else {
                c.pointee.retransmits += 1
                rewind(slot)
                c.pointee.flags.remove(.stalled)
                sendFromSocket(slot, now: now, table: &table, tap: &tap)
                guard c.pointee.inUse else { return }
            }
            restartTimer(slot, now: now)
            return
        } else if c.pointee.events.isSuperset(of: TCPEvents.finSentAndAcked) {
            Log.debug("TCP: FIN timeout")
            reset(slot, table: &table, tap: &tap)
            return
        }
        updateTimer(slot, now: now)
    }

    /// The timer purpose and delay that `slot`'s flags and events call for.
    func wantedTimer(_ slot: Int) -> (TimerClass, UInt64) {
        let c = connections[slot]
        if c.flags.contains(.ackToTapDue) { return (.ackInterval, TCPFlows.ackRecheckDelay(c)) }
        if c.flags.contains(.ackFromTapDue) {
            if c.events.contains(.established) || c.events.contains(.sockAccepted) {
                return (.ackTimeout, TCPFlows.ackTimeout)
            }
            return (.synTimeout, TCPFlows.synTimeout)
        }
        // Both our FIN to the socket and the guest's ACK of our FIN (spec §6.6): a half-closed
        // connection still waiting for its peer's answer must not be reset.
        if c.events.isSuperset(of: TCPEvents.finSentAndAcked) { return (.finTimeout, TCPFlows.finTimeout) }
        return (.none, 0)
    }

    /// When to re-check connection `c`'s due ACK or window. The guest waits for that window
    /// update whenever it has used up the window we offered, and to a peer on this host the
    /// socket drains within a scheduling delay: 1 ms after a re-check that found news, doubled
    /// after each that found none (a reader that stopped), up to the 10 ms kept for remote
    /// peers, whose ACKs follow their round trip (ns -> host at MTU 65520 with bbr: 14.4 to
    /// 15.6 Gbit/s instead of 10.5 to 12.3 in alternating runs).
    static func ackRecheckDelay(_ c: TCPConnection) -> UInt64 {
        guard c.flags.contains(.local) else { return ackInterval }
        return min(localAckRecheck << c.idleRechecks, ackInterval)
    }

    /// Arms `slot`'s timer for what its state calls for, unless it is already armed for that.
    mutating func updateTimer(_ slot: Int, now: UInt64) {
        let (wanted, delay) = wantedTimer(slot)
        let c = connections + slot
        if wanted.rawValue == c.pointee.timerClass && (wanted == .none || timers.deadline(of: slot) != nil) { return }
        startTimer(slot, wanted, delay: delay, now: now)
    }

    /// Arms `slot`'s timer afresh for what its state calls for (progress restarts the timeout).
    mutating func restartTimer(_ slot: Int, now: UInt64) {
        let (wanted, delay) = wantedTimer(slot)
        startTimer(slot, wanted, delay: delay, now: now)
    }

    /// Makes `slot`'s timer due `delay` ns after `now` for `purpose` (`.none`: not due).
    mutating func startTimer(_ slot: Int, _ purpose: TimerClass, delay: UInt64, now: UInt64) {
        let c = connections + slot
        c.pointee.timerClass = purpose.rawValue
        if purpose == .none {
            timers.remove(slot)
            return
        }
        armTimer(slot, at: max(now &+ delay, 1), now: now)
    }

    /// Schedules `slot`'s timer for `deadline` (after `now`) and sets the shared timerfd to fire
    /// by then, unless it already does or has fired and its event is still to come (which sets
    /// it for the earliest deadline). The timerfd is created on first use; without it (EMFILE)
    /// only `handleTimer` can run the timer.
    mutating func armTimer(_ slot: Int, at deadline: UInt64, now: UInt64) {
        timers.schedule(slot, at: deadline)
        guard openTimerFD() else { return }
        if timerFDFiresAt == 0 || (timerFDFiresAt > now && deadline < timerFDFiresAt) {
            setTimerFD(deadline, now: now)
        }
    }

    /// The token of the connections' shared timerfd, nil until a connection first needed it.
    public var timerToken: EventToken? { timerFD >= 0 ? EventToken(kind: timerKind, fd: timerFD) : nil }

    /// Creates the shared timerfd and registers it with epoll, once; tells whether it exists.
    mutating func openTimerFD() -> Bool {
        if timerFD >= 0 { return true }
        let fd = timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK) | Int32(TFD_CLOEXEC))
        guard fd >= 0 else { return false }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = EventToken(kind: timerKind, fd: fd).rawValue
        guard epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0 else {
            close(fd)
            return false
        }
        timerFD = fd
        return true
    }

    /// Sets the shared timerfd to expire at `deadline` (at least 1 ns after `now`).
    mutating func setTimerFD(_ deadline: UInt64, now: UInt64) {
        let after = deadline > now ? deadline - now : 1
        let second = SystemClock.nanosecondsPerSecond
        var spec = itimerspec()
        spec.it_value.tv_sec = Int(after / second)
        spec.it_value.tv_nsec = Int(after % second)
        if timerfd_settime(timerFD, 0, &spec, nil) == 0 { timerFDFiresAt = max(deadline, now &+ 1) }
    }

    // MARK: Closing

    /// Registers or re-registers `slot`'s socket with epoll for `events` (raw EPOLL* bits).
    mutating func watch(_ slot: Int, _ events: UInt32) {
        let c = connections + slot
        guard c.pointee.epollEvents != events else { return }
        var event = epoll_event()
        event.events = events
        event.data.u64 = socketToken(slot: slot).rawValue
        let operation = c.pointee.epollEvents == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD
        if epoll_ctl(epollFD, operation, c.pointee.socket, &event) == 0 { c.pointee.epollEvents = events }
    }

    /// Sends a RST to the guest (with an ACK of its SYN while we never answered it) and closes.
    mutating func reset<Tap: TCPTap & ~Copyable>(_ slot: Int, table: inout FlowTable, tap: inout Tap) {
        let c = connections + slot
        if c.pointee.events.contains(.tapSynReceived) && !c.pointee.events.contains(.tapSynAckSent) {
            sendFlags(slot, .rstAck, tap: &tap)
        } else {
            sendFlags(slot, .rst, tap: &tap)
        }
        closeConnection(slot, table: &table)
    }

    /// Closes connection `slot`: its table entry, socket and timer; the slot becomes free.
    mutating func closeConnection(_ slot: Int, table: inout FlowTable) {
        table.remove(connections[slot].tapKey)
        releaseSlot(slot)
    }

    /// Closes `slot`'s socket and timer and gives the slot back.
    mutating func releaseSlot(_ slot: Int) {
        let c = connections + slot
        if pendingSlot == slot {
            pendingSlot = -1
            pendingCount = 0
            pendingBytes = 0
        }
        if c.pointee.socket >= 0 { close(c.pointee.socket) }
        timers.remove(slot)
        (UnsafeMutableRawPointer(c)).initializeMemory(as: UInt8.self, repeating: 0,
                                                       count: MemoryLayout<TCPConnection>.stride)
        slots.release(slot)
        count -= 1
    }
}
