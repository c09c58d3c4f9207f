// ICMP and ICMPv6 echo ("ping") between the guest and the host's ping sockets (spec §9).
//
// Theory of operation: the guest's echo requests are carried by unprivileged "ping" sockets
// (SOCK_DGRAM with IPPROTO_ICMP / IPPROTO_ICMPV6), which the host kernel offers to groups in
// net.ipv4.ping_group_range. One flow exists per (guest source address, destination, echo
// identifier); it owns one ping socket, created in the calling thread's network namespace (pasta
// keeps its main thread in the init namespace), bound to the -o address if given (and to the
// --outbound-ifN interface), with port 0, so the kernel picks the echo identifier the host sees:
//
//   guest: src G, dst D, id I, seq S      ->  sendto(ping socket, translated D)   (kernel: id K)
//   guest <- src D, dst G, id I, seq S    <-  recv(ping socket): echo reply id K, seq S
//
// The destination is translated as for any guest-initiated flow (§3.3): the map-host-loopback
// address means the host's loopback, the map-guest-addr address means the guest's assigned
// address (the host's own), anything else is used as is. Replies go back to the guest from the
// original destination with the guest's identifier restored and the checksum recomputed (ICMPv6:
// over the pseudo header of the new addresses). Only echo requests are taken from the guest and
// only echo replies are relayed; a reply repeating the previous reply's sequence number is
// dropped (pasta's behaviour upstream). A flow idle for 60 s is closed by `expire`.
//
// The table is small and fixed (`capacity` flows, allocated once; lookups scan it); moving echo
// flows into the shared FlowTable is left for when ping traffic needs more than a handful. A reply is received straight into the caller's frame buffer after
// room for the Ethernet and IP headers, which are then written in front of it: one copy, no
// allocation. The caller registers each new flow's socket for input with the flow's slot number
// and calls `receiveReply` when it is readable; closing a socket removes it from epoll.
import PasstConfig
import PasstSys
import PasstWire
#if canImport(Glibc)
import Glibc
#endif

/// What became of a guest's echo request.
public enum EchoRequestOutcome: Equatable, Sendable {
    /// Sent on an existing flow's socket.
    case sent
    /// Sent on the new socket `fd` of flow `slot`: register it for input with that slot.
    case newFlow(slot: Int, fd: Int32)
    /// Not sent: not an echo request, no free flow, socket or send failure.
    case dropped
}

/// The echo flows: a fixed table of ping sockets, one per (guest source, destination, id).
public struct ICMPEchoFlows: ~Copyable {
    /// Default number of flows.
    public static let defaultCapacity = 128
    /// A flow idle for this long (ns) is closed (upstream ICMP_ECHO_TIMEOUT, 60 s).
    public static let idleTimeout: UInt64 = 60 * SystemClock.nanosecondsPerSecond
    /// Room for Ethernet and IPv6 headers in front of a received reply.
    public static let replyHeadroom = EthernetFrame.headerLength + IPv6Packet.headerLength

    /// One flow: addresses as the guest sees them (IPv4 as v4-mapped), ids, socket, activity.
    struct Flow {
        var socket: Int32 = -1
        var isIPv6 = false
        var guestSource = IPv6Address.any
        var destination = IPv6Address.any
        var guestIdentifier: UInt16 = 0
        var lastReplySequence: UInt16 = 0
        var hasReplied = false
        var lastActivity: UInt64 = 0
    }

    /// The flow slots; a slot with socket -1 is free.
    private let flows: UnsafeMutableBufferPointer<Flow>
    /// Translation of destinations and binding of sockets (the §3.3 rules shared with TCP and
    /// UDP; echo has no port, so the DNS redirect never applies).
    public var rules: ForwardingRules

    /// Allocates a table of `capacity` flows translated by `rules`.
    public init(capacity: Int = defaultCapacity, rules: ForwardingRules) {
        flows = .allocate(capacity: capacity)
        flows.initialize(repeating: Flow())
        self.rules = rules
    }

    deinit {
        for slot in flows.indices where flows[slot].socket >= 0 { close(flows[slot].socket) }
        flows.deallocate()
    }

    /// The number of open flows.
    public var count: Int { flows.reduce(0) { $0 + ($1.socket >= 0 ? 1 : 0) } }

    /// The socket of flow `slot`, -1 if the slot is free.
    public func socket(ofSlot slot: Int) -> Int32 {
        slot >= 0 && slot < flows.count ? flows[slot].socket : -1
    }

