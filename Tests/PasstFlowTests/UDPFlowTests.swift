// UDP flows with a fake tap (datagrams and frames in memory), real loopback sockets in a private
// network namespace and a caller-supplied clock: a guest datagram to the map-host-loopback address
// reaches 127.0.0.1 from the guest's source port, the reply comes back as a frame from the address
// the guest targeted; a full flow table drops new flows only; idle flows expire after 180 s; an
// ICMP error from the host side is drained and the flow keeps working.
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

    @Test("Request and reply, full table, expiry after 180 s, ICMP errors survived")
    func roundTripFullTableAndExpiry() throws {
        try inPrivateNetworkNamespace {
            var rules = ForwardingRules()
            rules.mapHostLoopback4 = UDPFlowTests.gateway
            var flows = UDPFlows(capacity: 16, rules: rules)
            var table = FlowTable(capacity: 4)
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
