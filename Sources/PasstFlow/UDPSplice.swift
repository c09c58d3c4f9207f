// pasta's UDP loopback bypass ("splice", spec §8, §3.3) and the listener set that auto mode changes.
//
// Theory of operation: a datagram that starts and ends on loopback has no business on the tap.
// Two kinds of listener lead to a spliced flow:
//   - a host listener (-u) receiving from a loopback peer (127.0.0.0/8, ::1), unless --no-splice:
//     the far side is a socket in the namespace, bound to (any, the peer's port) and connected to
//     the namespace's own address as last seen on the tap (or its loopback address with
//     --host-lo-to-ns-lo) and the listener's target port. Sockets cannot be created in another
//     namespace from the main thread, so the daemon keeps a pool of unbound UDP sockets made
//     inside the namespace (`NamespaceSocketPool`, refilled from a short-lived thread when half
//     empty); bind and connect work from any thread on a socket of any namespace.
//   - a namespace listener (-U, bound to 127.0.0.1 or ::1 inside the namespace), from a loopback
//     peer: the far side is a host socket bound to the peer's own address and port and connected
//     to the same loopback address on the host, at the target port.
// Either way the flow keeps a dup(2) of the listener for replies (sent to the peer's address,
// as for tap flows) and `spliceSocket`, the connected far-side socket, which the daemon registers
// for input. Datagrams are read with recvmmsg(2) into the receive pool and sent on with one
// sendmmsg(2) per run of one flow (equal-length datagrams as UDP GSO runs, as for tap flows),
// no headers built, no copy besides the kernel's. The flow table holds the listener-side key
// only (interface host or splice), as nothing arrives from the tap for these flows. Expiry
// (180 s idle) closes both sockets.
//
// Listeners live in one array indexed by the token data of their epoll registration; auto mode
// (the daemon's UDPPortForwarding.swift) adds and removes them here, reusing closed slots.
import PasstConfig
import PasstSys
import PasstWire
import CPasstShim
#if canImport(Glibc)
import Glibc
#endif

/// Unbound UDP sockets created inside the namespace, per family; allocated once.
public struct NamespaceSocketPool: ~Copyable {
    /// Sockets kept per family (upstream's TCP splice pool size).
    public static let capacity = 32
    /// IPv4 sockets in [0, capacity), IPv6 in [capacity, 2 * capacity).
    let sockets: UnsafeMutablePointer<Int32>
    /// Sockets held per family.
    public private(set) var count4 = 0
    public private(set) var count6 = 0

    /// An empty pool.
    public init() {
        sockets = .allocate(capacity: 2 * NamespaceSocketPool.capacity)
        sockets.initialize(repeating: -1, count: 2 * NamespaceSocketPool.capacity)
    }

    deinit {
        for index in 0..<count4 { close(sockets[index]) }
        for index in 0..<count6 { close(sockets[NamespaceSocketPool.capacity + index]) }
        sockets.deallocate()
    }

    /// Whether a family is below half of its capacity.
    public var needsRefill: Bool {
        count4 < NamespaceSocketPool.capacity / 2 || count6 < NamespaceSocketPool.capacity / 2
    }

    /// Takes a socket of the family (`ipv6`); -1 if there is none.
    public mutating func take(ipv6: Bool) -> Int32 {
        if ipv6 {
            guard count6 > 0 else { return -1 }
            count6 -= 1
            return sockets[NamespaceSocketPool.capacity + count6]
        }
        guard count4 > 0 else { return -1 }
        count4 -= 1
        return sockets[count4]
    }

    /// Adds socket `fd` of the family (`ipv6`); closes it if that family is full.
    public mutating func add(_ fd: Int32, ipv6: Bool) {
        if ipv6 && count6 < NamespaceSocketPool.capacity {
            sockets[NamespaceSocketPool.capacity + count6] = fd
            count6 += 1
        } else if !ipv6 && count4 < NamespaceSocketPool.capacity {
            sockets[count4] = fd
            count4 += 1
        } else {
            close(fd)
        }
    }
}

extension UDPFlows {
    /// Whether `address` (v4-mapped for IPv4) is a loopback address: 127.0.0.0/8 or ::1.
    @inlinable static func isLoopback(_ address: IPv6Address) -> Bool {
        address.v4Mapped?.isLoopback ?? (address == .loopback)
    }

    /// The connected far-side socket of spliced flow `slot`, -1 for tap flows and free slots.
    public func spliceSocket(ofSlot slot: Int) -> Int32 {
        slot >= 0 && slot < flows.count ? flows[slot].spliceSocket : -1
    }

