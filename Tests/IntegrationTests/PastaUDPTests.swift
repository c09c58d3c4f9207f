// pasta's UDP end to end: the real binary attached to a namespace of the test bed, the real
// kernel, and sockets the test opens itself in the bed's host namespace and in that target
// namespace (no external client or server program).
//
// Paths: namespace -> host through the gateway address (192.0.2.1 / fd00::1, which pasta maps to
// the host's 127.0.0.1 / ::1), and host -> namespace through `-u` on the host's own address
// (192.0.2.2 / fd00::2, which the namespace shares). Each path carries datagrams of 1, 1400, 8000
// and 65000 bytes, with the echoed content compared, then 1 MiB as 1024 numbered datagrams of
// 1 KiB (UDPSpliceTest.bulk: 32 outstanding, no loss). `-u 5000-5009:6000-6009,~5005` is checked
// port by port: the namespace's servers tag their echo with the port they received on.
import Foundation
import Synchronization
import Testing
import PasstSys

/// A UDP echo server on a thread of the test: every datagram goes back to its sender (with the
/// receiving socket's port appended when `tag` is set).
final class UDPEchoServer: Sendable {
    let sockets: [Int32]
    let tag: Bool
    let stopping = Atomic<Bool>(false)
    let finished = DispatchSemaphore(value: 0)

    /// Starts echoing on `sockets` (already bound); they are closed by `stop`.
    init(sockets: [Int32], tag: Bool = false) {
        self.sockets = sockets
        self.tag = tag
        Thread { [self] in run() }.start()
    }

    /// The server loop: poll, receive, send back.
    private func run() {
        var buffer = [UInt8](repeating: 0, count: 65536 + 2)
        var fds = sockets.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        while !stopping.load(ordering: .relaxed) {
            guard poll(&fds, nfds_t(fds.count), 50) > 0 else { continue }
            for entry in fds where entry.revents & Int16(POLLIN) != 0 {
                var peer = sockaddr_in6()
                var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
                let count = withUnsafeMutablePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(entry.fd, &buffer, 65536, Int32(MSG_DONTWAIT), $0, &length)
                    }
                }
                guard count >= 0 else { continue }
                var total = count
                if tag {
                    buffer[count] = UInt8(UDPTestSocket.port(of: entry.fd) >> 8)
                    buffer[count + 1] = UInt8(UDPTestSocket.port(of: entry.fd) & 0xff)
                    total += 2
                }
                _ = withUnsafeMutablePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(entry.fd, buffer, total, 0, $0, length) }
                }
            }
        }
        finished.signal()
    }

    /// Stops the thread and closes the sockets.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        finished.wait()
        for fd in sockets { close(fd) }
    }
}

/// Socket helpers for the UDP tests.
enum UDPTestSocket {
    /// A UDP socket in `namespace`, bound to `address`:`port` (IPv6 sockets are IPv6-only unless
    /// `dualStack`), with a 1 s receive timeout.
    static func open(_ bed: TestBed, in namespace: String, address: String, port: UInt16,
                     dualStack: Bool = false) throws -> Int32 {
        let isIPv6 = address.contains(":")
        let fd = try bed.openSocket(in: namespace, domain: isIPv6 ? AF_INET6 : AF_INET,
                                    type: Int32(SOCK_DGRAM.rawValue), protocol: 0).release()
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var size: Int32 = 4 * 1024 * 1024
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, 4)
        if isIPv6 {
            var only: Int32 = dualStack ? 0 : 1
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &only, 4)
        }
        let rc = withAddress(address, port: port) { bind(fd, $0, $1) }
        guard rc == 0 else {
            let code = errno
            close(fd)
            throw TestBedError(description: "bind \(address) \(port): \(String(cString: strerror(code)))")
        }
        return fd
    }

    /// Calls `body` with a sockaddr for `address`:`port` and its length.
    static func withAddress<T>(_ address: String, port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        if address.contains(":") {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = port.bigEndian
            inet_pton(AF_INET6, address, &a.sin6_addr)
            return withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        inet_pton(AF_INET, address, &a.sin_addr)
        return withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    /// The local port of socket `fd`.
    static func port(of fd: Int32) -> UInt16 {
        var a = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return UInt16(bigEndian: a.sin6_port)
    }

    /// Sends `payload` from `fd` to `address`:`port` and returns the reply. UDP may lose a
    /// datagram, so it tries 3 times; a late reply to an earlier exchange or try is read and
    /// skipped, so it cannot pass for this one. Returns the last unmatched reply, or nil if none came.
    static func exchange(_ fd: Int32, to address: String, port: UInt16, payload: [UInt8]) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536 + 2)
        var unmatched: [UInt8]? = nil
        for _ in 0..<3 {
            let sent = withAddress(address, port: port) { sendto(fd, payload, payload.count, 0, $0, $1) }
            guard sent == payload.count else { return nil }
            while true {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count < 0 { break }
                let reply = Array(buffer[..<count])
                if reply == payload { return reply }
                unmatched = reply
            }
        }
        return unmatched
    }
}

