// UDP between the guest and host sockets (spec §8, §3.3).
//
// Theory of operation: UDP has no connections, so a "flow" is a pseudo-connection: a guest-side
// pair of endpoints (the guest's address and port, and the peer address and port the guest
// talks to) and a host-side socket. Both sides are in the shared flow table (FlowTable.swift),
// each side's key pointing at the flow's slot here:
//   tap side:  (udp, tap, our = the peer as the guest sees it, endpoint = the guest)
//   host side: (udp, host, our = any:local port, endpoint = the host peer)
//
// Guest -> host ("outbound"): the first datagram of an unknown tap-side pair creates the flow:
// a socket in pasta's own (init) namespace, bound to the -o address (or any) and the guest's
// source port, with SO_REUSEADDR and IP(V6)_RECVERR, connected to the translated destination
// (ForwardingRules.swift); anything queued between bind and connect is discarded. The daemon
// registers the socket for input with the flow's slot. Datagrams from the tap are queued, not
// sent: consecutive datagrams of one flow go out with one sendmmsg(2) when the daemon calls
// `flush` (another flow's datagram, a full batch, or the end of a tap read). The queue holds
// pointers into the daemon's tap buffer, which stays untouched until the flush. Within the
// batch, each run of equal-length datagrams (the last may be shorter; up to 64 datagrams and
// 65507 bytes) is one message with a UDP_SEGMENT control message (UDP GSO): the kernel walks
// its stack once for the run and cuts it back into the guest's datagrams at the end (on
// loopback, in the receiving socket; a receiver with UDP_GRO on takes the run whole): a stream
// of 1400-byte datagrams to a host server costs pasta 2.6 us of CPU per datagram instead of
// 5.5 (upstream 5.7) when the guest sends as fast as it can. A socket that refuses
// (EINVAL, EIO, EMSGSIZE: the path's MTU below the datagrams, no checksums, IPsec) gets that
// run again one datagram at a time, and the flow sends no more runs.
//
// Host -> guest ("inbound"): a datagram on a -u listener (UDPListeners.swift) from a peer without
// a flow creates one, with a dup(2) of the listener for the replies (sent with sendmmsg to the
// peer's address); the guest sees the peer's address translated per §3.3, its port unchanged, and
// the destination port plus the spec's offset. Replies of outbound flows arrive on their
// connected socket. Either way datagrams are read with recvmmsg(2) into slots of a receive pool,
// each slot with room for the Ethernet, IP and UDP headers in front of the payload, which are
// then written in place: one copy, no allocation. A read asks for as many datagrams as fit
// 64 KiB at the previous read's average size (1 to 32): a batch of large ones would leave the
// cache before their frames are written (+22 % for 65000-byte datagrams host -> namespace). The
// UDP checksum is left partial (the pseudo-header sum): the daemon writes `frame(i)` with
// `offload(i)`, so pasta's tap takes it as verified (NEEDS_CSUM) and passt completes it.
// pasta's tap also takes runs of them as one frame: `segmentRunLength` finds frames of one flow
// with equal payloads (the rules of runs towards the host), `joinRun` rewrites the first frame's
// headers for the whole run and gathers it and the other payloads in `runVectors` for one
// writev(2) as a UDP GSO frame (VIRTIO_NET_HDR_GSO_UDP_L4), which the namespace's kernel cuts
// back into the datagrams: 3.0-3.4 us of pasta's CPU per 1400-byte datagram instead of 3.8-3.9
// when a host client sends as fast as it can. Before Linux 6.2 tun refuses such frames
// (EINVAL): `splitRun` restores the first frame and the daemon sends one by one from then on.
//
// pasta's loopback bypass (UDPSplice.swift) keeps a second socket per flow instead of the tap:
// datagrams move socket to socket between the two namespaces, never as frames.
//
// ICMP errors from the host side are queued on the socket's error queue (IP_RECVERR); they are
// drained and logged, and never close a flow. A flow idle for 180 s is closed by `expire`, run
// every second. A full flow table or no free slot drops the new flow's datagram, nothing else.
import PasstConfig
import PasstSys
import PasstWire
import CPasstShim
#if canImport(Glibc)
import Glibc
#endif

/// What became of a datagram from the guest.
public enum UDPGuestOutcome: Equatable, Sendable {
    /// Queued on an existing flow.
    case queued
    /// Queued on new flow `slot` whose socket `fd` must be registered for input.
    case newFlow(slot: Int, fd: Int32)
    /// Dropped: unusable addresses, table full, socket failure.
    case dropped
}

/// One UDP flow.
struct UDPFlow {
    /// Host-side socket: connected (outbound) or a dup of the listener (inbound); -1 when free.
    var socket: Int32 = -1
    /// Spliced flows: the connected socket on the listener's far side; -1 for tap flows.
    var spliceSocket: Int32 = -1
    /// IPv6 on the guest side.
    var isIPv6 = false
    /// The guest's address (v4-mapped for IPv4) and port.
    var guestAddress = IPv6Address.any
    var guestPort: UInt16 = 0
    /// The peer as the guest sees it (v4-mapped for IPv4) and its port.
    var peerAddress = IPv6Address.any
    var peerPort: UInt16 = 0
    /// The host-side key, to remove on close.
    var hostKey = FlowKey(proto: IPProtocol.udp, interface: .none, ourAddress: .any, ourPort: 0,
                          endpointAddress: .any, endpointPort: 0)
    /// Where datagrams from the guest go (inbound flows); length 0 for connected sockets.
    var hostPeer = SocketAddress()
    /// Last datagram in either direction (monotonic ns).
    var lastActivity: UInt64 = 0
    /// The socket refused a UDP GSO send (path MTU below the datagrams, no checksum offload):
    /// its datagrams go one by one from then on.
    var segmentationRefused = false