    /// Slot of the `index`th spliced flow created by the last `receiveFromListener` call.
    public func newSpliceSlot(_ index: Int) -> Int { Int(newSpliceSlots[index]) }

    /// Creates the spliced flow for a first datagram from `peer` on `listener`; returns its slot,
    /// nil if the far side can't be set up or there is no room. `seen4`/`seen6` are the
    /// namespace's addresses as seen on the tap.
    mutating func openSpliceFlow(listener: UDPListener, peer: SocketAddress, hostKey: FlowKey, seen4: IPv4Address?,
                                 seen6: IPv6Address?, now: UInt64, table: inout FlowTable) -> Int? {
        let peerAddress = peer.address
        let isIPv6 = peerAddress.v4Mapped == nil
        guard freeCount > 0, table.count < table.capacity, UDPFlows.isLoopback(peerAddress) else {
            Log.debug("UDP: dropping spliced datagram from \(peerAddress) port \(peer.port)")
            return nil
        }
        var fd: Int32
        let local: SocketAddress
        let remote: SocketAddress
        if listener.inNamespace {
            guard case .success(let owned) = Sys.socket(domain: isIPv6 ? AF_INET6 : AF_INET,
                                                         type: SocketType.datagram | SocketType.nonBlocking) else {
                return nil
            }
            fd = owned.release()
            local = SocketAddress(peerAddress, port: peer.port, ipv4Socket: !isIPv6)
            remote = SocketAddress(listener.address, port: listener.targetPort, ipv4Socket: !isIPv6)
        } else {
            let target: IPv6Address?
            if spliceToNamespaceLoopback {
                target = isIPv6 ? .loopback : IPv6Address(v4Mapped: .loopback)
            } else {
                target = isIPv6 ? seen6 : seen4.map { IPv6Address(v4Mapped: $0) }
            }
            guard let target, !target.isUnspecified else { return nil }
            fd = namespaceSockets.take(ipv6: isIPv6)
            guard fd >= 0 else {
                Log.debug("UDP: no namespace socket left for a spliced flow")
                return nil
            }
            local = SocketAddress(isIPv6 ? .any : IPv6Address(v4Mapped: .any), port: peer.port, ipv4Socket: !isIPv6)
            remote = SocketAddress(target, port: listener.targetPort, ipv4Socket: !isIPv6)
        }
        fd = bindAndConnect(fd, isIPv6: isIPv6, local: local, remote: remote)
        guard fd >= 0 else { return nil }
        let reply = fcntl(listener.socket, F_DUPFD_CLOEXEC, 0)
        let slot = Int(freeSlots[freeCount - 1])
        guard reply >= 0, table.insert(hostKey, reference: UInt32(slot)) else {
            if reply >= 0 { close(reply) }
            close(fd)
            return nil
        }
        freeCount -= 1
        flows[slot] = UDPFlow(socket: reply, spliceSocket: fd, isIPv6: isIPv6, hostKey: hostKey, hostPeer: peer,
                              lastActivity: now)
        return slot
    }

    /// Forwards every pending datagram on the far-side socket of spliced flow `slot` to the
    /// flow's peer through the listener's duplicate.
    public mutating func forwardSpliceReplies(slot: Int, now: UInt64) {
        guard slot >= 0 && slot < flows.count, flows[slot].spliceSocket >= 0 else { return }
        while let received = receive(flows[slot].spliceSocket, names: false) {
            guard received > 0 else { continue }
            for index in 0..<received {
                sendVectors[index] = iovec(iov_base: receivePool + index * UDPFlows.slotSize + UDPFlows.headroom,
                                           iov_len: Int(receiveHeaders[index].msg_len))
            }
            send(received, on: flows[slot].socket, to: flows[slot].hostPeer, slot: slot)
            flows[slot].lastActivity = now
        }
    }

    // MARK: Listener set

    /// Adds `listener`, reusing a closed slot; returns its index.
    public mutating func addListener(_ listener: UDPListener) -> Int {
        if let index = listeners.firstIndex(where: { $0.socket < 0 }) {
            listeners[index] = listener
            return index
        }
        listeners.append(listener)
        return listeners.count - 1
    }

    /// Closes listener `index` (the caller unregisters it from epoll first); its flows keep their
    /// duplicates and live on until they expire.
    public mutating func removeListener(_ index: Int) {
        guard index >= 0 && index < listeners.count, listeners[index].socket >= 0 else { return }
        close(listeners[index].socket)
        listeners[index].socket = -1
    }
}
