// UDP flows with a fake tap (datagrams and frames in memory), real loopback sockets in a private
// network namespace and a caller-supplied clock: a guest datagram to the map-host-loopback address
// reaches 127.0.0.1 from the guest's source port, the reply comes back as a frame from the address
// the guest targeted; a full flow table drops new flows only; idle flows expire after 180 s; an
// ICMP error from the host side is drained and the flow keeps working; a run of equal-length
// datagrams leaves as one UDP GSO send and arrives as the same datagrams, and a socket that
// refuses GSO, or reports an ICMP error in place of the run, gets them one by one; replies of
// equal length join into one UDP GSO frame towards the guest.
import Foundation
import Testing
import PasstFlow
import PasstSys
import PasstWire

/// A UDP datagram (header and payload) from `sourcePort` to `destinationPort`.
func udpDatagram(sourcePort: UInt16, destinationPort: UInt16, payload: [UInt8]) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: UDPDatagram.headerLength + payload.count)
    bytes.withUnsafeMutableBytes { buffer in
        UDPDatagram.write(to: buffer.baseAddress!, sourcePort: sourcePort, destinationPort: destinationPort,
                          payloadLength: payload.count)
        buffer.baseAddress!.advanced(by: UDPDatagram.headerLength).copyMemory(from: payload, byteCount: payload.count)
    }
    return bytes
}

/// A UDP socket bound to 127.0.0.1:`port` (0: any port); returns it and its port.
func loopbackServer(port: UInt16 = 0) throws -> (Int32, UInt16) {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = IPv4Address.loopback.value.bigEndian
    address.sin_port = port.bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
            if bind(fd, pointer, length) != 0 { return -1 }
            return getsockname(fd, pointer, &length)
        }
    }
    guard bound == 0 else { throw SyscallError(errno) }
    return (fd, UInt16(bigEndian: address.sin_port))
}

/// Receives one datagram on `fd` and sends it back to its sender; returns the sender's port.
func echoOnce(_ fd: Int32) throws -> UInt16 {
    guard waitReadable(fd) else { throw SyscallError(ETIMEDOUT) }
    var buffer = [UInt8](repeating: 0, count: 65536)
    var peer = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let count = withUnsafeMutablePointer(to: &peer) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buffer, buffer.count, 0, $0, &length) }
    }
    guard count >= 0 else { throw SyscallError(errno) }
    _ = withUnsafeMutablePointer(to: &peer) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, buffer, count, 0, $0, length) }
    }
    return UInt16(bigEndian: peer.sin_port)
}

/// Receives every datagram waiting on `fd` (up to 2 s for the first); returns each payload and,
/// where the socket has UDP_GRO on and the kernel passed a GSO datagram whole, its segment size.
func receiveDatagrams(_ fd: Int32) -> [(payload: [UInt8], segmentSize: Int?)] {
    var received: [(payload: [UInt8], segmentSize: Int?)] = []
    guard waitReadable(fd) else { return received }
    var buffer = [UInt8](repeating: 0, count: 65536)
    var control = [UInt8](repeating: 0, count: 64)
    while true {
        let result: (Int, Int?) = buffer.withUnsafeMutableBytes { data in
            control.withUnsafeMutableBytes { controlBytes in
                var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var message = msghdr()
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    message.msg_control = controlBytes.baseAddress
                    message.msg_controllen = controlBytes.count
                    let count = recvmsg(fd, &message, Int32(MSG_DONTWAIT))
                    guard count >= 0 else { return (-1, nil) }
                    // One cmsghdr at most: length (size_t), level and type (int), then an int.
                    guard message.msg_controllen >= 20,
                          controlBytes.load(fromByteOffset: 8, as: Int32.self) == 17,   // SOL_UDP
                          controlBytes.load(fromByteOffset: 12, as: Int32.self) == 104  // UDP_GRO
                    else { return (count, nil) }
                    return (count, Int(controlBytes.load(fromByteOffset: 16, as: Int32.self)))
                }
            }
        }
        guard result.0 >= 0 else { return received }
        received.append((Array(buffer[..<result.0]), result.1))
    }
}