    /// The tap-side key.
    var tapKey: FlowKey {
        FlowKey(proto: IPProtocol.udp, interface: .tap, ourAddress: peerAddress, ourPort: peerPort,
                endpointAddress: guestAddress, endpointPort: guestPort)
    }
}

/// The UDP flows, their send queue and receive pool.
public struct UDPFlows: ~Copyable {
    /// Default number of UDP flows.
    public static let defaultCapacity = 8192
    /// A flow idle for this long (ns) is closed (upstream UDP_CONN_TIMEOUT, 180 s).
    public static let idleTimeout: UInt64 = 180 * SystemClock.nanosecondsPerSecond
    /// Most datagrams per recvmmsg(2).
    public static let receiveBatch = 32
    /// Bytes a receive aims at: large datagrams are read a few at a time, so that each is still
    /// in the cache when its frame is written to the tap (32 datagrams of 64 KiB would not be).
    static let receiveBudget = 64 * 1024
    /// Most datagrams queued for one sendmmsg(2) (UIO_MAXIOV).
    public static let sendBatch = 1024
    /// Most datagrams in one UDP GSO send (the kernel's UDP_MAX_SEGMENTS was 64 before 6.9).
    static let maximumSegments = 64
    /// Most payload bytes in one UDP GSO send: what an IPv4 datagram can carry.
    static let maximumSegmentedBytes = 65535 - IPv4Packet.minimumHeaderLength - UDPDatagram.headerLength
    /// Room in front of a received payload: Ethernet, IPv6 and UDP headers.
    public static let headroom = EthernetFrame.headerLength + IPv6Packet.headerLength + UDPDatagram.headerLength
    /// Largest payload read: a full IPv6 payload minus the UDP header.
    public static let maximumPayload = 65535 - UDPDatagram.headerLength
    /// Bytes per receive slot.
    static let slotSize = (headroom + maximumPayload + 63) & ~63

    /// Flow slots (socket -1: free).
    let flows: UnsafeMutableBufferPointer<UDPFlow>
    /// Free slot numbers, a stack.
    let freeSlots: UnsafeMutableBufferPointer<Int32>
    /// Entries of `freeSlots` in use.
    var freeCount: Int
    /// Address translation and outbound binding.
    public let rules: ForwardingRules
    /// The -u and -U listeners; a closed one keeps its index with socket -1 until reused.
    public internal(set) var listeners: [UDPListener]
    /// pasta: datagrams from a loopback peer on a host listener bypass the tap (not --no-splice).
    public var spliceEnabled = false
    /// --host-lo-to-ns-lo: spliced datagrams go to the namespace's loopback, not its address.
    public var spliceToNamespaceLoopback = false
    /// Unbound sockets created in the namespace, for the namespace side of spliced flows.
    public var namespaceSockets = NamespaceSocketPool()
    /// Spliced flows created by the last `receiveFromListener` call (their slots).
    let newSpliceSlots: UnsafeMutablePointer<Int32>
    /// Entries of `newSpliceSlots` in use.
    public internal(set) var newSpliceCount = 0

    /// The queued slot, -1 for none, and how many datagrams are queued.
    var queuedSlot = -1
    var queuedCount = 0
    /// sendmmsg(2) headers and buffers of the queue.
    let sendHeaders: UnsafeMutablePointer<shim_mmsghdr>
    let sendVectors: UnsafeMutablePointer<iovec>
    /// msg_name of queued datagrams of an inbound flow.
    let sendName: UnsafeMutablePointer<SocketAddress>
    /// One UDP_SEGMENT control message per sendmmsg(2) header.
    let sendControl: UnsafeMutableRawPointer

    /// Datagrams the next recvmmsg(2) asks for: `receiveBudget` bytes at the last one's average size.
    var nextReceiveBatch = UDPFlows.receiveBatch
    /// recvmmsg(2) headers, buffers, peer names and the slots they point into.
    let receiveHeaders: UnsafeMutablePointer<shim_mmsghdr>
    let receiveVectors: UnsafeMutablePointer<iovec>
    let receiveNames: UnsafeMutablePointer<sockaddr_in6>
    let receivePool: UnsafeMutableRawPointer
    /// Start and length of each frame built in the receive pool, and its flow's slot.
    let frameStarts: UnsafeMutablePointer<Int>
    let frameLengths: UnsafeMutablePointer<Int>
    let frameSlots: UnsafeMutablePointer<Int>
    /// The vectors of a run of frames joined by `joinRun`: entry 0 is left for the link's
    /// virtio-net header, then the first frame whole and the payloads of the others.
    public let runVectors: UnsafeMutablePointer<iovec>
    /// Scratch for draining error queues and stray datagrams.
    let scratch: UnsafeMutableRawBufferPointer

