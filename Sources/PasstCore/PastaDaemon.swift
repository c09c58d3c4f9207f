// pasta's daemon: set-up in upstream's order, then the main loop (spec §1.3, §1.4, §5.1).
//
// Theory of operation: `PastaDaemon.run` takes the resolved configuration and
//   1. blocks SIGTERM, SIGQUIT and SIGCHLD into a signalfd and ignores SIGPIPE (DaemonSignals);
//   2. opens the PID file and the pcap file (before the --runas switch and any isolation, which
//      would take the file system away), finds or creates the target namespace
//      (NamespaceSetup.swift: --runas IDs, user namespace, spawned command held before exec);
//   3. creates the tap inside the target (then switches to the --runas IDs if no user namespace
//      was entered), configures `lo` and the tap (--config-net);
//   4. detaches from the file system and the IPC, UTS (and, going to the background, PID)
//      namespaces, keeping SYS_ADMIN and NET_BIND_SERVICE only (Isolation.swift); goes to the
//      background unless -f or spawn mode (Daemonize.swift: the parent writes the child's PID
//      and returns 0, which means "ready"), else writes its own PID;
//   5. releases the spawned command, locks itself down (seccomp) and runs the epoll loop until
//      a signal, the command's exit, or the namespace's disappearance ends it.
// A failure in steps 2-4 is logged and gives exit status 1; a held command is killed on the way
// out (dropping `PendingChild` kills it, spec §16.15).
//
// The loop (`PastaContext`, an `EventHandler`) is the shared GuestEngine (GuestEngine.swift:
// services, ICMP/UDP/TCP flows, host sockets, their timers) with the tap as its link, plus what
// only pasta watches. The tap is opened with the virtio-net header and the checksum and TCP
// segmentation offloads (TapDevice.swift; plain if the kernel refuses): the namespace then
// hands us TCP segments of up to 64 KiB with partial checksums, and takes ours the same way,
// so at MTU 1500 a read or write moves up to 44 segments instead of one and nobody computes
// TCP checksums. The tap is read until EAGAIN, one header and frame per read(2), the frames of
// one pass one after the other in the engine's 8 MiB pool, each handed to the engine; the pass
// ends with the engine's batch flush (queued UDP datagrams and TCP payload point into the pool).
// Frames towards the guest are written one per writev(2) after their header (TapLink below):
// TCP frames with what TCPFlows left to the kernel, all others complete, header empty. A
// capture (-p) must show valid frames, so only when capturing are partial checksums completed
// before recording, both ways; a GSO frame is recorded whole, longer than the MTU.
// -U listeners, spliced flows and `auto` ports are UDPPortForwarding.swift's and
// TCPPortForwarding.swift's, inside the engine. pasta's own timer is the namespace poll every
// 1 s when the namespace file lives on procfs. The exit status is the spawned command's (or
// 128 + signal), 0 on SIGTERM/SIGQUIT and when an attached namespace goes away.
import PasstConfig
import PasstFlow
import PasstServices
import PasstSys
import PasstWire
#if canImport(Glibc)
import Glibc
#endif

/// pasta: connect a network namespace through a tap device.
public enum PastaDaemon {
    /// Runs pasta with `configuration` (mode pasta) until it ends; returns the exit status.
    public static func run(configuration: Configuration) -> Int32 {
        DaemonStart.run { () throws(PastaSetupError) in try start(configuration) }
    }

