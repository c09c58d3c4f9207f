// passt's qemu transport: the listening UNIX stream socket and the frames written to its client
// (spec §1.2, §15).
//
// Theory of operation. Socket: with -s the given path is bound (an existing socket someone
// answers on is fatal); without it /tmp/passt_N.socket is probed for N = 1...99, and the first
// path where a connect(2) fails with ENOENT, ECONNREFUSED or EACCES (nobody serving it) is
// unlinked and bound. The socket listens with backlog 0 and is non-blocking; the path and the
// qemu command line that reaches it are logged (qemu >= 7.2 `-netdev stream`).
//
// Egress (`StreamLink`): every frame on the stream is preceded by its length, 4 bytes big
// endian. Frames are produced one at a time (services, UDP, ICMP, TCP segments built in their
// engines' buffers, which are reused right after), so a frame of up to `copyLimit` bytes is
// copied with its length into the pending buffer, and the loop's end of iteration (or a full
// buffer) writes that buffer with one sendmsg; a larger frame is written at once, in one
// gather sendmsg after whatever is pending, without being copied. Sends use MSG_DONTWAIT |
// MSG_NOSIGNAL. The stream must never be left in the middle of a frame, since qemu would read
// the next frame's bytes as part of this one: when a send stops inside a frame, the rest of
// that one frame is written, waiting for room up to `completionTimeout` (after which the client
// is dropped, flagged in `clientLost`); the frames after it are dropped, as are all frames of a
// send that wrote nothing (the socket is full: TCP retransmits, like a lost packet). Frames are
// captured (-p) once written whole. With no client connected, frames are dropped at once. The
// pending buffer and the gather list are allocated once.
import PasstConfig
import PasstFlow
import PasstSys
import PasstWire
#if canImport(Glibc)
import Glibc
#endif

/// Finding, binding and announcing passt's listening UNIX socket.
enum QemuSocket {
    /// The highest N of the /tmp/passt_N.socket candidates (upstream's code, not its man page).
    static let probeLimit = 99

    /// Binds and listens on `path`, or on the first free /tmp/passt_N.socket; returns the
    /// socket (the caller owns it) and the path; throws upstream's fatal messages.
    static func listen(path: String?) throws(PastaSetupError) -> (socket: Int32, path: String) {
        let socket: FileDescriptor
        switch Sys.socket(domain: AF_UNIX, type: SocketType.stream | SocketType.nonBlocking) {
        case .success(let fd): socket = fd
        case .wouldBlock: throw PastaSetupError("Failed to open UNIX domain socket: \(SyscallError(EAGAIN))")
        case .failure(let code): throw PastaSetupError("Failed to open UNIX domain socket: \(SyscallError(code))")
        }
        let candidates = path.map { [$0] } ?? (1...probeLimit).map { "/tmp/passt_\($0).socket" }
        var lastError = SyscallError(EADDRINUSE)
        for candidate in candidates {
            if isServed(candidate) {
                if path != nil { throw PastaSetupError("Socket path \(candidate) already in use") }
                continue
            }
            unlink(candidate)
            switch Sys.bind(socket.raw, unixPath: candidate) {
            case .success:
                if case .failure(let code) = Sys.listen(socket.raw, backlog: 0) {
                    throw PastaSetupError("UNIX socket listen: \(SyscallError(code))")
                }
                return (socket.release(), candidate)
            case .wouldBlock:
                lastError = SyscallError(EAGAIN)
            case .failure(let code):
                lastError = SyscallError(code)
            }
        }
        throw PastaSetupError("UNIX socket bind: \(lastError)")
    }

    /// Whether something answers on (or blocks us from) the UNIX socket at `path`.
    static func isServed(_ path: String) -> Bool {
        guard case .success(let probe) = Sys.socket(domain: AF_UNIX, type: SocketType.stream) else { return false }
        switch Sys.connect(probe.raw, unixPath: path) {
        case .success: return true
        case .wouldBlock: return true
        case .failure(let code): return code != ENOENT && code != ECONNREFUSED && code != EACCES
        }
    }

