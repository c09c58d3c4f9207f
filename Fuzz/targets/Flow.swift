// Fuzz target `flow`: guest frames through the flow layer (PasstFlow: TCP, UDP, ICMP echo) as the
// daemon hands them over after classification (PasstCore/GuestEngine.swift), with real host
// sockets that only ever reach loopback, a fake tap and a fake clock. The flows also forward one
// TCP and one UDP port per family from the host's loopback to the guest (-t, -u), served like
// GuestEngine.handleEvent does.
//
// Input: one configuration byte, then records. Configuration: bit 0 / bit 1: the guest's IPv4 /
// IPv6 address is known at start (as TapIngress's GuestAddresses); bit 2: MTU 65520, else 1500;
// bits 3-4: flow table capacity 64, 5, 3 or 16 keys; bits 5-6: 16, 1, 2 or 4 slots each for TCP,
// UDP and echo flows; bit 7: no -o address (only honoured in the private network namespace).
// Each record starts with an op byte whose low 2 bits say what it is (at most 64 records):
//   0  a guest frame: 2-byte big-endian length (a short last frame takes what is left), then the
//      Ethernet frame. Op bits 2-3 pick its destination (see `FlowRig.confine`; 2 is, for TCP, the
//      newest host client of a forwarded port), bit 4 ends the read pass after it, bit 5 makes a
//      TCP acknowledgment number relative (it is added to the next sequence number we sent on that
//      connection, so 0 acknowledges everything we sent) and sends UDP to the newest host client
//      of a forwarded port.
//   1  the fake clock advances by `clockSteps[op >> 2 & 15]`; every TCP timer is run, idle UDP and
//      echo flows expire.
//   2  the host side acts on connection `op >> 2 & 7` (modulo how many there are: accepted by our
//      servers or connected to a forwarded port): `op >> 5` is 0 send 100 bytes, 1 send 64 KiB,
//      2 shutdown(SHUT_WR), 3 close with RST, 4 close, 5 read everything, 6/7 the IPv4/IPv6 UDP
//      echo server sends a datagram unasked.
//   3  the read pass ends; then `op >> 2 & 7` = 1/2: a host client connects to the IPv4/IPv6
//      forwarded TCP port (-t, to guest port 22), 3/4: the IPv4/IPv6 host client sends
//      1 + 100 * (op >> 5) bytes to the forwarded UDP port (-u, to guest port 5353).
// Frames of one read pass stay allocated (one exact-size heap block each, as AddressSanitizer
// needs to see overreads) until the pass ends with the UDP and TCP flushes (GuestEngine's
// flushBatches): at most 16 frames, and before any other record. Between records the harness
// services its loopback servers and dispatches the flows' epoll events, without blocking.
//
// Confinement: the only network traffic is to this process's own sockets on loopback. When the
// process may (root), it moves into a network namespace of its own on first use, with only `lo`
// up, so no route leads anywhere else. Then, independently of that, every guest frame's destination
// is rewritten before classification to one of the addresses the forwarding rules translate to
// 127.0.0.1 / ::1 (the map-host-loopback gateway, and the DNS match address with port 53 when
// the namespace is private), its TCP or UDP destination port to one of our servers' ports or our
// host clients' ports, and the translated destination is checked to be loopback before a flow
// handler sees the frame (a harness bug there stops the fuzzer); the -o address is 127.0.0.1 /
// ::1 (outside the private namespace always), so the flows' sockets are bound to loopback too.
//
// Invariants: no crash or sanitizer report; every frame sent towards the guest parses back with
// consistent Ethernet, IP and L4 lengths, valid IPv4 header, TCP, UDP and ICMP checksums, from an
// address and port the guest talked to (or a host client's port) and to an address and port the
// guest used (or a forwarded port's target), SYNs with an MSS option; the flow table
// holds one key per TCP connection and two per UDP flow, and no count exceeds its capacity; after
// the input, 6 x 61 s of fake time leave no TCP handshake pending and no UDP or echo flow, a RST
// from the guest for every connection it saw (and 181 s more) leaves every table empty; the
// number of open file descriptors stays bounded: at most 4 over the first run's, plus the one
// timerfd each configuration's TCP connections share (checked every 64 runs). The TCPFlows of each
// configuration live for the whole process, as in the daemon (see `KeptFlows`).
import CPasstShim
import Glibc
import PasstConfig
import PasstFlow
import PasstSys
import PasstWire

// MARK: Addresses and ports

/// The guest's network as the harness configures it.
enum Net {
    static let gateway4 = IPv4Address(192, 0, 2, 1)
    static let dns4 = IPv4Address(192, 0, 2, 53)
    static let guest4 = IPv4Address(192, 0, 2, 2)
    static let gateway6 = IPv6Address(high: 0x2001_0db8 << 32, low: 1)
    static let dns6 = IPv6Address(high: 0x2001_0db8 << 32, low: 0x53)
    static let guest6 = IPv6Address(high: 0x2001_0db8 << 32, low: 2)
    static let linkLocal6 = IPv6Address(high: 0xfe80 << 48, low: 1)
    static let ourMAC = MACAddress(0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55)
    static let guestMAC = MACAddress(0x02, 0, 0, 0, 0, 0x01)
    static let second: UInt64 = 1_000_000_000
    /// Token kinds of the harness's epoll instance.
    static let tcpSocketKind: UInt8 = 1
    static let tcpTimerKind: UInt8 = 2
    static let udpReplyKind: UInt8 = 3
    static let pingKind: UInt8 = 4
    static let tcpListenKind: UInt8 = 5
    static let udpListenKind: UInt8 = 6
    /// Guest ports the forwarded host ports lead to.
    static let tcpTargetPort: UInt16 = 22
    static let udpTargetPort: UInt16 = 5353

    /// The translation rules: gateway and DNS match map to loopback, sockets bound to loopback
    /// unless `outbound` is false.
    static func rules(outbound: Bool) -> ForwardingRules {
        var rules = ForwardingRules()
        if outbound {
            rules.outboundAddress4 = .loopback
            rules.outboundAddress6 = .loopback
        }
        rules.mapHostLoopback4 = gateway4
        rules.mapHostLoopback6 = gateway6
        rules.dnsMatch4 = dns4
        rules.dnsHost4 = .loopback
        rules.dnsMatch6 = dns6
        rules.dnsHost6 = .loopback
        rules.guestAddress4 = guest4
        rules.guestAddress6 = guest6
        rules.ourTapAddress4 = gateway4
        rules.ourLinkLocal6 = linkLocal6
        return rules
    }

    /// Whether a host-side destination is loopback (127/8, ::1, or v4-mapped 127/8).
    static func isLoopback(_ address: IPv6Address) -> Bool {
        address.isLoopback || (address.v4Mapped?.isLoopback ?? false)
    }
}