    /// Sets everything up and runs the loop; returns the exit status (0 in a daemonising parent).
    private static func start(_ configuration: Configuration) throws(PastaSetupError) -> Int32 {
        let options = configuration.options
        var isSpawn = false
        if case .spawn = options.pastaTarget { isSpawn = true }
        if isSpawn && !options.debug && !options.trace { Logger.shared.configure(level: .warning) }

        let signals = try DaemonStart.prepare(mode: .pasta)
        let pidFile = try PIDFile(path: options.pidFile)
        let pcap = PcapWriter(path: options.pcapFile)
        var target = try TargetNamespace.open(options, runAs: configuration.runAs)

        let tap = try target.openTap(name: configuration.namespaceInterfaceName)
        try target.finishUserSwitch()
        let link = try NamespaceConfigurator.configure(configuration, tap: tap, namespace: target.namespace)
        let udpListeners: [UDPListener]
        do {
            udpListeners = try UDPListeners.open(options.udpPorts, ipv4: configuration.ipv4 != nil,
                                                 ipv6: configuration.ipv6 != nil)
        } catch {
            throw PastaSetupError(error.description)
        }
        let udpForwarding = try UDPPortForwarding(configuration, namespace: target.namespace)
        let tcpListeners: [TCPListener]
        do {
            tcpListeners = try TCPListeners.open(options.tcpPorts, ipv4: configuration.ipv4 != nil,
                                                 ipv6: configuration.ipv6 != nil)
        } catch {
            throw PastaSetupError(error.description)
        }
        let tcpForwarding = try TCPPortForwarding(configuration, namespace: target.namespace,
                                                  hostListeners: tcpListeners)

        let daemonises = !options.foreground && !isSpawn
        let null = daemonises ? try Daemon.openNullDevice() : -1
        try Isolation.detach(pidNamespace: daemonises, keep: [.sysAdmin, .netBindService])
        if daemonises {
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
        var childPID: pid_t = 0
        if let pending = target.child.take() {
            let running = pending.release()
            childPID = running.pid
            if let code = running.execError { Log.debug("execvp of the command failed: \(SyscallError(code))") }
            if !options.debug && !options.trace { Logger.shared.setStderr(enabled: false) }
        }
        var context = PastaContext(configuration: configuration, tap: tap, pcap: pcap, signals: signals,
                                   guestMAC: link.guestMAC, guestLinkLocal: link.guestLinkLocal,
                                   childPID: childPID, quitWatch: target.quitWatch, udpListeners: udpListeners,
                                   udpForwarding: udpForwarding, tcpForwarding: tcpForwarding)
        try Isolation.lockDown(mode: .pasta)
        try context.register(with: &loop)
        if case .failure(let code) = loop.run(&context) {
            throw PastaSetupError("epoll_wait: \(SyscallError(code))")
        }
        return context.exitStatus
    }
}

/// pasta's loop state: the shared engine behind the tap, and what pasta watches besides.
struct PastaContext: ~Copyable, EventHandler {
    /// Interval of the namespace poll.
    static let namespacePollInterval: UInt64 = SystemClock.nanosecondsPerSecond
    /// Most tap frames handled per wake-up before the other ready descriptors get their turn.
    static let tapFramesPerWakeup = 1024

    /// Services, flows and host sockets, with the tap as their link.
    var engine: GuestEngine<TapLink>
    /// SIGTERM, SIGQUIT and SIGCHLD, read from a signalfd.
    let signals: DaemonSignals
    /// The spawned command's PID; 0 when attached to an existing namespace.
    let childPID: pid_t
    /// How an attached namespace's disappearance is noticed; nil in spawn mode or with --no-netns-quit.
    let quitWatch: NamespaceQuitWatch?
    /// The status `run` returns once the loop stops.
    var exitStatus: Int32 = 0

    /// Builds the loop state around the configured tap.
    init(configuration: Configuration, tap: consuming TapDevice, pcap: consuming PcapWriter,
         signals: consuming DaemonSignals, guestMAC: MACAddress, guestLinkLocal: IPv6Address?,
         childPID: pid_t, quitWatch: NamespaceQuitWatch?, udpListeners: [UDPListener],
         udpForwarding: consuming UDPPortForwarding, tcpForwarding: consuming TCPPortForwarding) {
        let link = TapLink(tap: tap, pcap: pcap, ourMAC: configuration.options.ourMAC, guestMAC: guestMAC)
        engine = GuestEngine(configuration: configuration, link: link, guestMAC: guestMAC,
                             guestLinkLocal: guestLinkLocal, udpListeners: udpListeners,
                             udpForwarding: udpForwarding, tcpForwarding: tcpForwarding)
        self.signals = signals
        self.childPID = childPID
        self.quitWatch = quitWatch
    }

