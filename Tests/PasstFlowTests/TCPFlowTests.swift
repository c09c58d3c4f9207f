// TCP flows with a fake tap (frames in memory), real loopback sockets in a private network
// namespace, and a caller-supplied clock: the test plays the guest, building segments and reading
// the frames the engine sends, and drives the engine's epoll instance itself. Covered: both
// handshakes, a refused connect, RSTs for segments of unknown flows, data both ways with content
// checked, a guest window of 0 then reopened, a lost segment recovered by a duplicate ACK and by
// the ACK timeout, the retry limit, guest FIN first and host FIN first, RST from either side, the
// handshake timeout.
import Foundation
import Testing
import PasstFlow
import PasstSys
import PasstWire

/// Frames sent to the guest, kept in memory (with their virtio-net headers when offloading).
struct MemoryTap: TCPTap {
    let ourMAC = MACAddress(0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55)
    let guestMAC = MACAddress(0x02, 0, 0, 0, 0, 0x01)
    /// Whether the engine may send frames of many segments (a tap with a virtio-net header).
    var segmentationOffload = false
    var frames: [[UInt8]] = []
    /// The virtio-net header of every frame sent with one, in order.
    var offloads: [VirtioNetHeader] = []

    /// Keeps a copy of `frame`.
    mutating func send(_ frame: UnsafeRawBufferPointer) { frames.append(Array(frame)) }

    /// Keeps `offload` and a copy of `frame` with its checksum completed as the kernel would.
    mutating func send(_ frame: UnsafeMutableRawBufferPointer, offload: VirtioNetHeader) {
        offloads.append(offload)
        var copy = Array(frame)
        copy.withUnsafeMutableBytes { offload.completeChecksum($0.baseAddress!, count: $0.count) }
        frames.append(copy)
    }
}

/// A TCP segment towards the guest, decoded from a frame of the fake tap.
struct GuestView: Equatable {
    var source: IPv4Address, destination: IPv4Address
    var sourcePort: UInt16, destinationPort: UInt16
    var seq: UInt32, ack: UInt32, flags: TCPFlags, window: UInt16
    var mss: UInt16?, windowScale: UInt8?
    var payload: [UInt8]

    /// Decodes an Ethernet/IPv4/TCP frame, checking both checksums; nil if it is not one.
    init?(_ frame: [UInt8]) {
        guard let decoded = frame.withUnsafeBytes({ raw -> GuestView? in
            guard let ethernet = EthernetFrame(raw.baseAddress!, count: raw.count),
                  let ip = IPv4Packet(ethernet.payload, count: ethernet.payloadCount), ip.isChecksumValid,
                  let tcp = TCPSegment(ip.payload, count: ip.payloadCount),
                  tcp.isChecksumValid(source: ip.source, destination: ip.destination) else { return nil }
            let options = tcp.options
            return GuestView(source: ip.source, destination: ip.destination, sourcePort: tcp.sourcePort,
                             destinationPort: tcp.destinationPort, seq: tcp.sequenceNumber,
                             ack: tcp.acknowledgmentNumber, flags: tcp.flags, window: tcp.window, mss: options.mss,
                             windowScale: options.windowScale,
                             payload: Array(UnsafeRawBufferPointer(start: tcp.payload, count: tcp.payloadCount)))
        }) else { return nil }
        self = decoded
    }

    /// A view from its fields.
    init(source: IPv4Address, destination: IPv4Address, sourcePort: UInt16, destinationPort: UInt16, seq: UInt32,
         ack: UInt32, flags: TCPFlags, window: UInt16, mss: UInt16?, windowScale: UInt8?, payload: [UInt8]) {
        self.source = source; self.destination = destination; self.sourcePort = sourcePort
        self.destinationPort = destinationPort; self.seq = seq; self.ack = ack; self.flags = flags
        self.window = window; self.mss = mss; self.windowScale = windowScale; self.payload = payload
    }
}

/// The engine under test, its flow table, epoll instance, fake tap and clock.
struct TCPRig: ~Copyable {
    static let guest = IPv4Address(192, 0, 2, 2)
    static let gateway = IPv4Address(192, 0, 2, 1)
    static let socketKind: UInt8 = 1
    static let timerKind: UInt8 = 2
    static let listenerKind: UInt8 = 3
    static let second: UInt64 = 1_000_000_000

    var flows: TCPFlows
    var table = FlowTable(capacity: 64)
    var tap = MemoryTap()
    let epoll: Epoll
    var events = EpollEventBuffer(capacity: 16)
    var now: UInt64 = 1_000 * TCPRig.second

    /// A rig whose guest reaches 127.0.0.1 as 192.0.2.1, with `listeners` for host -> guest.
    init(listeners: [TCPListener] = []) {
        var rules = ForwardingRules()
        rules.mapHostLoopback4 = TCPRig.gateway
        rules.ourTapAddress4 = TCPRig.gateway
        rules.guestAddress4 = TCPRig.guest
        flows = TCPFlows(capacity: 16, rules: rules, listeners: listeners, mtu: 1500,
                         socketKind: TCPRig.socketKind, timerKind: TCPRig.timerKind)
        epoll = try! Epoll.create().get()
        flows.epollFD = epoll.descriptor.raw
    }

