// passt's daemon: qemu's UNIX stream socket in front of the shared engine (spec §1.2, §1.4, §5.1).
//
// Theory of operation: `PasstDaemon.run` takes the resolved configuration and
//   1. blocks SIGTERM and SIGQUIT into a signalfd (DaemonSignals) and raises the open file limit
//      to its hard limit (`-t all` / `-u all` listen on every non-ephemeral port);
//   2. opens the PID file and the pcap file, binds the listening UNIX socket (QemuSocket.swift,
//      unless -F hands us a connected one) and announces it, binds the -t and -u listeners;
//   3. switches to the --runas IDs (root in the init namespace becomes nobody), keeping no
//      capability: everything privileged is done by now; then creates a user namespace and
//      detaches from the file system and the IPC, UTS and PID namespaces (Isolation.swift);
//   4. goes to the background unless -f (Daemonize.swift: the parent writes the child's PID and
//      returns 0, meaning "ready"), else writes its own PID, locks itself down (seccomp) and
//      runs the epoll loop until SIGTERM or SIGQUIT (exit 0), or, with -1 or -F, until the
//      client leaves (exit 0).
// A failure in steps 1-4 is logged and gives exit status 1.
//
// The loop (`PasstContext`): the shared GuestEngine (GuestEngine.swift) with the stream as its
// link (StreamLink, QemuSocket.swift), plus the client's life cycle. One client at a time: a
// connection arriving while one is served is accepted and closed at once. The client socket is
// registered with a generation number in its token, so an event of a client that already left
// cannot act on the next one. Ingress: each receive appends to the engine's 8 MiB pool after the
// carried-over start of an incomplete frame; the complete frames (4-byte big-endian length,
// then 14...65535 bytes) are handed to the engine one by one, the pass ends with the engine's
// batch flush, and the incomplete rest is moved to the start of the pool for the next receive.
// A length outside 14...65535 drops the client ("Bad frame size from guest"), as do end of file,
// a receive error and a hang-up ("Client connection closed"); without -1 the next client is
// then served with every flow kept, the carried bytes forgotten. Egress frames wait in the
// link's pending buffer until the end of each loop iteration (`iterationDone`), then go out
// with one sendmsg.
import PasstConfig
import PasstFlow
import PasstServices
import PasstSys
import PasstWire
#if canImport(Glibc)
import Glibc
#endif

/// passt: connect a qemu guest through a UNIX stream socket.
public enum PasstDaemon {
    /// Runs passt with `configuration` (mode passt) until it ends; returns the exit status.
    public static func run(configuration: Configuration) -> Int32 {
        DaemonStart.run { () throws(PastaSetupError) in try start(configuration) }
    }

    /// Sets everything up and runs the loop; returns the exit status (0 in a daemonising parent).
    private static func start(_ configuration: Configuration) throws(PastaSetupError) -> Int32 {
        let options = configuration.options
        let signals = try DaemonStart.prepare(mode: .passt)
        let pidFile = try PIDFile(path: options.pidFile)
        let pcap = PcapWriter(path: options.pcapFile)
        var listener: Int32 = -1
        if options.tapFD == nil {
            let bound = try QemuSocket.listen(path: options.socketPath)
            listener = bound.socket
            QemuSocket.announce(path: bound.path)
        }
        let udpListeners: [UDPListener]
        let tcpListeners: [TCPListener]
        do {
            udpListeners = try UDPListeners.open(options.udpPorts, ipv4: configuration.ipv4 != nil,
                                                 ipv6: configuration.ipv6 != nil)
            tcpListeners = try TCPListeners.open(options.tcpPorts, ipv4: configuration.ipv4 != nil,
                                                 ipv6: configuration.ipv6 != nil)
        } catch let error as UDPListenerError {
            throw PastaSetupError(error.description)
        } catch let error as TCPListenerError {
            throw PastaSetupError(error.description)
        } catch {
            throw PastaSetupError("\(error)")
        }
        do {
            try UserIdentity.switchTo(uid: configuration.runAs.uid, gid: configuration.runAs.gid, keeping: [])
        } catch {
            throw PastaSetupError(error.description)
        }
        try Isolation.createUserNamespace()
        let null = options.foreground ? -1 : try Daemon.openNullDevice()
        try Isolation.detach(pidNamespace: true, keep: [])

        if !options.foreground {
            if let daemon = try Daemon.fork(null: null) {
                pidFile.write(pid: daemon)
                return 0
            }
        } else {
            pidFile.write(pid: getpid())
        }

        var loop: EventLoop
        do {
            loop = try EventLoop.daemon()
        } catch {
            throw PastaSetupError("Couldn't create epoll instance: \(error)")
        }
        var context = PasstContext(configuration: configuration, pcap: pcap, signals: signals, listener: listener,
                                   udpListeners: udpListeners, tcpListeners: tcpListeners)
        try Isolation.lockDown(mode: .passt)
        try context.register(with: &loop, inheritedClient: options.tapFD)
        if case .failure(let code) = loop.run(&context) {
            throw PastaSetupError("epoll_wait: \(SyscallError(code))")
        }
        return context.exitStatus
    }

}

