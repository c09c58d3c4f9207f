// What passt and pasta share once a frame is in or out: the guest's state, the services, the
// flows and their host sockets, and the timers that age them (spec §3.3, §4, §5.1, §6, §8, §9).
//
// Theory of operation: the two modes differ only in how frames reach the guest and come back
// (pasta: a tap device, one frame per read/write after a virtio-net header, TCP frames up to
// 64 KiB with partial checksums; passt: qemu's UNIX stream socket with a length in front of
// each frame) and in their set-up (namespaces, listening socket). Everything
// else is a `GuestEngine`, generic over the `GuestLink` that carries frames towards the guest,
// so the frame path is specialised for each link without an existential:
//   - ingress: the mode's reader puts the frames of one read pass one after the other in the
//     engine's `inbound` pool and hands each to `handleFrame`: it is captured (-p), teaches us
//     the guest's MAC, is classified once (TapIngress.swift) and goes to ARP/DHCP/NDP/DHCPv6
//     (answers built in `outbound`), ICMP echo (ping sockets), UDP (UDPFlows) or TCP (TCPFlows).
//     UDP datagrams and in-order TCP payload are queued per flow and sent with one
//     sendmmsg/sendmsg per run of one flow: the reader must call `flushBatches` when its pass
//     ends and before it reuses the pool, since the queues point into it.
//   - host side: ping, UDP reply and listener, TCP connection, timer, listener and splice
//     sockets are registered with the shared `EventKind`s; `handleEvent` dispatches them and
//     the frames they produce go to the link as they are built.
//   - timers: UDP flow expiry and the `auto` rescans every 1 s, ICMP flow expiry every 10 s,
//     unsolicited router advertisements (ServiceBridge.swift) when enabled.
// The port forwarding objects (TCPPortForwarding.swift, UDPPortForwarding.swift) are part of
// the engine; passt builds them without a namespace (no splice, no -T/-U, no `auto`).
import PasstConfig
import PasstFlow
import PasstServices
import PasstSys
import PasstWire
#if canImport(Glibc)
import Glibc
#endif

/// Where frames towards the guest go, and where frames from it are captured.
protocol GuestLink: TCPTap, ~Copyable {
    /// The guest's MAC address: the destination of our frames, learned from every guest frame.
    var guestMAC: MACAddress { get set }
    /// Records `frame`, received from the guest, in the -p capture (before any processing).
    func captureReceived(_ frame: UnsafeRawBufferPointer)
    /// Sends the `count` frames of `udp`'s last receive call to the guest.
    mutating func sendUDPFrames(_ udp: borrowing UDPFlows, count: Int)
}

extension GuestLink where Self: ~Copyable {
    /// Sends the `count` frames of `udp`'s last receive call one by one.
    mutating func sendUDPFrames(_ udp: borrowing UDPFlows, count: Int) {
        for index in 0..<count { send(udp.frame(index), offload: udp.offload(index)) }
    }
}

/// Timers of the daemon loop (the kind byte of their tokens).
enum DaemonTimer: UInt8 {
    /// Closes idle ICMP echo flows (every 10 s, upstream's ICMP timer interval).
    case icmpExpiry = 1
    /// pasta: checks whether the namespace file still exists (every 1 s, procfs/sysfs targets).
    case namespacePoll
    /// Sends an unsolicited router advertisement (random 200-600 s intervals).
    case routerAdvertisement
    /// Closes idle UDP flows and rescans `auto` ports, UDP and TCP (every 1 s).
    case udpExpiry
}

/// The guest-facing state shared by passt and pasta: services, flows, host sockets, timers.
struct GuestEngine<Link: GuestLink & ~Copyable>: ~Copyable {
    /// Largest frame read from or written to the guest (65535 plus the Ethernet header).
    static var frameCapacity: Int { 65536 + EthernetFrame.headerLength }
    /// Size of the ingress pool: frames of one read pass stay here until UDP and TCP batches are sent.
    static var inboundCapacity: Int { 8 * 1024 * 1024 }
    /// Interval of the UDP expiry timer.
    static var udpTimerInterval: UInt64 { SystemClock.nanosecondsPerSecond }
    /// Interval of the ICMP expiry timer.
    static var icmpTimerInterval: UInt64 { 10 * SystemClock.nanosecondsPerSecond }
    /// Minimum interval between two "dropping fragments" warnings.
    static var fragmentWarningInterval: UInt64 { 10 * SystemClock.nanosecondsPerSecond }

    /// The resolved configuration (switches, addresses).
    let configuration: Configuration
    /// Frames towards the guest, the capture file and the MAC addresses.
    var link: Link
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
    /// Frames from the guest land here, one after the other in a read pass (allocated once).
    let inbound: UnsafeMutableRawBufferPointer
    /// Frames towards the guest are built here (allocated once).
    let outbound: UnsafeMutableRawBufferPointer
    /// When fragments were last warned about (monotonic ns; 0: never).
    var lastFragmentWarning: UInt64 = 0

    /// Builds the engine around `link`, the guest's MAC and link-local address as known at set-up.
    init(configuration: Configuration, link: consuming Link, guestMAC: MACAddress, guestLinkLocal: IPv6Address?,
         udpListeners: [UDPListener], udpForwarding: consuming UDPPortForwarding,
         tcpForwarding: consuming TCPPortForwarding) {
        self.configuration = configuration
        self.link = link
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
        inbound = .allocate(byteCount: Self.inboundCapacity, alignment: 16)
        outbound = .allocate(byteCount: Self.frameCapacity, alignment: 16)
    }

