// pasta's TCP loopback bypass ("splice", spec §7): two sockets joined through pipes, no tap.
//
// Theory of operation: a connection that starts and ends on loopback (a host -t listener
// accepting from 127.0.0.1 or ::1, or a namespace -T listener, which only listens on loopback)
// never needs the guest's TCP stack: the daemon (TCPPortForwarding.swift) hands us the accepted
// socket (side 0) and a fresh non-blocking socket in the other namespace (side 1) with the
// address to connect it to. Each connection has one pipe per direction (direction 0 carries
// side 0 -> side 1), sized once at start (`probePipeSize`: 8 MiB halved until the kernel
// accepts it), and moves bytes with splice(2) only, never copying them to user space:
//     socket --splice--> pipe --splice--> other socket
// `forward` drains the pipe into the writing socket first, then refills it from the reading
// socket, until the reader has nothing more (EAGAIN), the writer is full (EAGAIN: the pipe
// keeps the bytes and EPOLLOUT on the writer resumes), or the reader's end of file has been
// passed on as shutdown(SHUT_WR) of the writer once the pipe is empty. Both sockets are
// registered edge-triggered for IN, OUT and RDHUP with the slot and side in the token (SlotStack); any
// event on either socket runs both directions, so no wake-up can be lost. Until side 1's
// non-blocking connect completes (its first EPOLLOUT with SO_ERROR 0) nothing moves. Both
// directions finished (FIN passed on each way), an error, or a failed write closes both
// sockets and both pipes. TCP_NODELAY and TCP_QUICKACK are set on both sockets. Records are
// allocated once (calloc: untouched pages cost nothing); an event allocates nothing.
import PasstConfig
import PasstSys
import CPasstShim
#if canImport(Glibc)
import Glibc
#endif

/// The spliced TCP connections: their sockets, pipes and per-direction state.
public struct TCPSpliceFlows: ~Copyable {
    /// Largest pipe size tried (upstream's 8 MiB).
    static let largestPipe = 8 << 20
    /// The fcntl(2) command F_SETPIPE_SZ (F_LINUXSPECIFIC_BASE + 7).
    static let setPipeSize: Int32 = 1031
    /// Per-slot descriptors: side 0 and 1 sockets, then per direction the pipe's read and write ends.
    static let descriptorsPerSlot = 6
    /// Flag bits of a slot; side 1's end-of-file and shut-down bits are side 0's shifted left by one.
    static let inUse: UInt8 = 1, connected: UInt8 = 2, eof0: UInt8 = 4, shut0: UInt8 = 16

    /// Descriptors, `descriptorsPerSlot` per slot.
    let descriptors: UnsafeMutablePointer<Int32>
    /// Bytes waiting in each direction's pipe, two per slot.
    let pending: UnsafeMutablePointer<Int>
    /// Flag bits per slot (all zero: free).
    let flags: UnsafeMutablePointer<UInt8>
    /// Free and used slots, and the generations their epoll tokens carry.
    var slots: SlotStack
    /// Most connections.
    public let capacity: Int
    /// Open connections.
    public private(set) var count = 0
    /// Size every pipe is given (and the length of one splice from a socket).
    public let pipeSize: Int
    /// The epoll instance both sockets of a connection are registered with.
    public var epollFD: Int32 = -1
    /// Token kind of spliced sockets.
    public let socketKind: UInt8
    /// Unconnected non-blocking TCP sockets created inside the namespace (for -t splices).
    public var namespaceSockets = NamespaceSocketPool()

