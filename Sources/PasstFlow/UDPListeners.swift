// The -u listeners: bound UDP sockets of forwarded ports in the host's namespace (spec §2.4, §8).
//
// Theory of operation: each option occurrence of an explicit -u spec is a `PortListenerSet`
// (PasstConfig/PortSpec.swift): an optional bind address, an optional interface and the ports,
// exclusions already applied. For every port we open, at start-up and before daemonising:
//   - no address, both families enabled: one dual-stack socket on [::] (IPV6_V6ONLY off), which
//     also receives IPv4 as v4-mapped peers;
//   - no address, one family: one socket on that family's any address;
//   - an address: one socket of its family bound to it (IPv6 with IPV6_V6ONLY on);
// always with SO_REUSEADDR, SO_BINDTODEVICE for "%IFNAME", non-blocking. A failure to bind an
// explicitly listed port is fatal with upstream's message; sets that tolerate failures ("all",
// exclusion-only) only fail when no port at all could be bound. The daemon registers each socket
// for input with its index; UDPFlows.receiveFromListener turns datagrams into flows. The target
// port (port plus the spec's offset) is fixed here. This is control path: it allocates.
import PasstConfig
import PasstSys
import PasstWire
#if canImport(Glibc)
import Glibc
#endif

/// One bound -u socket.
public struct UDPListener: Equatable, Sendable {
    /// The socket.
    public var socket: Int32
    /// The port it is bound to.
    public var port: UInt16
    /// The guest's port: `port` plus the spec's offset.
    public var targetPort: UInt16

    /// A listener from its fields.
    public init(socket: Int32, port: UInt16, targetPort: UInt16) {
        self.socket = socket
        self.port = port
        self.targetPort = targetPort
    }
}

/// A fatal listener set-up error with upstream's message.
public struct UDPListenerError: Error, CustomStringConvertible {
    public var description: String
}

/// Opening the -u listeners.
public enum UDPListeners {
    /// Binds every port of `spec` (mode spec only) for the enabled families; throws upstream's
    /// fatal messages. Sockets already opened are closed on failure.
    public static func open(_ spec: PortSpec, ipv4: Bool, ipv6: Bool) throws(UDPListenerError) -> [UDPListener] {
        guard spec.mode == .spec else { return [] }
        var listeners: [UDPListener] = []
        for set in spec.listeners {
            var boundAny = false
            for port in set.ports.ports {
                switch bindPort(port, set: set, ipv4: ipv4, ipv6: ipv6) {
                case .success(let sockets):
                    boundAny = boundAny || !sockets.isEmpty
                    for fd in sockets {
                        listeners.append(UDPListener(socket: fd, port: port, targetPort: spec.targetPort(for: port)))
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

    /// Opens the socket(s) of `port` for `set`; returns them, or the errno of the failure.
    static func bindPort(_ port: UInt16, set: PortListenerSet, ipv4: Bool, ipv6: Bool) -> Result<[Int32], SyscallError> {
        switch set.address {
        case .v4(let address):
            return bindOne(IPv6Address(v4Mapped: address), port: port, ipv6Socket: false, dualStack: false,
                           interface: set.interface).map { [$0] }
        case .v6(let address):
            return bindOne(address, port: port, ipv6Socket: true, dualStack: false, interface: set.interface).map { [$0] }
        case nil:
            if ipv4 && ipv6 {
                return bindOne(.any, port: port, ipv6Socket: true, dualStack: true, interface: set.interface).map { [$0] }
            }
            if ipv6 {
                return bindOne(.any, port: port, ipv6Socket: true, dualStack: false, interface: set.interface).map { [$0] }
            }
            if ipv4 {
                return bindOne(IPv6Address(v4Mapped: .any), port: port, ipv6Socket: false, dualStack: false,
                               interface: set.interface).map { [$0] }
            }
            return .success([])
        }
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
            let result = interface.withCString { setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, $0, socklen_t(strlen($0) + 1)) }
            if result < 0 {
                let code = errno
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