/// Fake clock steps (ns) of clock records: around the ACK interval, ACK, SYN, FIN and idle timeouts.
let clockSteps: [UInt64] = [0, 1_000_000, 5_000_000, 10_000_000, 11_000_000, 100_000_000, Net.second,
                            2 * Net.second, 2_100_000_000, 5 * Net.second, 10 * Net.second, 30 * Net.second,
                            60 * Net.second, 61 * Net.second, 180 * Net.second, 181 * Net.second]

/// The ports of our servers on one family's loopback address.
struct ServerPorts {
    var tcpOpen: UInt16 = 0, tcpClosed: UInt16 = 0
    var udpEcho: UInt16 = 0, udpClosed: UInt16 = 0, udpSink: UInt16 = 0
    /// Whether port 53 is ours too (DNS redirect choices are used).
    var dns = false

    /// Every port a frame towards the guest may come from.
    func contains(_ port: UInt16) -> Bool {
        port == tcpOpen || port == tcpClosed || port == udpEcho || port == udpClosed || port == udpSink
            || (dns && port == 53)
    }
}

// MARK: Loopback servers (set up once per process)

/// The harness's own sockets on 127.0.0.1 and ::1, the only peers the flows ever reach.
struct LoopbackServers {
    /// In a network namespace of our own (only lo).
    var isolated = false
    var ports4 = ServerPorts(), ports6 = ServerPorts()
    /// Listening TCP sockets, UDP sockets that echo (index 0: IPv4, 1: IPv6, then DNS ones) and
    /// UDP sockets that never answer.
    var tcpListeners: [Int32] = []
    var udpEchoes: [Int32] = []
    var udpSinks: [Int32] = []
    /// Sockets on port 53 (TCP, UDP per family), before they join the lists above.
    var dnsSockets: [Int32] = []
    /// The forwarded ports (-t, -u) of the flows: the host side connects or sends to them.
    var tcpForwarded: [TCPListener] = []
    var udpForwarded: [UDPListener] = []
    /// UDP sockets that send to the forwarded UDP ports (IPv4, IPv6), and their ports.
    var udpClients: [Int32] = []
    var udpClientPorts: [UInt16] = []
    /// The last peer of the IPv4 and IPv6 echo sockets (for unasked datagrams).
    var lastPeer: [SocketAddress] = [SocketAddress(), SocketAddress()]
    /// Connections accepted in this run.
    var accepted: [Int32] = []
    /// Scratch for received data and data to send.
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
    /// The epoll instance of the server sockets, and room for its events.
    var epollFD: Int32 = -1
    let readyEvents = UnsafeMutablePointer<epoll_event>.allocate(capacity: 16)

    /// Moves into a private network namespace if possible and opens the servers.
    init() {
        buffer.initializeMemory(as: UInt8.self, repeating: 0x5a)
        isolated = LoopbackServers.enterPrivateNamespace()
        for (index, ipv4) in [true, false].enumerated() {
            var ports = ServerPorts()
            let address: IPv6Address = ipv4 ? IPv6Address(v4Mapped: .loopback) : .loopback
            let fixed = isolated
            let (listener, tcpPort) = LoopbackServers.open(address, ipv4: ipv4, type: SOCK_STREAM, port: fixed ? 8000 : 0)
            tcpListeners.append(listener)
            ports.tcpOpen = tcpPort
            ports.tcpClosed = fixed ? 8001 : LoopbackServers.unusedPort(address, ipv4: ipv4, type: SOCK_STREAM)
            let (echo, echoPort) = LoopbackServers.open(address, ipv4: ipv4, type: SOCK_DGRAM, port: fixed ? 8000 : 0)
            udpEchoes.append(echo)
            ports.udpEcho = echoPort
            ports.udpClosed = fixed ? 8001 : LoopbackServers.unusedPort(address, ipv4: ipv4, type: SOCK_DGRAM)
            let (sink, sinkPort) = LoopbackServers.open(address, ipv4: ipv4, type: SOCK_DGRAM, port: fixed ? 8002 : 0)
            udpSinks.append(sink)
            ports.udpSink = sinkPort
            if isolated {
                dnsSockets.append(LoopbackServers.open(address, ipv4: ipv4, type: SOCK_STREAM, port: 53).0)
                dnsSockets.append(LoopbackServers.open(address, ipv4: ipv4, type: SOCK_DGRAM, port: 53).0)
                ports.dns = true
            }
            let (tcpForward, tcpForwardPort) = LoopbackServers.open(address, ipv4: ipv4, type: SOCK_STREAM,
                                                                    port: fixed ? 8100 : 0)
            tcpForwarded.append(TCPListener(socket: tcpForward, port: tcpForwardPort, targetPort: Net.tcpTargetPort))
            let (udpForward, udpForwardPort) = LoopbackServers.open(address, ipv4: ipv4, type: SOCK_DGRAM,
                                                                    port: fixed ? 8200 : 0)
            udpForwarded.append(UDPListener(socket: udpForward, port: udpForwardPort, targetPort: Net.udpTargetPort,
                                            address: address))
            let (client, clientPort) = LoopbackServers.open(address, ipv4: ipv4, type: SOCK_DGRAM, port: 0)
            udpClients.append(client)
            udpClientPorts.append(clientPort)
            if index == 0 { ports4 = ports } else { ports6 = ports }
        }
        // Echo sockets: IPv4, IPv6, then the DNS ones; the UDP clients only receive, like sinks.
        for (index, fd) in dnsSockets.enumerated() {
            if index % 2 == 0 { tcpListeners.append(fd) } else { udpEchoes.append(fd) }
        }
        udpSinks += udpClients
        watchAll()
        let note = "flow: \(isolated ? "private network namespace" : "NOT isolated (no private namespace)"), "
            + "servers on 127.0.0.1 \(ports4) and ::1 \(ports6)\n"
        _ = note.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    }

