// pasta's UDP forwarding work that needs the target namespace: -U listeners, the namespace
// socket pool of spliced flows, and `auto` port following (spec §2.4, §5.3, §8).
//
// Theory of operation: the main thread stays in the init namespace; anything that must be
// created inside the target (a -U listener on its loopback, a socket for the namespace side of
// a spliced flow, an open /proc/net file showing its sockets) is made on a short-lived thread
// (NamespaceThread.swift) and used from the main thread afterwards, since a socket or file keeps
// the namespace it was created in.
//   - Start-up (before daemonising): explicit -U listeners are bound inside the namespace (bind
//     failures fatal, as for -u); with `auto`, /proc/net/{udp,udp6,tcp,tcp6} are opened inside
//     the namespace for -u auto and in our own namespace for -U auto, and kept open.
//   - `start` (loop registration) and then every second (`timer`): the auto sides are rescanned:
//     every bound-unconnected UDP port and every listening TCP port (UDP follows TCP, for
//     iperf3-like protocols) on the far side is wanted, minus the ports we listen on ourselves
//     for the opposite direction (no loops); listeners are bound for new wanted ports and
//     closed (after leaving epoll, since flows hold duplicates) for ports that went away. Bind
//     failures are silent in auto mode. No offset: the target port is the port.
//   - The namespace socket pool of spliced flows is filled at start and refilled when new
//     spliced flows leave it half empty (`registerNewFlows`), which also registers their
//     far-side sockets for input.
// passt builds it without a namespace: nothing to splice, bind or scan there.
// Control path only: this allocates (arrays, threads), never per datagram.
import PasstConfig
import PasstFlow
import PasstSys
#if canImport(Glibc)
import Glibc
#endif

/// Namespace-side UDP forwarding state of the pasta loop.
struct UDPPortForwarding: ~Copyable {
    /// The target network namespace (our own duplicate of its file; -1 in passt).
    let namespace: FileDescriptor
    /// Enabled families.
    let ipv4: Bool
    let ipv6: Bool
    /// The loopback bypass is on (not --no-splice, not --no-udp).
    let splice: Bool
    /// -u auto: host listeners follow what is bound in the namespace.
    let autoHost: Bool
    /// -U auto: namespace loopback listeners follow what is bound on the host.
    let autoNamespace: Bool
    /// /proc/net udp, udp6, tcp, tcp6 opened inside the namespace (-u auto), else empty.
    let namespaceTables: [Int32]
    /// /proc/net udp, udp6, tcp, tcp6 of our own namespace (-U auto), else empty.
    let hostTables: [Int32]
    /// Explicit -U listeners, handed to the flows by `start`.
    var namespaceListeners: [UDPListener]

    /// Binds the explicit -U listeners and opens the /proc tables of `configuration`'s auto
    /// sides, inside `namespace` where needed; throws upstream's fatal bind messages.
    init(_ configuration: Configuration, namespace: borrowing FileDescriptor) throws(PastaSetupError) {
        let options = configuration.options
        self.namespace = FileDescriptor(taking: fcntl(namespace.raw, F_DUPFD_CLOEXEC, 0))
        ipv4 = configuration.ipv4 != nil
        ipv6 = configuration.ipv6 != nil
        let enabled = !options.noUDP
        splice = enabled && !options.noSplice
        autoHost = enabled && options.udpPorts.mode == .auto
        autoNamespace = enabled && options.udpNamespacePorts.mode == .auto
        var listeners: Result<[UDPListener], UDPListenerError> = .success([])
        var tables: [Int32] = []
        let (spec, v4, v6, scan) = (options.udpNamespacePorts, ipv4, ipv6, autoHost)
        do {
            try NamespaceThread.run(in: self.namespace) {
                if enabled { listeners = Result { () throws(UDPListenerError) in
                    try UDPListeners.open(spec, ipv4: v4, ipv6: v6, inNamespace: true)
                } }
                if scan { tables = UDPPortForwarding.openTables() }
            }
        } catch {
            throw PastaSetupError("Couldn't switch to pasta namespaces: \(error)")
        }
        switch listeners {
        case .success(let opened): namespaceListeners = opened
        case .failure(let error): throw PastaSetupError(error.description)
        }
        namespaceTables = tables
        hostTables = autoNamespace ? UDPPortForwarding.openTables() : []
    }

    /// passt's state: no namespace, so no -U listeners, no splice and no `auto`.
    init() {
        namespace = FileDescriptor(taking: -1)
        (ipv4, ipv6, splice, autoHost, autoNamespace) = (false, false, false, false, false)
        namespaceTables = []
        hostTables = []
        namespaceListeners = []
    }

    deinit {
        for fd in namespaceTables + hostTables where fd >= 0 { close(fd) }
    }

    /// Opens /proc/net udp, udp6, tcp and tcp6 of the calling thread's namespace (-1 if absent).
    static func openTables() -> [Int32] {
        ["udp", "udp6", "tcp", "tcp6"].map { open("/proc/thread-self/net/" + $0, O_RDONLY | O_CLOEXEC) }
    }

    /// Hands the -U listeners to `udp` and registers them, fills the socket pool, and runs the
    /// first auto scan.
    mutating func start(_ udp: inout UDPFlows, loop: inout EventLoop) {
        for listener in namespaceListeners { add(listener, to: &udp, loop: &loop) }
        namespaceListeners = []
        if splice { refillPool(&udp) }
        rescan(&udp, loop: &loop)
    }

    /// The 1 s timer: rescans the auto sides and tops up the socket pool.
    mutating func timer(_ udp: inout UDPFlows, loop: inout EventLoop) {
        rescan(&udp, loop: &loop)
        if splice && udp.namespaceSockets.needsRefill { refillPool(&udp) }
    }