    /// Sends a segment from the guest's `port` to `serverPort` of `address` (the gateway's).
    mutating func send(from port: UInt16, to serverPort: UInt16, at address: IPv4Address = TCPRig.gateway, seq: UInt32,
                       ack: UInt32 = 0, flags: TCPFlags, window: UInt16 = 65535, mss: UInt16? = nil,
                       windowScale: UInt8? = nil, payload: [UInt8] = []) {
        let headerLength = TCPSegment.headerLength(mss: mss, windowScale: windowScale)
        var bytes = [UInt8](repeating: 0, count: headerLength + payload.count)
        bytes.withUnsafeMutableBytes { buffer in
            TCPSegment.write(to: buffer.baseAddress!, sourcePort: port, destinationPort: serverPort, sequenceNumber: seq,
                             acknowledgmentNumber: ack, flags: flags, window: window, mss: mss, windowScale: windowScale)
            buffer.baseAddress!.advanced(by: headerLength).copyMemory(from: payload, byteCount: payload.count)
        }
        bytes.withUnsafeBytes { buffer in
            flows.handleGuestSegment(isIPv6: false, source: IPv6Address(v4Mapped: TCPRig.guest),
                                     destination: IPv6Address(v4Mapped: address),
                                     segment: TCPSegment(buffer.baseAddress!, count: buffer.count)!, now: now,
                                     table: &table, tap: &tap)
            flows.flushGuestData(now: now, table: &table, tap: &tap)
        }
    }

    /// Sends data segments of `payloads` from the guest's `port`, back to back from `seq`, in one
    /// read pass: handled one by one, then the pass ends (the queued payload is written).
    mutating func sendPass(from port: UInt16, to serverPort: UInt16, seq: UInt32, ack: UInt32, payloads: [[UInt8]]) {
        let headerLength = TCPSegment.headerLength(mss: nil, windowScale: nil)
        let total = payloads.reduce(0) { $0 + headerLength + $1.count }
        let pass = UnsafeMutableRawPointer.allocate(byteCount: total, alignment: 8)
        defer { pass.deallocate() }
        var offset = 0
        var sequence = seq
        for payload in payloads {
            let segment = pass + offset
            TCPSegment.write(to: segment, sourcePort: port, destinationPort: serverPort, sequenceNumber: sequence,
                             acknowledgmentNumber: ack, flags: .ack, window: 65535, mss: nil, windowScale: nil)
            payload.withUnsafeBytes { (segment + headerLength).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            flows.handleGuestSegment(isIPv6: false, source: IPv6Address(v4Mapped: TCPRig.guest),
                                     destination: IPv6Address(v4Mapped: TCPRig.gateway),
                                     segment: TCPSegment(UnsafeRawPointer(segment), count: headerLength + payload.count)!,
                                     now: now, table: &table, tap: &tap)
            offset += headerLength + payload.count
            sequence &+= UInt32(payload.count)
        }
        flows.flushGuestData(now: now, table: &table, tap: &tap)
    }

    /// Dispatches socket and listener events for up to `milliseconds` (timers are driven by hand).
    mutating func pump(milliseconds: Int32 = 100) {
        let deadline = SystemClock.monotonicNanoseconds() + UInt64(milliseconds) * 1_000_000
        while SystemClock.monotonicNanoseconds() < deadline {
            guard case .success(let count) = epoll.wait(into: &events, timeoutMilliseconds: 10), count > 0 else {
                if tap.frames.isEmpty { continue } else { return }
            }
            for index in 0..<count {
                let token = EventToken(rawValue: events.data(at: index))
                if token.kind == TCPRig.socketKind {
                    flows.handleSocketEvent(token, events: events.events(at: index), now: now, table: &table, tap: &tap)
                } else if token.kind == TCPRig.listenerKind {
                    flows.acceptConnections(listener: Int(token.data), now: now, seen4: TCPRig.guest, seen6: nil,
                                            linkLocalSeen6: nil, table: &table, tap: &tap)
                }
            }
        }
    }

    /// Pumps until a frame arrives (at most 2 s); returns and removes every frame so far, decoded.
    mutating func receive() -> [GuestView] {
        for _ in 0..<20 where tap.frames.isEmpty { pump() }
        defer { tap.frames.removeAll() }
        return tap.frames.compactMap(GuestView.init)
    }

    /// Fires connection `slot`'s timer at the current fake time.
    mutating func fireTimer(_ slot: Int) {
        flows.handleTimer(slot: slot, now: now, table: &table, tap: &tap)
    }

    /// Handles an expiry of the connections' shared timerfd (`token`) at the current fake time.
    mutating func fireSharedTimer(_ token: EventToken) {
        flows.handleTimerEvent(token, now: now, table: &table, tap: &tap)
    }
}

/// Loopback TCP helpers of the tests.
enum LoopbackTCP {
    /// A socket listening on 127.0.0.1 (any port); returns it and its port.
    static func listener() throws -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = IPv4Address.loopback.value.bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
                if bind(fd, pointer, length) != 0 || listen(fd, 16) != 0 { return -1 }
                return getsockname(fd, pointer, &length)
            }
        }
        guard rc == 0 else { throw SyscallError(errno) }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    /// Accepts one connection on `fd` (waiting up to 2 s).
    static func accept(_ fd: Int32) throws -> Int32 {
        guard waitReadable(fd) else { throw SyscallError(ETIMEDOUT) }
        let client = Glibc.accept(fd, nil, nil)
        guard client >= 0 else { throw SyscallError(errno) }
        return client
    }

    /// A blocking client connected to 127.0.0.1:`port`.
    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = IPv4Address.loopback.value.bigEndian
        address.sin_port = port.bigEndian
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else { throw SyscallError(errno) }
        return fd
    }

    /// Reads exactly `count` bytes from `fd` (2 s per read at most).
    static func read(_ fd: Int32, count: Int) -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while result.count < count, waitReadable(fd) {
            let n = recv(fd, &buffer, min(buffer.count, count - result.count), 0)
            if n <= 0 { break }
            result += buffer[..<n]
        }
        return result
    }

    /// Whether `fd` reads end of file within 2 s.
    static func readsEOF(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        return waitReadable(fd) && recv(fd, &byte, 1, 0) == 0
    }
}