    /// unshare(CLONE_NEWNET), lo up, ping sockets allowed, a wide ephemeral port range; false
    /// (still in the original namespace) if unsharing fails.
    static func enterPrivateNamespace() -> Bool {
        guard case .success = Namespaces.unshare(.network) else { return false }
        do {
            let netlink = try Netlink()
            guard let lo = try netlink.link(named: "lo") else { fatalError("flow: no lo in the new namespace") }
            try netlink.setLinkUp(index: lo.index)
        } catch {
            fatalError("flow: can't bring lo up: \(error)")
        }
        writeSysctl("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
        writeSysctl("/proc/sys/net/ipv4/ip_local_port_range", "10000 65000")
        return true
    }

    /// Writes `value` to the sysctl file at `path` (best effort).
    static func writeSysctl(_ path: String, _ value: String) {
        let fd = Glibc.open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = value.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }

    /// A non-blocking socket of `type` bound to `address` (listening for TCP); it and its port.
    static func open(_ address: IPv6Address, ipv4: Bool, type: __socket_type, port: UInt16) -> (Int32, UInt16) {
        let fd = socket(ipv4 ? AF_INET : AF_INET6, Int32(type.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
                        | Int32(SOCK_CLOEXEC.rawValue), 0)
        precondition(fd >= 0, "flow: socket: \(errno)")
        if !ipv4 { _ = Sys.setOption(fd, level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, Int32(1)) }
        if type == SOCK_STREAM { _ = Sys.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, Int32(1)) }
        var local = SocketAddress(address, port: port, ipv4Socket: ipv4)
        let bound = withUnsafeBytes(of: &local.storage) { Sys.bind(fd, $0.baseAddress!, length: local.length) }
        guard case .success = bound else { fatalError("flow: bind to \(address) port \(port): \(errno)") }
        if type == SOCK_STREAM { _ = Sys.listen(fd, backlog: 128) }
        return (fd, boundPort(fd))
    }

    /// The local port of `fd`.
    static func boundPort(_ fd: Int32) -> UInt16 {
        var storage = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        _ = withUnsafeMutableBytes(of: &storage) {
            getsockname(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
        }
        return UInt16(bigEndian: storage.sin6_port)   // sin_port and sin6_port share the offset
    }

    /// A port that nothing listens on (bound once, then closed).
    static func unusedPort(_ address: IPv6Address, ipv4: Bool, type: __socket_type) -> UInt16 {
        let (fd, port) = open(address, ipv4: ipv4, type: type, port: 0)
        close(fd)
        return port
    }

    /// Registers every server socket with `epollFD` (level-triggered; the data is its index in
    /// `tcpListeners + udpEchoes + udpSinks`): accept(2) on an empty queue costs a socket
    /// allocation in the kernel, so sockets are only served when ready.
    mutating func watchAll() {
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epollFD >= 0, "flow: epoll_create1: \(errno)")
        for (index, fd) in (tcpListeners + udpEchoes + udpSinks).enumerated() {
            var event = epoll_event()
            event.events = EPOLLIN.rawValue
            event.data.u64 = UInt64(index)
            precondition(epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0, "flow: epoll_ctl: \(errno)")
        }
    }

    /// Accepts pending connections, echoes pending datagrams, drains the sinks; whether anything happened.
    mutating func serve() -> Bool {
        let ready = Int(epoll_wait(epollFD, readyEvents, 16, 0))
        guard ready > 0 else { return false }
        for event in 0..<ready {
            var index = Int(readyEvents[event].data.u64)
            if index < tcpListeners.count {
                while case .success(let owned) = Sys.accept(tcpListeners[index]) {
                    let fd = owned.release()
                    if accepted.count < 16 { accepted.append(fd) } else { LoopbackServers.reset(fd) }
                }
                continue
            }
            index -= tcpListeners.count
            if index < udpEchoes.count {
                echo(index)
                continue
            }
            let fd = udpSinks[index - udpEchoes.count]
            while recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT)) >= 0 {}
        }
        return true
    }

    /// Sends every datagram pending on echo socket `index` back to its sender.
    mutating func echo(_ index: Int) {
        let fd = udpEchoes[index]
        while true {
            var peer = SocketAddress()
            var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            let count = withUnsafeMutableBytes(of: &peer.storage) {
                recvfrom(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT),
                         $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
            }
            if count < 0 { return }
            peer.length = length
            if index < 2 { lastPeer[index] = peer }
            _ = withUnsafeBytes(of: &peer.storage) {
                sendto(fd, buffer.baseAddress, count, Int32(MSG_DONTWAIT),
                       $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
            }
        }
    }

    /// Runs server action `action` (0-7) on accepted connection `index`.
    mutating func act(_ action: Int, on index: Int) {
        if action >= 6 {
            let family = action - 6
            var peer = lastPeer[family]
            guard peer.length > 0 else { return }
            _ = withUnsafeBytes(of: &peer.storage) {
                sendto(udpEchoes[family], buffer.baseAddress, 37, Int32(MSG_DONTWAIT),
                       $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), peer.length)
            }
            return
        }
        guard !accepted.isEmpty else { return }
        let slot = index % accepted.count
        let fd = accepted[slot]
        switch action {
        case 0: _ = send(fd, buffer.baseAddress, 100, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
        case 1: _ = send(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
        case 2: _ = shutdown(fd, Int32(SHUT_WR))
        case 3, 4:
            if action == 3 { LoopbackServers.reset(fd) } else { close(fd) }
            accepted.remove(at: slot)
        default: while recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT)) > 0 {}
        }
    }

    /// Connects a new host client to the forwarded TCP port of a family (it then counts as an
    /// accepted connection for `act`); returns its port, nil if none was made.
    mutating func connectForwarded(ipv6: Bool) -> UInt16? {
        guard accepted.count < 16 else { return nil }
        let listener = tcpForwarded[ipv6 ? 1 : 0]
        let fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
                        | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        var remote = SocketAddress(ipv6 ? .loopback : IPv6Address(v4Mapped: .loopback), port: listener.port,
                                   ipv4Socket: !ipv6)
        _ = withUnsafeBytes(of: &remote.storage) { Sys.connect(fd, $0.baseAddress!, length: remote.length) }
        accepted.append(fd)
        return LoopbackServers.boundPort(fd)
    }

    /// Sends a datagram of `length` bytes from the family's UDP client to its forwarded UDP port.
    func sendForwarded(ipv6: Bool, length: Int) {
        let index = ipv6 ? 1 : 0
        var remote = SocketAddress(ipv6 ? .loopback : IPv6Address(v4Mapped: .loopback), port: udpForwarded[index].port,
                                   ipv4Socket: !ipv6)
        _ = withUnsafeBytes(of: &remote.storage) {
            sendto(udpClients[index], buffer.baseAddress, length, Int32(MSG_DONTWAIT),
                   $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), remote.length)
        }
    }

    /// Closes `fd` with a RST (SO_LINGER 0): no TIME_WAIT on either side.
    static func reset(_ fd: Int32) {
        _ = Sys.setOption(fd, level: SOL_SOCKET, name: SO_LINGER, linger(l_onoff: 1, l_linger: 0))
        close(fd)
    }

    /// End of a run: every connection accepted or still queued is reset, datagrams are dropped.
    mutating func closeAll() {
        _ = serve()
        for fd in accepted { LoopbackServers.reset(fd) }
        accepted.removeAll(keepingCapacity: true)
        lastPeer = [SocketAddress(), SocketAddress()]
    }
}

nonisolated(unsafe) var servers: LoopbackServers?

// MARK: What the guest did, and the check of every frame towards it

/// A TCP connection as the guest sees it (for relative acknowledgment numbers and the final RSTs).
struct GuestConnection: Equatable {
    var isIPv6: Bool
    var guest: IPv6Address, guestPort: UInt16
    var peer: IPv6Address, peerPort: UInt16
}

