// pasta's TCP listeners of both directions, the loopback bypass and `auto` port following
// (spec §2.4, §3.3, §5.3, §7).
//
// Theory of operation: every listening socket of pasta's TCP forwarding lives here, in one array
// indexed by the token data of its epoll registration (closed slots are reused):
//   - host listeners (-t, bound before daemonising in our namespace by TCPListeners.open, plus
//     `auto` ones): a connection from a loopback peer (127.0.0.0/8, ::1) is spliced, unless
//     --no-splice: its far side is a socket from a pool of unconnected TCP sockets made inside
//     the namespace (refilled from a short-lived NamespaceThread when half empty), connected to
//     the namespace's own address as last seen on the tap, or to its loopback address with
//     --host-lo-to-ns-lo, at port + offset. Any other peer takes the tap path (TCPFlows).
//   - namespace listeners (-T, on 127.0.0.1 and ::1 inside the namespace, bound from a
//     NamespaceThread before daemonising, plus `auto` ones): always spliced, to a socket made here
//     in our namespace, bound to the peer's loopback address, connected to the same family's
//     loopback at port + offset.
// The bytes then move in TCPSpliceFlows (PasstFlow/TCPSplice.swift). `auto` (pasta's default
// for -t and -T): at `start` and then every second (`timer`), /proc/net/tcp and tcp6 of the far
// side (opened once, inside the namespace for -t, in ours for -T) are read; every LISTEN port
// there, minus the ports we listen on for the opposite direction (no loops), gets a listener
// (no offset), and automatic listeners of ports that went away are closed. Bind failures in auto
// mode are silent. passt uses the same object with its -t listeners only (no namespace, no
// splice, no `auto`): every connection takes the tap path. Control path: rescans and pool
// refills allocate; accepting does not.
import PasstConfig
import PasstFlow
import PasstSys
import PasstWire
#if canImport(Glibc)
import Glibc
#endif

/// One listening TCP socket of pasta.
struct ForwardedTCPListener {
    /// The socket (-1: closed slot).
    var socket: Int32
    /// The port it listens on.
    var port: UInt16
    /// The far side's port: `port` plus the spec's offset.
    var targetPort: UInt16
    /// Whether it listens inside the namespace (-T) rather than on the host (-t).
    var inNamespace: Bool
    /// Whether `auto` opened it (and may close it).
    var automatic: Bool
}

/// The TCP listeners (pasta's and passt's), spliced connections and automatic forwarding.
struct TCPPortForwarding: ~Copyable {
    /// The target network namespace (our own duplicate of its file; -1 in passt).
    let namespace: FileDescriptor
    /// Enabled families.
    let ipv4: Bool
    let ipv6: Bool
    /// The loopback bypass is on for host listeners (not --no-splice, not --no-tcp).
    let splice: Bool
    /// --host-lo-to-ns-lo: spliced host connections go to the namespace's loopback.
    let toNamespaceLoopback: Bool
    /// -t auto: host listeners follow what listens in the namespace.
    let autoHost: Bool
    /// -T auto: namespace listeners follow what listens on the host.
    let autoNamespace: Bool
    /// /proc/net tcp and tcp6 opened inside the namespace (-t auto), else empty.
    let namespaceTables: [Int32]
    /// /proc/net tcp and tcp6 of our own namespace (-T auto), else empty.
    let hostTables: [Int32]
    /// Every listener, by token data.
    var listeners: [ForwardedTCPListener]
    /// Spliced connections and the namespace socket pool.
    var spliced: TCPSpliceFlows