    /// Logs where the socket is and how to start qemu on it.
    static func announce(path: String) {
        Log.info("UNIX domain socket bound at \(path)")
        Log.info("")
        Log.info("You can now start qemu (>= 7.2) with:")
        Log.info("    kvm ... -device virtio-net-pci,netdev=s -netdev stream,id=s,server=off,addr.type=unix,addr.path=\(path)")
    }
}

/// Frames towards qemu on the stream socket: length-prefixed, batched, never cut in the middle.
struct StreamLink: ~Copyable, GuestLink {
    /// Frames up to this size are copied into the pending buffer; larger ones are sent in place.
    static let copyLimit = 8192
    /// Size of the pending buffer (lengths and frames).
    static let pendingCapacity = 1 << 20
    /// How long the rest of a frame cut by a short send may take before the client is dropped (ms).
    static let completionTimeout: Int32 = 5000
    /// Bytes of the length in front of each frame.
    static let lengthBytes = 4

    /// The connected client, -1 when none.
    var client: Int32 = -1
    /// Set when a send failed for good and the client was closed; the owner clears it.
    var clientLost = false
    /// The -p capture (disabled without -p).
    let pcap: PcapWriter
    /// Our MAC address: the source of every frame we send (-M).
    let ourMAC: MACAddress
    /// The guest's MAC address: broadcast until the guest's first frame, then its source.
    var guestMAC: MACAddress
    /// Length-prefixed frames waiting for the end of the loop iteration (allocated once).
    let pending: UnsafeMutableRawBufferPointer
    /// Bytes used in `pending`.
    var pendingCount = 0
    /// The gather list of one send: pending bytes, a length, a frame in place (allocated once).
    let vectors: UnsafeMutablePointer<iovec>
    /// The length in front of a frame sent in place.
    let lengthField: UnsafeMutableRawPointer

    /// A link with no client yet, capturing to `pcap`, sending from `ourMAC`.
    init(pcap: consuming PcapWriter, ourMAC: MACAddress) {
        self.pcap = pcap
        self.ourMAC = ourMAC
        guestMAC = .broadcast
        pending = .allocate(byteCount: StreamLink.pendingCapacity, alignment: 16)
        vectors = .allocate(capacity: 3)
        lengthField = .allocate(byteCount: StreamLink.lengthBytes, alignment: 4)
    }

    deinit {
        pending.deallocate()
        vectors.deallocate()
        lengthField.deallocate()
        if client >= 0 { close(client) }
    }

    /// Records `frame`, received from qemu, in the capture.
    func captureReceived(_ frame: UnsafeRawBufferPointer) {
        pcap.record(frame)
    }

    /// Queues `frame` (small) or sends it with what is pending (large); drops it without a client.
    mutating func send(_ frame: UnsafeRawBufferPointer) {
        guard client >= 0 else { return }
        if frame.count <= StreamLink.copyLimit {
            if StreamLink.pendingCapacity - pendingCount < StreamLink.lengthBytes + frame.count { flush() }
            guard client >= 0 else { return }
            let slot = pending.baseAddress! + pendingCount
            slot.storeBytes(of: UInt32(frame.count).bigEndian, as: UInt32.self)
            (slot + StreamLink.lengthBytes).copyMemory(from: frame.baseAddress!, byteCount: frame.count)
            pendingCount += StreamLink.lengthBytes + frame.count
            return
        }
        lengthField.storeBytes(of: UInt32(frame.count).bigEndian, as: UInt32.self)
        write(direct: frame)
    }

    /// Writes the pending frames, if any.
    mutating func flush() {
        guard pendingCount > 0 else { return }
        write(direct: UnsafeRawBufferPointer(start: nil, count: 0))
    }

    /// Forgets pending frames and closes the client (it left, or broke the framing).
    mutating func closeClient() {
        pendingCount = 0
        if client >= 0 { close(client) }
        client = -1
    }