/// What the guest sent in this run: its addresses and ports, its TCP connections and the next
/// sequence number we sent on each.
struct Ledger {
    var sources: [IPv6Address] = []
    var sourcePorts: [UInt16] = []
    /// Ports of the host clients of forwarded ports, and the newest one of each family that
    /// reached the guest (TCP and UDP, [IPv4, IPv6]): where the guest's replies go.
    var hostPorts: [UInt16] = []
    var inboundTCP: [UInt16?] = [nil, nil]
    var inboundUDP: [UInt16?] = [nil, nil]
    var connections: [GuestConnection] = []
    var nextSequence: [(GuestConnection, UInt32)] = []
    var ports4 = ServerPorts(), ports6 = ServerPorts()
    var frames = 0

    mutating func reset(ports4: ServerPorts, ports6: ServerPorts, hostPorts: [UInt16], assigned: [IPv6Address]) {
        sources.removeAll(keepingCapacity: true)
        sources += assigned
        sourcePorts.removeAll(keepingCapacity: true)
        self.hostPorts.removeAll(keepingCapacity: true)
        self.hostPorts += hostPorts
        inboundTCP = [nil, nil]
        inboundUDP = [nil, nil]
        connections.removeAll(keepingCapacity: true)
        nextSequence.removeAll(keepingCapacity: true)
        self.ports4 = ports4
        self.ports6 = ports6
        frames = 0
    }

    mutating func noteSource(_ address: IPv6Address, port: UInt16?) {
        if !sources.contains(address) { sources.append(address) }
        if let port, !sourcePorts.contains(port) { sourcePorts.append(port) }
    }

    mutating func noteConnection(_ connection: GuestConnection) {
        if !connections.contains(connection) { connections.append(connection) }
    }

    /// The next sequence number we sent on `connection`, nil if we sent nothing yet.
    func sequence(of connection: GuestConnection) -> UInt32? {
        nextSequence.first { $0.0 == connection }?.1
    }

    /// Records that we sent up to `end` on `connection` (a SYN starts over).
    mutating func sent(_ connection: GuestConnection, upTo end: UInt32, syn: Bool) {
        if let index = nextSequence.firstIndex(where: { $0.0 == connection }) {
            if syn || TCPSequence.less(nextSequence[index].1, end) { nextSequence[index].1 = end }
        } else {
            nextSequence.append((connection, end))
        }
    }
}

nonisolated(unsafe) var ledger = Ledger()

/// FLOW_TRACE=1 in the environment prints what goes to and from the guest (to read a reproducer).
let tracing = getenv("FLOW_TRACE") != nil

/// One line of the trace.
func trace(_ line: @autoclosure () -> String) {
    if tracing { print(line()) }
}

/// The tap: checks and counts every frame sent towards the guest.
struct CheckingTap: TCPTap {
    var ourMAC: MACAddress { Net.ourMAC }
    var guestMAC: MACAddress { Net.guestMAC }

    mutating func send(_ frame: UnsafeRawBufferPointer) {
        let copy = UnsafeMutableRawPointer.allocate(byteCount: max(frame.count, 1), alignment: 8)
        defer { copy.deallocate() }
        copy.copyMemory(from: frame.baseAddress!, byteCount: frame.count)
        checkGuestFrame(UnsafeRawPointer(copy), count: frame.count)
        ledger.frames += 1
        if tracing { trace("  to guest: \(describe(UnsafeRawPointer(copy), count: frame.count))") }
    }
}

/// Checks one frame towards the guest (in a heap block of exactly `count` bytes).
func checkGuestFrame(_ p: UnsafeRawPointer, count: Int) {
    require(count >= EthernetFrame.headerLength + 20 && count <= EthernetFrame.headerLength + 65535,
            "frame length \(count)")
    let ethernet = EthernetFrame(p, count: count)!
    require(ethernet.destination == Net.guestMAC && ethernet.source == Net.ourMAC, "frame MAC addresses")
    switch ethernet.etherType {
    case EtherType.ipv4:
        guard let ip = IPv4Packet(ethernet.payload, count: ethernet.payloadCount) else {
            return require(false, "IPv4 frame does not parse")
        }
        require(ip.headerLength == 20 && ip.totalLength == ethernet.payloadCount, "IPv4 lengths \(ip.totalLength)")
        require(ip.isChecksumValid && !ip.isFragment && ip.ttl > 0, "IPv4 header checksum or flags")
        require(ip.source == Net.gateway4 || ip.source == Net.dns4, "IPv4 source \(ip.source)")
        let destination = IPv6Address(v4Mapped: ip.destination)
        require(ledger.sources.contains(destination), "IPv4 destination \(ip.destination) the guest never used")
        switch ip.protocol {
        case IPProtocol.tcp:
            guard let tcp = TCPSegment(ip.payload, count: ip.payloadCount) else { return require(false, "TCP parse") }
            require(tcp.isChecksumValid(source: ip.source, destination: ip.destination), "TCP checksum (IPv4)")
            checkTCP(tcp, isIPv6: false, source: IPv6Address(v4Mapped: ip.source), destination: destination)
        case IPProtocol.udp:
            guard let udp = UDPDatagram(ip.payload, count: ip.payloadCount) else { return require(false, "UDP parse") }
            require(udp.length == ip.payloadCount, "UDP length \(udp.length) in \(ip.payloadCount)")
            require(udp.isChecksumValid(source: ip.source, destination: ip.destination), "UDP checksum (IPv4)")
            checkPorts(udp.sourcePort, udp.destinationPort, ports: ledger.ports4)
            if udp.destinationPort == Net.udpTargetPort { ledger.inboundUDP[0] = udp.sourcePort }
        case IPProtocol.icmp:
            guard let icmp = ICMPv4Packet(ip.payload, count: ip.payloadCount), icmp.echo != nil else {
                return require(false, "ICMP parse")
            }
            require(icmp.isChecksumValid && icmp.type == ICMPv4Type.echoReply, "ICMP echo reply checksum or type")
            require(ip.source == Net.gateway4, "ICMP reply from \(ip.source)")
        default:
            require(false, "IPv4 protocol \(ip.protocol)")
        }
    case EtherType.ipv6:
        guard let ip = IPv6Packet(ethernet.payload, count: ethernet.payloadCount) else {
            return require(false, "IPv6 frame does not parse")
        }
        require(IPv6Packet.headerLength + ip.payloadLength == ethernet.payloadCount
                && ip.upperLayerOffset == IPv6Packet.headerLength && !ip.isFragment, "IPv6 lengths")
        require(ip.hopLimit > 0, "IPv6 hop limit")
        require(ip.source == Net.gateway6 || ip.source == Net.dns6, "IPv6 source \(ip.source)")
        require(ledger.sources.contains(ip.destination), "IPv6 destination \(ip.destination) the guest never used")
        switch ip.upperLayerProtocol {
        case IPProtocol.tcp:
            guard let tcp = TCPSegment(ip.upperLayer, count: ip.upperLayerCount) else { return require(false, "TCP parse") }
            require(tcp.isChecksumValid(source: ip.source, destination: ip.destination), "TCP checksum (IPv6)")
            checkTCP(tcp, isIPv6: true, source: ip.source, destination: ip.destination)
        case IPProtocol.udp:
            guard let udp = UDPDatagram(ip.upperLayer, count: ip.upperLayerCount) else { return require(false, "UDP parse") }
            require(udp.length == ip.upperLayerCount, "UDP length \(udp.length) in \(ip.upperLayerCount)")
            require(udp.isChecksumValid(source: ip.source, destination: ip.destination), "UDP checksum (IPv6)")
            checkPorts(udp.sourcePort, udp.destinationPort, ports: ledger.ports6)
            if udp.destinationPort == Net.udpTargetPort { ledger.inboundUDP[1] = udp.sourcePort }
        case IPProtocol.icmpv6:
            guard let icmp = ICMPv6Packet(ip.upperLayer, count: ip.upperLayerCount), icmp.echo != nil else {
                return require(false, "ICMPv6 parse")
            }
            require(icmp.isChecksumValid(source: ip.source, destination: ip.destination)
                    && icmp.type == ICMPv6Type.echoReply, "ICMPv6 echo reply checksum or type")
            require(ip.source == Net.gateway6, "ICMPv6 reply from \(ip.source)")
        default:
            require(false, "IPv6 next header \(ip.upperLayerProtocol)")
        }
    default:
        require(false, "EtherType \(ethernet.etherType)")
    }
}