    /// Allocates `capacity` flows with `rules`, receiving on `listeners`.
    public init(capacity: Int = defaultCapacity, rules: ForwardingRules, listeners: [UDPListener] = []) {
        flows = .allocate(capacity: capacity)
        flows.initialize(repeating: UDPFlow())
        freeSlots = .allocate(capacity: capacity)
        for index in 0..<capacity { freeSlots[index] = Int32(capacity - 1 - index) }
        freeCount = capacity
        self.rules = rules
        self.listeners = listeners
        sendHeaders = .allocate(capacity: UDPFlows.sendBatch)
        sendHeaders.initialize(repeating: shim_mmsghdr(), count: UDPFlows.sendBatch)
        sendVectors = .allocate(capacity: UDPFlows.sendBatch)
        sendVectors.initialize(repeating: iovec(), count: UDPFlows.sendBatch)
        sendName = .allocate(capacity: 1)
        sendName.initialize(to: SocketAddress())
        sendControl = .allocate(byteCount: Int(SHIM_UDP_SEGMENT_SPACE) * UDPFlows.sendBatch, alignment: 8)
        receiveHeaders = .allocate(capacity: UDPFlows.receiveBatch)
        receiveHeaders.initialize(repeating: shim_mmsghdr(), count: UDPFlows.receiveBatch)
        receiveVectors = .allocate(capacity: UDPFlows.receiveBatch)
        receiveNames = .allocate(capacity: UDPFlows.receiveBatch)
        receiveNames.initialize(repeating: sockaddr_in6(), count: UDPFlows.receiveBatch)
        receivePool = .allocate(byteCount: UDPFlows.slotSize * UDPFlows.receiveBatch, alignment: 64)
        frameStarts = .allocate(capacity: UDPFlows.receiveBatch)
        frameStarts.initialize(repeating: 0, count: UDPFlows.receiveBatch)
        frameLengths = .allocate(capacity: UDPFlows.receiveBatch)
        frameLengths.initialize(repeating: 0, count: UDPFlows.receiveBatch)
        frameSlots = .allocate(capacity: UDPFlows.receiveBatch)
        frameSlots.initialize(repeating: -1, count: UDPFlows.receiveBatch)
        runVectors = .allocate(capacity: UDPFlows.receiveBatch + 1)
        runVectors.initialize(repeating: iovec(), count: UDPFlows.receiveBatch + 1)
        scratch = .allocate(byteCount: 1024, alignment: 16)
        newSpliceSlots = .allocate(capacity: UDPFlows.receiveBatch)
        newSpliceSlots.initialize(repeating: -1, count: UDPFlows.receiveBatch)
        for index in 0..<UDPFlows.receiveBatch {
            receiveVectors[index] = iovec(iov_base: receivePool + index * UDPFlows.slotSize + UDPFlows.headroom,
                                          iov_len: UDPFlows.maximumPayload)
        }
    }

    deinit {
        for slot in flows.indices where flows[slot].socket >= 0 {
            close(flows[slot].socket)
            if flows[slot].spliceSocket >= 0 { close(flows[slot].spliceSocket) }
        }
        for listener in listeners where listener.socket >= 0 { close(listener.socket) }
        newSpliceSlots.deallocate()
        flows.deallocate()
        freeSlots.deallocate()
        sendHeaders.deallocate()
        sendVectors.deallocate()
        sendName.deallocate()
        sendControl.deallocate()
        receiveHeaders.deallocate()
        receiveVectors.deallocate()
        receiveNames.deallocate()
        receivePool.deallocate()
        frameStarts.deallocate()
        frameLengths.deallocate()
        frameSlots.deallocate()
        runVectors.deallocate()
        scratch.deallocate()
    }

    /// The number of open flows.
    public var count: Int { flows.count - freeCount }

    /// The host-side socket of flow `slot`, -1 if free.
    public func socket(ofSlot slot: Int) -> Int32 {
        slot >= 0 && slot < flows.count ? flows[slot].socket : -1
    }

