// Socket addresses for flow sockets, built without allocation.
//
// Theory of operation: flows keep IPv4 addresses as v4-mapped IPv6 addresses; the kernel wants a
// sockaddr_in for AF_INET sockets and a sockaddr_in6 for AF_INET6 ones. `SocketAddress` holds
// either in the storage of a sockaddr_in6 (the larger of the two) with its length, so one value
// type serves bind, connect, sendmmsg's msg_name and recvmmsg's peer names. Dual-stack sockets
// report IPv4 peers as v4-mapped sockaddr_in6, which `address` maps back the same way.
import PasstSys
import PasstWire
#if canImport(Glibc)
import Glibc
#endif

/// A sockaddr_in or sockaddr_in6 with its length.
public struct SocketAddress {
    /// The address bytes (a sockaddr_in uses the first 16).
    public var storage = sockaddr_in6()
    /// The length to pass to the kernel.
    public var length: socklen_t = 0

    /// An empty address (length 0).
    public init() {}

    /// Accepts one pending connection on `listener` (non-blocking, close-on-exec): the new
    /// socket and its peer's address, or nil when none is pending or accept fails. Out of
    /// descriptors, one waiting connection is refused instead (DescriptorReserve) and nil returned.
    public static func accept(from listener: Int32) -> (fd: Int32, peer: SocketAddress)? {
        var peer = SocketAddress()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        let accepted = withUnsafeMutableBytes(of: &peer.storage) {
            Sys.accept(listener, address: $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), length: &length)
        }
        switch consume accepted {
        case .success(let owned):
            peer.length = length
            return (owned.release(), peer)
        case .failure(let code) where DescriptorReserve.isExhaustion(code):
            DescriptorReserve.refuseOne(from: listener)
            return nil
        case .failure:
            return nil
        case .wouldBlock:
            return nil
        }
    }

    /// `address` (v4-mapped for IPv4) and `port`, as sockaddr_in if `ipv4Socket`, else sockaddr_in6
    /// with `scope` for link-local addresses.
    public init(_ address: IPv6Address, port: UInt16, ipv4Socket: Bool, scope: UInt32 = 0) {
        if ipv4Socket {
            var v4 = sockaddr_in()
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = port.bigEndian
            v4.sin_addr.s_addr = (address.v4Mapped ?? .any).value.bigEndian
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: v4, as: sockaddr_in.self) }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        } else {
            storage.sin6_family = sa_family_t(AF_INET6)
            storage.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &storage.sin6_addr) { address.store(to: $0.baseAddress!, offset: 0) }
            if address.isLinkLocal { storage.sin6_scope_id = scope }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
    }

    /// The family stored (AF_INET, AF_INET6, or 0).
    public var family: Int32 { Int32(storage.sin6_family) }

    /// The address, v4-mapped for AF_INET.
    public var address: IPv6Address {
        if family == AF_INET {
            let v4 = withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in.self) }
            return IPv6Address(v4Mapped: IPv4Address(UInt32(bigEndian: v4.sin_addr.s_addr)))
        }
        return withUnsafeBytes(of: storage.sin6_addr) { IPv6Address(at: $0.baseAddress!, offset: 0) }
    }

    /// The port.
    public var port: UInt16 { UInt16(bigEndian: storage.sin6_port) }
}