/// A one-line summary of a frame (for the trace).
func describe(_ p: UnsafeRawPointer, count: Int) -> String {
    guard let ethernet = EthernetFrame(p, count: count) else { return "runt of \(count) bytes" }
    var source = "", destination = "", proto: UInt8 = 0, l4 = ethernet.payload, l4Count = 0
    if let ip = IPv4Packet(ethernet.payload, count: ethernet.payloadCount), ethernet.etherType == EtherType.ipv4 {
        (source, destination, proto, l4, l4Count) = ("\(ip.source)", "\(ip.destination)", ip.protocol, ip.payload,
                                                   ip.payloadCount)
    } else if let ip = IPv6Packet(ethernet.payload, count: ethernet.payloadCount), ethernet.etherType == EtherType.ipv6 {
        (source, destination, proto, l4, l4Count) = ("\(ip.source)", "\(ip.destination)", ip.upperLayerProtocol,
                                                   ip.upperLayer, ip.upperLayerCount)
    } else {
        return "EtherType \(ethernet.etherType), \(count) bytes"
    }
    if proto == IPProtocol.tcp, let tcp = TCPSegment(l4, count: l4Count) {
        return "TCP \(source):\(tcp.sourcePort) > \(destination):\(tcp.destinationPort) flags \(tcp.flags.rawValue) "
            + "seq \(tcp.sequenceNumber) ack \(tcp.acknowledgmentNumber) win \(tcp.window) len \(tcp.payloadCount)"
    }
    if proto == IPProtocol.udp, let udp = UDPDatagram(l4, count: l4Count) {
        return "UDP \(source):\(udp.sourcePort) > \(destination):\(udp.destinationPort) len \(udp.payloadCount)"
    }
    return "IP protocol \(proto) \(source) > \(destination) len \(l4Count)"
}

/// Checks that a datagram or segment comes from one of our server or host client ports to a
/// port the guest used or a forwarded port's target.
func checkPorts(_ source: UInt16, _ destination: UInt16, ports: ServerPorts) {
    require(ports.contains(source) || ledger.hostPorts.contains(source), "source port \(source) is none of ours")
    require(ledger.sourcePorts.contains(destination) || destination == Net.tcpTargetPort
            || destination == Net.udpTargetPort, "destination port \(destination) the guest never used")
}

/// Checks a TCP segment towards the guest and records how far we sent.
func checkTCP(_ tcp: TCPSegment, isIPv6: Bool, source: IPv6Address, destination: IPv6Address) {
    checkPorts(tcp.sourcePort, tcp.destinationPort, ports: isIPv6 ? ledger.ports6 : ledger.ports4)
    let flags = tcp.flags
    require(!(flags.contains(.syn) && flags.contains(.fin)) && !(flags.contains(.syn) && flags.contains(.rst)),
            "TCP flags \(flags.rawValue)")
    let options = tcp.options
    require(!options.isMalformed, "our TCP options are malformed")
    if flags.contains(.syn) {
        require(options.mss != nil && tcp.payloadCount == 0, "SYN without MSS or with payload")
    }
    if flags.contains(.rst) { return }
    let connection = GuestConnection(isIPv6: isIPv6, guest: destination, guestPort: tcp.destinationPort,
                                     peer: source, peerPort: tcp.sourcePort)
    if flags.contains(.syn) && !flags.contains(.ack) {
        // Our SYN: a host client of a forwarded port; the guest's SYN-ACK goes to its port.
        ledger.noteConnection(connection)
        ledger.inboundTCP[isIPv6 ? 1 : 0] = tcp.sourcePort
    }
    let length = UInt32(tcp.payloadCount) + (flags.isDisjoint(with: .synOrFin) ? 0 : 1)
    ledger.sent(connection, upTo: tcp.sequenceNumber &+ length, syn: flags.contains(.syn))
}

// MARK: The flow layer under test

/// The TCP and UDP flows of one configuration, kept for the whole process as in the daemon:
/// their megabytes of frame buffers cost more to map than a run takes. Every run ends with no flow
/// left (checked), so the next one starts from empty tables; only the order in which slots are
/// reused carries over.
final class KeptFlows {
    var tcp: TCPFlows
    var udp: UDPFlows

    init(tcp: consuming TCPFlows, udp: consuming UDPFlows) {
        self.tcp = tcp
        self.udp = udp
    }

    /// Flows by slot count, MTU and -o setting.
    nonisolated(unsafe) static var kept: [Int: KeptFlows] = [:]

    /// FLOW_FRESH=1 in the environment: new flows for every run, released at its end (this found
    /// TCPFlows.deinit leaking its pending vectors, now fixed). They get no forwarded ports,
    /// since releasing them closes their listeners.
    static let fresh = getenv("FLOW_FRESH") != nil

    /// The flows for `slots`, `mtu` and `rules`, created on first use.
    static func shared(slots: Int, mtu: Int, rules: ForwardingRules, secret: SipHashKey,
                       servers: LoopbackServers) -> KeptFlows {
        let key = slots << 20 | mtu << 1 | (rules.outboundAddress4 == nil ? 1 : 0)
        if let flows = kept[key], !fresh {
            precondition(flows.tcp.count == 0 && flows.udp.count == 0, "flow harness: flows left from the previous run")
            return flows
        }
        let flows = KeptFlows(tcp: TCPFlows(capacity: slots, rules: rules, listeners: fresh ? [] : servers.tcpForwarded,
                                            mtu: mtu, socketKind: Net.tcpSocketKind, timerKind: Net.tcpTimerKind,
                                            isnSecret: secret),
                              udp: UDPFlows(capacity: slots, rules: rules, listeners: fresh ? [] : servers.udpForwarded))
        if !fresh { kept[key] = flows }
        return flows
    }
}