    /// Frame `index` of the last receive call: Ethernet, IP, UDP and payload, with the UDP
    /// checksum partial (see `offload`).
    public func frame(_ index: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: receivePool + frameStarts[index], count: frameLengths[index])
    }

    /// The offload header of frame `index`: its checksum holds only the pseudo-header sum, for the
    /// tap's kernel to take as verified or the link to complete (`TCPTap.send(_:offload:)`).
    public func offload(_ index: Int) -> VirtioNetHeader {
        let udpStart = index * UDPFlows.slotSize + UDPFlows.headroom - UDPDatagram.headerLength
        return .udp(udpOffset: udpStart - frameStarts[index])
    }

    /// How many of the `count` frames from `index` on can go to the guest as one UDP GSO frame
    /// (`joinRun`): frames of one flow with equal payloads (the last may be shorter), at most
    /// `maximumSegments` of them and `maximumSegmentedBytes` of payload; 1 when none can join.
    public func segmentRunLength(from index: Int, count: Int) -> Int {
        UDPFlows.runLength(from: index, count: count, size: { Int(receiveHeaders[$0].msg_len) },
                           joins: { frameSlots[$0] == frameSlots[index] })
    }

    /// The length of the run of datagrams from `start` (of `count`) that one UDP GSO datagram
    /// can carry: payloads `size(i)` equal to the first, the last possibly shorter, none empty,
    /// each one that `joins`, at most `maximumSegments` datagrams and `maximumSegmentedBytes`.
    @inline(__always)
    static func runLength(from start: Int, count: Int, size: (Int) -> Int, joins: (Int) -> Bool) -> Int {
        let first = size(start)
        guard first > 0 else { return 1 }
        var end = start + 1
        var bytes = first
        while end < count && end - start < maximumSegments && joins(end) {
            let next = size(end)
            guard next > 0, next <= first, bytes + next <= maximumSegmentedBytes else { break }
            bytes += next
            end += 1
            if next < first { break }
        }
        return end - start
    }

    /// Joins frames `index..<index + length` (a `segmentRunLength`) into one UDP GSO frame: the
    /// first frame's headers are rewritten for the whole run, `runVectors[1...length]` point at
    /// that frame and the other payloads; returns its offload header (segment size: the first
    /// payload). The guest's kernel cuts it back into the same datagrams.
    public func joinRun(from index: Int, length: Int, ourMAC: MACAddress, guestMAC: MACAddress) -> VirtioNetHeader {
        var total = 0
        for frame in index..<(index + length) {
            let payload = Int(receiveHeaders[frame].msg_len)
            total += payload
            runVectors[1 + frame - index] = iovec(
                iov_base: receivePool + frame * UDPFlows.slotSize + UDPFlows.headroom, iov_len: payload)
        }
        let firstLength = frameLengths[index]
        buildFrame(index, slot: frameSlots[index], ourMAC: ourMAC, guestMAC: guestMAC, payloadLength: total)
        frameLengths[index] = firstLength
        runVectors[1] = iovec(iov_base: receivePool + frameStarts[index], iov_len: firstLength)
        let udpStart = index * UDPFlows.slotSize + UDPFlows.headroom - UDPDatagram.headerLength
        return .udp(udpOffset: udpStart - frameStarts[index], segmentSize: Int(receiveHeaders[index].msg_len))
    }

    /// Undoes the `joinRun` of the run at frame `index`: that frame's headers are its own again.
    public func splitRun(at index: Int, ourMAC: MACAddress, guestMAC: MACAddress) {
        buildFrame(index, slot: frameSlots[index], ourMAC: ourMAC, guestMAC: guestMAC)
    }

    // MARK: Guest to host

    /// Queues the guest's datagram `datagram` from `source` to `destination` (v4-mapped for IPv4)
    /// on its flow, creating the flow if needed.
    public mutating func handleGuestDatagram(isIPv6: Bool, source: IPv6Address, destination: IPv6Address,
                                             datagram: UDPDatagram, now: UInt64,
                                             table: inout FlowTable) -> UDPGuestOutcome {
        let sourcePort = datagram.sourcePort
        let destinationPort = datagram.destinationPort
        let key = FlowKey(proto: IPProtocol.udp, interface: .tap, ourAddress: destination, ourPort: destinationPort,
                          endpointAddress: source, endpointPort: sourcePort)
        var outcome = UDPGuestOutcome.queued
        let slot: Int
        if let reference = table.lookup(key) {
            slot = Int(reference)
        } else {
            guard let created = openOutboundFlow(isIPv6: isIPv6, key: key, now: now, table: &table) else {
                return .dropped
            }
            slot = created
            outcome = .newFlow(slot: slot, fd: flows[slot].socket)
        }
        if queuedCount > 0 && (queuedSlot != slot || queuedCount == UDPFlows.sendBatch) { flush() }
        queuedSlot = slot
        sendVectors[queuedCount] = iovec(iov_base: UnsafeMutableRawPointer(mutating: datagram.payload),
                                         iov_len: datagram.payloadCount)
        queuedCount += 1
        flows[slot].lastActivity = now
        return outcome
    }

    /// Sends the queued datagrams of one flow with sendmmsg(2); an ICMP error reported for one
    /// datagram skips it, any other failure drops the rest.
    public mutating func flush() {
        guard queuedCount > 0 else { return }
        let count = queuedCount
        queuedCount = 0
        guard flows[queuedSlot].socket >= 0 else { return }
        send(count, on: flows[queuedSlot].socket, to: flows[queuedSlot].hostPeer, slot: queuedSlot)
    }

    /// Sends the first `count` datagrams of `sendVectors` on `fd`, a socket of flow `slot`, with
    /// one sendmmsg(2), to `peer` unless its length is 0 (connected socket).
    /// Each run of equal-length datagrams (its last may be shorter) goes as one UDP GSO datagram
    /// (UDP_SEGMENT) that the kernel cuts back into the same datagrams, so the stack is walked
    /// once per run; a run the socket refuses goes again one datagram at a time. An ICMP error
    /// reported in place of a datagram skips it (in place of a run: the run goes one by one), any
    /// other failure drops the rest.
    mutating func send(_ count: Int, on fd: Int32, to peer: SocketAddress, slot: Int) {
        sendName.pointee = peer
        let headerCount = buildSendHeaders(count, peer: peer, segmenting: !flows[slot].segmentationRefused)
        var sent = 0
        while sent < headerCount {
            switch Sys.sendmmsg(fd, sendHeaders + sent, count: headerCount - sent, flags: Int32(MSG_NOSIGNAL)) {
            case .success(let n):
                sent += n > 0 ? Int(n) : headerCount
            case .wouldBlock:
                return
            case .failure(let code):
                let segmented = sendHeaders[sent].msg_hdr.msg_controllen > 0
                if segmented && (code == EINVAL || code == EIO || code == EMSGSIZE) {
                    Log.debug("UDP: segmentation offload refused (\(SyscallError(code))): sending one by one")
                    flows[slot].segmentationRefused = true
                } else {
                    guard sendFailed(code, on: fd) else { return }
                    if !segmented {
                        sent += 1
                        continue
                    }
                }
                // The run went nowhere (refused, or an ICMP error reported in its place): send
                // its datagrams one by one.
                guard sendSingly(sendHeaders + sent, on: fd) else { return }
                sent += 1
            }
        }
    }

    /// Fills one sendmmsg(2) header per datagram of the first `count` of `sendVectors`, or with
    /// `segmenting` one per run of equal-length datagrams with a UDP_SEGMENT control message;
    /// returns the number of headers.
    func buildSendHeaders(_ count: Int, peer: SocketAddress, segmenting: Bool) -> Int {
        var headers = 0
        var start = 0
        while start < count {
            let size = sendVectors[start].iov_len
            let run = segmenting
                ? UDPFlows.runLength(from: start, count: count, size: { sendVectors[$0].iov_len }, joins: { _ in true })
                : 1
            let end = start + run
            sendHeaders[headers] = shim_mmsghdr()
            sendHeaders[headers].msg_hdr.msg_iov = sendVectors + start
            sendHeaders[headers].msg_hdr.msg_iovlen = end - start
            if peer.length > 0 {
                sendHeaders[headers].msg_hdr.msg_name = UnsafeMutableRawPointer(sendName)
                sendHeaders[headers].msg_hdr.msg_namelen = peer.length
            }
            if end - start > 1 {
                let control = sendControl + headers * Int(SHIM_UDP_SEGMENT_SPACE)
                sendHeaders[headers].msg_hdr.msg_control = control
                sendHeaders[headers].msg_hdr.msg_controllen = shim_udp_segment_control(control, UInt16(size))
            }
            headers += 1
            start = end
        }
        return headers
    }

    /// Sends the datagrams of the segmented sendmmsg(2) header `header` one sendmsg(2) each;
    /// false if the socket is full or broken (the rest is dropped).
    func sendSingly(_ header: UnsafeMutablePointer<shim_mmsghdr>, on fd: Int32) -> Bool {
        var message = header.pointee.msg_hdr
        message.msg_control = nil
        message.msg_controllen = 0
        message.msg_iovlen = 1
        for index in 0..<header.pointee.msg_hdr.msg_iovlen {
            message.msg_iov = header.pointee.msg_hdr.msg_iov + index
            switch Sys.sendmsg(fd, &message, flags: Int32(MSG_NOSIGNAL)) {
            case .success: break
            case .wouldBlock: return false
            case .failure(let code):
                guard sendFailed(code, on: fd) else { return false }
            }
        }
        return true
    }

    /// Logs send failure `code` on `fd` and drains the socket's error queue; returns whether the
    /// failure is transient (an ICMP error or a momentary condition), so that sending may go on.
    func sendFailed(_ code: Int32, on fd: Int32) -> Bool {
        Log.debug("UDP: send failed: \(SyscallError(code))")
        drainErrorQueue(fd)
        return UDPFlows.isTransientError(code)
    }

    /// Whether `code` reports an ICMP error or a momentary condition rather than a broken socket.
    static func isTransientError(_ code: Int32) -> Bool {
        switch code {
        case ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN, EMSGSIZE, ENOBUFS, EPERM, EACCES:
            return true
        default:
            return false
        }
    }

    /// Creates the outbound flow for tap-side `key`; returns its slot, nil if it can't be made.
    mutating func openOutboundFlow(isIPv6: Bool, key: FlowKey, now: UInt64, table: inout FlowTable) -> Int? {
        let destination = key.ourAddress
        guard key.endpointPort != 0, key.ourPort != 0, !destination.isUnspecified, !destination.isMulticast,
              destination.v4Mapped.map({ !$0.isBroadcast && !$0.isMulticast && !$0.isUnspecified }) ?? true,
              freeCount > 0, table.count + 2 <= table.capacity else {
            Log.debug("UDP: dropping new flow to \(key.ourAddress) port \(key.ourPort)")
            return nil
        }
        let target = rules.hostDestination(destination, port: key.ourPort)
        let fd = openConnectedSocket(isIPv6: isIPv6, sourcePort: key.endpointPort, target: target, port: key.ourPort)
        guard fd >= 0 else { return nil }
        let hostKey = FlowKey(proto: IPProtocol.udp, interface: .host, ourAddress: .any, ourPort: key.endpointPort,
                              endpointAddress: target, endpointPort: key.ourPort)
        let slot = Int(freeSlots[freeCount - 1])
        guard table.insert(key, reference: UInt32(slot)) else {
            close(fd)
            return nil
        }
        guard table.insert(hostKey, reference: UInt32(slot)) else {
            table.remove(key)
            close(fd)
            return nil
        }
        freeCount -= 1
        flows[slot] = UDPFlow(socket: fd, isIPv6: isIPv6, guestAddress: key.endpointAddress, guestPort: key.endpointPort,
                              peerAddress: destination, peerPort: key.ourPort, hostKey: hostKey,
                              hostPeer: SocketAddress(), lastActivity: now)
        return slot
    }

    /// Opens a socket bound to (outbound address or any, `sourcePort`) and connected to
    /// `target`:`port`, with stray datagrams discarded; -1 on failure.
    func openConnectedSocket(isIPv6: Bool, sourcePort: UInt16, target: IPv6Address, port: UInt16) -> Int32 {
        guard case .success(let owned) = Sys.socket(domain: isIPv6 ? AF_INET6 : AF_INET,
                                                     type: SocketType.datagram | SocketType.nonBlocking) else {
            Log.debug("UDP: can't open a socket: \(SyscallError(errno))")
            return -1
        }
        let fd = owned.release()
        if let interface = isIPv6 ? rules.outboundInterface6 : rules.outboundInterface4 {
            if case .failure(let code) = Sys.bindToDevice(fd, interface) {
                Log.debug("UDP: can't bind socket to \(interface): \(SyscallError(code))")
            }
        }
        let local: IPv6Address = isIPv6 ? (rules.outboundAddress6 ?? .any)
            : IPv6Address(v4Mapped: rules.outboundAddress4 ?? .any)
        return bindAndConnect(fd, isIPv6: isIPv6, local: SocketAddress(local, port: sourcePort, ipv4Socket: !isIPv6),
                              remote: SocketAddress(target, port: port, ipv4Socket: !isIPv6,
                                                    scope: rules.linkLocalScope6))
    }

    /// Sets SO_REUSEADDR and IP(V6)_RECVERR on UDP socket `fd`, binds it to `local`, connects it
    /// to `remote` and discards stray datagrams; returns `fd`, or -1 (closed) on failure.
    func bindAndConnect(_ fd: Int32, isIPv6: Bool, local: SocketAddress, remote: SocketAddress) -> Int32 {
        _ = Sys.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, Int32(1))
        if isIPv6 {
            _ = Sys.setOption(fd, level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, Int32(1))
            _ = Sys.setOption(fd, level: Int32(IPPROTO_IPV6), name: IPV6_RECVERR, Int32(1))
        } else {
            _ = Sys.setOption(fd, level: Int32(IPPROTO_IP), name: IP_RECVERR, Int32(1))
        }
        var local = local
        var remote = remote
        let bound = withUnsafeBytes(of: &local.storage) { Sys.bind(fd, $0.baseAddress!, length: local.length) }
        if case .failure(let code) = bound {
            Log.debug("UDP: can't bind to \(local.address) port \(local.port): \(SyscallError(code))")
            close(fd)
            return -1
        }
        let connected = withUnsafeBytes(of: &remote.storage) { Sys.connect(fd, $0.baseAddress!, length: remote.length) }
        if case .failure(let code) = connected {
            Log.debug("UDP: can't connect to \(remote.address) port \(remote.port): \(SyscallError(code))")
            close(fd)
            return -1
        }
        while Glibc.recv(fd, scratch.baseAddress, scratch.count, Int32(MSG_DONTWAIT)) >= 0 {}
        return fd
    }

    // MARK: Host to guest

    /// Reads the pending replies of outbound or inbound flow `slot` into frames towards the guest
    /// (from `ourMAC` to `guestMAC`); returns how many frames are ready, nil when the socket has
    /// nothing more.
    public mutating func receiveReplies(slot: Int, now: UInt64, ourMAC: MACAddress, guestMAC: MACAddress) -> Int? {
        guard slot >= 0 && slot < flows.count, flows[slot].socket >= 0 else { return nil }
        let fd = flows[slot].socket
        guard let received = receive(fd, names: false) else { return nil }
        for index in 0..<received {
            buildFrame(index, slot: slot, ourMAC: ourMAC, guestMAC: guestMAC)
        }
        if received > 0 { flows[slot].lastActivity = now }
        return received
    }

    /// Reads datagrams from listener `index` into frames towards the guest, creating inbound flows
    /// for new peers; `seen4`, `seen6` and `linkLocalSeen6` are the guest's current addresses.
    /// Returns how many frames are ready, nil when the listener has nothing more.
    public mutating func receiveFromListener(_ index: Int, now: UInt64, ourMAC: MACAddress, guestMAC: MACAddress,
                                             seen4: IPv4Address?, seen6: IPv6Address?, linkLocalSeen6: IPv6Address?,
                                             table: inout FlowTable) -> Int? {
        guard index >= 0 && index < listeners.count, listeners[index].socket >= 0 else { return nil }
        let listener = listeners[index]
        newSpliceCount = 0
        flush()
        guard let received = receive(listener.socket, names: true) else { return nil }
        var ready = 0
        var spliceSlot = -1
        var spliceCount = 0
        for datagram in 0..<received {
            var peer = SocketAddress()
            peer.storage = receiveNames[datagram]
            peer.length = receiveHeaders[datagram].msg_hdr.msg_namelen
            let peerAddress = peer.address
            let hostKey = FlowKey(proto: IPProtocol.udp, interface: listener.inNamespace ? .splice : .host,
                                  ourAddress: .any, ourPort: listener.port,
                                  endpointAddress: peerAddress, endpointPort: peer.port)
            let slot: Int
            if let reference = table.lookup(hostKey) {
                slot = Int(reference)
            } else if listener.inNamespace || (spliceEnabled && UDPFlows.isLoopback(peerAddress)) {
                guard let created = openSpliceFlow(listener: listener, peer: peer, hostKey: hostKey, seen4: seen4,
                                                   seen6: seen6, now: now, table: &table) else { continue }
                slot = created
                newSpliceSlots[newSpliceCount] = Int32(slot)
                newSpliceCount += 1
            } else {
                let isIPv6 = peerAddress.v4Mapped == nil
                let seen = isIPv6 ? seen6 : seen4.map { IPv6Address(v4Mapped: $0) }
                guard let created = openInboundFlow(listener: listener, peer: peer, hostKey: hostKey, seen: seen,
                                                    linkLocalSeen6: linkLocalSeen6, now: now, table: &table) else {
                    continue
                }
                slot = created
            }
            flows[slot].lastActivity = now
            if flows[slot].spliceSocket >= 0 {
                if spliceCount > 0 && spliceSlot != slot {
                    send(spliceCount, on: flows[spliceSlot].spliceSocket, to: SocketAddress(), slot: spliceSlot)
                    spliceCount = 0
                }
                spliceSlot = slot
                sendVectors[spliceCount] = iovec(iov_base: receivePool + datagram * UDPFlows.slotSize + UDPFlows.headroom,
                                                 iov_len: Int(receiveHeaders[datagram].msg_len))
                spliceCount += 1
                continue
            }
            if spliceCount > 0 {
                // Send before frames are compacted over the queued payloads.
                send(spliceCount, on: flows[spliceSlot].spliceSocket, to: SocketAddress(), slot: spliceSlot)
                spliceCount = 0
            }
            if datagram != ready {
                // Keep frames contiguous in the pool's slot order: move this payload down.
                let length = Int(receiveHeaders[datagram].msg_len)
                (receivePool + ready * UDPFlows.slotSize + UDPFlows.headroom).copyMemory(
                    from: receivePool + datagram * UDPFlows.slotSize + UDPFlows.headroom, byteCount: length)
                receiveHeaders[ready].msg_len = receiveHeaders[datagram].msg_len
            }
            buildFrame(ready, slot: slot, ourMAC: ourMAC, guestMAC: guestMAC)
            ready += 1
        }
        if spliceCount > 0 { send(spliceCount, on: flows[spliceSlot].spliceSocket, to: SocketAddress(), slot: spliceSlot) }
        return ready
    }

    /// Creates the inbound flow for a first datagram from `peer` on `listener`; returns its slot,
    /// nil if the guest can't be reached or there is no room.
    mutating func openInboundFlow(listener: UDPListener, peer: SocketAddress, hostKey: FlowKey, seen: IPv6Address?,
                                  linkLocalSeen6: IPv6Address?, now: UInt64, table: inout FlowTable) -> Int? {
        guard freeCount > 0, table.count + 2 <= table.capacity,
              let source = rules.guestSource(hostKey.endpointAddress, seen: seen) else { return nil }
        let destination = source.v4Mapped == nil && source.isLinkLocal ? linkLocalSeen6 : seen
        guard let destination else { return nil }
        let flow = UDPFlow(socket: -1, isIPv6: source.v4Mapped == nil, guestAddress: destination,
                           guestPort: listener.targetPort, peerAddress: source, peerPort: hostKey.endpointPort,
                           hostKey: hostKey, hostPeer: peer, lastActivity: now)
        let slot = Int(freeSlots[freeCount - 1])
        guard table.insert(hostKey, reference: UInt32(slot)) else { return nil }
        guard table.insert(flow.tapKey, reference: UInt32(slot)) else {
            table.remove(hostKey)
            return nil
        }
        let fd = fcntl(listener.socket, F_DUPFD_CLOEXEC, 0)
        guard fd >= 0 else {
            table.remove(hostKey)
            table.remove(flow.tapKey)
            return nil
        }
        freeCount -= 1
        flows[slot] = flow
        flows[slot].socket = fd
        return slot
    }

    /// recvmmsg(2) of up to `nextReceiveBatch` datagrams from `fd` (with peer names if `names`);
    /// returns the count, 0 after a transient error, nil when nothing is left.
    mutating func receive(_ fd: Int32, names: Bool) -> Int? {
        let batch = nextReceiveBatch
        for index in 0..<batch {
            receiveHeaders[index] = shim_mmsghdr()
            receiveHeaders[index].msg_hdr.msg_iov = receiveVectors + index
            receiveHeaders[index].msg_hdr.msg_iovlen = 1
            if names {
                receiveHeaders[index].msg_hdr.msg_name = UnsafeMutableRawPointer(receiveNames + index)
                receiveHeaders[index].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in6>.size)
            }
        }
        switch Sys.recvmmsg(fd, receiveHeaders, count: batch, flags: Int32(MSG_DONTWAIT)) {
        case .success(let count):
            guard count > 0 else { return nil }
            var bytes = 0
            for index in 0..<Int(count) { bytes += Int(receiveHeaders[index].msg_len) }
            let average = max(bytes / Int(count), 1)
            nextReceiveBatch = min(max(UDPFlows.receiveBudget / average, 1), UDPFlows.receiveBatch)
            return Int(count)
        case .wouldBlock:
            return nil
        case .failure(let code):
            Log.debug("UDP: receive failed: \(SyscallError(code))")
            drainErrorQueue(fd)
            return UDPFlows.isTransientError(code) ? 0 : nil
        }
    }

    /// Writes the Ethernet, IP and UDP headers in front of received payload `index` for the flow in
    /// `slot`, the UDP checksum partial (computing it here would read every payload byte once
    /// more), for a payload of `payloadLength` bytes (default: the received one).
    func buildFrame(_ index: Int, slot: Int, ourMAC: MACAddress, guestMAC: MACAddress, payloadLength: Int? = nil) {
        let flow = flows[slot]
        frameSlots[index] = slot
        let payloadLength = payloadLength ?? Int(receiveHeaders[index].msg_len)
        let slot = receivePool + index * UDPFlows.slotSize
        let udp = slot + UDPFlows.headroom - UDPDatagram.headerLength
        let datagramLength = UDPDatagram.headerLength + payloadLength
        UDPDatagram.write(to: udp, sourcePort: flow.peerPort, destinationPort: flow.guestPort,
                          payloadLength: payloadLength)
        let start: Int
        if flow.isIPv6 {
            UDPDatagram.fillPartialChecksum(udp, pseudoHeaderSum: Checksum.pseudoHeader(
                source: flow.peerAddress, destination: flow.guestAddress, nextHeader: IPProtocol.udp,
                length: datagramLength))
            let ip = udp - IPv6Packet.headerLength
            IPv6Packet.write(to: ip, source: flow.peerAddress, destination: flow.guestAddress,
                             nextHeader: IPProtocol.udp, payloadLength: datagramLength)
            start = UDPFlows.headroom - UDPDatagram.headerLength - IPv6Packet.headerLength - EthernetFrame.headerLength
            EthernetFrame.write(to: slot + start, destination: guestMAC, source: ourMAC, etherType: EtherType.ipv6)
        } else {
            let source = flow.peerAddress.v4Mapped ?? .any
            let destination = flow.guestAddress.v4Mapped ?? .any
            UDPDatagram.fillPartialChecksum(udp, pseudoHeaderSum: Checksum.pseudoHeader(
                source: source, destination: destination, protocol: IPProtocol.udp, length: datagramLength))
            let ip = udp - IPv4Packet.minimumHeaderLength
            IPv4Packet.write(to: ip, source: source, destination: destination, protocol: IPProtocol.udp,
                             payloadLength: datagramLength)
            start = UDPFlows.headroom - UDPDatagram.headerLength - IPv4Packet.minimumHeaderLength
                - EthernetFrame.headerLength
            EthernetFrame.write(to: slot + start, destination: guestMAC, source: ourMAC, etherType: EtherType.ipv4)
        }
        frameStarts[index] = index * UDPFlows.slotSize + start
        frameLengths[index] = UDPFlows.headroom - start + payloadLength
    }

    // MARK: Errors and timers

    /// Reads and logs everything on the error queue of flow `slot`'s socket (ICMP errors).
    public func drainErrors(slot: Int) {
        guard slot >= 0 && slot < flows.count, flows[slot].socket >= 0 else { return }
        drainErrorQueue(flows[slot].socket)
    }

    /// Reads and logs everything on `fd`'s error queue.
    func drainErrorQueue(_ fd: Int32) {
        var vector = iovec(iov_base: scratch.baseAddress, iov_len: 256)
        while true {
            var message = msghdr()
            let read = withUnsafeMutablePointer(to: &vector) { vectorPointer -> Int in
                message.msg_iov = vectorPointer
                message.msg_iovlen = 1
                message.msg_control = scratch.baseAddress! + 256
                message.msg_controllen = scratch.count - 256
                return Glibc.recvmsg(fd, &message, Int32(MSG_ERRQUEUE) | Int32(MSG_DONTWAIT))
            }
            if read < 0 { return }
            Log.debug("UDP: ICMP error on socket \(fd) (dropped, flow kept)")
        }
    }

    /// Closes every flow idle for `idleTimeout` or longer at `now`; returns how many were closed.
    @discardableResult
    public mutating func expire(now: UInt64, table: inout FlowTable) -> Int {
        var closed = 0
        for slot in flows.indices where flows[slot].socket >= 0 {
            guard now &- flows[slot].lastActivity >= UDPFlows.idleTimeout else { continue }
            if queuedCount > 0 && queuedSlot == slot { flush() }
            if flows[slot].spliceSocket >= 0 {
                close(flows[slot].spliceSocket)
            } else {
                table.remove(flows[slot].tapKey)
            }
            table.remove(flows[slot].hostKey)
            close(flows[slot].socket)
            flows[slot] = UDPFlow()
            freeSlots[freeCount] = Int32(slot)
            freeCount += 1
            closed += 1
        }
        return closed
    }
}