/// passt's loop state: the shared engine behind the stream socket, and the client's life cycle.
struct PasstContext: ~Copyable, EventHandler {
    /// Frame lengths accepted from qemu (an Ethernet header up to the largest IP packet).
    static let frameLengths = EthernetFrame.headerLength...65535
    /// Most full pools of frames read from the client per wake-up.
    static let poolsPerWakeup = 4
    /// SO_RCVBUF and SO_SNDBUF asked for on the client socket (the kernel clamps).
    static let clientBufferSize = Int32.max / 2

    /// Services, flows and host sockets, with the stream socket as their link.
    var engine: GuestEngine<StreamLink>
    /// SIGTERM and SIGQUIT, read from a signalfd.
    let signals: DaemonSignals
    /// The listening UNIX socket; -1 with -F (owned: closed on deinit).
    let listener: Int32
    /// -1 or -F: the first client's departure ends the process.
    let oneOff: Bool
    /// Bytes of an incomplete frame at the start of the ingress pool, carried to the next receive.
    var carried = 0
    /// Counts clients, so that a stale event of a client that left is recognised.
    var generation: UInt32 = 0
    /// The status `run` returns once the loop stops.
    var exitStatus: Int32 = 0

    /// Builds the loop state: no client yet, frames to the guest broadcast until it speaks.
    init(configuration: Configuration, pcap: consuming PcapWriter, signals: consuming DaemonSignals, listener: Int32,
         udpListeners: [UDPListener], tcpListeners: [TCPListener]) {
        let link = StreamLink(pcap: pcap, ourMAC: configuration.options.ourMAC)
        engine = GuestEngine(configuration: configuration, link: link, guestMAC: .broadcast, guestLinkLocal: nil,
                             udpListeners: udpListeners, udpForwarding: UDPPortForwarding(),
                             tcpForwarding: TCPPortForwarding(hostListeners: tcpListeners))
        self.signals = signals
        self.listener = listener
        oneOff = configuration.options.oneOff
    }

    deinit {
        if listener >= 0 { close(listener) }
    }

    /// Registers the listening socket (or the -F client), the signalfd, the engine's sockets
    /// and the timers with `loop`.
    mutating func register(with loop: inout EventLoop, inheritedClient: Int32?) throws(PastaSetupError) {
        let signalFD = signals.signals.raw
        if case .failure(let code) = loop.register(signalFD, events: .input, token: EventToken(.signal, fd: signalFD)) {
            throw PastaSetupError("Couldn't watch signals: \(SyscallError(code))")
        }
        if listener >= 0, case .failure(let code) = loop.register(listener, events: .input,
                                                                  token: EventToken(.tapListen, fd: listener)) {
            throw PastaSetupError("Couldn't watch the UNIX domain socket: \(SyscallError(code))")
        }
        if let inheritedClient {
            _ = Sys.setNonBlocking(inheritedClient)
            guard connect(inheritedClient, loop: &loop) else {
                throw PastaSetupError("Couldn't watch the connected socket \(inheritedClient)")
            }
        }
        try engine.register(with: &loop)
    }

    // MARK: EventHandler

    /// Dispatches one ready descriptor by its kind.
    mutating func handleEvent(_ token: EventToken, events: EpollEvents, loop: inout EventLoop) {
        switch token.eventKind {
        case .tapListen:
            acceptClients(loop: &loop)
        case .tapPasst:
            guard token.data == generation, engine.link.client >= 0,
                  token.fd == engine.link.client & 0xff_ffff else { return }
            if events.contains(.input) { readClient(loop: &loop) }
            if engine.link.client >= 0 && !events.isDisjoint(with: [.error, .hangup, .readHangup]) {
                disconnect(loop: &loop)
            }
        case .signal:
            if signals.drain() == .exit {
                exitStatus = 0
                loop.stop()
            }
        default:
            engine.handleEvent(token, events: events, loop: &loop)
        }
    }

    /// Runs the engine timer identified by `token`'s kind.
    mutating func handleTimer(_ token: EventToken, loop: inout EventLoop) {
        guard let timer = DaemonTimer(rawValue: token.kind) else { return }
        engine.handleTimer(timer, token: token, loop: &loop)
    }

    /// Writes the frames the iteration produced; notices a client the link had to drop.
    mutating func iterationDone(loop: inout EventLoop) {
        engine.link.flush()
        if engine.link.clientLost {
            engine.link.clientLost = false
            clientGone(loop: &loop)
        }
    }

    // MARK: Clients