@Suite("UDP flows", .enabled(if: getuid() == 0), .timeLimit(.minutes(10)))
struct UDPFlowTests {
    static let guest = IPv4Address(192, 0, 2, 2)
    static let gateway = IPv4Address(192, 0, 2, 1)

    /// Sends `payload` from guest port `port` to the gateway's `serverPort` through `flows`.
    static func send(_ flows: inout UDPFlows, table: inout FlowTable, from port: UInt16, to serverPort: UInt16,
                     payload: [UInt8], now: UInt64) -> UDPGuestOutcome {
        let bytes = udpDatagram(sourcePort: port, destinationPort: serverPort, payload: payload)
        let outcome = bytes.withUnsafeBytes { buffer in
            flows.handleGuestDatagram(isIPv6: false, source: IPv6Address(v4Mapped: guest),
                                      destination: IPv6Address(v4Mapped: gateway),
                                      datagram: UDPDatagram(buffer.baseAddress!, count: buffer.count)!, now: now,
                                      table: &table)
        }
        flows.flush()
        return outcome
    }

    /// Queues `payloads` from guest port `port` to the gateway's `serverPort` as one tap read
    /// would (all in one buffer that outlives the queue), then flushes them; returns the outcomes.
    static func sendBatch(_ flows: inout UDPFlows, table: inout FlowTable, from port: UInt16, to serverPort: UInt16,
                          payloads: [[UInt8]], now: UInt64) -> [UDPGuestOutcome] {
        let total = payloads.reduce(0) { $0 + UDPDatagram.headerLength + $1.count }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 8)
        defer { buffer.deallocate() }
        var offset = 0
        var outcomes: [UDPGuestOutcome] = []
        for payload in payloads {
            let bytes = udpDatagram(sourcePort: port, destinationPort: serverPort, payload: payload)
            let datagram = buffer.baseAddress! + offset
            datagram.copyMemory(from: bytes, byteCount: bytes.count)
            outcomes.append(flows.handleGuestDatagram(
                isIPv6: false, source: IPv6Address(v4Mapped: guest), destination: IPv6Address(v4Mapped: gateway),
                datagram: UDPDatagram(datagram, count: bytes.count)!, now: now, table: &table))
            offset += bytes.count
        }
        flows.flush()
        return outcomes
    }

    /// Runs `body` in a private network namespace with 16 UDP flows that map the gateway to the
    /// host's loopback and a flow table of `tableCapacity` keys.
    static func withFlows(tableCapacity: Int = 16,
                          _ body: @escaping @Sendable (inout UDPFlows, inout FlowTable) throws -> Void) throws {
        try inPrivateNetworkNamespace {
            var rules = ForwardingRules()
            rules.mapHostLoopback4 = UDPFlowTests.gateway
            var flows = UDPFlows(capacity: 16, rules: rules)
            var table = FlowTable(capacity: tableCapacity)
            try body(&flows, &table)
        }
    }

    /// A loopback UDP server on `port` (0: any) with twice the default receive buffer (the most
    /// SO_RCVBUF gives), so that it holds a whole `run`; returns it and its port.
    static func runServer(port: UInt16 = 0) throws -> (Int32, UInt16) {
        let (fd, bound) = try loopbackServer(port: port)
        var size: Int32 = 1 << 20
        guard setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            close(fd)
            throw SyscallError(errno)
        }
        return (fd, bound)
    }

    /// 100 payloads of 1400 bytes, then one of 300, each filled with its own index.
    static let run: [[UInt8]] = (0..<101).map { [UInt8](repeating: UInt8($0), count: $0 == 100 ? 300 : 1400) }

    @Test("A run of equal-length datagrams leaves as UDP GSO sends and arrives as the same datagrams")
    func segmentedRun() throws {
        try UDPFlowTests.withFlows { flows, table in
            let (server, serverPort) = try UDPFlowTests.runServer()
            defer { close(server) }
            let plain = UDPFlowTests.sendBatch(&flows, table: &table, from: 40010, to: serverPort,
                                               payloads: UDPFlowTests.run, now: 1)
            guard case .newFlow = plain.first else {
                Issue.record("no new flow: \(plain)")
                return
            }
            #expect(plain.dropFirst().allSatisfy { $0 == .queued })
            let received = receiveDatagrams(server).map(\.payload)
            #expect(received == UDPFlowTests.run, "same datagrams, same order: \(received.map(\.count))")

            // A receiver with UDP_GRO on is handed the GSO sends whole: 1400-byte segments, at most
            // 46 of them (65507 bytes) per send.
            var on: Int32 = 1
            try #require(setsockopt(server, 17, 104, &on, socklen_t(MemoryLayout<Int32>.size)) == 0)  // UDP_GRO
            _ = UDPFlowTests.sendBatch(&flows, table: &table, from: 40010, to: serverPort,
                                       payloads: UDPFlowTests.run, now: 2)
            let coalesced = receiveDatagrams(server)
            #expect(coalesced.count < UDPFlowTests.run.count, "fewer receives than datagrams: \(coalesced.count)")
            #expect(coalesced.allSatisfy { $0.payload.count <= 65507 })
            #expect(coalesced.contains { $0.segmentSize == 1400 && $0.payload.count > 1400 })
            let bytesMatch = Array(coalesced.map(\.payload).joined()) == Array(UDPFlowTests.run.joined())
            #expect(bytesMatch, "every byte, in order")
        }
    }

    @Test("Replies of equal length join into one UDP GSO frame for the guest; split, each is whole again")
    func joinedReplies() throws {
        try UDPFlowTests.withFlows { flows, table in
            let (server, serverPort) = try UDPFlowTests.runServer()
            defer { close(server) }
            let first = UDPFlowTests.send(&flows, table: &table, from: 40013, to: serverPort, payload: [1], now: 1)
            guard case .newFlow(let slot, let fd) = first else {
                Issue.record("no new flow: \(first)")
                return
            }
            // Replies of 1400, 1400, 1000, 1400, 1400 and 300 bytes: runs of 3 (a shorter one ends
            // a run) and of 3.
            let sizes = [1400, 1400, 1000, 1400, 1400, 300]
            try #require(waitReadable(server))
            var peer = sockaddr_in()
            var peerLength = socklen_t(MemoryLayout<sockaddr_in>.size)
            var scratch = [UInt8](repeating: 0, count: 16)
            _ = withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(server, &scratch, 16, 0, $0, &peerLength) }
            }
            for (index, size) in sizes.enumerated() {
                let payload = [UInt8](repeating: UInt8(index), count: size)
                _ = withUnsafeMutablePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(server, payload, size, 0, $0, peerLength) }
                }
            }
            try #require(waitReadable(fd))
            let replies = flows.receiveReplies(slot: slot, now: 2, ourMAC: ourMAC, guestMAC: guestMAC)
            let count = try #require(replies)
            try #require(count == sizes.count)
            let runs = [0, 3, 5].map { flows.segmentRunLength(from: $0, count: count) }
            #expect(runs == [3, 3, 1])
            let single = Array(flows.frame(3))

            let offload = flows.joinRun(from: 3, length: 3, ourMAC: ourMAC, guestMAC: guestMAC)
            #expect(offload.gsoType == VirtioNetHeader.gsoUDPL4 && offload.segmentSize == 1400)
            #expect(offload.hasPartialChecksum && offload.checksumStart == 34 && offload.checksumOffset == 6)
            #expect(offload.headerLength == 42)
            let vectors = flows.runVectors
            let lengths = (1...3).map { vectors[$0].iov_len }
            #expect(lengths == [42 + 1400, 1400, 300])
            let frame = flows.frame(3)
            #expect(frame.count == 42 + 1400, "the first frame keeps its own length")
            let joined = UnsafeRawPointer(frame.baseAddress!)
            #expect(joined.be16(14 + 2) == 20 + 8 + 3100, "IPv4 total length of the run")
            #expect(joined.be16(34 + 4) == 8 + 3100, "UDP length of the run")
            #expect(joined.be16(34 + 6) == Checksum.fold(Checksum.pseudoHeader(
                source: UDPFlowTests.gateway, destination: UDPFlowTests.guest, protocol: IPProtocol.udp,
                length: 8 + 3100)), "partial checksum for the run's length")
            let ip = try #require(IPv4Packet(joined + 14, count: 20 + 8 + 3100))
            #expect(ip.isChecksumValid)

            flows.splitRun(at: 3, ourMAC: ourMAC, guestMAC: guestMAC)
            let split = Array(flows.frame(3))
            #expect(split == single, "split: the frame of its own datagram again")
        }
    }

    @Test("An ICMP error reported in place of a run costs no datagram of it")
    func errorInPlaceOfRun() throws {
        try UDPFlowTests.withFlows { flows, table in
            let (closed, port) = try loopbackServer()
            close(closed)
            let first = UDPFlowTests.send(&flows, table: &table, from: 40012, to: port, payload: [1], now: 1)
            guard case .newFlow(_, let fd) = first else {
                Issue.record("no new flow: \(first)")
                return
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            try #require(poll(&pfd, 1, 2000) == 1 && pfd.revents & Int16(POLLERR) != 0, "port unreachable pending")
            let (server, _) = try UDPFlowTests.runServer(port: port)
            defer { close(server) }
            _ = UDPFlowTests.sendBatch(&flows, table: &table, from: 40012, to: port, payloads: UDPFlowTests.run, now: 2)
            let received = receiveDatagrams(server).map(\.payload)
            #expect(received == UDPFlowTests.run, "all of them: \(received.map(\.count))")
        }
    }

    @Test("A socket that refuses UDP GSO gets the run one datagram at a time")
    func segmentationRefused() throws {
        try UDPFlowTests.withFlows { flows, table in
            let (server, serverPort) = try UDPFlowTests.runServer()
            defer { close(server) }
            let first = UDPFlowTests.send(&flows, table: &table, from: 40011, to: serverPort, payload: [1], now: 1)
            guard case .newFlow(_, let fd) = first else {
                Issue.record("no new flow: \(first)")
                return
            }
            let probe = receiveDatagrams(server).map(\.payload)
            #expect(probe == [[1]], "the first datagram: \(probe.map(\.count))")
            // Without UDP checksums (SO_NO_CHECK) the kernel refuses GSO sends with EINVAL.
            var on: Int32 = 1
            try #require(setsockopt(fd, SOL_SOCKET, SO_NO_CHECK, &on, socklen_t(MemoryLayout<Int32>.size)) == 0)
            for now in [UInt64(2), 3] {
                let outcomes = UDPFlowTests.sendBatch(&flows, table: &table, from: 40011, to: serverPort,
                                                      payloads: UDPFlowTests.run, now: now)
                #expect(outcomes.allSatisfy { $0 == .queued })
                let received = receiveDatagrams(server).map(\.payload)
                #expect(received == UDPFlowTests.run, "pass \(now - 1): all of them: \(received.map(\.count))")
            }
        }
    }

    @Test("Request and reply, full table, expiry after 180 s, ICMP errors survived")
    func roundTripFullTableAndExpiry() throws {
        try UDPFlowTests.withFlows(tableCapacity: 4) { flows, table in
            let (server, serverPort) = try loopbackServer()
            defer { close(server) }
            let second = UInt64(1_000_000_000)

            // Two flows fill the table (two keys each).
            for (index, guestPort) in [UInt16(40001), 40002].enumerated() {
                let payload = Array("hello \(guestPort)".utf8)
                let outcome = UDPFlowTests.send(&flows, table: &table, from: guestPort, to: serverPort,
                                                payload: payload, now: 10 * second)
                guard case .newFlow(let slot, let fd) = outcome else {
                    Issue.record("no new flow: \(outcome)")
                    return
                }
                do { let socket = flows.socket(ofSlot: slot); #expect(socket == fd) }
                #expect(try echoOnce(server) == guestPort, "flow \(index): guest's source port kept")
                try #require(waitReadable(fd))
                let replies = flows.receiveReplies(slot: slot, now: 11 * second, ourMAC: ourMAC, guestMAC: guestMAC)
                let count = try #require(replies)
                try #require(count == 1)
                let frame = flows.frame(0)
                let offload = flows.offload(0)
                #expect(offload.hasPartialChecksum && offload.gsoType == VirtioNetHeader.gsoNone)
                #expect(offload.checksumStart == 34 && offload.checksumOffset == 6 && offload.headerLength == 42)
                #expect(frame.load(fromByteOffset: 40, as: UInt16.self).bigEndian == Checksum.fold(
                    Checksum.pseudoHeader(source: UDPFlowTests.gateway, destination: UDPFlowTests.guest,
                                          protocol: IPProtocol.udp, length: 8 + payload.count)),
                        "partial checksum: the pseudo-header sum alone")
                offload.completeChecksum(frame.baseAddress!, count: frame.count)
                let parsed = EthernetFrame(frame.baseAddress!, count: frame.count)
                let ethernet = try #require(parsed)
                #expect(ethernet.destination == guestMAC && ethernet.source == ourMAC)
                let ip = try #require(IPv4Packet(ethernet.payload, count: ethernet.payloadCount))
                #expect(ip.source == UDPFlowTests.gateway && ip.destination == UDPFlowTests.guest)
                #expect(ip.isChecksumValid)
                let udp = try #require(UDPDatagram(ip.payload, count: ip.payloadCount))
                #expect(udp.sourcePort == serverPort && udp.destinationPort == guestPort)
                #expect(udp.isChecksumValid(source: ip.source, destination: ip.destination))
                #expect(Array(UnsafeRawBufferPointer(start: udp.payload, count: udp.payloadCount)) == payload)
            }
            do { let keys = table.count; #expect(keys == 4) }

            // Full: a third flow is dropped, the first still carries datagrams on its socket.
            let dropped = UDPFlowTests.send(&flows, table: &table, from: 40003, to: serverPort,
                                            payload: [1], now: 12 * second)
            #expect(dropped == .dropped)
            do { let open = flows.count; #expect(open == 2) }
            let again = UDPFlowTests.send(&flows, table: &table, from: 40001, to: serverPort, payload: [2],
                                          now: 12 * second)
            #expect(again == .queued)
            #expect(try echoOnce(server) == 40001)

            // Idle for 179 s: kept; 180 s after the last datagram: both closed, room again.
            do { let closed = flows.expire(now: 12 * second + 179 * second, table: &table); #expect(closed == 1) }
            do { let open = flows.count; #expect(open == 1) }
            do { let closed = flows.expire(now: 12 * second + 180 * second, table: &table); #expect(closed == 1) }
            do { let open = flows.count, keys = table.count; #expect(open == 0 && keys == 0) }
            let fresh = UDPFlowTests.send(&flows, table: &table, from: 40003, to: serverPort, payload: [3],
                                          now: 200 * second)
            guard case .newFlow(let freshSlot, let freshSocket) = fresh else {
                Issue.record("no new flow after expiry: \(fresh)")
                return
            }
            #expect(try echoOnce(server) == 40003)
            try #require(waitReadable(freshSocket))
            _ = flows.receiveReplies(slot: freshSlot, now: 200 * second, ourMAC: ourMAC, guestMAC: guestMAC)

            // An ICMP port unreachable (nobody listens) is drained; the flow carries on afterwards.
            let (unreachable, unreachablePort) = try loopbackServer()
            close(unreachable)
            let toClosed = UDPFlowTests.send(&flows, table: &table, from: 40003, to: unreachablePort, payload: [4],
                                             now: 201 * second)
            guard case .newFlow(let errorSlot, let errorSocket) = toClosed else {
                Issue.record("no flow to the closed port: \(toClosed)")
                return
            }
            var pfd = pollfd(fd: errorSocket, events: Int16(POLLIN), revents: 0)
            #expect(poll(&pfd, 1, 2000) == 1 && pfd.revents & Int16(POLLERR) != 0, "ICMP error queued")
            flows.drainErrors(slot: errorSlot)
            while flows.receiveReplies(slot: errorSlot, now: 202 * second, ourMAC: ourMAC, guestMAC: guestMAC) != nil {}
            do { let socket = flows.socket(ofSlot: errorSlot); #expect(socket == errorSocket, "flow kept") }
            let (reopened, _) = try loopbackServer(port: unreachablePort)
            defer { close(reopened) }
            let retry = UDPFlowTests.send(&flows, table: &table, from: 40003, to: unreachablePort, payload: [5],
                                          now: 203 * second)
            #expect(retry == .queued)
            #expect(try echoOnce(reopened) == 40003)
            try #require(waitReadable(errorSocket))
            let replies = flows.receiveReplies(slot: errorSlot, now: 204 * second, ourMAC: ourMAC, guestMAC: guestMAC)
            #expect(replies == 1)
        }
    }
}