    deinit {
        switch quitWatch {
        case .inotify(let fd, _): close(fd)
        case .polling(let fd, _): close(fd)
        case nil: break
        }
    }

    /// Registers the tap, the signalfd, the namespace watch, the engine's sockets and the timers with `loop`.
    mutating func register(with loop: inout EventLoop) throws(PastaSetupError) {
        let tapFD = engine.link.tap.descriptor.raw
        if case .failure(let code) = loop.register(tapFD, events: [.input, .readHangup],
                                                   token: EventToken(.tapPasta, fd: tapFD)) {
            throw PastaSetupError("Couldn't watch the tap device: \(SyscallError(code))")
        }
        let signalFD = signals.signals.raw
        if case .failure(let code) = loop.register(signalFD, events: .input, token: EventToken(.signal, fd: signalFD)) {
            throw PastaSetupError("Couldn't watch signals: \(SyscallError(code))")
        }
        switch quitWatch {
        case .inotify(let fd, _):
            if case .failure(let code) = loop.register(fd, events: .input, token: EventToken(.nsQuitInotify, fd: fd)) {
                throw PastaSetupError("Couldn't watch the namespace directory: \(SyscallError(code))")
            }
        case .polling:
            _ = loop.addPeriodicTimer(every: PastaContext.namespacePollInterval,
                                      token: EventToken(kind: DaemonTimer.namespacePoll.rawValue))
        case nil:
            break
        }
        try engine.register(with: &loop)
    }

    // MARK: EventHandler

    /// Dispatches one ready descriptor by its kind.
    mutating func handleEvent(_ token: EventToken, events: EpollEvents, loop: inout EventLoop) {
        switch token.eventKind {
        case .tapPasta:
            readTap(loop: &loop)
            if !events.intersection([.error, .hangup, .readHangup]).isEmpty { Log.die("Tap device error, exiting") }
        case .signal:
            handleSignals(loop: &loop)
        case .nsQuitInotify:
            checkNamespaceDirectory(fd: token.fd, loop: &loop)
        default:
            engine.handleEvent(token, events: events, loop: &loop)
        }
    }

    /// Runs the timer identified by `token`'s kind.
    mutating func handleTimer(_ token: EventToken, loop: inout EventLoop) {
        switch DaemonTimer(rawValue: token.kind) {
        case .namespacePoll:
            pollNamespace(loop: &loop)
        case let timer?:
            engine.handleTimer(timer, token: token, loop: &loop)
        case nil:
            break
        }
    }

    // MARK: Tap ingress