/// The flows, their table and epoll instance, the tap and the clock of one run.
struct FlowRig: ~Copyable {
    /// The TCP and UDP flows of this run's configuration (kept across runs).
    let kept: KeptFlows
    var echo: ICMPEchoFlows
    var table: FlowTable
    var tap = CheckingTap()
    let epoll: Epoll
    var events = EpollEventBuffer(capacity: 32)
    var guest: GuestAddresses
    var now: UInt64 = 1_000 * Net.second
    let rules: ForwardingRules
    let slots: Int
    /// Frames of the current read pass (one heap block each).
    var pass: [UnsafeMutableRawPointer] = []
    /// Where echo replies are built (allocated once).
    nonisolated(unsafe) static let outbound =
        UnsafeMutableRawBufferPointer.allocate(byteCount: 65536 + EthernetFrame.headerLength, alignment: 16)

    init(configuration: UInt8, servers: LoopbackServers) {
        let isolated = servers.isolated
        let secret = SipHashKey(k0: 0x0123_4567_89ab_cdef, k1: 0xfedc_ba98_7654_3210)
        let rules = Net.rules(outbound: configuration & 0x80 == 0 || !isolated)
        let slots = [16, 1, 2, 4][Int(configuration >> 5 & 3)]
        let mtu = configuration & 4 != 0 ? 65520 : 1500
        guard case .success(let created) = Epoll.create() else { fatalError("flow: epoll_create: \(errno)") }
        let flows = KeptFlows.shared(slots: slots, mtu: mtu, rules: rules, secret: secret, servers: servers)
        flows.tcp.epollFD = created.descriptor.raw
        for (index, listener) in servers.tcpForwarded.enumerated() {
            _ = created.add(listener.socket, events: .input, data: EventToken(kind: Net.tcpListenKind, fd: listener.socket,
                                                                             data: UInt32(index)).rawValue)
        }
        for (index, listener) in servers.udpForwarded.enumerated() {
            _ = created.add(listener.socket, events: .input, data: EventToken(kind: Net.udpListenKind, fd: listener.socket,
                                                                             data: UInt32(index)).rawValue)
        }
        self.rules = rules
        self.slots = slots
        kept = flows
        epoll = created
        echo = ICMPEchoFlows(capacity: slots, rules: rules)
        table = FlowTable(capacity: [64, 5, 3, 16][Int(configuration >> 3 & 3)], secret: secret)
        guest = GuestAddresses(assigned4: configuration & 1 != 0 ? Net.guest4 : nil,
                               assigned6: configuration & 2 != 0 ? Net.guest6 : nil)
    }

    // MARK: Guest frames