    deinit {
        inbound.deallocate()
        outbound.deallocate()
    }

    /// Registers the listeners and the timers with `loop`.
    mutating func register(with loop: inout EventLoop) throws(PastaSetupError) {
        if !configuration.options.noICMP {
            _ = loop.addPeriodicTimer(every: Self.icmpTimerInterval, token: EventToken(kind: DaemonTimer.icmpExpiry.rawValue))
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
        _ = loop.addPeriodicTimer(every: Self.udpTimerInterval, token: EventToken(kind: DaemonTimer.udpExpiry.rawValue))
        if configuration.routerAdvertisementsEnabled {
            _ = loop.addDeadlineTimer(at: loop.now &+ ServiceBridge.nextRouterAdvertisementDelay(),
                                      token: EventToken(kind: DaemonTimer.routerAdvertisement.rawValue))
        }
    }

    // MARK: Host-side events

    /// Dispatches one ready host-side descriptor (ping, UDP, TCP) by its kind.
    mutating func handleEvent(_ token: EventToken, events: EpollEvents, loop: inout EventLoop) {
        switch token.eventKind {
        case .ping:
            relayEchoReplies(slot: Int(token.data), now: loop.now)
        case .udpReply:
            relayUDPReplies(slot: Int(token.data), fd: token.fd, events: events, now: loop.now)
        case .udpListen:
            relayUDPListener(Int(token.data), fd: token.fd, loop: &loop)
        case .tcp:
            tcp.handleSocketEvent(token, events: events, now: loop.now, table: &flows, tap: &link)
        case .tcpTimer:
            tcp.handleTimerEvent(token, now: loop.now, table: &flows, tap: &link)
        case .tcpListen:
            tcpForwarding.accept(Int(token.data), now: loop.now, guest: guest, tcp: &tcp, table: &flows, tap: &link)
        case .tcpSplice:
            tcpForwarding.handleSpliceEvent(token, events: events)
        default:
            Log.debug("Unexpected event for token \(token.rawValue)")
        }
    }

    /// Runs the engine's timer identified by `token`'s kind (`timer`).
    mutating func handleTimer(_ timer: DaemonTimer, token: EventToken, loop: inout EventLoop) {
        switch timer {
        case .icmpExpiry:
            echo.expire(now: loop.now)
        case .udpExpiry:
            udp.expire(now: loop.now, table: &flows)
            udpForwarding.timer(&udp, loop: &loop)
            tcpForwarding.timer(loop: &loop)
        case .routerAdvertisement:
            if let length = NDPResponder.unsolicitedRouterAdvertisement(config: services, into: outbound.baseAddress!,
                                                                        capacity: outbound.count) {
                link.send(UnsafeRawBufferPointer(rebasing: outbound[..<length]))
            }
            _ = loop.addDeadlineTimer(at: loop.now &+ ServiceBridge.nextRouterAdvertisementDelay(), token: token)
        case .namespacePoll:
            break
        }
    }

    // MARK: Guest frames

    /// Sends what the read pass queued (UDP datagrams, TCP payload), so its frames can be reused.
    mutating func flushBatches(now: UInt64) {
        udp.flush()
        tcp.flushGuestData(now: now, table: &flows, tap: &link)
    }

    /// Captures `frame`, learns the guest's MAC from it, classifies it and hands it to its handler.
    mutating func handleFrame(_ frame: UnsafeRawBufferPointer, loop: inout EventLoop) {
        link.captureReceived(frame)
        let now = loop.now
        guard let ethernet = EthernetFrame(frame.baseAddress!, count: frame.count) else { return }
        link.guestMAC = ethernet.source
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
            if lastFragmentWarning == 0 || now &- lastFragmentWarning >= Self.fragmentWarningInterval {
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
                                       now: now, table: &flows, tap: &link)
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
                                       segment: segment, now: now, table: &flows, tap: &link)
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
        link.send(UnsafeRawBufferPointer(rebasing: outbound[..<length]))
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
        while let count = udp.receiveReplies(slot: slot, now: now, ourMAC: link.ourMAC, guestMAC: link.guestMAC) {
            link.sendUDPFrames(udp, count: count)
        }
    }

    /// Forwards the pending datagrams of listener `index` (socket `fd`) to the guest or, spliced,
    /// to their far-side sockets.
    mutating func relayUDPListener(_ index: Int, fd: Int32, loop: inout EventLoop) {
        guard index < udp.listeners.count, udp.listeners[index].socket == fd else { return }
        while let count = udp.receiveFromListener(index, now: loop.now, ourMAC: link.ourMAC,
                                                  guestMAC: link.guestMAC, seen4: guest.seen4, seen6: guest.seen6,
                                                  linkLocalSeen6: guest.linkLocalSeen6, table: &flows) {
            link.sendUDPFrames(udp, count: count)
            udpForwarding.registerNewFlows(&udp, loop: &loop)
        }
    }

    // MARK: ICMP echo

    /// Receives and forwards every pending echo reply of flow `slot`.
    mutating func relayEchoReplies(slot: Int, now: UInt64) {
        while let length = echo.receiveReply(slot: slot, into: outbound, ourMAC: link.ourMAC,
                                             guestMAC: link.guestMAC, now: now) {
            if length > 0 { link.send(UnsafeRawBufferPointer(rebasing: outbound[..<length])) }
        }
    }
}