    /// Reads frames from the tap until none is left, the pool is full or `tapFramesPerWakeup` were
    /// read, handling each; frames of one pass are kept one after the other in the pool until the
    /// queued UDP datagrams pointing into it are sent. With offloads each read brings a virtio-net
    /// header before the frame: only a capture looks at it, to complete a partial checksum
    /// (everything else takes payloads, whatever their size or checksum). The tap is
    /// level-triggered, so the loop comes back after the other ready descriptors; reading on
    /// instead starves them for as long as the guest answers the frames written meanwhile (its ACKs
    /// to a download): no signal, timer, socket or namespace watch would be served again.
    mutating func readTap(loop: inout EventLoop) {
        let header = engine.link.tap.virtioHeaderLength
        let readCapacity = header + GuestEngine<TapLink>.frameCapacity
        let inbound = engine.inbound
        let capturing = engine.link.pcap.isEnabled
        var offset = 0
        var frames = 0
        while true {
            if inbound.count - offset < readCapacity || frames == PastaContext.tapFramesPerWakeup {
                engine.flushBatches(now: loop.now)
                return
            }
            switch engine.link.tap.read(into: UnsafeMutableRawBufferPointer(
                rebasing: inbound[offset..<(offset + readCapacity)])) {
            case .success(0):
                Log.die("EOF on tap device, exiting")
            case .success(let length):
                if length > header {
                    let frame = UnsafeMutableRawBufferPointer(rebasing: inbound[(offset + header)..<(offset + length)])
                    if capturing && header > 0 {
                        VirtioNetHeader(reading: inbound.baseAddress! + offset)
                            .completeChecksum(frame.baseAddress!, count: frame.count)
                    }
                    engine.handleFrame(UnsafeRawBufferPointer(frame), loop: &loop)
                }
                offset += (length + 15) & ~15
                frames += 1
            case .wouldBlock:
                engine.flushBatches(now: loop.now)
                return
            case .failure(let code):
                Log.die("Error reading from tap device: \(SyscallError(code))")
            }
        }
    }

    // MARK: Signals and quitting

    /// Drains the signalfd: SIGTERM/SIGQUIT stop with 0, the command's exit stops with its status.
    mutating func handleSignals(loop: inout EventLoop) {
        switch signals.drain() {
        case .exit:
            exitStatus = 0
            loop.stop()
        case .childStateChanged:
            while case .success(let child?) = Signals.reapChild() {
                if child.pid == childPID {
                    exitStatus = RunningChild.exitCode(exited: child.exited, status: child.status)
                    loop.stop()
                }
            }
        case .none:
            break
        }
    }

    /// Reads inotify events of the namespace directory; stops with 0 if the namespace file went.
    mutating func checkNamespaceDirectory(fd: Int32, loop: inout EventLoop) {
        guard case .inotify(_, let name) = quitWatch else { return }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count <= 0 { return }
            var offset = 0
            let headerLength = MemoryLayout<inotify_event>.size
            while offset + headerLength <= count {
                let nameLength = buffer.withUnsafeBytes {
                    Int($0.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
                }
                let nameBytes = buffer[(offset + headerLength)..<min(count, offset + headerLength + nameLength)]
                let entry = String(decoding: nameBytes.prefix { $0 != 0 }, as: UTF8.self)
                if entry == name {
                    Log.info("Namespace \(name) is gone, exiting")
                    exitStatus = 0
                    loop.stop()
                    return
                }
                offset += headerLength + nameLength
            }
        }
    }

    /// Checks that the namespace file can still be opened; stops with 0 if not.
    mutating func pollNamespace(loop: inout EventLoop) {
        guard case .polling(let directory, let name) = quitWatch else { return }
        let fd = openat(directory, name, NamespaceQuitWatch.pathOnly | O_CLOEXEC)
        if fd >= 0 {
            close(fd)
            return
        }
        if errno == EACCES { return }
        Log.info("Namespace \(name) is gone, exiting")
        exitStatus = 0
        loop.stop()
    }
}

/// Frames towards the guest: one write(2) per frame on the tap (one writev(2) of virtio-net
/// header and frame with offloads; runs of UDP datagrams as one GSO frame), each captured once
/// sent.
struct TapLink: ~Copyable, GuestLink {
    /// The tap device in the target namespace.
    let tap: TapDevice
    /// The -p capture (disabled without -p).
    let pcap: PcapWriter
    /// Our MAC address: the source of every frame we send (-M).
    let ourMAC: MACAddress
    /// The guest's MAC address: the tap's, then the source of the last frame it sent.
    var guestMAC: MACAddress
    /// Runs of UDP datagrams go as one GSO frame each; cleared when the kernel refuses one
    /// (before Linux 6.2 tun takes no UDP GSO frames).
    var udpSegmentation = true

