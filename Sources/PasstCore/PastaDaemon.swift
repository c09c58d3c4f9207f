// pasta's daemon: set-up in upstream's order, then the main loop (spec §1.3, §1.4, §5.1).
//
// Theory of operation: `PastaDaemon.run` takes the resolved configuration and
//   1. blocks SIGTERM, SIGQUIT and SIGCHLD into a signalfd and ignores SIGPIPE (DaemonSignals);
//   2. opens the PID file and the pcap file (before the --runas switch and any isolation, which
//      would take the file system away), finds or creates the target namespace
//      (NamespaceSetup.swift: --runas IDs, user namespace, spawned command held before exec);
//   3. creates the tap inside the target (then switches to the --runas IDs if no user namespace
//      was entered), configures `lo` and the tap (--config-net);
//   4. goes to the background unless -f or spawn mode (Daemonize.swift: the parent writes the
//      child's PID and returns 0, which means "ready"), else writes its own PID;
//   5. releases the spawned command, and runs the epoll loop until a signal, the command's
//      exit, or the namespace's disappearance ends it.
// A failure in steps 2-4 is logged and gives exit status 1; a held command is killed on the way
// out (dropping `PendingChild` kills it, spec §16.15).
//
// The loop (`PastaContext`, an `EventHandler`): the tap is read until EAGAIN, one frame per
// read(2) into a buffer allocated once; each frame is captured, teaches us the guest's MAC, is
// classified once (TapIngress.swift) and handed to its handler. Frames towards the guest are
// written one per write(2) (Egress below) and captured when sent. Ping sockets are registered
// with their flow slot in the token; their replies are built in a second preallocated buffer.
// UDP (UDPFlows in PasstFlow): datagrams from the guest are queued per flow and sent with one
// sendmmsg per run of one flow, at the latest when a tap read pass ends, so a read pass keeps its
// frames one after the other in an 8 MiB pool; flow sockets and -u listeners (bound before
// daemonising) are registered with the flow slot / listener index in the token; -U listeners,
// spliced flows and `auto` ports are UDPPortForwarding.swift's (rescanned with the UDP timer).
// TCP (TCPFlows in PasstFlow): each guest segment goes straight to its connection, which queues
// in-order payload and writes a run of one connection's segments with one sendmsg (at the
// latest when the read pass ends, like UDP); connection
// sockets and their timerfds register themselves with the loop's epoll (slot in the token); -t
// and -T listeners (explicit ones bound before daemonising), the loopback splice and `auto`
// ports are TCPPortForwarding.swift's (rescanned with the UDP timer), which hands connections
// that take the tap path to TCPFlows; Egress is the connections' TCPTap, so their frames are
// written as they are built.
// Timers: UDP flow expiry every 1 s, ICMP flow expiry every 10 s, the namespace poll every 1 s when the namespace file
// lives on procfs, unsolicited router advertisements (ServiceBridge.swift) when enabled. The
// exit status is the spawned command's (or 128 + signal), 0 on SIGTERM/SIGQUIT and when an
// attached namespace goes away.
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
        do {
            return try start(configuration)
        } catch {
            Log.error(error.description)
            return 1
        }
    }

    /// Sets everything up and runs the loop; returns the exit status (0 in a daemonising parent).
    private static func start(_ configuration: Configuration) throws(PastaSetupError) -> Int32 {
        let options = configuration.options
        var isSpawn = false
        if case .spawn = options.pastaTarget { isSpawn = true }
        if isSpawn && !options.debug && !options.trace { Logger.shared.configure(level: .warning) }

        let signals: DaemonSignals
        do {
            signals = try DaemonSignals(mode: .pasta)
        } catch {
            throw PastaSetupError("Couldn't set up signal handling: \(error)")
        }
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

        if !options.foreground && !isSpawn {
            if let daemon = try Daemon.fork() {
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
        try context.register(with: &loop)
        if case .failure(let code) = loop.run(&context) {
            throw PastaSetupError("epoll_wait: \(SyscallError(code))")
        }
        return context.exitStatus
    }
}

/// Timers of the pasta loop (the kind byte of their tokens).
enum PastaTimer: UInt8 {
    /// Closes idle ICMP echo flows (every 10 s, upstream's ICMP timer interval).
    case icmpExpiry = 1
    /// Checks whether the namespace file still exists (every 1 s, procfs/sysfs targets).
    case namespacePoll
    /// Sends an unsolicited router advertisement (random 200-600 s intervals).
    case routerAdvertisement
    /// Closes idle UDP flows and rescans `auto` ports, UDP and TCP (every 1 s).
    case udpExpiry
}

/// The daemon's state while the loop runs: the tap, flows, and what we know about the guest.
struct PastaContext: ~Copyable, EventHandler {
    /// Largest frame read from or written to the tap (65535 plus the Ethernet header).
    static let frameCapacity = 65536 + EthernetFrame.headerLength
    /// Size of the tap read pool: frames of one read pass stay here until UDP and TCP batches are sent.
    static let inboundCapacity = 8 * 1024 * 1024
    /// Interval of the UDP expiry timer.
    static let udpTimerInterval: UInt64 = SystemClock.nanosecondsPerSecond
    /// Interval of the ICMP expiry timer.
    static let icmpTimerInterval: UInt64 = 10 * SystemClock.nanosecondsPerSecond
    /// Interval of the namespace poll.
    static let namespacePollInterval: UInt64 = SystemClock.nanosecondsPerSecond
    /// Minimum interval between two "dropping fragments" warnings.
    static let fragmentWarningInterval: UInt64 = 10 * SystemClock.nanosecondsPerSecond

    /// The resolved configuration (switches, addresses).
    let configuration: Configuration
    /// The tap, the capture file and the MAC addresses of frames towards the guest.
    var egress: Egress
    /// SIGTERM, SIGQUIT and SIGCHLD, read from a signalfd.
    let signals: DaemonSignals
    /// The guest's addresses as seen in its packets.
    var guest: GuestAddresses
    /// What ARP, DHCP, NDP and DHCPv6 answer with (guest MAC kept current).
    var services: ServiceConfig
    /// ICMP/ICMPv6 echo flows and their ping sockets.
    var echo: ICMPEchoFlows
    /// The flow table (both sides of every UDP flow).
    var flows: FlowTable
    /// UDP flows, their sockets and the -u and -U listeners.
    var udp: UDPFlows
    /// -U listeners, the namespace socket pool of spliced UDP flows, `auto` port following.
    var udpForwarding: UDPPortForwarding
    /// TCP connections of the tap path, their sockets and timers.
    var tcp: TCPFlows
    /// -t and -T listeners, spliced TCP connections, `auto` port following.
    var tcpForwarding: TCPPortForwarding
    /// The spawned command's PID; 0 when attached to an existing namespace.
    let childPID: pid_t
    /// How an attached namespace's disappearance is noticed; nil in spawn mode or with --no-netns-quit.
    let quitWatch: NamespaceQuitWatch?
    /// Frames read from the tap land here, one after the other in a read pass (allocated once).
    let inbound: UnsafeMutableRawBufferPointer
    /// Frames towards the guest are built here (allocated once).
    let outbound: UnsafeMutableRawBufferPointer
    /// The status `run` returns once the loop stops.
    var exitStatus: Int32 = 0
    /// When fragments were last warned about (monotonic ns; 0: never).
    var lastFragmentWarning: UInt64 = 0

    /// Builds the loop state around the configured tap.
    init(configuration: Configuration, tap: consuming TapDevice, pcap: consuming PcapWriter,
         signals: consuming DaemonSignals, guestMAC: MACAddress, guestLinkLocal: IPv6Address?,
         childPID: pid_t, quitWatch: NamespaceQuitWatch?, udpListeners: [UDPListener],
         udpForwarding: consuming UDPPortForwarding, tcpForwarding: consuming TCPPortForwarding) {
        self.configuration = configuration
        egress = Egress(tap: tap, pcap: pcap, ourMAC: configuration.options.ourMAC, guestMAC: guestMAC)
        self.signals = signals
        guest = GuestAddresses(assigned4: configuration.ipv4?.address, assigned6: configuration.ipv6?.address)
        guest.linkLocalSeen6 = guestLinkLocal
        services = ServiceBridge.serviceConfig(configuration, guestMAC: guestMAC, now: SystemClock.realtime())
        let scope = configuration.ipv6?.templateInterface.map { if_nametoindex($0) } ?? 0
        let rules = ForwardingRules(configuration, linkLocalScope6: scope)
        echo = ICMPEchoFlows(rules: rules)
        flows = FlowTable(capacity: FlowTable.upstreamCapacity)
        udp = UDPFlows(rules: rules, listeners: udpListeners)
        udp.spliceEnabled = udpForwarding.splice
        udp.spliceToNamespaceLoopback = configuration.options.hostLoopbackToNamespaceLoopback
        self.udpForwarding = udpForwarding
        tcp = TCPFlows(rules: rules,
                       mtu: configuration.mtu, socketKind: EventKind.tcp.rawValue,
                       timerKind: EventKind.tcpTimer.rawValue)
        self.tcpForwarding = tcpForwarding
        self.childPID = childPID
        self.quitWatch = quitWatch
        inbound = .allocate(byteCount: PastaContext.inboundCapacity, alignment: 16)
        outbound = .allocate(byteCount: PastaContext.frameCapacity, alignment: 16)
    }

    deinit {
        inbound.deallocate()
        outbound.deallocate()
        switch quitWatch {
        case .inotify(let fd, _): close(fd)
        case .polling(let fd, _): close(fd)
        case nil: break
        }
    }

    /// Registers the tap, the signalfd, the namespace watch and the timers with `loop`.
    mutating func register(with loop: inout EventLoop) throws(PastaSetupError) {
        let tapFD = egress.tap.descriptor.raw
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
                                      token: EventToken(kind: PastaTimer.namespacePoll.rawValue))
        case nil:
            break
        }
        if !configuration.options.noICMP {
            _ = loop.addPeriodicTimer(every: PastaContext.icmpTimerInterval,
                                      token: EventToken(kind: PastaTimer.icmpExpiry.rawValue))
        }
        for (index, listener) in udp.listeners.enumerated() {
            if case .failure(let code) = loop.register(listener.socket, events: .input,
                                                       token: EventToken(.udpListen, fd: listener.socket,
                                                                         data: UInt32(index))) {
                throw PastaSetupError("Couldn't watch UDP port \(listener.port): \(SyscallError(code))")
            }
        }
        udpForwarding.start(&udp, loop: &loop)
        tcp.epollFD = loop.epoll.descriptor.raw
        try tcpForwarding.start(loop: &loop)
        _ = loop.addPeriodicTimer(every: PastaContext.udpTimerInterval,
                                  token: EventToken(kind: PastaTimer.udpExpiry.rawValue))
        if configuration.routerAdvertisementsEnabled {
            _ = loop.addDeadlineTimer(at: loop.now &+ ServiceBridge.nextRouterAdvertisementDelay(),
                                      token: EventToken(kind: PastaTimer.routerAdvertisement.rawValue))
        }
    }

    // MARK: EventHandler

    /// Dispatches one ready descriptor by its kind.
    mutating func handleEvent(_ token: EventToken, events: EpollEvents, loop: inout EventLoop) {
        switch token.eventKind {
        case .tapPasta:
            readTap(loop: &loop)
            if !events.intersection([.error, .hangup, .readHangup]).isEmpty { Log.die("Tap device error, exiting") }
        case .ping:
            relayEchoReplies(slot: Int(token.data), now: loop.now)
        case .udpReply:
            relayUDPReplies(slot: Int(token.data), fd: token.fd, events: events, now: loop.now)
        case .udpListen:
            relayUDPListener(Int(token.data), fd: token.fd, loop: &loop)
        case .tcp:
            tcp.handleSocketEvent(slot: Int(token.data), fd: token.fd, events: events, now: loop.now, table: &flows,
                                  tap: &egress)
        case .tcpTimer:
            tcp.handleTimer(slot: Int(token.data), fd: token.fd, now: loop.now, table: &flows, tap: &egress)
        case .tcpListen:
            tcpForwarding.accept(Int(token.data), now: loop.now, guest: guest, tcp: &tcp, table: &flows, tap: &egress)
        case .tcpSplice:
            tcpForwarding.handleSpliceEvent(data: token.data, fd: token.fd, events: events)
        case .signal:
            handleSignals(loop: &loop)
        case .nsQuitInotify:
            checkNamespaceDirectory(fd: token.fd, loop: &loop)
        default:
            Log.debug("Unexpected event for token \(token.rawValue)")
        }
    }

    /// Runs the timer identified by `token`'s kind.
    mutating func handleTimer(_ token: EventToken, loop: inout EventLoop) {
        switch PastaTimer(rawValue: token.kind) {
        case .icmpExpiry:
            echo.expire(now: loop.now)
        case .namespacePoll:
            pollNamespace(loop: &loop)
        case .udpExpiry:
            udp.expire(now: loop.now, table: &flows)
            udpForwarding.timer(&udp, loop: &loop)
            tcpForwarding.timer(loop: &loop)
        case .routerAdvertisement:
            if let length = NDPResponder.unsolicitedRouterAdvertisement(config: services, into: outbound.baseAddress!,
                                                                        capacity: outbound.count) {
                egress.send(UnsafeRawBufferPointer(rebasing: outbound[..<length]))
            }
            _ = loop.addDeadlineTimer(at: loop.now &+ ServiceBridge.nextRouterAdvertisementDelay(), token: token)
        case nil:
            break
        }
    }

    // MARK: Tap ingress

    /// Reads frames from the tap until none is left, handling each; frames of one pass are kept
    /// one after the other in the pool until the queued UDP datagrams pointing into it are sent.
    mutating func readTap(loop: inout EventLoop) {
        var offset = 0
        while true {
            if inbound.count - offset < PastaContext.frameCapacity {
                flushBatches(now: loop.now)
                offset = 0
            }
            switch egress.tap.read(into: UnsafeMutableRawBufferPointer(
                rebasing: inbound[offset..<(offset + PastaContext.frameCapacity)])) {
            case .success(0):
                Log.die("EOF on tap device, exiting")
            case .success(let length):
                let frame = UnsafeRawBufferPointer(rebasing: inbound[offset..<(offset + length)])
                egress.pcap.record(frame)
                handleFrame(frame, loop: &loop)
                offset += (length + 15) & ~15
            case .wouldBlock:
                flushBatches(now: loop.now)
                return
            case .failure(let code):
                Log.die("Error reading from tap device: \(SyscallError(code))")
            }
        }
    }

    /// Sends what the read pass queued (UDP datagrams, TCP payload), so its frames can be reused.
    mutating func flushBatches(now: UInt64) {
        udp.flush()
        tcp.flushGuestData(now: now, table: &flows, tap: &egress)
    }

    /// Learns the guest's MAC from `frame`, classifies it and hands it to its handler.
    mutating func handleFrame(_ frame: UnsafeRawBufferPointer, loop: inout EventLoop) {
        let now = loop.now
        guard let ethernet = EthernetFrame(frame.baseAddress!, count: frame.count) else { return }
        egress.guestMAC = ethernet.source
        services.guestMAC = ethernet.source
        let kind = TapIngress.classify(ethernet, guest: &guest)
        if services.ipv6 != nil && services.ipv6?.address == nil, let linkLocal = guest.linkLocalSeen6 {
            services.ipv6?.address = linkLocal
        }
        switch kind {
        case .icmp4(let packet):
            guard !configuration.options.noICMP else { return }
            let outcome = echo.handleRequest(source: packet.source, destination: packet.destination,
                                             message: UnsafeRawBufferPointer(start: packet.payload, count: packet.payloadCount),
                                             now: now)
            registerNewFlow(outcome, loop: &loop)
        case .icmp6(let packet):
            guard !configuration.options.noICMP else { return }
            let outcome = echo.handleRequest(source: packet.source, destination: packet.destination,
                                             message: UnsafeRawBufferPointer(start: packet.upperLayer,
                                                                             count: packet.upperLayerCount),
                                             now: now)
            registerNewFlow(outcome, loop: &loop)
        case .fragment:
            if lastFragmentWarning == 0 || now &- lastFragmentWarning >= PastaContext.fragmentWarningInterval {
                Log.warning("Dropping IPv4 fragments from guest")
                lastFragmentWarning = now
            }
        case .arp:
            answer(frame, with: ARPResponder.answer)
        case .dhcp:
            answer(frame, with: DHCPServer.answer)
        case .ndp:
            guard !configuration.options.noICMP else { return }
            answer(frame, with: NDPResponder.answer)
        case .dhcpv6:
            if answer(frame, with: DHCPv6Server.answer), let assigned = services.ipv6?.address { guest.seen6 = assigned }
        case .transport4(let packet):
            if packet.protocol == IPProtocol.tcp {
                guard !configuration.options.noTCP,
                      let segment = TCPSegment(packet.payload, count: packet.payloadCount) else { return }
                tcp.handleGuestSegment(isIPv6: false, source: IPv6Address(v4Mapped: packet.source),
                                       destination: IPv6Address(v4Mapped: packet.destination), segment: segment,
                                       now: now, table: &flows, tap: &egress)
                return
            }
            guard packet.protocol == IPProtocol.udp, !configuration.options.noUDP,
                  let datagram = UDPDatagram(packet.payload, count: packet.payloadCount) else { return }
            let outcome = udp.handleGuestDatagram(isIPv6: false, source: IPv6Address(v4Mapped: packet.source),
                                                  destination: IPv6Address(v4Mapped: packet.destination),
                                                  datagram: datagram, now: now, table: &flows)
            registerNewUDPFlow(outcome, loop: &loop)
        case .transport6(let packet):
            if packet.upperLayerProtocol == IPProtocol.tcp {
                guard !configuration.options.noTCP,
                      let segment = TCPSegment(packet.upperLayer, count: packet.upperLayerCount) else { return }
                tcp.handleGuestSegment(isIPv6: true, source: packet.source, destination: packet.destination,
                                       segment: segment, now: now, table: &flows, tap: &egress)
                return
            }
            guard packet.upperLayerProtocol == IPProtocol.udp, !configuration.options.noUDP,
                  let datagram = UDPDatagram(packet.upperLayer, count: packet.upperLayerCount) else { return }
            let outcome = udp.handleGuestDatagram(isIPv6: true, source: packet.source, destination: packet.destination,
                                                  datagram: datagram, now: now, table: &flows)
            registerNewUDPFlow(outcome, loop: &loop)
        case .dropped:
            break
        }
    }

    /// Lets `service` answer `frame` and sends its reply, if any; returns whether it replied.
    @discardableResult
    mutating func answer(_ frame: UnsafeRawBufferPointer,
                         with service: (UnsafeRawPointer, Int, ServiceConfig, UnsafeMutableRawPointer, Int) -> Int?) -> Bool {
        guard let length = service(frame.baseAddress!, frame.count, services, outbound.baseAddress!, outbound.count),
              length > 0 else { return false }
        egress.send(UnsafeRawBufferPointer(rebasing: outbound[..<length]))
        return true
    }

    /// Registers the socket of a newly opened echo flow for input, with its slot as token data.
    mutating func registerNewFlow(_ outcome: EchoRequestOutcome, loop: inout EventLoop) {
        guard case .newFlow(let slot, let fd) = outcome else { return }
        if case .failure(let code) = loop.register(fd, events: .input,
                                                   token: EventToken(.ping, fd: fd, data: UInt32(slot))) {
            Log.debug("ICMP: can't watch ping socket: \(SyscallError(code))")
        }
    }

    // MARK: UDP

    /// Registers the socket of a newly opened outbound UDP flow for input, with its slot as token data.
    mutating func registerNewUDPFlow(_ outcome: UDPGuestOutcome, loop: inout EventLoop) {
        guard case .newFlow(let slot, let fd) = outcome else { return }
        if case .failure(let code) = loop.register(fd, events: .input,
                                                   token: EventToken(.udpReply, fd: fd, data: UInt32(slot))) {
            Log.debug("UDP: can't watch flow socket: \(SyscallError(code))")
        }
    }

    /// Drains ICMP errors of flow `slot` and forwards its pending replies to the guest.
    mutating func relayUDPReplies(slot: Int, fd: Int32, events: EpollEvents, now: UInt64) {
        if udp.spliceSocket(ofSlot: slot) == fd { return udp.forwardSpliceReplies(slot: slot, now: now) }
        guard udp.socket(ofSlot: slot) == fd else { return }
        if events.contains(.error) { udp.drainErrors(slot: slot) }
        while let count = udp.receiveReplies(slot: slot, now: now, ourMAC: egress.ourMAC, guestMAC: egress.guestMAC) {
            for index in 0..<count { egress.send(udp.frame(index)) }
        }
    }

    /// Forwards the pending datagrams of listener `index` (socket `fd`) to the guest or, spliced,
    /// to their far-side sockets.
    mutating func relayUDPListener(_ index: Int, fd: Int32, loop: inout EventLoop) {
        guard index < udp.listeners.count, udp.listeners[index].socket == fd else { return }
        while let count = udp.receiveFromListener(index, now: loop.now, ourMAC: egress.ourMAC,
                                                  guestMAC: egress.guestMAC, seen4: guest.seen4, seen6: guest.seen6,
                                                  linkLocalSeen6: guest.linkLocalSeen6, table: &flows) {
            for index in 0..<count { egress.send(udp.frame(index)) }
            udpForwarding.registerNewFlows(&udp, loop: &loop)
        }
    }

    // MARK: ICMP echo

    /// Receives and forwards every pending echo reply of flow `slot`.
    mutating func relayEchoReplies(slot: Int, now: UInt64) {
        while let length = echo.receiveReply(slot: slot, into: outbound, ourMAC: egress.ourMAC,
                                             guestMAC: egress.guestMAC, now: now) {
            if length > 0 { egress.send(UnsafeRawBufferPointer(rebasing: outbound[..<length])) }
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

/// Frames towards the guest: one write(2) per frame on the tap, each captured once sent.
struct Egress: ~Copyable, TCPTap {
    /// The tap device in the target namespace.
    let tap: TapDevice
    /// The -p capture (disabled without -p).
    let pcap: PcapWriter
    /// Our MAC address: the source of every frame we send (-M).
    let ourMAC: MACAddress
    /// The guest's MAC address: the tap's, then the source of the last frame it sent.
    var guestMAC: MACAddress

    /// Writes `frame` to the tap; drops it on the tolerated errors, dies on any other.
    func send(_ frame: UnsafeRawBufferPointer) {
        switch tap.write(frame) {
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
}
