// The -t and -T listeners: listening TCP sockets of forwarded ports (spec §2.4, §5.3, §6.8).
//
// Theory of operation: each option occurrence of an explicit -t spec is a `PortListenerSet`
// (PasstConfig/PortSpec.swift) with an optional bind address, an optional interface and its
// ports. For every port we open, at start-up and before daemonising, a non-blocking listening
// socket:
//   - no address, both families enabled: one dual-stack socket on [::] (IPV6_V6ONLY off), whose
//     IPv4 peers show up as v4-mapped addresses;
//   - no address, one family: one socket on that family's any address;
//   - an address: one socket of its family bound to it (IPv6 with IPV6_V6ONLY on);
// with SO_REUSEADDR, SO_BINDTODEVICE for "%IFNAME", and the largest buffers when the kernel
// allows 4 MiB or more (accepted sockets inherit them). Bind failures follow the UDP listeners'
// rules and messages. -T listeners (`inNamespace`, opened from a thread inside the namespace)
// are one socket per enabled family on 127.0.0.1 and ::1; `bindAuto` opens those of `auto`
// ports, silently. The daemon (TCPPortForwarding.swift) registers and accepts; TCPFlows turns
// tap-path connections into SYNs towards the guest. Control path: allocates.
import PasstConfig
import PasstSys
import PasstWire
#if canImport(Glibc)
import Glibc
#endif

/// One listening -t socket.
public struct TCPListener: Equatable, Sendable {
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
public struct TCPListenerError: Error, CustomStringConvertible {
    public var description: String
}

/// Opening the -t listeners.
public enum TCPListeners {
    /// Listen backlog (upstream uses the kernel's maximum; 128 is the classic SOMAXCONN).
    static let backlog: Int32 = 128

    /// Binds and listens on every port of `spec` (explicit or passt's `all`) for the enabled families, on
    /// namespace loopback for -T (`inNamespace`, run inside the namespace); throws upstream's
    /// fatal messages. Sockets already opened are closed on failure.
    public static func open(_ spec: PortSpec, ipv4: Bool, ipv6: Bool,
                            inNamespace: Bool = false) throws(TCPListenerError) -> [TCPListener] {
        guard spec.mode == .spec || spec.mode == .all else { return [] }
        var listeners: [TCPListener] = []
        for set in spec.listeners {
            var boundAny = false
            for port in set.ports.ports {
                let result = inNamespace ? bindLoopback(port, ipv4: ipv4, ipv6: ipv6)
                    : bindPort(port, set: set, ipv4: ipv4, ipv6: ipv6)
                switch result {
                case .success(let sockets):
                    boundAny = boundAny || !sockets.isEmpty
                    for fd in sockets {
                        listeners.append(TCPListener(socket: fd, port: port, targetPort: spec.targetPort(for: port)))
                    }
                case .failure(let error):
                    if error.code == EMFILE || error.code == ENFILE {
                        closeAll(listeners)
                        throw TCPListenerError(description: set.tooManySocketsMessage)
                    }
                    if !set.bindFailuresTolerated {
                        closeAll(listeners)
                        throw TCPListenerError(description: set.bindFailureMessage(port: port,
                                                                                   errorText: error.description))
                    }
                }
            }
            if set.bindFailuresTolerated && !boundAny && !set.ports.isEmpty {
                closeAll(listeners)
                throw TCPListenerError(description: set.noPortBoundMessage)
            }
        }
        return listeners
    }

    /// Closes every listener's socket.
    public static func closeAll(_ listeners: [TCPListener]) {
        for listener in listeners { close(listener.socket) }
    }

    /// Opens the listener(s) of auto-forwarded `port`: any address (dual stack) on the host,
    /// 127.0.0.1 and ::1 in the namespace (`inNamespace`, run inside it); failures are silent.
    public static func bindAuto(_ port: UInt16, inNamespace: Bool, ipv4: Bool, ipv6: Bool) -> [Int32] {
        if inNamespace {
            guard case .success(let sockets) = bindLoopback(port, ipv4: ipv4, ipv6: ipv6) else { return [] }
            return sockets
        }
        guard ipv4 || ipv6,
              case .success(let fd) = listenOne(ipv6 ? .any : IPv6Address(v4Mapped: .any), port: port,
                                                ipv6Socket: ipv6, dualStack: ipv4 && ipv6, interface: nil)
        else { return [] }
        return [fd]
    }

    /// Opens listeners on 127.0.0.1 (if `ipv4`) and ::1 (if `ipv6`) for `port`; returns them, or
    /// the errno of the first failure (closing what was opened).
    static func bindLoopback(_ port: UInt16, ipv4: Bool, ipv6: Bool) -> Result<[Int32], SyscallError> {
        var sockets: [Int32] = []
        for (enabled, address, ipv6Socket) in [(ipv4, IPv6Address(v4Mapped: .loopback), false),
                                               (ipv6, IPv6Address.loopback, true)] where enabled {
            switch listenOne(address, port: port, ipv6Socket: ipv6Socket, dualStack: false, interface: nil) {
            case .success(let fd): sockets.append(fd)
            case .failure(let error):
                for fd in sockets { close(fd) }
                return .failure(error)
            }
        }
        return .success(sockets)
    }

    /// Opens the listening socket(s) of `port` for `set`; returns them, or the errno of the failure.
    static func bindPort(_ port: UInt16, set: PortListenerSet, ipv4: Bool, ipv6: Bool) -> Result<[Int32], SyscallError> {
        switch set.address {
        case .v4(let address):
            return listenOne(IPv6Address(v4Mapped: address), port: port, ipv6Socket: false, dualStack: false,
                             interface: set.interface).map { [$0] }
        case .v6(let address):
            return listenOne(address, port: port, ipv6Socket: true, dualStack: false, interface: set.interface).map { [$0] }
        case nil:
            if ipv4 && ipv6 {
                return listenOne(.any, port: port, ipv6Socket: true, dualStack: true, interface: set.interface).map { [$0] }
            }
            if ipv6 {
                return listenOne(.any, port: port, ipv6Socket: true, dualStack: false, interface: set.interface).map { [$0] }
            }
            if ipv4 {
                return listenOne(IPv6Address(v4Mapped: .any), port: port, ipv6Socket: false, dualStack: false,
                                 interface: set.interface).map { [$0] }
            }
            return .success([])
        }
    }

    /// Opens one non-blocking TCP socket listening on `address`:`port`; returns it or the errno.
    static func listenOne(_ address: IPv6Address, port: UInt16, ipv6Socket: Bool, dualStack: Bool,
                          interface: String?) -> Result<Int32, SyscallError> {
        let owned: FileDescriptor
        switch Sys.socket(domain: ipv6Socket ? AF_INET6 : AF_INET, type: SocketType.stream | SocketType.nonBlocking) {
        case .success(let fd): owned = fd
        case .wouldBlock: return .failure(SyscallError(EAGAIN))
        case .failure(let code): return .failure(SyscallError(code))
        }
        let fd = owned.release()
        _ = Sys.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, Int32(1))
        if ipv6Socket { _ = Sys.setOption(fd, level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, Int32(dualStack ? 0 : 1)) }
        TCPFlows.setLargeBuffers(fd)
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
        if case .failure(let code) = Sys.listen(fd, backlog: backlog) {
            close(fd)
            return .failure(SyscallError(code))
        }
        return .success(fd)
    }
}