    /// Accepts every pending connection: the first becomes the client, any other is closed at once.
    /// A client that has closed its end but whose hang-up is not handled yet (both events can
    /// come in one wake-up, the new connection first) is read to its end before.
    mutating func acceptClients(loop: inout EventLoop) {
        if engine.link.client >= 0 && clientHasLeft() {
            readClient(loop: &loop)
            if engine.link.client >= 0 { disconnect(loop: &loop) }
            if oneOff { return }
        }
        while true {
            switch Sys.accept(listener) {
            case .success(let socket):
                let fd = socket.release()
                if engine.link.client >= 0 {
                    Log.info("Discarding connection from PID \(PasstContext.peerPID(fd)): a client is connected")
                    close(fd)
                    continue
                }
                _ = Sys.setOption(fd, level: SOL_SOCKET, name: SO_RCVBUF, PasstContext.clientBufferSize)
                _ = Sys.setOption(fd, level: SOL_SOCKET, name: SO_SNDBUF, PasstContext.clientBufferSize)
                if connect(fd, loop: &loop) {
                    Log.info("Accepted connection from PID \(PasstContext.peerPID(fd))")
                } else {
                    close(fd)
                }
            case .wouldBlock:
                return
            case .failure(let code):
                Log.debug("accept on the UNIX domain socket: \(SyscallError(code))")
                if DescriptorReserve.isExhaustion(code) { DescriptorReserve.refuseOne(from: listener) }
                return
            }
        }
    }

    /// Whether the client closed its end of the stream (POLLRDHUP or POLLHUP pending).
    func clientHasLeft() -> Bool {
        let hangups = Int16(truncatingIfNeeded: EpollEvents.hangups.rawValue)
        var ready = pollfd(fd: engine.link.client, events: hangups, revents: 0)
        return poll(&ready, 1, 0) == 1 && ready.revents & (hangups | Int16(POLLERR)) != 0
    }

    /// Makes connected socket `fd` the client and watches it; returns whether it could be watched.
    mutating func connect(_ fd: Int32, loop: inout EventLoop) -> Bool {
        generation &+= 1
        if case .failure(let code) = loop.register(fd, events: [.input, .readHangup],
                                                   token: EventToken(.tapPasst, fd: fd, data: generation)) {
            Log.error("Couldn't watch the guest connection: \(SyscallError(code))")
            return false
        }
        engine.link.client = fd
        carried = 0
        return true
    }

    /// The PID of the process at the other end of UNIX socket `fd` (0 if unknown).
    static func peerPID(_ fd: Int32) -> Int32 {
        guard case .success(let credentials) = Sys.getOption(fd, level: SOL_SOCKET, name: SO_PEERCRED,
                                                             as: (pid: Int32, uid: UInt32, gid: UInt32).self)
        else { return 0 }
        return credentials.pid
    }

    /// Closes the client (frames waiting for it are dropped) and ends the process if one-off.
    mutating func disconnect(loop: inout EventLoop) {
        engine.link.closeClient()
        clientGone(loop: &loop)
    }

    /// After the client went: forgets its partial frame; stops the loop with 0 if one-off.
    mutating func clientGone(loop: inout EventLoop) {
        Log.info("Client connection closed\(oneOff ? ", exiting" : "")")
        carried = 0
        generation &+= 1
        if oneOff {
            exitStatus = 0
            loop.stop()
        }
    }

    // MARK: Ingress

    /// Receives from the client until it has nothing more (or `poolsPerWakeup` full pools), handing
    /// every complete frame to the engine; a bad length, end of file or an error drops the client.
    mutating func readClient(loop: inout EventLoop) {
        let pool = engine.inbound
        // At most a few full pools per wake-up: the socket is level-triggered, and reading on
        // while the guest keeps it full would starve every other descriptor (as pasta's tap).
        for _ in 0..<PasstContext.poolsPerWakeup where engine.link.client >= 0 {
            let room = pool.count - carried
            switch Sys.recv(engine.link.client, into: UnsafeMutableRawBufferPointer(rebasing: pool[carried...]),
                            flags: Int32(MSG_DONTWAIT)) {
            case .success(0):
                disconnect(loop: &loop)
                return
            case .success(let count):
                guard handleFrames(count: carried + count, loop: &loop) else {
                    Log.error("Bad frame size from guest, resetting connection")
                    disconnect(loop: &loop)
                    return
                }
                if count < room { return }
            case .wouldBlock:
                return
            case .failure(let code):
                Log.error("Receive error on guest connection, reset: \(SyscallError(code))")
                disconnect(loop: &loop)
                return
            }
        }
    }

    /// Hands the complete frames among the first `count` bytes of the pool to the engine, flushes
    /// its batches and moves an incomplete rest to the start; false on a bad frame length.
    mutating func handleFrames(count: Int, loop: inout EventLoop) -> Bool {
        let pool = engine.inbound
        let base = pool.baseAddress!
        var offset = 0
        var valid = true
        while count - offset >= StreamLink.lengthBytes {
            let length = Int(UInt32(bigEndian: (base + offset).loadUnaligned(as: UInt32.self)))
            guard PasstContext.frameLengths.contains(length) else {
                valid = false
                break
            }
            let start = offset + StreamLink.lengthBytes
            if start + length > count { break }
            engine.handleFrame(UnsafeRawBufferPointer(start: base + start, count: length), loop: &loop)
            offset = start + length
        }
        engine.flushBatches(now: loop.now)
        carried = count - offset
        if carried > 0 && offset > 0 { memmove(base, base + offset, carried) }
        return valid
    }
}
