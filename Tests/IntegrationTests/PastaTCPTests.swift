// pasta's TCP (tap path) end to end: the real binary attached to a namespace of the test bed, the
// real kernel on both sides, and sockets the test opens itself in the bed's host namespace and in
// the target namespace.
//
// Paths: namespace -> host through the gateway address (192.0.2.1 / fd00::1, which pasta maps to
// the host's 127.0.0.1 / ::1), and host -> namespace through `-t` on the host's own address
// (192.0.2.2 / fd00::2, which the namespace shares). On each path and family, transfers of 1 byte,
// 64 KiB and 16 MiB go through an echo server that writes back while it reads: both directions of
// one connection at once, then a half-close from the client, which still receives the rest of the
// echo before the server closes. A closed port is refused (ECONNREFUSED), not timed out.
import Foundation
import Synchronization
import Testing
import PasstSys

/// A TCP echo server on a thread of the test: accepts connections one after the other and
/// writes back everything it reads; closes a connection after its client's end of file.
final class TCPEchoServer: Sendable {
    let listener: Int32
    let stopping = Atomic<Bool>(false)
    let finished = DispatchSemaphore(value: 0)

    /// Starts serving on `listener` (bound and listening); it is closed by `stop`.
    init(listener: Int32) {
        self.listener = listener
        Thread { [self] in run() }.start()
    }

    /// The server loop: poll for a connection, echo it to the end.
    private func run() {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while !stopping.load(ordering: .relaxed) {
            var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 50) > 0 else { continue }
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { continue }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            while true {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count <= 0 { break }
                var sent = 0
                while sent < count {
                    let n = buffer.withUnsafeBytes { send(fd, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL)) }
                    if n <= 0 { break }
                    sent += n
                }
                if sent < count { break }
            }
            close(fd)
        }
        finished.signal()
    }

    /// Stops the thread and closes the listener.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        finished.wait()
        close(listener)
    }
}

/// Socket helpers for the TCP tests.
enum TCPTestSocket {
    /// A TCP socket in `namespace` listening on `address`:`port` (IPv6 sockets IPv6-only unless `dualStack`).
    static func listen(_ bed: TestBed, in namespace: String, address: String, port: UInt16,
                       dualStack: Bool = false) throws -> Int32 {
        let isIPv6 = address.contains(":")
        let fd = try bed.openSocket(in: namespace, domain: isIPv6 ? AF_INET6 : AF_INET,
                                    type: Int32(SOCK_STREAM.rawValue), protocol: 0).release()
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, 4)
        if isIPv6 {
            var only: Int32 = dualStack ? 0 : 1
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &only, 4)
        }
        let rc = UDPTestSocket.withAddress(address, port: port) { bind(fd, $0, $1) }
        guard rc == 0, Glibc.listen(fd, 16) == 0 else {
            let code = errno
            close(fd)
            throw TestBedError(description: "listen \(address) \(port): \(String(cString: strerror(code)))")
        }
        return fd
    }

    /// A TCP socket in `namespace` connected to `address`:`port`; throws with the errno on failure.
    static func connect(_ bed: TestBed, in namespace: String, to address: String, port: UInt16) throws -> Int32 {
        let fd = try bed.openSocket(in: namespace, domain: address.contains(":") ? AF_INET6 : AF_INET,
                                    type: Int32(SOCK_STREAM.rawValue), protocol: 0).release()
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let rc = UDPTestSocket.withAddress(address, port: port) { Glibc.connect(fd, $0, $1) }
        guard rc == 0 else {
            let code = errno
            close(fd)
            throw SyscallError(code)
        }
        return fd
    }

    /// `connect`, retried for up to 5 s while refused: pasta creates its PID file before it
    /// binds its listeners.
    static func connectWhenListening(_ bed: TestBed, in namespace: String, to address: String,
                                     port: UInt16) throws -> Int32 {
        for _ in 0..<50 {
            do {
                return try connect(bed, in: namespace, to: address, port: port)
            } catch let error as SyscallError where error.code == ECONNREFUSED {
                usleep(100_000)
            }
        }
        return try connect(bed, in: namespace, to: address, port: port)
    }

    /// Sends `payload` on connected `fd` from a second thread while reading the echo here, then
    /// half-closes and reads to end of file; returns what came back.
    static func echo(_ fd: Int32, payload: [UInt8]) -> [UInt8] {
        let done = DispatchSemaphore(value: 0)
        Thread {
            var sent = 0
            while sent < payload.count {
                let n = payload.withUnsafeBytes { send(fd, $0.baseAddress! + sent, payload.count - sent, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { break }
                sent += n
            }
            shutdown(fd, Int32(SHUT_WR))
            done.signal()
        }.start()
        var received: [UInt8] = []
        received.reserveCapacity(payload.count)
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            received += buffer[..<n]
        }
        done.wait()
        return received
    }
}