    /// Takes the host -t listeners `hostListeners`, binds the explicit -T listeners inside
    /// `namespace` and opens the /proc tables of the auto sides; throws upstream's fatal messages.
    init(_ configuration: Configuration, namespace: borrowing FileDescriptor,
         hostListeners: [TCPListener]) throws(PastaSetupError) {
        let options = configuration.options
        self.namespace = FileDescriptor(taking: fcntl(namespace.raw, F_DUPFD_CLOEXEC, 0))
        ipv4 = configuration.ipv4 != nil
        ipv6 = configuration.ipv6 != nil
        let enabled = !options.noTCP
        splice = enabled && !options.noSplice
        toNamespaceLoopback = options.hostLoopbackToNamespaceLoopback
        autoHost = enabled && options.tcpPorts.mode == .auto
        autoNamespace = enabled && options.tcpNamespacePorts.mode == .auto
        listeners = hostListeners.map {
            ForwardedTCPListener(socket: $0.socket, port: $0.port, targetPort: $0.targetPort, inNamespace: false,
                                 automatic: false)
        }
        spliced = TCPSpliceFlows(capacity: FlowTable.upstreamCapacity, socketKind: EventKind.tcpSplice.rawValue)
        var opened: Result<[TCPListener], TCPListenerError> = .success([])
        var tables: [Int32] = []
        let (spec, v4, v6, scan) = (options.tcpNamespacePorts, ipv4, ipv6, autoHost)
        do {
            try NamespaceThread.run(in: self.namespace) {
                if enabled { opened = Result { () throws(TCPListenerError) in
                    try TCPListeners.open(spec, ipv4: v4, ipv6: v6, inNamespace: true)
                } }
                if scan { tables = TCPPortForwarding.openTables() }
            }
        } catch {
            TCPListeners.closeAll(hostListeners)
            throw PastaSetupError("Couldn't switch to pasta namespaces: \(error)")
        }
        switch opened {
        case .success(let bound):
            listeners += bound.map {
                ForwardedTCPListener(socket: $0.socket, port: $0.port, targetPort: $0.targetPort, inNamespace: true,
                                     automatic: false)
            }
        case .failure(let error):
            TCPListeners.closeAll(hostListeners)
            for fd in tables where fd >= 0 { close(fd) }
            throw PastaSetupError(error.description)
        }
        namespaceTables = tables
        hostTables = autoNamespace ? TCPPortForwarding.openTables() : []
    }

    /// passt's forwarding: the host -t listeners `hostListeners` and nothing else.
    init(hostListeners: [TCPListener]) {
        namespace = FileDescriptor(taking: -1)
        (ipv4, ipv6, splice, toNamespaceLoopback, autoHost, autoNamespace) = (false, false, false, false, false, false)
        listeners = hostListeners.map {
            ForwardedTCPListener(socket: $0.socket, port: $0.port, targetPort: $0.targetPort, inNamespace: false,
                                 automatic: false)
        }
        spliced = TCPSpliceFlows(capacity: 1, socketKind: EventKind.tcpSplice.rawValue)
        namespaceTables = []
        hostTables = []
    }

    deinit {
        for fd in namespaceTables + hostTables where fd >= 0 { close(fd) }
        for listener in listeners where listener.socket >= 0 { close(listener.socket) }
    }

    /// Opens /proc/net tcp and tcp6 of the calling thread's namespace (-1 if absent).
    static func openTables() -> [Int32] {
        ["tcp", "tcp6"].map { open("/proc/thread-self/net/" + $0, O_RDONLY | O_CLOEXEC) }
    }

    /// Registers the listeners with `loop`, fills the socket pool and runs the first auto scan.
    mutating func start(loop: inout EventLoop) throws(PastaSetupError) {
        spliced.epollFD = loop.epoll.descriptor.raw
        for index in listeners.indices where listeners[index].socket >= 0 {
            let listener = listeners[index]
            if case .failure(let code) = loop.register(listener.socket, events: .input,
                                                       token: EventToken(.tcpListen, fd: listener.socket,
                                                                         data: UInt32(index))) {
                throw PastaSetupError("Couldn't watch TCP port \(listener.port): \(SyscallError(code))")
            }
        }
        if splice { refillPool() }
        rescan(loop: &loop)
    }

    /// The 1 s timer: rescans the auto sides and tops up the socket pool.
    mutating func timer(loop: inout EventLoop) {
        rescan(loop: &loop)
        if splice && spliced.namespaceSockets.needsRefill { refillPool() }
    }