    /// Room for `capacity` connections whose sockets get tokens of kind `socketKind`.
    public init(capacity: Int, socketKind: UInt8) {
        let fds = calloc(capacity * TCPSpliceFlows.descriptorsPerSlot, MemoryLayout<Int32>.stride)
        let counts = calloc(capacity * 2, MemoryLayout<Int>.stride)
        let bits = calloc(capacity, 1)
        precondition(fds != nil && counts != nil && bits != nil, "Can't allocate the splice table")
        descriptors = fds!.bindMemory(to: Int32.self, capacity: capacity * TCPSpliceFlows.descriptorsPerSlot)
        pending = counts!.bindMemory(to: Int.self, capacity: capacity * 2)
        flags = bits!.bindMemory(to: UInt8.self, capacity: capacity)
        slots = SlotStack(capacity: capacity)
        self.capacity = capacity
        self.socketKind = socketKind
        pipeSize = TCPSpliceFlows.probePipeSize()
    }

    deinit {
        for slot in 0..<slots.neverUsed where flags[slot] & TCPSpliceFlows.inUse != 0 { closeDescriptors(slot) }
        free(descriptors)
        free(pending)
        free(flags)
    }

    /// The largest pipe size from 8 MiB down, halving, that F_SETPIPE_SZ accepts (64 KiB at worst).
    static func probePipeSize() -> Int {
        guard case .success(let pipe) = Sys.pipe(flags: O_NONBLOCK) else { return 65536 }
        var size = largestPipe
        while size > 65536 && fcntl(pipe.writeEnd.raw, setPipeSize, Int32(size)) < 0 { size /= 2 }
        return size
    }

    /// The descriptor at `index` (0, 1: sockets; 2 + 2 * direction: pipe read end, + 1: write end) of `slot`.
    @inline(__always) func fd(_ slot: Int, _ index: Int) -> Int32 {
        descriptors[slot * TCPSpliceFlows.descriptorsPerSlot + index]
    }

    // MARK: Set-up

    /// Joins accepted socket `accepted` with unconnected non-blocking `target`, which it connects
    /// to `remote`; false (both sockets closed) if the connection can't be set up.
    public mutating func open(accepted: Int32, target: Int32, to remote: SocketAddress) -> Bool {
        guard epollFD >= 0, let slot = slots.allocate() else {
            close(accepted)
            close(target)
            return false
        }
        let base = descriptors + slot * TCPSpliceFlows.descriptorsPerSlot
        base[0] = accepted
        base[1] = target
        for index in 2..<TCPSpliceFlows.descriptorsPerSlot { base[index] = -1 }
        pending[slot * 2] = 0
        pending[slot * 2 + 1] = 0
        flags[slot] = TCPSpliceFlows.inUse
        count += 1
        for direction in 0..<2 {
            guard case .success(let pipe) = Sys.pipe(flags: O_NONBLOCK) else {
                release(slot)
                return false
            }
            base[2 + 2 * direction] = pipe.readEnd.release()
            base[3 + 2 * direction] = pipe.writeEnd.release()
            _ = fcntl(base[3 + 2 * direction], TCPSpliceFlows.setPipeSize, Int32(pipeSize))
        }
        for side in 0..<2 {
            _ = Sys.setOption(base[side], level: Int32(IPPROTO_TCP), name: TCP_NODELAY, Int32(1))
            _ = Sys.setOption(base[side], level: Int32(IPPROTO_TCP), name: TCP_QUICKACK, Int32(1))
        }
        var address = remote
        let connected = withUnsafeBytes(of: &address.storage) { Sys.connect(target, $0.baseAddress!, length: address.length) }
        switch connected {
        case .success: flags[slot] |= TCPSpliceFlows.connected
        case .failure(EINPROGRESS), .wouldBlock: break
        case .failure: release(slot)
            return false
        }
        for side in 0..<2 {
            var event = epoll_event()
            event.events = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue
            event.data.u64 = EventToken(kind: socketKind, fd: base[side], data: slots.tokenData(slot, bit: side)).rawValue
            if epoll_ctl(epollFD, EPOLL_CTL_ADD, base[side], &event) != 0 {
                release(slot)
                return false
            }
        }
        if flags[slot] & TCPSpliceFlows.connected != 0 { run(slot) }
        return true
    }