/// Transfer sizes on every path: 1 byte, 64 KiB, 16 MiB.
let tcpTestSizes = [1, 65536, 16 << 20]

/// A payload of `size` bytes, different per size and position.
func tcpTestPayload(_ size: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9 &+ size) }
}

@Suite("pasta TCP", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct PastaTCPTests {
    /// Options that keep every other forwarding out of the way.
    static let quiet = ["-u", "none", "-T", "none", "-U", "none"]

    @Test("Namespace to host through the gateway address: 1 B, 64 KiB, 16 MiB echoed both ways", arguments: [
        "192.0.2.1", "fd00::1",
    ])
    func namespaceToHost(gateway: String) async throws {
        try await withTestBed { bed in
            let (target, pasta) = try bed.startPastaAttached(["-t", "none"] + PastaTCPTests.quiet)
            let server = TCPEchoServer(listener: try TCPTestSocket.listen(bed, in: bed.host, address: "::",
                                                                          port: 7101, dualStack: true))
            defer { server.stop() }
            for size in tcpTestSizes {
                let payload = tcpTestPayload(size)
                let client = try TCPTestSocket.connect(bed, in: target, to: gateway, port: 7101)
                let echoed = TCPTestSocket.echo(client, payload: payload)
                close(client)
                #expect(echoed.count == size && echoed == payload, "\(size) bytes via \(gateway): \(echoed.count) back; \(pasta.stderr().suffix(3000))")
            }
            #expect(bed.stop(pasta) == 0, "\(pasta.stderr())")
        }
    }

    @Test("Host to namespace through -t on the host's address: 1 B, 64 KiB, 16 MiB echoed both ways", arguments: [
        ("192.0.2.2", "0.0.0.0"), ("fd00::2", "::"),
    ])
    func hostToNamespace(hostAddress: String, serverAddress: String) async throws {
        try await withTestBed { bed in
            let (target, pasta) = try bed.startPastaAttached(["-t", "7102"] + PastaTCPTests.quiet)
            let server = TCPEchoServer(listener: try TCPTestSocket.listen(bed, in: target, address: serverAddress,
                                                                          port: 7102))
            defer { server.stop() }
            for size in tcpTestSizes {
                let payload = tcpTestPayload(size)
                let client = try TCPTestSocket.connectWhenListening(bed, in: bed.host, to: hostAddress, port: 7102)
                let echoed = TCPTestSocket.echo(client, payload: payload)
                close(client)
                #expect(echoed.count == size && echoed == payload, "\(size) bytes to \(hostAddress): \(echoed.count) back; \(pasta.stderr().suffix(3000))")
            }
            #expect(bed.stop(pasta) == 0, "\(pasta.stderr())")
        }
    }

    @Test("MTU 1500 with -p: TCP frames beyond the MTU both ways (segmentation offload), every captured checksum valid",
          arguments: ["192.0.2.1", "fd00::1"])
    func offloadedFramesCaptured(gateway: String) async throws {
        try await withTestBed { bed in
            let pcap = bed.directory + "/tcp-offload-\(Command.nextID()).pcap"
            let (target, pasta) = try bed.startPastaAttached(["-t", "none", "-m", "1500", "-p", pcap]
                                                             + PastaTCPTests.quiet)
            let server = TCPEchoServer(listener: try TCPTestSocket.listen(bed, in: bed.host, address: "::",
                                                                          port: 7103, dualStack: true))
            defer { server.stop() }
            let payload = tcpTestPayload(4 << 20)
            let client = try TCPTestSocket.connect(bed, in: target, to: gateway, port: 7103)
            let echoed = TCPTestSocket.echo(client, payload: payload)
            close(client)
            #expect(echoed == payload, "\(echoed.count) bytes back; \(pasta.stderr().suffix(3000))")
            #expect(bed.stop(pasta) == 0, "\(pasta.stderr())")
            let frames = try CapturedTCP.frames(path: pcap, port: 7103)
            #expect(frames.count > 0 && frames.allSatisfy(\.checksumsValid),
                    "\(frames.filter { !$0.checksumsValid }.count) of \(frames.count) frames with a bad checksum")
            #expect(frames.contains { $0.fromPort && $0.length > 1514 }, "no frame beyond the MTU towards the namespace")
            #expect(frames.contains { !$0.fromPort && $0.length > 1514 }, "no frame beyond the MTU from the namespace")
        }
    }

    @Test("A closed host port is refused at once, IPv4 and IPv6", arguments: ["192.0.2.1", "fd00::1"])
    func refused(gateway: String) async throws {
        try await withTestBed { bed in
            let (target, pasta) = try bed.startPastaAttached(["-t", "none"] + PastaTCPTests.quiet)
            let started = Date()
            #expect(throws: SyscallError(ECONNREFUSED)) {
                _ = try TCPTestSocket.connect(bed, in: target, to: gateway, port: 7199)
            }
            #expect(Date().timeIntervalSince(started) < 2)
            bed.stop(pasta)
        }
    }
}