    // MARK: Guest to host

    /// Sends the guest's ICMP message `message` from `source` to `destination` if it is an echo
    /// request, opening the flow's ping socket if needed.
    public mutating func handleRequest(source: IPv4Address, destination: IPv4Address,
                                       message: UnsafeRawBufferPointer, now: UInt64) -> EchoRequestOutcome {
        guard let echo = ICMPEcho(message.baseAddress!, count: message.count),
              echo.type == ICMPv4Type.echoRequest else { return .dropped }
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        let hostDestination = rules.hostDestination(IPv6Address(v4Mapped: destination), port: 0).v4Mapped ?? destination
        target.sin_addr.s_addr = hostDestination.value.bigEndian
        return withUnsafeBytes(of: &target) { address in
            send(isIPv6: false, source: IPv6Address(v4Mapped: source), destination: IPv6Address(v4Mapped: destination),
                 identifier: echo.identifier, message: message, address: address, now: now)
        }
    }

    /// Sends the guest's ICMPv6 message `message` from `source` to `destination` if it is an echo
    /// request, opening the flow's ping socket if needed.
    public mutating func handleRequest(source: IPv6Address, destination: IPv6Address,
                                       message: UnsafeRawBufferPointer, now: UInt64) -> EchoRequestOutcome {
        guard let echo = ICMPEcho(message.baseAddress!, count: message.count),
              echo.type == ICMPv6Type.echoRequest else { return .dropped }
        let hostDestination = rules.hostDestination(destination, port: 0)
        var target = sockaddr_in6()
        target.sin6_family = sa_family_t(AF_INET6)
        withUnsafeMutableBytes(of: &target.sin6_addr) { hostDestination.store(to: $0.baseAddress!, offset: 0) }
        if hostDestination.isLinkLocal { target.sin6_scope_id = rules.linkLocalScope6 }
        return withUnsafeBytes(of: &target) { address in
            send(isIPv6: true, source: source, destination: destination, identifier: echo.identifier,
                 message: message, address: address, now: now)
        }
    }

    /// Finds or opens the flow and sends `message` to the socket address `address`.
    private mutating func send(isIPv6: Bool, source: IPv6Address, destination: IPv6Address, identifier: UInt16,
                               message: UnsafeRawBufferPointer, address: UnsafeRawBufferPointer,
                               now: UInt64) -> EchoRequestOutcome {
        var slot = lookup(isIPv6: isIPv6, source: source, destination: destination, identifier: identifier)
        var outcome = EchoRequestOutcome.sent
        if slot == nil {
            guard let free = flows.firstIndex(where: { $0.socket < 0 }) else {
                Log.debug("ICMP: no free echo flow")
                return .dropped
            }
            let fd = openSocket(isIPv6: isIPv6)
            guard fd >= 0 else { return .dropped }
            flows[free] = Flow(socket: fd, isIPv6: isIPv6, guestSource: source, destination: destination,
                               guestIdentifier: identifier, lastActivity: now)
            slot = free
            outcome = .newFlow(slot: free, fd: fd)
        }
        let flow = slot!
        flows[flow].lastActivity = now
        let sent = Glibc.sendto(flows[flow].socket, message.baseAddress, message.count, Int32(MSG_NOSIGNAL),
                                address.baseAddress!.assumingMemoryBound(to: sockaddr.self),
                                socklen_t(address.count))
        if sent < 0 {
            Log.debug("ICMP: echo request to \(destination) failed: \(SyscallError(errno))")
            if case .newFlow = outcome { return outcome }
            return .dropped
        }
        return outcome
    }

    /// The slot of the flow for (family, guest source, destination, guest id), nil if none.
    private func lookup(isIPv6: Bool, source: IPv6Address, destination: IPv6Address, identifier: UInt16) -> Int? {
        for slot in flows.indices {
            let flow = flows[slot]
            if flow.socket >= 0 && flow.isIPv6 == isIPv6 && flow.guestIdentifier == identifier
                && flow.guestSource == source && flow.destination == destination {
                return slot
            }
        }
        return nil
    }

