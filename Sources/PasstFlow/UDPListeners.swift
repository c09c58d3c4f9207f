// The -u and -U listeners: bound UDP sockets of forwarded ports (spec §2.4, §8).
//
// Theory of operation: each option occurrence of an explicit -u spec is a `PortListenerSet`
// (PasstConfig/PortSpec.swift): an optional bind address, an optional interface and the ports,
// exclusions already applied. For every port we open, at start-up and before daemonising:
//   - no address, both families enabled: one dual-stack socket on [::] (IPV6_V6ONLY off), which
//     also receives IPv4 as v4-mapped peers;
//   - no address, one family: one socket on that family's any address;
//   - an address: one socket of its family bound to it (IPv6 with IPV6_V6ONLY on);
//   - -U (pasta, opened from a thread inside the namespace): 127.0.0.1 and ::1 (IPv6-only), per
//     enabled family; the port counts as bound if either address binds;
// always with SO_REUSEADDR, SO_BINDTODEVICE for "%IFNAME", non-blocking. A failure to bind an
// explicitly listed port is fatal with upstream's message; sets that tolerate failures ("all",
// exclusion-only) only fail when no port at all could be bound. The daemon registers each socket
// for input with its index; UDPFlows.receiveFromListener turns datagrams into flows. The target
// port (port plus the spec's offset) is fixed here. Auto mode binds single ports with
// `bindAuto`, failures silent. This is control path: it allocates.
import PasstConfig
import PasstSys
import PasstWire
#if canImport(Glibc)
import Glibc
#endif

/// One bound -u or -U socket.
public struct UDPListener: Equatable, Sendable {
    /// The socket; -1 once closed.
    public var socket: Int32
    /// The port it is bound to.
    public var port: UInt16
    /// The target's port: `port` plus the spec's offset.
    public var targetPort: UInt16
    /// The address it is bound to (v4-mapped for IPv4; any for dual-stack).
    public var address: IPv6Address
    /// A -U listener inside the namespace (its datagrams go to the host's loopback).
    public var inNamespace: Bool
    /// Bound by auto mode (closed again when the port goes away).
    public var automatic: Bool

    /// A listener from its fields.
    public init(socket: Int32, port: UInt16, targetPort: UInt16, address: IPv6Address = .any,
                inNamespace: Bool = false, automatic: Bool = false) {
        self.socket = socket
        self.port = port
        self.targetPort = targetPort
        self.address = address
        self.inNamespace = inNamespace
        self.automatic = automatic
    }
}

/// A fatal listener set-up error with upstream's message.
public struct UDPListenerError: Error, CustomStringConvertible {
    public var description: String
}

/// Opening the -u listeners.
public enum UDPListeners {
    /// Binds every port of `spec` (explicit or passt's `all`) for the enabled families, on namespace
    /// loopback for -U (`inNamespace`, run inside the namespace); throws upstream's fatal
    /// messages. Sockets already opened are closed on failure.
    public static func open(_ spec: PortSpec, ipv4: Bool, ipv6: Bool,
                            inNamespace: Bool = false) throws(UDPListenerError) -> [UDPListener] {
        guard spec.mode == .spec || spec.mode == .all else { return [] }
        var listeners: [UDPListener] = []
        for set in spec.listeners {
            var boundAny = false
            for port in set.ports.ports {
                let result = inNamespace ? bindLoopback(port, ipv4: ipv4, ipv6: ipv6)
                    : bindPort(port, set: set, ipv4: ipv4, ipv6: ipv6)
                switch result {
                case .success(let sockets):
                    boundAny = boundAny || !sockets.isEmpty
                    for (fd, address) in sockets {
                        listeners.append(UDPListener(socket: fd, port: port, targetPort: spec.targetPort(for: port),
                                                     address: address, inNamespace: inNamespace))
                    }
                case .failure(let error):
                    if error.code == EMFILE || error.code == ENFILE {
                        closeAll(listeners)
                        throw UDPListenerError(description: set.tooManySocketsMessage)
                    }
                    if !set.bindFailuresTolerated {
                        closeAll(listeners)
                        throw UDPListenerError(description: set.bindFailureMessage(
                            port: port, errorText: error.description))
                    }
                }
            }
            if set.bindFailuresTolerated && !boundAny && !set.ports.isEmpty {
                closeAll(listeners)
                throw UDPListenerError(description: set.noPortBoundMessage)
            }
        }
        return listeners
    }

    /// Closes every listener's socket.
    static func closeAll(_ listeners: [UDPListener]) {
        for listener in listeners { close(listener.socket) }
    }