    /// Copies `bytes` into its own block, confines it, and hands it over as the daemon does.
    mutating func guestFrame(_ bytes: UnsafeRawPointer, count: Int, choice: Int, relativeAck: Bool) {
        let frame = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 8)
        frame.copyMemory(from: bytes, byteCount: count)
        pass.append(frame)
        confine(frame, count: count, choice: choice, relativeAck: relativeAck)
        if tracing { trace("from guest: \(describe(UnsafeRawPointer(frame), count: count))") }
        handleFrame(UnsafeRawBufferPointer(start: frame, count: count))
    }

    /// Rewrites the frame's destination address and TCP/UDP port to one of our loopback servers
    /// (choice 0: the open port, 1: a closed one, 2: TCP the newest host client of a forwarded
    /// port / UDP the silent one, 3: DNS if ours; UDP with `relativeAck`: the newest host client
    /// of a forwarded port), and a relative acknowledgment number to an absolute one.
    func confine(_ frame: UnsafeMutableRawPointer, count: Int, choice: Int, relativeAck: Bool) {
        guard let ethernet = EthernetFrame(frame, count: count) else { return }
        let ip = frame + EthernetFrame.headerLength
        let isIPv6: Bool
        let proto: UInt8
        let l4: UnsafeMutableRawPointer
        let l4Count: Int
        let source: IPv6Address
        switch ethernet.etherType {
        case EtherType.ipv4:
            guard let packet = IPv4Packet(ip, count: ethernet.payloadCount) else { return }
            (isIPv6, proto, source) = (false, packet.protocol, IPv6Address(v4Mapped: packet.source))
            (l4, l4Count) = (ip + packet.headerLength, packet.payloadCount)
        case EtherType.ipv6:
            guard let packet = IPv6Packet(ip, count: ethernet.payloadCount) else { return }
            (isIPv6, proto, source) = (true, packet.upperLayerProtocol, packet.source)
            (l4, l4Count) = (ip + packet.upperLayerOffset, packet.upperLayerCount)
        default:
            return
        }
        let ports = isIPv6 ? ledger.ports6 : ledger.ports4
        var port: UInt16 = 0
        var dns = false
        let family = isIPv6 ? 1 : 0
        var inbound = false
        switch proto {
        case IPProtocol.tcp:
            port = [ports.tcpOpen, ports.tcpClosed, ledger.inboundTCP[family] ?? ports.tcpOpen, ports.tcpOpen][choice]
            inbound = choice == 2
        case IPProtocol.udp:
            if relativeAck, let reply = ledger.inboundUDP[family] {
                (port, inbound) = (reply, true)
            } else {
                port = [ports.udpEcho, ports.udpClosed, ports.udpSink, ports.udpEcho][choice]
            }
        default:
            break
        }
        if choice == 3 && ports.dns && port != 0 && !inbound {
            dns = true
            port = 53
        }
        let destination: IPv6Address
        if isIPv6 {
            destination = dns ? Net.dns6 : Net.gateway6
            destination.store(to: ip, offset: 24)
        } else {
            let v4 = dns ? Net.dns4 : Net.gateway4
            ip.setBE32(16, v4.value)
            destination = IPv6Address(v4Mapped: v4)
        }
        guard port != 0, l4Count >= 4 else { return }
        l4.setBE16(2, port)
        guard proto == IPProtocol.tcp, relativeAck, l4Count >= TCPSegment.minimumHeaderLength else { return }
        let connection = GuestConnection(isIPv6: isIPv6, guest: source, guestPort: UnsafeRawPointer(l4).be16(0),
                                         peer: destination, peerPort: port)
        if let sent = ledger.sequence(of: connection) { l4.setBE32(8, sent &+ UnsafeRawPointer(l4).be32(8)) }
    }

    /// Classifies one guest frame and hands it to its flow handler (GuestEngine.handleFrame).
    mutating func handleFrame(_ frame: UnsafeRawBufferPointer) {
        guard let ethernet = EthernetFrame(frame.baseAddress!, count: frame.count) else { return }
        let kind = TapIngress.classify(ethernet, guest: &guest)
        // Inbound flows send to the addresses seen in any frame (GuestAddresses), not only in flow frames.
        if let seen = guest.seen4 { ledger.noteSource(IPv6Address(v4Mapped: seen), port: nil) }
        if let seen = guest.seen6 { ledger.noteSource(seen, port: nil) }
        if let seen = guest.linkLocalSeen6 { ledger.noteSource(seen, port: nil) }
        switch kind {
        case .icmp4(let packet):
            confined(IPv6Address(v4Mapped: packet.destination), port: 0)
            ledger.noteSource(IPv6Address(v4Mapped: packet.source), port: nil)
            let outcome = echo.handleRequest(source: packet.source, destination: packet.destination,
                                             message: UnsafeRawBufferPointer(start: packet.payload,
                                                                             count: packet.payloadCount), now: now)
            if case .newFlow(let slot, let fd) = outcome { watch(fd, kind: Net.pingKind, slot: slot) }
        case .icmp6(let packet):
            confined(packet.destination, port: 0)
            ledger.noteSource(packet.source, port: nil)
            let outcome = echo.handleRequest(source: packet.source, destination: packet.destination,
                                             message: UnsafeRawBufferPointer(start: packet.upperLayer,
                                                                             count: packet.upperLayerCount), now: now)
            if case .newFlow(let slot, let fd) = outcome { watch(fd, kind: Net.pingKind, slot: slot) }
        case .transport4(let packet):
            transport(isIPv6: false, source: IPv6Address(v4Mapped: packet.source),
                      destination: IPv6Address(v4Mapped: packet.destination), proto: packet.protocol,
                      l4: packet.payload, count: packet.payloadCount)
        case .transport6(let packet):
            transport(isIPv6: true, source: packet.source, destination: packet.destination,
                      proto: packet.upperLayerProtocol, l4: packet.upperLayer, count: packet.upperLayerCount)
        case .arp, .dhcp, .dhcpv6, .ndp, .fragment, .dropped:
            break   // the services and the fragment warning are not the flow layer
        }
    }

    /// Hands a TCP segment or UDP datagram to its flows.
    mutating func transport(isIPv6: Bool, source: IPv6Address, destination: IPv6Address, proto: UInt8,
                            l4: UnsafeRawPointer, count: Int) {
        if proto == IPProtocol.tcp {
            guard let segment = TCPSegment(l4, count: count) else { return }
            confined(destination, port: segment.destinationPort)
            ledger.noteSource(source, port: segment.sourcePort)
            ledger.noteConnection(GuestConnection(isIPv6: isIPv6, guest: source, guestPort: segment.sourcePort,
                                                  peer: destination, peerPort: segment.destinationPort))
            kept.tcp.handleGuestSegment(isIPv6: isIPv6, source: source, destination: destination, segment: segment,
                                   now: now, table: &table, tap: &tap)
            return
        }
        guard proto == IPProtocol.udp, let datagram = UDPDatagram(l4, count: count) else { return }
        confined(destination, port: datagram.destinationPort)
        ledger.noteSource(source, port: datagram.sourcePort)
        let outcome = kept.udp.handleGuestDatagram(isIPv6: isIPv6, source: source, destination: destination,
                                              datagram: datagram, now: now, table: &table)
        if case .newFlow(let slot, let fd) = outcome { watch(fd, kind: Net.udpReplyKind, slot: slot) }
    }

    /// The confinement check: what the flows will connect or send to is loopback.
    func confined(_ destination: IPv6Address, port: UInt16) {
        let target = rules.hostDestination(destination, port: port)
        if !Net.isLoopback(target) {
            fatalError("flow harness: a frame to \(destination) port \(port) would leave loopback (\(target))")
        }
    }

    /// Registers a new UDP or echo flow's socket for input.
    func watch(_ fd: Int32, kind: UInt8, slot: Int) {
        _ = epoll.add(fd, events: .input, data: EventToken(kind: kind, fd: fd, data: UInt32(slot)).rawValue)
    }

    /// Ends the read pass: queued datagrams and payload are sent, the frames freed.
    mutating func endPass() {
        kept.udp.flush()
        kept.tcp.flushGuestData(now: now, table: &table, tap: &tap)
        for frame in pass { frame.deallocate() }
        pass.removeAll(keepingCapacity: true)
    }

    // MARK: Host side, timers

    /// Lets the servers act and dispatches ready events until nothing moves (at most 8 rounds).
    mutating func pump(_ servers: inout LoopbackServers) {
        for _ in 0..<8 {
            let busy = servers.serve()
            guard case .success(let count) = epoll.wait(into: &events, timeoutMilliseconds: 0) else { return }
            for index in 0..<count {
                dispatch(EventToken(rawValue: events.data(at: index)), events: events.events(at: index))
            }
            if count == 0 && !busy { return }
        }
    }

    /// Handles one ready descriptor as GuestEngine.handleEvent does.
    mutating func dispatch(_ token: EventToken, events: EpollEvents) {
        let slot = Int(token.data)
        switch token.kind {
        case Net.tcpSocketKind:
            kept.tcp.handleSocketEvent(token, events: events, now: now, table: &table, tap: &tap)
        case Net.tcpTimerKind:
            kept.tcp.handleTimerEvent(token, now: now, table: &table, tap: &tap)
        case Net.udpReplyKind:
            guard kept.udp.socket(ofSlot: slot) == token.fd else { return }
            if events.contains(.error) { kept.udp.drainErrors(slot: slot) }
            while let count = kept.udp.receiveReplies(slot: slot, now: now, ourMAC: Net.ourMAC, guestMAC: Net.guestMAC) {
                for index in 0..<count { tap.send(kept.udp.frame(index), offload: kept.udp.offload(index)) }
            }
        case Net.pingKind:
            while let length = echo.receiveReply(slot: slot, into: FlowRig.outbound, ourMAC: Net.ourMAC,
                                                 guestMAC: Net.guestMAC, now: now) {
                if length > 0 { tap.send(UnsafeRawBufferPointer(rebasing: FlowRig.outbound[..<length])) }
            }
        case Net.tcpListenKind:
            kept.tcp.acceptConnections(listener: slot, now: now, seen4: guest.seen4, seen6: guest.seen6,
                                       linkLocalSeen6: guest.linkLocalSeen6, table: &table, tap: &tap)
        case Net.udpListenKind:
            while let count = kept.udp.receiveFromListener(slot, now: now, ourMAC: Net.ourMAC, guestMAC: Net.guestMAC,
                                                           seen4: guest.seen4, seen6: guest.seen6,
                                                           linkLocalSeen6: guest.linkLocalSeen6, table: &table) {
                for index in 0..<count { tap.send(kept.udp.frame(index), offload: kept.udp.offload(index)) }
            }
        default:
            fatalError("flow harness: token kind \(token.kind)")
        }
    }

    /// Advances the fake clock by `step`, runs every TCP timer and expires idle UDP and echo flows.
    mutating func advance(by step: UInt64) {
        now &+= step
        trace("clock +\(step / 1_000_000) ms")
        for slot in 0..<slots where kept.tcp.socket(ofSlot: slot) >= 0 {
            kept.tcp.handleTimer(slot: slot, now: now, table: &table, tap: &tap)
        }
        kept.udp.expire(now: now, table: &table)
        echo.expire(now: now)
    }

    /// Checks the counts against each other and the capacities.
    func checkCounts() {
        let (tcpCount, udpCount, echoCount, keys) = (kept.tcp.count, kept.udp.count, echo.count, table.count)
        require(tcpCount <= slots && udpCount <= slots && echoCount <= slots, "flow counts above capacity")
        require(keys <= table.capacity, "flow table above capacity")
        require(keys == tcpCount + 2 * udpCount, "table keys \(keys) for \(tcpCount) TCP and \(udpCount) UDP flows")
    }

    /// Sends a RST from the guest on `connection`.
    mutating func guestReset(_ connection: GuestConnection) {
        let segment = UnsafeMutableRawPointer.allocate(byteCount: TCPSegment.minimumHeaderLength, alignment: 8)
        defer { segment.deallocate() }
        TCPSegment.write(to: segment, sourcePort: connection.guestPort, destinationPort: connection.peerPort,
                         sequenceNumber: 0, acknowledgmentNumber: 0, flags: .rst, window: 0, mss: nil, windowScale: nil)
        kept.tcp.handleGuestSegment(isIPv6: connection.isIPv6, source: connection.guest, destination: connection.peer,
                               segment: TCPSegment(UnsafeRawPointer(segment), count: TCPSegment.minimumHeaderLength)!,
                               now: now, table: &table, tap: &tap)
    }

    /// Ends the run: timers close handshakes, UDP and echo flows; guest RSTs close the rest.
    mutating func tearDown(_ servers: inout LoopbackServers) {
        trace("tear-down: \(kept.tcp.count) TCP, \(kept.udp.count) UDP, \(echo.count) echo flows")
        endPass()
        pump(&servers)
        for _ in 0..<6 {
            advance(by: 61 * Net.second)
            pump(&servers)
        }
        checkCounts()
        for slot in 0..<slots where kept.tcp.socket(ofSlot: slot) >= 0 {
            require(kept.tcp.events(ofSlot: slot).contains(.established),
                    "TCP handshake still pending after 366 s: events \(kept.tcp.events(ofSlot: slot).rawValue)")
        }
        do { let udpCount = kept.udp.count, echoCount = echo.count
             require(udpCount == 0 && echoCount == 0, "\(udpCount) UDP, \(echoCount) echo flows left after 366 s") }
        for connection in ledger.connections { guestReset(connection) }
        kept.tcp.flushGuestData(now: now, table: &table, tap: &tap)
        servers.closeAll()
        pump(&servers)
        advance(by: 181 * Net.second)
        let (tcpCount, udpCount, echoCount, keys) = (kept.tcp.count, kept.udp.count, echo.count, table.count)
        require(tcpCount == 0 && udpCount == 0 && echoCount == 0 && keys == 0,
                "left after tear-down: \(tcpCount) TCP, \(udpCount) UDP, \(echoCount) echo flows, \(keys) keys")
    }
}