    /// Opens a non-blocking ping socket bound to the outbound address/interface; -1 on failure.
    private func openSocket(isIPv6: Bool) -> Int32 {
        let domain = isIPv6 ? AF_INET6 : AF_INET
        let proto = Int32(isIPv6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP)
        let fd = Glibc.socket(domain, SocketType.datagram | SocketType.nonBlocking | Int32(SOCK_CLOEXEC.rawValue), proto)
        guard fd >= 0 else {
            Log.warning("Cannot open \"ping\" socket. You might need to:")
            Log.warning("  sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"")
            return -1
        }
        if let interface = isIPv6 ? rules.outboundInterface6 : rules.outboundInterface4 {
            if case .failure(let code) = Sys.bindToDevice(fd, interface) {
                Log.debug("ICMP: can't bind ping socket to \(interface): \(SyscallError(code))")
            }
        }
        var result: Int32 = 0
        if isIPv6, let source = rules.outboundAddress6 {
            var local = sockaddr_in6()
            local.sin6_family = sa_family_t(AF_INET6)
            withUnsafeMutableBytes(of: &local.sin6_addr) { source.store(to: $0.baseAddress!, offset: 0) }
            result = withUnsafeBytes(of: &local) {
                bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
            }
        } else if !isIPv6, let source = rules.outboundAddress4 {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = source.value.bigEndian
            result = withUnsafeBytes(of: &local) {
                bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
            }
        }
        if result < 0 {
            Log.debug("ICMP: can't bind ping socket: \(SyscallError(errno))")
            close(fd)
            return -1
        }
        return fd
    }

    // MARK: Host to guest

    /// Receives one datagram from flow `slot`'s socket into `frame` and, if it is an echo reply to
    /// relay, completes it into an Ethernet frame to the guest (from `ourMAC` to `guestMAC`);
    /// returns its length, 0 for a datagram that was dropped, nil when the socket has no more.
    public mutating func receiveReply(slot: Int, into frame: UnsafeMutableRawBufferPointer,
                                      ourMAC: MACAddress, guestMAC: MACAddress, now: UInt64) -> Int? {
        guard slot >= 0 && slot < flows.count, flows[slot].socket >= 0 else { return nil }
        let flow = flows[slot]
        let ipHeaderLength = flow.isIPv6 ? IPv6Packet.headerLength : IPv4Packet.minimumHeaderLength
        let offset = EthernetFrame.headerLength + ipHeaderLength
        let base = frame.baseAddress!
        let received = Glibc.recv(flow.socket, base + offset, frame.count - offset, Int32(MSG_DONTWAIT))
        if received < 0 {
            if errno == EINTR { return 0 }
            return nil
        }
        let message = base + offset
        guard let echo = ICMPEcho(UnsafeRawPointer(message), count: received),
              echo.type == (flow.isIPv6 ? ICMPv6Type.echoReply : ICMPv4Type.echoReply) else { return 0 }
        if flow.hasReplied && echo.sequenceNumber == flow.lastReplySequence { return 0 }
        flows[slot].hasReplied = true
        flows[slot].lastReplySequence = echo.sequenceNumber
        flows[slot].lastActivity = now

        message.setBE16(4, flow.guestIdentifier)
        if flow.isIPv6 {
            ICMPv6Packet.fillChecksum(message, count: received, source: flow.destination, destination: flow.guestSource)
            IPv6Packet.write(to: base + EthernetFrame.headerLength, source: flow.destination,
                             destination: flow.guestSource, nextHeader: IPProtocol.icmpv6, payloadLength: received)
        } else {
            ICMPv4Packet.fillChecksum(message, count: received)
            IPv4Packet.write(to: base + EthernetFrame.headerLength, source: flow.destination.v4Mapped ?? .any,
                             destination: flow.guestSource.v4Mapped ?? .any, protocol: IPProtocol.icmp,
                             payloadLength: received)
        }
        EthernetFrame.write(to: base, destination: guestMAC, source: ourMAC,
                            etherType: flow.isIPv6 ? EtherType.ipv6 : EtherType.ipv4)
        return offset + received
    }

    // MARK: Timers

    /// Closes every flow idle for `idleTimeout` or longer at `now`; returns how many were closed.
    @discardableResult
    public mutating func expire(now: UInt64) -> Int {
        var closed = 0
        for slot in flows.indices where flows[slot].socket >= 0 {
            if now &- flows[slot].lastActivity >= ICMPEchoFlows.idleTimeout {
                close(flows[slot].socket)
                flows[slot] = Flow()
                closed += 1
            }
        }
        return closed
    }
}