    /// Creates the missing unconnected TCP sockets of the namespace pool from a thread inside it.
    mutating func refillPool() {
        let missing4 = ipv4 ? NamespaceSocketPool.capacity - spliced.namespaceSockets.count4 : 0
        let missing6 = ipv6 ? NamespaceSocketPool.capacity - spliced.namespaceSockets.count6 : 0
        guard missing4 > 0 || missing6 > 0 else { return }
        var made: [(Int32, Bool)] = []
        try? NamespaceThread.run(in: namespace) {
            for (count, isIPv6) in [(missing4, false), (missing6, true)] {
                for _ in 0..<count {
                    guard case .success(let fd) = Sys.socket(domain: isIPv6 ? AF_INET6 : AF_INET,
                                                             type: SocketType.stream | SocketType.nonBlocking)
                    else { break }
                    made.append((fd.release(), isIPv6))
                }
            }
        }
        for (fd, isIPv6) in made { spliced.namespaceSockets.add(fd, ipv6: isIPv6) }
    }

    // MARK: Connections

    /// Accepts every pending connection on listener `index`: splices it, or hands it to the tap
    /// path (`tcp`), or closes it if neither can take it.
    mutating func accept<Tap: TCPTap & ~Copyable>(
        _ index: Int, now: UInt64, guest: GuestAddresses, tcp: inout TCPFlows, table: inout FlowTable, tap: inout Tap
    ) {
        guard index >= 0 && index < listeners.count, listeners[index].socket >= 0 else { return }
        let listener = listeners[index]
        while true {
            guard let (fd, peer) = SocketAddress.accept(from: listener.socket) else { return }
            let peerAddress = peer.address
            let isIPv6 = peerAddress.v4Mapped == nil
            let loopback = peerAddress.v4Mapped?.isLoopback ?? (peerAddress == .loopback)
            if listener.inNamespace {
                guard loopback else {
                    close(fd)
                    continue
                }
                spliceToHost(fd, peer: peerAddress, isIPv6: isIPv6, port: listener.targetPort)
            } else if splice && loopback {
                spliceToNamespace(fd, isIPv6: isIPv6, port: listener.targetPort, guest: guest)
            } else if !tcp.openAccepted(fd, peer: peer, targetPort: listener.targetPort, now: now, seen4: guest.seen4,
                                        seen6: guest.seen6, linkLocalSeen6: guest.linkLocalSeen6, table: &table,
                                        tap: &tap) {
                close(fd)
            }
        }
    }

    /// Splices accepted host socket `fd` to the namespace's own (or loopback) address at `port`.
    mutating func spliceToNamespace(_ fd: Int32, isIPv6: Bool, port: UInt16, guest: GuestAddresses) {
        let target: IPv6Address?
        if toNamespaceLoopback {
            target = isIPv6 ? .loopback : IPv6Address(v4Mapped: .loopback)
        } else {
            target = isIPv6 ? guest.seen6 : guest.seen4.map { IPv6Address(v4Mapped: $0) }
        }
        let socket = spliced.namespaceSockets.take(ipv6: isIPv6)
        guard let target, !target.isUnspecified, socket >= 0 else {
            Log.debug("TCP: can't splice a loopback connection to port \(port)")
            close(fd)
            if socket >= 0 { close(socket) }
            return
        }
        _ = spliced.open(accepted: fd, target: socket, to: SocketAddress(target, port: port, ipv4Socket: !isIPv6))
        if spliced.namespaceSockets.needsRefill { refillPool() }
    }

    /// Splices accepted namespace socket `fd` from loopback `peer` to the host's loopback at
    /// `port`, from the same loopback address.
    mutating func spliceToHost(_ fd: Int32, peer: IPv6Address, isIPv6: Bool, port: UInt16) {
        guard case .success(let owned) = Sys.socket(domain: isIPv6 ? AF_INET6 : AF_INET,
                                                     type: SocketType.stream | SocketType.nonBlocking) else {
            close(fd)
            return
        }
        let socket = owned.release()
        var local = SocketAddress(peer, port: 0, ipv4Socket: !isIPv6)
        _ = withUnsafeBytes(of: &local.storage) { Sys.bind(socket, $0.baseAddress!, length: local.length) }
        let loopback = isIPv6 ? IPv6Address.loopback : IPv6Address(v4Mapped: .loopback)
        _ = spliced.open(accepted: fd, target: socket, to: SocketAddress(loopback, port: port, ipv4Socket: !isIPv6))
    }