// MARK: Entry point

/// Runs so far, and the descriptor count after the first run.
nonisolated(unsafe) var runs = 0
nonisolated(unsafe) var baselineDescriptors = -1

/// Open file descriptors of this process.
func openDescriptors() -> Int {
    guard let directory = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(directory) }
    var count = 0
    while readdir(directory) != nil { count += 1 }
    return count - 3   // ".", ".." and the directory's own descriptor
}

/// libFuzzer entry point: one input.
@_cdecl("LLVMFuzzerTestOneInput")
public func flowFuzzTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if servers == nil {
        Logger.shared.configure(level: .error)
        servers = LoopbackServers()
    }
    let input = FuzzInput(data, size)
    ledger.reset(ports4: servers!.ports4, ports6: servers!.ports6, hostPorts: servers!.udpClientPorts,
                 assigned: (input.selector & 1 != 0 ? [IPv6Address(v4Mapped: Net.guest4)] : [])
                     + (input.selector & 2 != 0 ? [Net.guest6] : []))
    do {
        var rig = FlowRig(configuration: input.selector, servers: servers!)
        var offset = 0
        var records = 0
        while offset < input.count && records < 64 {
            let op = Int(input.body.load(fromByteOffset: offset, as: UInt8.self))
            offset += 1
            records += 1
            switch op & 3 {
            case 0:
                guard offset + 2 <= input.count else { break }
                let declared = Int(input.body.load(fromByteOffset: offset, as: UInt8.self)) << 8
                             | Int(input.body.load(fromByteOffset: offset + 1, as: UInt8.self))
                let length = min(declared, input.count - offset - 2)
                rig.guestFrame(input.body + offset + 2, count: length, choice: op >> 2 & 3, relativeAck: op & 0x20 != 0)
                offset += 2 + length
                if op & 0x10 != 0 || rig.pass.count == 16 {
                    rig.endPass()
                    rig.pump(&servers!)
                }
            case 1:
                rig.endPass()
                rig.advance(by: clockSteps[op >> 2 & 15])
                rig.pump(&servers!)
            case 2:
                rig.endPass()
                trace("server action \(op >> 5) on connection \(op >> 2 & 7)")
                servers!.act(op >> 5, on: op >> 2 & 7)
                rig.pump(&servers!)
            default:
                rig.endPass()
                switch op >> 2 & 7 {
                case 1, 2:
                    trace("host connects to the forwarded TCP port (IPv\(op >> 2 & 7 == 1 ? 4 : 6))")
                    if let port = servers!.connectForwarded(ipv6: op >> 2 & 7 == 2) { ledger.hostPorts.append(port) }
                case 3, 4:
                    trace("host sends to the forwarded UDP port (IPv\(op >> 2 & 7 == 3 ? 4 : 6))")
                    servers!.sendForwarded(ipv6: op >> 2 & 7 == 4, length: 1 + (op >> 5) * 100)
                default:
                    break
                }
                rig.pump(&servers!)
            }
            rig.checkCounts()
        }
        rig.tearDown(&servers!)
    }
    runs += 1
    if runs == 1 || runs % 64 == 0 {
        let open = openDescriptors()
        if baselineDescriptors < 0 { baselineDescriptors = open }
        trace("open descriptors after \(runs) runs: \(open) (first run: \(baselineDescriptors))")
        // Each configuration's kept TCPFlows holds its connections' shared timerfd from its first timer on.
        let timerFDs = KeptFlows.kept.values.filter { $0.tcp.timerToken != nil }.count
        require(open <= baselineDescriptors + 4 + timerFDs,
                "file descriptors grew from \(baselineDescriptors) to \(open) (\(timerFDs) shared timerfds)")
    }
    return 0
}