    // MARK: Events

    /// Handles readiness `events` of the spliced socket `token` names (stale tokens are ignored).
    public mutating func handleEvent(_ token: EventToken, events: EpollEvents) {
        guard let (slot, side) = slots.decode(token.data), flags[slot] & TCPSpliceFlows.inUse != 0,
              fd(slot, side) & 0xff_ffff == token.fd else { return }
        if events.contains(.error) {
            if flags[slot] & TCPSpliceFlows.connected == 0,
               case .success(let code) = Sys.getOption(fd(slot, 1), level: SOL_SOCKET, name: SO_ERROR, as: Int32.self) {
                Log.debug("TCP: spliced connect failed: \(SyscallError(code))")
            }
            return release(slot)
        }
        if flags[slot] & TCPSpliceFlows.connected == 0 {
            guard side == 1, !events.intersection([.output, .hangup]).isEmpty else { return }
            let failure = Sys.getOption(fd(slot, 1), level: SOL_SOCKET, name: SO_ERROR, as: Int32.self)
            guard case .success(0) = failure, !events.contains(.hangup) else {
                if case .success(let code) = failure { Log.debug("TCP: spliced connect failed: \(SyscallError(code))") }
                return release(slot)
            }
            flags[slot] |= TCPSpliceFlows.connected
        }
        run(slot)
    }

    /// Forwards both directions of `slot`; closes it when both are finished or one failed.
    mutating func run(_ slot: Int) {
        guard forward(slot, direction: 0), forward(slot, direction: 1) else { return release(slot) }
        let bothShut = TCPSpliceFlows.shut0 | TCPSpliceFlows.shut0 << 1
        if flags[slot] & bothShut == bothShut { release(slot) }
    }

    /// Moves what can be moved from side `direction` to the other side through the direction's
    /// pipe, passing end of file on; false on a socket error.
    mutating func forward(_ slot: Int, direction: Int) -> Bool {
        let reader = fd(slot, direction)
        let writer = fd(slot, 1 - direction)
        let pipeRead = fd(slot, 2 + 2 * direction)
        let pipeWrite = fd(slot, 3 + 2 * direction)
        let eof = TCPSpliceFlows.eof0 << direction
        let shut = TCPSpliceFlows.shut0 << (1 - direction)
        let waiting = slot * 2 + direction
        while true {
            while pending[waiting] > 0 {
                var spliceFlags = SHIM_SPLICE_F_MOVE | SHIM_SPLICE_F_NONBLOCK
                if pending[waiting] >= pipeSize / 10 * 9 { spliceFlags |= SHIM_SPLICE_F_MORE }
                switch Sys.splice(from: pipeRead, to: writer, length: pending[waiting], flags: spliceFlags) {
                case .success(let written): pending[waiting] -= written
                case .wouldBlock: return true
                case .failure: return false
                }
            }
            if flags[slot] & eof != 0 {
                if flags[slot] & shut == 0 {
                    _ = Sys.shutdown(writer, Int32(SHUT_WR))
                    flags[slot] |= shut
                }
                return true
            }
            switch Sys.splice(from: reader, to: pipeWrite, length: pipeSize) {
            case .success(0): flags[slot] |= eof
            case .success(let read): pending[waiting] += read
            case .wouldBlock: return true
            case .failure: return false
            }
        }
    }

    // MARK: Closing

    /// Closes both sockets and pipes of `slot` and gives the slot back.
    mutating func release(_ slot: Int) {
        closeDescriptors(slot)
        flags[slot] = 0
        slots.release(slot)
        count -= 1
    }

    /// Closes every open descriptor of `slot` (closing a socket also removes it from epoll).
    func closeDescriptors(_ slot: Int) {
        for index in 0..<TCPSpliceFlows.descriptorsPerSlot {
            let descriptor = fd(slot, index)
            if descriptor >= 0 { close(descriptor) }
        }
    }
}