    /// Sends the pending frames followed by `direct` (with `lengthField` in front; empty: none),
    /// completing a frame a short send cut and dropping the frames after it.
    mutating func write(direct: UnsafeRawBufferPointer) {
        let directBytes = direct.count > 0 ? StreamLink.lengthBytes + direct.count : 0
        let total = pendingCount + directBytes
        var written = 0
        switch sendRange(from: 0, to: total, direct: direct) {
        case .success(let count): written = count
        case .wouldBlock: break
        case .failure(let code): Log.debug("Send error on guest connection: \(SyscallError(code))")
        }
        if written > 0 && written < total {
            let end = frameEnd(containing: written, total: total)
            if written < end && !complete(from: written, to: end, direct: direct) {
                Log.error("Couldn't finish a frame towards the guest, resetting connection")
                closeClient()
                clientLost = true
                return
            }
            written = end
        }
        if pcap.isEnabled { capture(upTo: written, direct: direct) }
        pendingCount = 0
    }

    /// The end of the frame (with its length) that byte `offset` of this send falls in;
    /// `offset` itself when it is a frame boundary.
    func frameEnd(containing offset: Int, total: Int) -> Int {
        var start = 0
        while start < pendingCount {
            let end = start + StreamLink.lengthBytes
                + Int(UInt32(bigEndian: (pending.baseAddress! + start).loadUnaligned(as: UInt32.self)))
            if offset < end { return offset == start ? start : end }
            start = end
        }
        return offset == start ? start : total
    }

    /// Writes bytes `start..<end` of this send, waiting for room as needed; returns whether it did in time.
    func complete(from start: Int, to end: Int, direct: UnsafeRawBufferPointer) -> Bool {
        var offset = start
        while offset < end {
            var ready = pollfd(fd: client, events: Int16(POLLOUT), revents: 0)
            guard poll(&ready, 1, StreamLink.completionTimeout) > 0,
                  ready.revents & Int16(POLLERR | POLLHUP) == 0 else { return false }
            switch sendRange(from: offset, to: end, direct: direct) {
            case .success(let count): offset += count
            case .wouldBlock: continue
            case .failure: return false
            }
        }
        return true
    }

    /// One non-blocking sendmsg of bytes `start..<end` of this send: the pending buffer, then
    /// `lengthField` and `direct`.
    func sendRange(from start: Int, to end: Int, direct: UnsafeRawBufferPointer) -> SyscallResult<Int> {
        var count = 0
        var position = 0
        StreamLink.append(UnsafeRawPointer(pending.baseAddress), pendingCount, of: start..<end, at: &position,
                          to: vectors, count: &count)
        if direct.count > 0 {
            StreamLink.append(UnsafeRawPointer(lengthField), StreamLink.lengthBytes, of: start..<end, at: &position,
                              to: vectors, count: &count)
            StreamLink.append(direct.baseAddress, direct.count, of: start..<end, at: &position, to: vectors,
                              count: &count)
        }
        var message = msghdr()
        message.msg_iov = vectors
        message.msg_iovlen = count
        return Sys.sendmsg(client, &message, flags: Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
    }

    /// Adds the part of `range` (offsets of the whole send) that falls in the `length` bytes at
    /// `base`, which start at offset `position`, to `vectors`; advances `position`.
    static func append(_ base: UnsafeRawPointer?, _ length: Int, of range: Range<Int>, at position: inout Int,
                       to vectors: UnsafeMutablePointer<iovec>, count: inout Int) {
        let first = max(range.lowerBound, position), last = min(range.upperBound, position + length)
        if first < last, let base {
            vectors[count] = iovec(iov_base: UnsafeMutableRawPointer(mutating: base + (first - position)),
                                   iov_len: last - first)
            count += 1
        }
        position += length
    }

    /// Captures the frames of this send that lie whole within its first `written` bytes.
    func capture(upTo written: Int, direct: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < pendingCount {
            let length = Int(UInt32(bigEndian: (pending.baseAddress! + offset).loadUnaligned(as: UInt32.self)))
            let end = offset + StreamLink.lengthBytes + length
            if end > written { return }
            pcap.record(UnsafeRawBufferPointer(start: pending.baseAddress! + offset + StreamLink.lengthBytes,
                                               count: length))
            offset = end
        }
        if direct.count > 0 && pendingCount + StreamLink.lengthBytes + direct.count <= written { pcap.record(direct) }
    }
}