/// TCP frames of a pcap file, with their checksums checked (IPv4 header, TCP over the pseudo header).
struct CapturedTCP {
    /// Length of the Ethernet frame.
    let length: Int
    /// Whether the frame's source port is the one asked for (else its destination port is).
    let fromPort: Bool
    /// Whether the IPv4 header checksum (if any) and the TCP checksum are right.
    let checksumsValid: Bool

    /// The TCP frames of the capture at `path` from or to `port`.
    static func frames(path: String, port: UInt16) throws -> [CapturedTCP] {
        var result: [CapturedTCP] = []
        for frame in try CapturedFrames.frames(path: path) {
            let etherType = Int(frame[12]) << 8 | Int(frame[13])
            var ipValid = true
            var transport = -1
            var pseudo: [UInt8] = []
            if etherType == 0x0800, frame.count >= 34, frame[23] == 6 {
                let headerLength = Int(frame[14] & 0x0f) * 4
                let total = Int(frame[16]) << 8 | Int(frame[17])
                transport = 14 + headerLength
                ipValid = SYNFlood.internetChecksum(Array(frame[14..<transport])) == 0
                let tcpLength = total - headerLength
                pseudo = Array(frame[26..<34]) + [0, 6, UInt8(tcpLength >> 8), UInt8(tcpLength & 0xff)]
            } else if etherType == 0x86dd, frame.count >= 54, frame[20] == 6 {
                transport = 54
                pseudo = Array(frame[22..<54]) + [0, 0, frame[18], frame[19], 0, 0, 0, 6]
            }
            guard transport >= 0, frame.count >= transport + 20 else { continue }
            let source = UInt16(frame[transport]) << 8 | UInt16(frame[transport + 1])
            let destination = UInt16(frame[transport + 2]) << 8 | UInt16(frame[transport + 3])
            guard source == port || destination == port else { continue }
            let tcpValid = SYNFlood.internetChecksum(pseudo + frame[transport...]) == 0
            result.append(CapturedTCP(length: frame.count, fromPort: source == port, checksumsValid: ipValid && tcpValid))
        }
        return result
    }
}

/// Reading back a -p capture (pcap, microsecond timestamps, Ethernet) in the tests.
enum CapturedFrames {
    /// The frames of the capture at `path` (at least an Ethernet header each), in order.
    static func frames(path: String) throws -> [[UInt8]] {
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        guard data.count >= 24 else { throw TestBedError(description: "pcap file too short") }
        var offset = 24
        var frames: [[UInt8]] = []
        while offset + 16 <= data.count {
            let length = Int(data[offset + 8]) | Int(data[offset + 9]) << 8 | Int(data[offset + 10]) << 16
                | Int(data[offset + 11]) << 24
            let frame = Array(data[(offset + 16)..<min(data.count, offset + 16 + length)])
            offset += 16 + length
            if frame.count >= 14 { frames.append(frame) }
        }
        return frames
    }

    /// Number of frames of the capture at `path` carrying IP protocol `protocol` (6 TCP, 17 UDP)
    /// over IPv4 or IPv6 (no extension headers) with source or destination `port`.
    static func count(path: String, protocol ipProtocol: UInt8, port: UInt16) throws -> Int {
        try frames(path: path).filter { frame in
            let etherType = Int(frame[12]) << 8 | Int(frame[13])
            var transport = -1
            if etherType == 0x0800, frame.count >= 34, frame[23] == ipProtocol { transport = 14 + Int(frame[14] & 0x0f) * 4 }
            if etherType == 0x86dd, frame.count >= 54, frame[20] == ipProtocol { transport = 54 }
            guard transport >= 0, frame.count >= transport + 4 else { return false }
            let source = UInt16(frame[transport]) << 8 | UInt16(frame[transport + 1])
            let destination = UInt16(frame[transport + 2]) << 8 | UInt16(frame[transport + 3])
            return source == port || destination == port
        }.count
    }
}