/// Datagram sizes carried on every path, with content that differs per size and position.
let udpTestSizes = [1, 1400, 8000, 65000]

/// A payload of `size` bytes.
func udpTestPayload(_ size: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ size) }
}

extension TestBed {
    /// Starts pasta attached to a new namespace of the bed with `arguments`; returns the
    /// namespace and the process once the PID file exists.
    func startPastaAttached(_ arguments: [String]) throws -> (String, BackgroundProcess) {
        try allowPingSockets()
        let target = try makeNamespace("udp")
        let pidFile = directory + "/udp-\(Command.nextID()).pid"
        let pasta = try startBackground(in: host, [try pastaBinary(), "-f", "--config-net", "-P", pidFile]
                                        + arguments + ["--netns", target])
        guard waitUntil(10, { pidFileWritten(pidFile) }) else {
            throw TestBedError(description: "pasta did not start: \(pasta.stderr())")
        }
        return (target, pasta)
    }
}

@Suite("pasta UDP", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct PastaUDPTests {
    @Test("Namespace to host through the gateway address, IPv4 and IPv6, 1 to 65000 bytes and 1 MiB", arguments: [
        ("192.0.2.1", "::"), ("fd00::1", "::"),
    ])
    func namespaceToHost(gateway: String, serverAddress: String) async throws {
        try await withTestBed { bed in
            let (target, pasta) = try bed.startPastaAttached(["-u", "none"])
            let server = UDPEchoServer(sockets: [try UDPTestSocket.open(bed, in: bed.host, address: serverAddress,
                                                                        port: 7001, dualStack: true)])
            defer { server.stop() }
            let client = try UDPTestSocket.open(bed, in: target, address: gateway.contains(":") ? "::" : "0.0.0.0",
                                                port: 0)
            defer { close(client) }
            for size in udpTestSizes {
                let payload = udpTestPayload(size)
                let reply = UDPTestSocket.exchange(client, to: gateway, port: 7001, payload: payload)
                #expect(reply == payload, "\(size) bytes via \(gateway): \(reply?.count ?? -1) back; \(pasta.stderr())")
            }
            let failure = UDPSpliceTest.bulk(client, to: gateway, port: 7001)
            #expect(failure == nil, "1 MiB via \(gateway): \(failure ?? "")")
            bed.stop(pasta)
        }
    }

    @Test("Host to namespace through -u on the host's address, IPv4 and IPv6, 1 to 65000 bytes and 1 MiB", arguments: [
        ("192.0.2.2", "0.0.0.0"), ("fd00::2", "::"),
    ])
    func hostToNamespace(hostAddress: String, serverAddress: String) async throws {
        try await withTestBed { bed in
            let (target, pasta) = try bed.startPastaAttached(["-u", "7002"])
            let server = UDPEchoServer(sockets: [try UDPTestSocket.open(bed, in: target, address: serverAddress,
                                                                        port: 7002)])
            defer { server.stop() }
            let client = try UDPTestSocket.open(bed, in: bed.host, address: serverAddress, port: 0)
            defer { close(client) }
            for size in udpTestSizes {
                let payload = udpTestPayload(size)
                let reply = UDPTestSocket.exchange(client, to: hostAddress, port: 7002, payload: payload)
                #expect(reply == payload, "\(size) bytes to \(hostAddress): \(reply?.count ?? -1) back; \(pasta.stderr())")
            }
            let failure = UDPSpliceTest.bulk(client, to: hostAddress, port: 7002)
            #expect(failure == nil, "1 MiB to \(hostAddress): \(failure ?? "")")
            bed.stop(pasta)
        }
    }

    @Test("-u 5000-5009:6000-6009,~5005 maps each port with its offset and skips the excluded one")
    func portMapping() async throws {
        try await withTestBed { bed in
            let (target, pasta) = try bed.startPastaAttached(["-u", "5000-5009:6000-6009,~5005"])
            let servers = try (UInt16(6000)...6009).map {
                try UDPTestSocket.open(bed, in: target, address: "0.0.0.0", port: $0)
            }
            let server = UDPEchoServer(sockets: servers, tag: true)
            defer { server.stop() }
            let client = try UDPTestSocket.open(bed, in: bed.host, address: "0.0.0.0", port: 0)
            defer { close(client) }
            for port in UInt16(5000)...5009 {
                let payload = Array("port \(port)".utf8)
                let reply = UDPTestSocket.exchange(client, to: TestBed.hostIPv4, port: port, payload: payload)
                if port == 5005 {
                    #expect(reply == nil, "excluded port 5005 answered")
                } else {
                    let target = port + 1000
                    #expect(reply == payload + [UInt8(target >> 8), UInt8(target & 0xff)], "port \(port)")
                }
            }
            bed.stop(pasta)
        }
    }

    @Test("A burst of equal datagrams crosses as UDP GSO both ways and arrives whole, in order", arguments: [
        ("192.0.2.2", "0.0.0.0", "127.0.0.1", "192.0.2.1"), ("fd00::2", "::", "::1", "fd00::1"),
    ])
    func segmentedBursts(hostAddress: String, anyAddress: String, hostLoopback: String, gateway: String) async throws {
        try await withTestBed { bed in
            let (target, pasta) = try bed.startPastaAttached(["-u", "7003"])
            // Host -> namespace: the burst waits in pasta's -u socket, read in one go, one frame.
            let nsServer = try UDPTestSocket.open(bed, in: target, address: anyAddress, port: 7003)
            defer { close(nsServer) }
            let hostClient = try UDPTestSocket.open(bed, in: bed.host, address: anyAddress, port: 0)
            defer { close(hostClient) }
            let burst = (0..<30).map { UDPSpliceTest.datagram($0, size: 1400) } + [UDPSpliceTest.datagram(30, size: 600)]
            let inbound = UDPGROReceiver.burst(burst, from: hostClient, to: hostAddress, port: 7003,
                                               while: pasta, into: nsServer)
            #expect(inbound.bytes == Array(burst.joined()), "host -> ns: every byte in order (\(inbound.bytes.count))")
            #expect(inbound.readSizes.contains { $0 > 1400 }, "host -> ns: a GSO datagram among \(inbound.readSizes)")
            // Namespace -> host: the burst waits in the tap, read in one pass, one sendmmsg.
            let hostServer = try UDPTestSocket.open(bed, in: bed.host, address: hostLoopback, port: 7004)
            defer { close(hostServer) }
            let nsClient = try UDPTestSocket.open(bed, in: target, address: anyAddress, port: 0)
            defer { close(nsClient) }
            let outbound = UDPGROReceiver.burst(burst, from: nsClient, to: gateway, port: 7004,
                                                while: pasta, into: hostServer)
            #expect(outbound.bytes == Array(burst.joined()), "ns -> host: every byte in order (\(outbound.bytes.count))")
            #expect(outbound.readSizes.contains { $0 > 1400 }, "ns -> host: a GSO datagram among \(outbound.readSizes)")
            bed.stop(pasta)
        }
    }
}

/// Receiving with UDP_GRO on: the kernel hands over a UDP GSO datagram whole (neither loopback
/// nor pasta's tap coalesces datagrams sent one by one).
enum UDPGROReceiver {
    /// Turns UDP_GRO on for `receiver`, sends `burst` from `sender` to `address`:`port` while
    /// `pasta` is stopped (so that pasta finds it all queued), lets pasta go on and reads what
    /// arrives until 1 s passes without any; a first one-byte datagram goes ahead alone, until
    /// one arrives, and is not returned. Returns the bytes received in order and the size of
    /// each read.
    static func burst(_ burst: [[UInt8]], from sender: Int32, to address: String, port: UInt16,
                      while pasta: BackgroundProcess, into receiver: Int32) -> (bytes: [UInt8], readSizes: [Int]) {
        var on: Int32 = 1
        setsockopt(receiver, 17, 104, &on, socklen_t(MemoryLayout<Int32>.size))   // SOL_UDP, UDP_GRO
        var buffer = [UInt8](repeating: 0, count: 65536)
        for _ in 0..<5 {   // until one datagram gets through (addresses settled, flow made)
            _ = UDPTestSocket.withAddress(address, port: port) { sendto(sender, [0], 1, 0, $0, $1) }
            if recv(receiver, &buffer, buffer.count, 0) == 1 { break }
        }
        kill(pasta.pid, SIGSTOP)
        for datagram in burst {
            _ = UDPTestSocket.withAddress(address, port: port) { sendto(sender, datagram, datagram.count, 0, $0, $1) }
        }
        kill(pasta.pid, SIGCONT)
        var bytes: [UInt8] = [], sizes: [Int] = []
        while true {   // until the 1 s receive timeout
            let count = recv(receiver, &buffer, buffer.count, 0)
            guard count > 0 else { break }
            bytes += buffer[..<count]
            sizes.append(count)
        }
        return (bytes, sizes)
    }
}