/// `count` bytes of test data differing by position and `seed`.
func tcpTestData(_ count: Int, seed: Int = 7) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 >> 8 &+ seed) }
}

@Suite("TCP flows", .enabled(if: getuid() == 0), .timeLimit(.minutes(10)))
struct TCPFlowTests {
    /// Opens a guest connection from port `guestPort` to `serverPort` through `rig` and returns
    /// the server's accepted socket, the slot, and the guest's next seq and our ISN + 1.
    static func connect(_ rig: inout TCPRig, guestPort: UInt16, server: Int32, serverPort: UInt16,
                        window: UInt16 = 65535, windowScale: UInt8? = 0) throws -> (Int32, Int, UInt32, UInt32) {
        rig.send(from: guestPort, to: serverPort, seq: 1000, flags: .syn, window: window, mss: 1460,
                 windowScale: windowScale)
        let synAck = rig.receive()
        try #require(synAck.count == 1)
        #expect(synAck[0].flags == [.syn, .ack] && synAck[0].ack == 1001)
        #expect(synAck[0].mss == 1460 && synAck[0].windowScale != nil)
        #expect(synAck[0].source == TCPRig.gateway && synAck[0].destination == TCPRig.guest)
        #expect(synAck[0].sourcePort == serverPort && synAck[0].destinationPort == guestPort)
        let accepted = try LoopbackTCP.accept(server)
        let ourSeq = synAck[0].seq &+ 1
        rig.send(from: guestPort, to: serverPort, seq: 1001, ack: ourSeq, flags: .ack, window: window)
        let key = FlowKey(proto: IPProtocol.tcp, interface: .tap, ourAddress: IPv6Address(v4Mapped: TCPRig.gateway),
                          ourPort: serverPort, endpointAddress: IPv6Address(v4Mapped: TCPRig.guest),
                          endpointPort: guestPort)
        let slotReference = rig.table.lookup(key)
        let slot = Int(try #require(slotReference))
        #expect(rig.flows.events(ofSlot: slot) == .established)
        return (accepted, slot, 1001, ourSeq)
    }

    @Test("A connect to a local server is answered while the guest's SYN is handled, without a socket event")
    func localConnectAnsweredAtOnce() throws {
        try inPrivateNetworkNamespace {
            var rig = TCPRig()
            let (server, serverPort) = try LoopbackTCP.listener()
            defer { close(server) }
            // connect(2) runs the loopback handshake itself unless the kernel defers its softirq
            // work to ksoftirqd (a loaded machine): of 10 connections, at least one is immediate.
            var immediate = 0
            for index in 0..<10 {
                let guestPort = UInt16(40_100 + index)
                rig.send(from: guestPort, to: serverPort, seq: 1000, flags: .syn, window: 65535, mss: 1460,
                         windowScale: 0)
                if !rig.tap.frames.isEmpty { immediate += 1 }
                let synAck = rig.receive()
                #expect(synAck.count == 1 && synAck.first?.flags == [.syn, .ack] && synAck.first?.ack == 1001)
                close(try LoopbackTCP.accept(server))
            }
            #expect(immediate > 0, "every SYN-ACK waited for a socket event")
        }
    }

    @Test("Guest connects: SYN-ACK after connect, data both ways, guest FIN first, host FIN, closed")
    func outboundDataAndGuestFinFirst() throws {
        try inPrivateNetworkNamespace {
            var rig = TCPRig()
            let (server, serverPort) = try LoopbackTCP.listener()
            defer { close(server) }
            let (accepted, _, guestSeq, ourSeq) = try TCPFlowTests.connect(&rig, guestPort: 40001, server: server,
                                                                          serverPort: serverPort)
            defer { close(accepted) }

            // Guest -> host: "hello", acknowledged.
            let hello = Array("hello".utf8)
            rig.send(from: 40001, to: serverPort, seq: guestSeq, ack: ourSeq, flags: [.ack, .psh], payload: hello)
            #expect(LoopbackTCP.read(accepted, count: 5) == hello)
            let acks = rig.receive()
            #expect(acks.last?.ack == guestSeq &+ 5 && acks.last?.flags == .ack)

            // Host -> guest: 100 000 bytes in MSS-sized segments, acknowledged as they come.
            let data = tcpTestData(100_000)
            #expect(send(accepted, data, data.count, 0) == data.count)
            var received: [UInt8] = []
            var expected = ourSeq
            for _ in 0..<200 where received.count < data.count {
                for segment in rig.receive() where !segment.payload.isEmpty {
                    #expect(segment.seq == expected && segment.payload.count <= 1460)
                    expected &+= UInt32(segment.payload.count)
                    received += segment.payload
                    rig.send(from: 40001, to: serverPort, seq: guestSeq &+ 5, ack: expected, flags: .ack)
                }
            }
            #expect(received == data)

            // Guest FIN first: the server reads EOF, the FIN is acknowledged.
            rig.send(from: 40001, to: serverPort, seq: guestSeq &+ 5, ack: expected, flags: [.fin, .ack])
            #expect(rig.receive().last?.ack == guestSeq &+ 6)
            #expect(LoopbackTCP.readsEOF(accepted))
            // Then the host closes: our FIN, the guest's ACK closes the connection.
            shutdown(accepted, Int32(SHUT_WR))
            let fin = rig.receive()
            #expect(fin.last?.flags == [.fin, .ack] && fin.last?.seq == expected)
            rig.send(from: 40001, to: serverPort, seq: guestSeq &+ 6, ack: expected &+ 1, flags: .ack)
            do { let open = rig.flows.count, keys = rig.table.count; #expect(open == 0 && keys == 0) }
        }
    }

    @Test("Segmentation offload: socket data leaves as frames of whole 1460-byte segments up to 64 KiB, marked GSO")
    func segmentationOffloadFrames() throws {
        try inPrivateNetworkNamespace {
            var rig = TCPRig()
            rig.tap.segmentationOffload = true
            let (server, serverPort) = try LoopbackTCP.listener()
            defer { close(server) }
            let (accepted, _, guestSeq, ourSeq) = try TCPFlowTests.connect(&rig, guestPort: 40021, server: server,
                                                                          serverPort: serverPort, window: 65535,
                                                                          windowScale: 7)
            defer { close(accepted) }
            #expect(rig.tap.offloads.allSatisfy { $0.gsoType == VirtioNetHeader.gsoNone && $0.hasPartialChecksum })
            rig.tap.offloads.removeAll()

            // A window of 8 MiB (65535 << 7): frames of 44 segments (64240 bytes), the rest in one.
            let data = tcpTestData(200_000)
            #expect(send(accepted, data, data.count, 0) == data.count)
            var received: [UInt8] = []
            var expected = ourSeq
            for _ in 0..<50 where received.count < data.count {
                let views = rig.receive()
                let offloads = rig.tap.offloads
                try #require(offloads.count == views.count)
                for (index, segment) in views.enumerated() where !segment.payload.isEmpty {
                    let header = offloads[index]
                    #expect(segment.seq == expected && segment.payload.count <= 44 * 1460)
                    #expect(header.hasPartialChecksum && header.checksumStart == 34 && header.checksumOffset == 16)
                    #expect(header.headerLength == 54)
                    if segment.payload.count > 1460 {
                        #expect(header.gsoType == VirtioNetHeader.gsoTCPv4 && header.segmentSize == 1460)
                    } else {
                        #expect(header.gsoType == VirtioNetHeader.gsoNone)
                    }
                    expected &+= UInt32(segment.payload.count)
                    received += segment.payload
                }
                rig.tap.offloads.removeAll()
                rig.send(from: 40021, to: serverPort, seq: guestSeq, ack: expected, flags: .ack)
            }
            #expect(received == data)
        }
    }

    @Test("One read pass of guest segments: one write to the socket, one ACK for all of it; a gap: three duplicate ACKs")
    func guestSegmentsOfOnePassAreWrittenTogether() throws {
        try inPrivateNetworkNamespace {
            var rig = TCPRig()
            let (server, serverPort) = try LoopbackTCP.listener()
            defer { close(server) }
            let (accepted, _, guestSeq, ourSeq) = try TCPFlowTests.connect(&rig, guestPort: 40011, server: server,
                                                                          serverPort: serverPort)
            defer { close(accepted) }
            let data = tcpTestData(3 * 1400)
            let parts = stride(from: 0, to: data.count, by: 1400).map { Array(data[$0..<($0 + 1400)]) }
            rig.sendPass(from: 40011, to: serverPort, seq: guestSeq, ack: ourSeq, payloads: parts)
            #expect(LoopbackTCP.read(accepted, count: data.count) == data)
            let acks = rig.receive()
            #expect(acks.count == 1 && acks.first?.ack == guestSeq &+ UInt32(data.count))

            // A segment beyond the next expected byte: dropped, three duplicate ACKs at once.
            let after = guestSeq &+ UInt32(data.count)
            rig.send(from: 40011, to: serverPort, seq: after &+ 1400, ack: ourSeq, flags: .ack, payload: parts[0])
            let duplicates = rig.receive()
            #expect(duplicates.count == 3 && duplicates.allSatisfy { $0.ack == after && $0.payload.isEmpty })
            // The missing segment and the one after it, in one pass: both written, in order.
            rig.sendPass(from: 40011, to: serverPort, seq: after, ack: ourSeq, payloads: [parts[1], parts[2]])
            #expect(LoopbackTCP.read(accepted, count: 2800) == parts[1] + parts[2])
            #expect(rig.receive().last?.ack == after &+ 2800)
        }
    }

    @Test("Hostile sequence numbers: a segment 2^31 behind the expected one is answered, not a crash")
    func sequenceOffsetAtTheSignedLimit() throws {
        try inPrivateNetworkNamespace {
            var rig = TCPRig()
            let (server, serverPort) = try LoopbackTCP.listener()
            defer { close(server) }
            let (accepted, _, guestSeq, ourSeq) = try TCPFlowTests.connect(&rig, guestPort: 40009, server: server,
                                                                          serverPort: serverPort)
            defer { close(accepted) }
            // seq - expected == 0x8000_0000: the most negative 32-bit offset.
            rig.send(from: 40009, to: serverPort, seq: guestSeq &+ 0x8000_0000, ack: ourSeq, flags: .ack,
                     payload: Array("x".utf8))
            rig.send(from: 40009, to: serverPort, seq: guestSeq, ack: ourSeq, flags: [.ack, .psh],
                     payload: Array("ok".utf8))
            #expect(LoopbackTCP.read(accepted, count: 2) == Array("ok".utf8))
        }
    }

    @Test("Half-close: after the guest's FIN, no FIN timeout while the host has not answered")
    func halfCloseKeepsWaiting() throws {
        try inPrivateNetworkNamespace {
            var rig = TCPRig()
            let (server, serverPort) = try LoopbackTCP.listener()
            defer { close(server) }
            let (accepted, slot, guestSeq, ourSeq) = try TCPFlowTests.connect(&rig, guestPort: 40010, server: server,
                                                                             serverPort: serverPort)
            defer { close(accepted) }
            rig.send(from: 40010, to: serverPort, seq: guestSeq, ack: ourSeq, flags: [.fin, .ack])
            #expect(rig.receive().last?.ack == guestSeq &+ 1)
            #expect(LoopbackTCP.readsEOF(accepted))
            rig.now += 120 * TCPRig.second
            rig.fireTimer(slot)
            #expect(rig.tap.frames.compactMap(GuestView.init).allSatisfy { !$0.flags.contains(.rst) })
            // The host still answers, long after the guest's FIN.
            let answer = Array("late answer".utf8)
            #expect(send(accepted, answer, answer.count, 0) == answer.count)
            let segments = rig.receive()
            #expect(segments.contains { $0.payload == answer })
        }
    }

    @Test("Refused connect becomes RST with ACK; segments for unknown flows get a RST (a RST, broadcast or port 0 none)")
    func refused() throws {
        try inPrivateNetworkNamespace {
            var rig = TCPRig()
            let (closed, closedPort) = try LoopbackTCP.listener()
            close(closed)
            rig.send(from: 40010, to: closedPort, seq: 5000, flags: .syn, mss: 1460)
            let reply = rig.receive()
            try #require(reply.count == 1)
            #expect(reply[0].flags == [.rst, .ack] && reply[0].ack == 5001)
            do { let open = rig.flows.count, keys = rig.table.count; #expect(open == 0 && keys == 0) }
            rig.send(from: 40011, to: closedPort, seq: 1, ack: 77, flags: .ack, payload: [1])
            let atAck = rig.receive()
            #expect(atAck.count == 1 && atAck.first?.flags == .rst && atAck.first?.seq == 77)
            #expect(atAck.first?.sourcePort == closedPort && atAck.first?.destinationPort == 40011)
            rig.send(from: 40012, to: closedPort, seq: 300, flags: [.syn, .fin], payload: [1, 2])
            let pastIt = rig.receive()
            #expect(pastIt.count == 1 && pastIt.first?.flags == .rstAck && pastIt.first?.ack == 304)
            rig.send(from: 40013, to: closedPort, seq: 9, ack: 9, flags: .rstAck)
            rig.send(from: 40014, to: closedPort, at: IPv4Address(255, 255, 255, 255), seq: 9, ack: 9, flags: .ack)
            rig.send(from: 40015, to: closedPort, at: IPv4Address(224, 0, 0, 1), seq: 9, flags: .fin)
            rig.send(from: 0, to: closedPort, seq: 9, ack: 9, flags: .ack)
            rig.pump(milliseconds: 20)
            #expect(rig.tap.frames.isEmpty)
            do { let open = rig.flows.count, keys = rig.table.count; #expect(open == 0 && keys == 0) }
        }
    }

    @Test("Host answers and closes at once: its data and our FIN reach the guest before any ACK from it")
    func hostAnswerAndFinTogether() throws {
        try inPrivateNetworkNamespace {
            var rig = TCPRig()
            let (server, serverPort) = try LoopbackTCP.listener()
            defer { close(server) }
            let (accepted, slot, _, ourSeq) = try TCPFlowTests.connect(&rig, guestPort: 40021, server: server,
                                                                      serverPort: serverPort)
            let verdict: [UInt8] = [0, 0, 0, 7, 1]
            #expect(send(accepted, verdict, verdict.count, 0) == verdict.count)
            close(accepted)
            let segments = rig.receive()
            #expect(segments.flatMap(\.payload) == verdict)
            #expect(segments.last?.flags == [.fin, .ack] && segments.last?.seq == ourSeq &+ 5)
            #expect(rig.flows.events(ofSlot: slot).contains(.tapFinSent))
        }
    }

    @Test("Host FIN first with data in flight, then guest FIN; guest window 0 then reopened")
    func hostFinFirstAndZeroWindow() throws {
        try inPrivateNetworkNamespace {
            var rig = TCPRig()
            let (server, serverPort) = try LoopbackTCP.listener()
            defer { close(server) }
            let (accepted, slot, guestSeq, ourSeq) = try TCPFlowTests.connect(&rig, guestPort: 40020, server: server,
                                                                             serverPort: serverPort, window: 3000)
            let data = tcpTestData(10_000, seed: 3)
            #expect(send(accepted, data, data.count, 0) == data.count)
            close(accepted)
            // Window 3000: two segments (1460 + 1460) and 80 bytes, then nothing until the guest acks.
            var segments = rig.receive().filter { !$0.payload.isEmpty }
            #expect(segments.map(\.payload.count) == [1460, 1460, 80])
            #expect(rig.flows.flags(ofSlot: slot).contains(.stalled))
            // The guest acknowledges everything with a zero window: nothing more is sent.
            var acked = ourSeq &+ 3000
            rig.send(from: 40020, to: serverPort, seq: guestSeq, ack: acked, flags: .ack, window: 0)
            rig.pump(milliseconds: 30)
            #expect(rig.tap.frames.isEmpty, "window 0: no data")
            // After 2 s the zero window is probed with an ACK below our sequence.
            rig.now += 2 * TCPRig.second
            rig.fireTimer(slot)
            let probe = rig.receive()
            #expect(probe.count == 1 && probe.first?.seq == acked &- 1 && probe.first?.payload.isEmpty == true)
            // The window reopens: the rest follows, then our FIN.
            var received = segments.flatMap(\.payload)
            rig.send(from: 40020, to: serverPort, seq: guestSeq, ack: acked, flags: .ack, window: 65535)
            var fin: GuestView?
            for _ in 0..<50 where fin == nil {
                segments = rig.receive()
                for segment in segments {
                    received += segment.payload
                    acked &+= UInt32(segment.payload.count)
                    if segment.flags.contains(.fin) { fin = segment }
                }
                rig.send(from: 40020, to: serverPort, seq: guestSeq, ack: acked, flags: .ack, window: 65535)
            }
            #expect(received == data)
            #expect(fin?.seq == ourSeq &+ 10_000)
            // The guest acknowledges our FIN, then sends its own: closed.
            rig.send(from: 40020, to: serverPort, seq: guestSeq, ack: acked &+ 1, flags: .ack)
            #expect(rig.flows.events(ofSlot: slot).contains(.tapFinAcked))
            rig.send(from: 40020, to: serverPort, seq: guestSeq, ack: acked &+ 1, flags: [.fin, .ack])
            #expect(rig.receive().last?.ack == guestSeq &+ 1)
            do { let open = rig.flows.count, keys = rig.table.count; #expect(open == 0 && keys == 0) }
        }
    }

    @Test("Lost segment: a duplicate ACK and the ACK timeout retransmit; 7 timeouts reset")
    func retransmission() throws {
        try inPrivateNetworkNamespace {
            var rig = TCPRig()
            let (server, serverPort) = try LoopbackTCP.listener()
            defer { close(server) }
            let (accepted, slot, guestSeq, ourSeq) = try TCPFlowTests.connect(&rig, guestPort: 40030, server: server,
                                                                             serverPort: serverPort)
            defer { close(accepted) }
            let data = tcpTestData(4000, seed: 9)
            #expect(send(accepted, data, data.count, 0) == data.count)
            let first = rig.receive().filter { !$0.payload.isEmpty }
            #expect(first.map(\.payload.count) == [1460, 1460, 1080])
            // The guest got the first segment only: ACK, then a duplicate of it.
            rig.send(from: 40030, to: serverPort, seq: guestSeq, ack: ourSeq &+ 1460, flags: .ack)
            rig.pump(milliseconds: 20)
            rig.tap.frames.removeAll()
            rig.send(from: 40030, to: serverPort, seq: guestSeq, ack: ourSeq &+ 1460, flags: .ack)
            let again = rig.receive().filter { !$0.payload.isEmpty }
            #expect(again.first?.seq == ourSeq &+ 1460)
            #expect(again.flatMap(\.payload) == Array(data[1460...]), "resent from the socket, not a buffer of ours")
            // No ACK for 2 s: everything unacknowledged is sent again.
            rig.now += 2 * TCPRig.second
            rig.fireTimer(slot)
            let timedOut = rig.receive().filter { !$0.payload.isEmpty }
            #expect(timedOut.first?.seq == ourSeq &+ 1460 && timedOut.flatMap(\.payload).count == 2540)
            // Six more timeouts are retried, the next one resets.
            for _ in 0..<6 {
                rig.now += 2 * TCPRig.second
                rig.fireTimer(slot)
                _ = rig.receive()
            }
            rig.now += 2 * TCPRig.second
            rig.fireTimer(slot)
            let reset = rig.receive()
            #expect(reset.last?.flags == .rst)
            do { let open = rig.flows.count; #expect(open == 0) }
        }
    }

    @Test("One timerfd for all connections: each expiry runs the connections due by then, no other")
    func sharedTimer() throws {
        try inPrivateNetworkNamespace {
            var rig = TCPRig()
            let (server, serverPort) = try LoopbackTCP.listener()
            defer { close(server) }
            let start = rig.now
            var peers: [Int32] = []
            defer { for peer in peers { close(peer) } }
            var guestSeqs: [UInt32] = []
            // Three connections, each sending the guest 100 bytes half a second after the one
            // before; the guest acknowledges none of it, so each is due 2 s after its send.
            for index in 0..<3 {
                let (accepted, _, guestSeq, _) = try TCPFlowTests.connect(&rig, guestPort: 40060 + UInt16(index),
                                                                         server: server, serverPort: serverPort)
                peers.append(accepted)
                guestSeqs.append(guestSeq)
                rig.now = start + UInt64(index) * TCPRig.second / 2
                let data = tcpTestData(100, seed: index)
                #expect(send(accepted, data, data.count, 0) == data.count)
                #expect(rig.receive().filter { !$0.payload.isEmpty }.count == 1)
            }
            let firstToken = rig.flows.timerToken
            let token = try #require(firstToken)
            /// The guest ports that got a retransmission when the timerfd fires at `time`.
            func fire(at time: UInt64) -> [UInt16] {
                rig.now = time
                rig.fireSharedTimer(token)
                rig.pump(milliseconds: 20)
                defer { rig.tap.frames.removeAll() }
                return rig.tap.frames.compactMap(GuestView.init).filter { !$0.payload.isEmpty }.map(\.destinationPort)
            }
            #expect(fire(at: start + 19 * TCPRig.second / 10) == [], "nothing is due before 2 s")
            #expect(fire(at: start + 5 * TCPRig.second / 2).sorted() == [40060, 40061])
            #expect(fire(at: start + 3 * TCPRig.second) == [40062])
            // A connection the guest resets leaves the heap; the other two repeat 2 s later.
            rig.send(from: 40060, to: serverPort, seq: guestSeqs[0], flags: .rst)
            #expect(fire(at: start + 9 * TCPRig.second / 2) == [40061])
            #expect(fire(at: start + 5 * TCPRig.second) == [40062])
            let lastToken = rig.flows.timerToken
            #expect(lastToken == token, "the same timerfd throughout")
        }
    }

    @Test("RST from the guest closes the socket; a reset socket becomes RST to the guest")
    func resets() throws {
        try inPrivateNetworkNamespace {
            var rig = TCPRig()
            let (server, serverPort) = try LoopbackTCP.listener()
            defer { close(server) }
            let (first, _, guestSeq, _) = try TCPFlowTests.connect(&rig, guestPort: 40040, server: server,
                                                                  serverPort: serverPort)
            defer { close(first) }
            rig.send(from: 40040, to: serverPort, seq: guestSeq, flags: .rst)
            #expect(LoopbackTCP.readsEOF(first), "host side closed")
            do { let open = rig.flows.count; #expect(open == 0) }

            let (second, _, _, _) = try TCPFlowTests.connect(&rig, guestPort: 40041, server: server,
                                                            serverPort: serverPort)
            var linger = linger(l_onoff: 1, l_linger: 0)
            setsockopt(second, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
            close(second)
            let reply = rig.receive()
            #expect(reply.last?.flags == .rst)
            do { let open = rig.flows.count; #expect(open == 0) }
        }
    }

    @Test("Host connects through a listener: SYN to the guest, its SYN-ACK, data both ways; SYN repeats, 10 s timeout")
    func inbound() throws {
        try inPrivateNetworkNamespace {
            let (listenSocket, listenPort) = try LoopbackTCP.listener()
            _ = fcntl(listenSocket, F_SETFL, O_NONBLOCK)
            var rig = TCPRig(listeners: [TCPListener(socket: listenSocket, port: listenPort, targetPort: 8080)])
            _ = rig.epoll.add(listenSocket, events: .input,
                              data: EventToken(kind: TCPRig.listenerKind, fd: listenSocket).rawValue)

            let client = try LoopbackTCP.connect(port: listenPort)
            defer { close(client) }
            let syn = rig.receive()
            try #require(syn.count == 1)
            #expect(syn[0].flags == .syn && syn[0].destinationPort == 8080 && syn[0].mss == 1460)
            #expect(syn[0].source == TCPRig.gateway, "127.0.0.1 appears as the map-host-loopback address")
            #expect(syn[0].destination == TCPRig.guest)
            let peerPort = syn[0].sourcePort
            let ourSeq = syn[0].seq &+ 1
            // Data queued by the host before the guest answers is sent once established.
            let early = Array("early".utf8)
            #expect(send(client, early, early.count, 0) == early.count)
            let guestPort: UInt16 = 8080
            let key = FlowKey(proto: IPProtocol.tcp, interface: .tap, ourAddress: IPv6Address(v4Mapped: TCPRig.gateway),
                              ourPort: peerPort, endpointAddress: IPv6Address(v4Mapped: TCPRig.guest),
                              endpointPort: guestPort)
            let slotReference = rig.table.lookup(key)
            let slot = Int(try #require(slotReference))
            // The guest answers with its SYN-ACK (segments to port `peerPort` from 8080).
            rig.send(from: guestPort, to: peerPort, seq: 7000, ack: ourSeq, flags: [.syn, .ack], mss: 1400,
                     windowScale: 2)
            let answer = rig.receive()
            #expect(answer.first?.flags == .ack && answer.first?.ack == 7001)
            #expect(answer.flatMap(\.payload) == early)
            #expect(rig.flows.events(ofSlot: slot) == .established)
            rig.send(from: guestPort, to: peerPort, seq: 7001, ack: ourSeq &+ 5, flags: .ack, payload: Array("reply".utf8))
            #expect(LoopbackTCP.read(client, count: 5) == Array("reply".utf8))
            #expect(rig.receive().last?.ack == 7006)

            // A second connection the guest never answers: RST after 10 s.
            let silent = try LoopbackTCP.connect(port: listenPort)
            defer { close(silent) }
            let secondSyn = rig.receive()
            try #require(secondSyn.count == 1)
            let silentKey = FlowKey(proto: IPProtocol.tcp, interface: .tap,
                                    ourAddress: IPv6Address(v4Mapped: TCPRig.gateway), ourPort: secondSyn[0].sourcePort,
                                    endpointAddress: IPv6Address(v4Mapped: TCPRig.guest), endpointPort: guestPort)
            let silentSlotReference = rig.table.lookup(silentKey)
            let silentSlot = Int(try #require(silentSlotReference))
            for _ in 0..<4 {
                rig.now += 2 * TCPRig.second
                rig.fireTimer(silentSlot)
                let repeated = rig.receive()
                #expect(repeated.count == 1 && repeated.first?.flags == .syn && repeated.first?.seq == secondSyn[0].seq)
            }
            rig.now += 2 * TCPRig.second
            rig.fireTimer(silentSlot)
            let silentReset = rig.receive()
            #expect(silentReset.last?.flags == .rst)
            #expect(LoopbackTCP.readsEOF(silent) || errno == ECONNRESET)
            do { let open = rig.flows.count; #expect(open == 1) }
        }
    }

    @Test("A window below 64 KiB is re-checked at MTU 1500 while the guest sends (frames of up to 64 KiB), not once it stopped")
    func smallWindowRecheck() throws {
        try inPrivateNetworkNamespace {
            var rig = TCPRig()
            let (server, serverPort) = try LoopbackTCP.listener()
            defer { close(server) }
            var size: Int32 = 32768   // inherited by the accepted socket: the peer offers less than 64 KiB
            setsockopt(server, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            let (accepted, slot, guestSeq, ourSeq) = try TCPFlowTests.connect(&rig, guestPort: 40032, server: server,
                                                                             serverPort: serverPort)
            defer { close(accepted) }
            #expect(rig.flows.timerDeadline(ofSlot: slot) == nil, "the guest has sent nothing: no re-check")
            rig.sendPass(from: 40032, to: serverPort, seq: guestSeq, ack: ourSeq, payloads: [tcpTestData(1400)])
            let ack = rig.receive()
            #expect(ack.last?.ack == guestSeq &+ 1400)
            #expect((ack.last?.window ?? 0) > 0, "the window is open, only small")
            #expect(rig.flows.timerDeadline(ofSlot: slot) == rig.now + 1_000_000)
            // The guest sends nothing more: after eight re-checks that found nothing new the
            // connection is idle, and a window it can send a segment into is no longer re-checked.
            var rechecks = 0
            while let deadline = rig.flows.timerDeadline(ofSlot: slot), rechecks < 30 {
                rig.now = deadline
                rig.fireTimer(slot)
                rechecks += 1
            }
            #expect(rig.flows.timerDeadline(ofSlot: slot) == nil, "an idle connection has no timer")
            #expect(rechecks >= 9, "the first eight re-checks that find nothing still re-arm")
            // The guest sends again: the small window is re-checked after 1 ms again.
            rig.sendPass(from: 40032, to: serverPort, seq: guestSeq &+ 1400, ack: ourSeq, payloads: [tcpTestData(1400)])
            #expect(rig.receive().last?.ack == guestSeq &+ 2800)
            #expect(rig.flows.timerDeadline(ofSlot: slot) == rig.now + 1_000_000)
        }
    }

    @Test("A closed window to a local peer is re-checked after 1 ms, doubling to 10 ms while nothing moves")
    func localWindowRecheck() throws {
        try inPrivateNetworkNamespace {
            var rig = TCPRig()
            let (server, serverPort) = try LoopbackTCP.listener()
            defer { close(server) }
            var small: Int32 = 4096   // inherited by the accepted socket: the peer's window stays small
            setsockopt(server, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            let (accepted, slot, guestSeq, ourSeq) = try TCPFlowTests.connect(&rig, guestPort: 40031, server: server,
                                                                             serverPort: serverPort)
            defer { close(accepted) }
            #expect(rig.flows.flags(ofSlot: slot).contains(.local))
            let data = tcpTestData(64 * 1400)
            let parts = stride(from: 0, to: data.count, by: 1400).map { Array(data[$0..<($0 + 1400)]) }
            rig.sendPass(from: 40031, to: serverPort, seq: guestSeq, ack: ourSeq, payloads: parts)
            let closing = rig.receive()
            #expect(closing.last?.ack == guestSeq &+ UInt32(data.count) && closing.last?.window == 0)
            // The reader sleeps: each re-check finds the window still closed and waits twice as long.
            // A closed window stays re-checked however long it stays closed (the guest cannot send).
            for expected: UInt64 in [1, 2, 4, 8, 10, 10, 10, 10, 10, 10, 10, 10] {
                let deadline = rig.flows.timerDeadline(ofSlot: slot)
                #expect(deadline == rig.now + expected * 1_000_000, "expected a re-check after \(expected) ms")
                rig.now = deadline ?? rig.now
                rig.fireTimer(slot)
                #expect(rig.tap.frames.isEmpty, "nothing new to tell the guest")
            }
            // The reader drains the socket: the next re-check opens the window at once.
            #expect(LoopbackTCP.read(accepted, count: data.count) == data)
            rig.now = rig.flows.timerDeadline(ofSlot: slot) ?? rig.now
            rig.fireTimer(slot)
            let opened = rig.tap.frames.compactMap(GuestView.init)
            #expect(opened.count == 1 && (opened.first?.window ?? 0) > 0)
        }
    }
}

@Suite("TCP window arithmetic")
struct TCPWindowTests {
    @Test("The window offered to the guest: the peer's window within the send buffer's share, less what is outstanding")
    func windowToGuest() {
        let eightMiB: UInt32 = 8 << 20
        // The peer's window, when it is the smaller bound.
        #expect(TCPWindow.toTap(sendWindow: 1_000_000, sendBuffer: eightMiB, established: true) == 1_000_000)
        // Half of a send buffer of 4 MiB or more, when the peer offers more than that.
        #expect(TCPWindow.toTap(sendWindow: 30_000_000, sendBuffer: eightMiB, established: true) == 4 << 20)
        // Bytes written and acknowledged to the guest but not yet to the peer are taken off.
        #expect(TCPWindow.toTap(sendWindow: 1_000_000, sendBuffer: eightMiB, outstanding: 300_000,
                                established: true) == 700_000)
        #expect(TCPWindow.toTap(sendWindow: 1_000_000, sendBuffer: eightMiB, outstanding: 2_000_000,
                                established: true) == 0)
        // Before the handshake completes, never below 14600 bytes.
        #expect(TCPWindow.toTap(sendWindow: 0, sendBuffer: eightMiB, established: false) == 14600)
        // Without a send window from tcp_info, the send buffer alone.
        #expect(TCPWindow.toTap(sendWindow: nil, sendBuffer: 64 * 1024, established: true) == 64 * 1024)
    }

    @Test("Send buffer share: all below 128 KiB, half from 4 MiB, interpolated in between")
    func sendBufferShare() {
        #expect(TCPWindow.scaledSendBuffer(100_000) == 100_000)
        #expect(TCPWindow.scaledSendBuffer(8 << 20) == 4 << 20)
        let middle = TCPWindow.scaledSendBuffer(2 << 20)
        #expect(middle > 1 << 20 && middle < 2 << 20)
    }
}