    /// Registers the far-side sockets of the spliced flows the last listener read created, and
    /// refills the socket pool if they left it half empty.
    func registerNewFlows(_ udp: inout UDPFlows, loop: inout EventLoop) {
        guard udp.newSpliceCount > 0 else { return }
        for index in 0..<udp.newSpliceCount {
            let slot = udp.newSpliceSlot(index)
            let fd = udp.spliceSocket(ofSlot: slot)
            if case .failure(let code) = loop.register(fd, events: .input,
                                                       token: EventToken(.udpReply, fd: fd, data: UInt32(slot))) {
                Log.debug("UDP: can't watch spliced flow socket: \(SyscallError(code))")
            }
        }
        if splice && udp.namespaceSockets.needsRefill { refillPool(&udp) }
    }

    /// Creates the missing unbound sockets of the namespace pool from a thread inside the namespace.
    func refillPool(_ udp: inout UDPFlows) {
        let missing4 = ipv4 ? NamespaceSocketPool.capacity - udp.namespaceSockets.count4 : 0
        let missing6 = ipv6 ? NamespaceSocketPool.capacity - udp.namespaceSockets.count6 : 0
        guard missing4 > 0 || missing6 > 0 else { return }
        var made: [(Int32, Bool)] = []
        try? NamespaceThread.run(in: namespace) {
            for (count, isIPv6) in [(missing4, false), (missing6, true)] {
                for _ in 0..<count {
                    guard case .success(let fd) = Sys.socket(domain: isIPv6 ? AF_INET6 : AF_INET,
                                                             type: SocketType.datagram | SocketType.nonBlocking)
                    else { break }
                    made.append((fd.release(), isIPv6))
                }
            }
        }
        for (fd, isIPv6) in made { udp.namespaceSockets.add(fd, ipv6: isIPv6) }
    }

    // MARK: Auto

    /// Rescans the auto sides and binds or closes their listeners to follow.
    mutating func rescan(_ udp: inout UDPFlows, loop: inout EventLoop) {
        guard autoHost || autoNamespace else { return }
        var hostBound = PortBitmap()
        var namespaceBound = PortBitmap()
        for listener in udp.listeners where listener.socket >= 0 {
            if listener.inNamespace { namespaceBound.insert(listener.port) } else { hostBound.insert(listener.port) }
        }
        if autoHost {
            let wanted = UDPPortForwarding.scan(namespaceTables)
            follow(wanted, excluding: namespaceBound, inNamespace: false, udp: &udp, loop: &loop)
        }
        if autoNamespace {
            let wanted = UDPPortForwarding.scan(hostTables)
            follow(wanted, excluding: hostBound, inNamespace: true, udp: &udp, loop: &loop)
        }
    }

    /// Ports bound (UDP, unconnected) or listening (TCP) in the udp, udp6, tcp, tcp6 `tables`.
    static func scan(_ tables: [Int32]) -> PortBitmap {
        var ports = PortBitmap()
        for (index, fd) in tables.enumerated() where fd >= 0 {
            let text = readTable(fd)
            text.withUnsafeBytes {
                ProcNetPorts.scan($0, state: index < 2 ? ProcNetPorts.udpListen : ProcNetPorts.tcpListen, into: &ports)
            }
        }
        return ports
    }

    /// The whole content of open /proc file `fd`, read from offset 0.
    static func readTable(_ fd: Int32) -> [UInt8] {
        var text: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var offset = 0
        while true {
            let count = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
            if count <= 0 { break }
            text.append(contentsOf: chunk[..<count])
            offset += count
        }
        return text
    }

    /// Makes the automatic listeners of one side match `wanted` minus `excluded`.
    mutating func follow(_ wanted: PortBitmap, excluding excluded: PortBitmap, inNamespace: Bool,
                         udp: inout UDPFlows, loop: inout EventLoop) {
        var listening = PortBitmap()
        for (index, listener) in udp.listeners.enumerated() where listener.socket >= 0 && listener.inNamespace == inNamespace {
            if listener.automatic && (!wanted.contains(listener.port) || excluded.contains(listener.port)) {
                _ = loop.unregister(listener.socket)
                udp.removeListener(index)
                Log.debug("UDP: no longer forwarding \(inNamespace ? "namespace" : "host") port \(listener.port)")
            } else {
                listening.insert(listener.port)
            }
        }
        let missing = wanted.ports.filter { !excluded.contains($0) && !listening.contains($0) }
        guard !missing.isEmpty else { return }
        let (v4, v6) = (ipv4, ipv6)
        var bound: [UDPListener] = []
        if inNamespace {
            try? NamespaceThread.run(in: namespace) {
                bound = missing.flatMap { UDPListeners.bindAuto($0, inNamespace: true, ipv4: v4, ipv6: v6) }
            }
        } else {
            bound = missing.flatMap { UDPListeners.bindAuto($0, inNamespace: false, ipv4: v4, ipv6: v6) }
        }
        for listener in bound { add(listener, to: &udp, loop: &loop) }
    }

    /// Adds `listener` to `udp` and registers it for input with its index.
    func add(_ listener: UDPListener, to udp: inout UDPFlows, loop: inout EventLoop) {
        let index = udp.addListener(listener)
        if case .failure(let code) = loop.register(listener.socket, events: .input,
                                                   token: EventToken(.udpListen, fd: listener.socket,
                                                                     data: UInt32(index))) {
            Log.debug("UDP: can't watch port \(listener.port): \(SyscallError(code))")
            udp.removeListener(index)
        } else if listener.automatic {
            Log.debug("UDP: forwarding \(listener.inNamespace ? "namespace" : "host") port \(listener.port)")
        }
    }
}