    /// Binds the listener(s) of auto-forwarded `port`: any address on the host, loopback in the
    /// namespace (`inNamespace`, run inside it); failures are silent (none returned).
    public static func bindAuto(_ port: UInt16, inNamespace: Bool, ipv4: Bool, ipv6: Bool) -> [UDPListener] {
        let result = inNamespace ? bindLoopback(port, ipv4: ipv4, ipv6: ipv6)
            : bindAny(port, interface: nil, ipv4: ipv4, ipv6: ipv6)
        guard case .success(let sockets) = result else { return [] }
        return sockets.map {
            UDPListener(socket: $0.0, port: port, targetPort: port, address: $0.1, inNamespace: inNamespace,
                        automatic: true)
        }
    }

    /// Opens the socket(s) of `port` for `set`; returns them with their addresses, or the errno.
    static func bindPort(_ port: UInt16, set: PortListenerSet, ipv4: Bool,
                         ipv6: Bool) -> Result<[(Int32, IPv6Address)], SyscallError> {
        switch set.address {
        case .v4(let address):
            let mapped = IPv6Address(v4Mapped: address)
            return bindOne(mapped, port: port, ipv6Socket: false, dualStack: false,
                           interface: set.interface).map { [($0, mapped)] }
        case .v6(let address):
            return bindOne(address, port: port, ipv6Socket: true, dualStack: false,
                           interface: set.interface).map { [($0, address)] }
        case nil:
            return bindAny(port, interface: set.interface, ipv4: ipv4, ipv6: ipv6)
        }
    }

    /// Opens the any-address socket of `port`: dual-stack with both families, else one family's.
    static func bindAny(_ port: UInt16, interface: String?, ipv4: Bool,
                        ipv6: Bool) -> Result<[(Int32, IPv6Address)], SyscallError> {
        if ipv6 {
            return bindOne(.any, port: port, ipv6Socket: true, dualStack: ipv4, interface: interface)
                .map { [($0, .any)] }
        }
        if ipv4 {
            let any = IPv6Address(v4Mapped: .any)
            return bindOne(any, port: port, ipv6Socket: false, dualStack: false, interface: interface)
                .map { [($0, any)] }
        }
        return .success([])
    }

    /// Opens the namespace-loopback sockets of `port` (127.0.0.1, ::1 per enabled family);
    /// fails only if none binds.
    static func bindLoopback(_ port: UInt16, ipv4: Bool, ipv6: Bool) -> Result<[(Int32, IPv6Address)], SyscallError> {
        var sockets: [(Int32, IPv6Address)] = []
        var failure = SyscallError(EADDRNOTAVAIL)
        if ipv4 {
            let loopback = IPv6Address(v4Mapped: .loopback)
            switch bindOne(loopback, port: port, ipv6Socket: false, dualStack: false, interface: nil) {
            case .success(let fd): sockets.append((fd, loopback))
            case .failure(let error): failure = error
            }
        }
        if ipv6 {
            switch bindOne(.loopback, port: port, ipv6Socket: true, dualStack: false, interface: nil) {
            case .success(let fd): sockets.append((fd, .loopback))
            case .failure(let error): failure = error
            }
        }
        return sockets.isEmpty && (ipv4 || ipv6) ? .failure(failure) : .success(sockets)
    }

    /// Opens one non-blocking UDP socket bound to `address`:`port`; returns it or the errno.
    static func bindOne(_ address: IPv6Address, port: UInt16, ipv6Socket: Bool, dualStack: Bool,
                        interface: String?) -> Result<Int32, SyscallError> {
        let owned: FileDescriptor
        switch Sys.socket(domain: ipv6Socket ? AF_INET6 : AF_INET, type: SocketType.datagram | SocketType.nonBlocking) {
        case .success(let fd): owned = fd
        case .wouldBlock: return .failure(SyscallError(EAGAIN))
        case .failure(let code): return .failure(SyscallError(code))
        }
        let fd = owned.release()
        _ = Sys.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, Int32(1))
        if ipv6Socket {
            _ = Sys.setOption(fd, level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, Int32(dualStack ? 0 : 1))
            _ = Sys.setOption(fd, level: Int32(IPPROTO_IPV6), name: IPV6_RECVERR, Int32(1))
        } else {
            _ = Sys.setOption(fd, level: Int32(IPPROTO_IP), name: IP_RECVERR, Int32(1))
        }
        if let interface {
            if case .failure(let code) = Sys.bindToDevice(fd, interface) {
                close(fd)
                return .failure(SyscallError(code))
            }
        }
        var local = SocketAddress(address, port: port, ipv4Socket: !ipv6Socket)
        let bound = withUnsafeBytes(of: &local.storage) { Sys.bind(fd, $0.baseAddress!, length: local.length) }
        if case .failure(let code) = bound {
            close(fd)
            return .failure(SyscallError(code))
        }
        return .success(fd)
    }
}