    /// Handles readiness `events` of the spliced socket `token` names.
    mutating func handleSpliceEvent(_ token: EventToken, events: EpollEvents) {
        spliced.handleEvent(token, events: events)
    }

    // MARK: Auto

    /// Rescans the auto sides and binds or closes their listeners to follow.
    mutating func rescan(loop: inout EventLoop) {
        guard autoHost || autoNamespace else { return }
        var hostBound = PortBitmap()
        var namespaceBound = PortBitmap()
        for listener in listeners where listener.socket >= 0 {
            if listener.inNamespace { namespaceBound.insert(listener.port) } else { hostBound.insert(listener.port) }
        }
        if autoHost {
            follow(TCPPortForwarding.scan(namespaceTables), excluding: namespaceBound, inNamespace: false, loop: &loop)
        }
        if autoNamespace {
            follow(TCPPortForwarding.scan(hostTables), excluding: hostBound, inNamespace: true, loop: &loop)
        }
    }

    /// Ports in state LISTEN in the tcp and tcp6 `tables`.
    static func scan(_ tables: [Int32]) -> PortBitmap {
        var ports = PortBitmap()
        for fd in tables where fd >= 0 {
            let text = UDPPortForwarding.readTable(fd)
            text.withUnsafeBytes { ProcNetPorts.scan($0, state: ProcNetPorts.tcpListen, into: &ports) }
        }
        return ports
    }

    /// Makes the automatic listeners of one side match `wanted` minus `excluded`.
    mutating func follow(_ wanted: PortBitmap, excluding excluded: PortBitmap, inNamespace: Bool,
                         loop: inout EventLoop) {
        var listening = PortBitmap()
        for index in listeners.indices where listeners[index].socket >= 0 && listeners[index].inNamespace == inNamespace {
            let listener = listeners[index]
            if listener.automatic && (!wanted.contains(listener.port) || excluded.contains(listener.port)) {
                _ = loop.unregister(listener.socket)
                close(listener.socket)
                listeners[index].socket = -1
                Log.debug("TCP: no longer forwarding \(inNamespace ? "namespace" : "host") port \(listener.port)")
            } else {
                listening.insert(listener.port)
            }
        }
        let missing = wanted.ports.filter { !excluded.contains($0) && !listening.contains($0) }
        guard !missing.isEmpty else { return }
        let (v4, v6) = (ipv4, ipv6)
        var bound: [(Int32, UInt16)] = []
        let bind = {
            for port in missing {
                for fd in TCPListeners.bindAuto(port, inNamespace: inNamespace, ipv4: v4, ipv6: v6) { bound.append((fd, port)) }
            }
        }
        if inNamespace { try? NamespaceThread.run(in: namespace, bind) } else { bind() }
        for (fd, port) in bound {
            add(ForwardedTCPListener(socket: fd, port: port, targetPort: port, inNamespace: inNamespace,
                                     automatic: true), loop: &loop)
        }
    }

    /// Adds `listener` in a free slot (or at the end) and registers it for input with its index.
    mutating func add(_ listener: ForwardedTCPListener, loop: inout EventLoop) {
        let index = listeners.firstIndex { $0.socket < 0 } ?? listeners.count
        if index == listeners.count { listeners.append(listener) } else { listeners[index] = listener }
        if case .failure(let code) = loop.register(listener.socket, events: .input,
                                                   token: EventToken(.tcpListen, fd: listener.socket,
                                                                     data: UInt32(index))) {
            Log.debug("TCP: can't watch port \(listener.port): \(SyscallError(code))")
            close(listener.socket)
            listeners[index].socket = -1
        } else {
            Log.debug("TCP: forwarding \(listener.inNamespace ? "namespace" : "host") port \(listener.port)")
        }
    }
}