    /// Whether the tap has the virtio-net header and its offloads: TCP frames may be 64 KiB.
    var segmentationOffload: Bool { tap.virtioHeaderLength > 0 }

    /// Writes `frame`, complete, to the tap (after an empty virtio-net header with offloads).
    func send(_ frame: UnsafeRawBufferPointer) {
        guard segmentationOffload else { return finish(frame, tap.write(frame)) }
        finish(frame, write(frame, header: .none))
    }

    /// Writes TCP `frame` with its partial checksum and segmentation as `offload` says; without
    /// offloads, completes the checksum first. A capture gets the frame with its checksum completed.
    func send(_ frame: UnsafeMutableRawBufferPointer, offload: VirtioNetHeader) {
        let complete = UnsafeRawBufferPointer(frame)
        guard segmentationOffload else {
            offload.completeChecksum(frame.baseAddress!, count: frame.count)
            return finish(complete, tap.write(complete))
        }
        let result = write(complete, header: offload)
        if pcap.isEnabled, case .success = result { offload.completeChecksum(frame.baseAddress!, count: frame.count) }
        finish(complete, result)
    }

    /// Sends the `count` frames of `udp`'s last receive call: each run of equal-length datagrams
    /// of one flow (`UDPFlows.segmentRunLength`) as one UDP GSO frame, which the namespace's
    /// kernel cuts back into the datagrams, with one writev(2) of header, first frame and the
    /// other payloads; the rest, and everything without offloads or with a capture, one by one.
    mutating func sendUDPFrames(_ udp: borrowing UDPFlows, count: Int) {
        var index = 0
        while index < count {
            let runs = udpSegmentation && segmentationOffload && !pcap.isEnabled
            let length = runs ? udp.segmentRunLength(from: index, count: count) : 1
            if length > 1 {
                let offload = udp.joinRun(from: index, length: length, ourMAC: ourMAC, guestMAC: guestMAC)
                var bytes: (UInt64, UInt64) = (0, 0)
                let result = withUnsafeMutableBytes(of: &bytes) { raw in
                    offload.write(to: raw.baseAddress!)
                    udp.runVectors[0] = iovec(iov_base: raw.baseAddress, iov_len: VirtioNetHeader.length)
                    return tap.write(vectors: udp.runVectors, count: length + 1)
                }
                guard case .failure(EINVAL) = result else {
                    finish(UnsafeRawBufferPointer(udp.frame(index)), result)
                    index += length
                    continue
                }
                Log.debug("tap: no UDP segmentation offload (\(SyscallError(EINVAL))): datagrams one by one")
                udpSegmentation = false
                udp.splitRun(at: index, ourMAC: ourMAC, guestMAC: guestMAC)
            }
            send(udp.frame(index), offload: udp.offload(index))
            index += 1
        }
    }

    /// Writes `header` and `frame` with one writev(2).
    func write(_ frame: UnsafeRawBufferPointer, header: VirtioNetHeader) -> SyscallResult<Int> {
        var bytes: (UInt64, UInt64) = (0, 0)
        return withUnsafeMutableBytes(of: &bytes) { raw in
            header.write(to: raw.baseAddress!)
            return tap.write(header: UnsafeRawBufferPointer(rebasing: raw[..<VirtioNetHeader.length]), frame: frame)
        }
    }

    /// Captures `frame` if it was written; drops it on the tolerated errors, dies on any other.
    func finish(_ frame: UnsafeRawBufferPointer, _ result: SyscallResult<Int>) {
        switch result {
        case .success:
            pcap.record(frame)
        case .wouldBlock:
            break
        case .failure(let code):
            switch code {
            case EINTR, ENOBUFS, ENOSPC, EIO: break
            default: Log.die("Error writing to tap device: \(SyscallError(code))")
            }
        }
    }

    /// Records `frame`, read from the tap, in the capture.
    func captureReceived(_ frame: UnsafeRawBufferPointer) {
        pcap.record(frame)
    }
}
