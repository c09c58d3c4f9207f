// pasta's UDP loopback bypass, -U, `auto` and DNS forwarding end to end: the real binary attached
// to a namespace of the test bed, the real kernel, sockets the test opens in each namespace.
//
// Paths: host loopback -> namespace through `-u` (spliced: the capture of the tap must show no
// UDP on that port), namespace loopback -> host loopback through `-U`; IPv4 and IPv6; datagrams
// of 1, 1400, 8000 and 65000 bytes echoed and compared, then 1024 datagrams of 1 KiB with
// sequence numbers each way (a window of 32 outstanding, no loss allowed); with --no-splice the
// same datagrams do cross the tap. `-u auto`: a socket
// bound in the namespace after start is reachable from the host's loopback within 2 s, and once
// it is closed a datagram to that port no longer reaches the namespace (seen by a connected
// "sentinel" socket on that port, which auto mode ignores because it is connected). DNS: a
// query to the --dns-forward address is answered by a stub in the host namespace listening on
// the nameserver of the host's private resolv.conf.
import Foundation
import Synchronization
import Testing
import PasstSys

/// Splice test helpers.
enum UDPSpliceTest {
    /// Sends `count` datagrams of `size` bytes (sequence number first) from `fd` to
    /// `address`:`port` with at most `window` unanswered, checks each echo; returns a failure
    /// text, nil if every datagram came back intact.
    static func bulk(_ fd: Int32, to address: String, port: UInt16, count: Int = 1024, size: Int = 1024,
                     window: Int = 32) -> String? {
        var received = [Bool](repeating: false, count: count)
        var buffer = [UInt8](repeating: 0, count: 65536)
        var sent = 0
        var answered = 0
        while answered < count {
            while sent < count && sent - answered < window {
                let payload = datagram(sent, size: size)
                let result = UDPTestSocket.withAddress(address, port: port) { sendto(fd, payload, payload.count, 0, $0, $1) }
                guard result == size else { return "send \(sent) failed: \(String(cString: strerror(errno)))" }
                sent += 1
            }
            let length = recv(fd, &buffer, buffer.count, 0)
            guard length >= 0 else { return "datagram lost: \(answered) of \(count) came back" }
            guard length == size else { return "datagram of \(length) bytes, expected \(size)" }
            let sequence = Int(buffer[0]) << 24 | Int(buffer[1]) << 16 | Int(buffer[2]) << 8 | Int(buffer[3])
            guard sequence < count, !received[sequence], Array(buffer[..<length]) == datagram(sequence, size: size) else {
                return "datagram \(sequence) damaged or repeated"
            }
            received[sequence] = true
            answered += 1
        }
        return nil
    }

    /// Datagram `sequence` of the bulk test: the number (big endian), then a pattern of it.
    static func datagram(_ sequence: Int, size: Int) -> [UInt8] {
        (0..<size).map { index in
            index < 4 ? UInt8(truncatingIfNeeded: sequence >> (24 - 8 * index)) : UInt8(truncatingIfNeeded: sequence &* 7 &+ index)
        }
    }

    /// Sets a receive timeout of `milliseconds` on `fd`.
    static func setTimeout(_ fd: Int32, milliseconds: Int) {
        var timeout = timeval(tv_sec: milliseconds / 1000, tv_usec: Int((milliseconds % 1000) * 1000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }
}

/// A DNS stub on a thread: answers every query with one A record, 203.0.113.7.
final class DNSStub: Sendable {
    let socket: Int32
    let stopping = Atomic<Bool>(false)
    let finished = DispatchSemaphore(value: 0)

    /// Starts answering on `socket` (bound, with a receive timeout); `stop` closes it.
    init(socket: Int32) {
        self.socket = socket
        Thread { [self] in run() }.start()
    }

    /// The stub loop: receive a query, send back the answer.
    private func run() {
        var buffer = [UInt8](repeating: 0, count: 1500)
        while !stopping.load(ordering: .relaxed) {
            var peer = sockaddr_in6()
            var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            let count = withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(socket, &buffer, buffer.count, 0, $0, &length) }
            }
            guard count >= 12 else { continue }
            var answer = Array(buffer[..<count])
            answer[2] = 0x81
            answer[3] = 0x80
            answer[7] = 1
            answer += [0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 7]
            _ = withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(socket, answer, answer.count, 0, $0, length) }
            }
        }
        finished.signal()
    }

    /// Stops the thread and closes the socket.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        finished.wait()
        close(socket)
    }
}

@Suite("pasta UDP splice, -U, auto and DNS", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct PastaUDPSpliceTests {
    @Test("Host loopback to namespace through -u is spliced: echoes intact, nothing on the tap", arguments: [
        ("127.0.0.1", "0.0.0.0"), ("::1", "::"),
    ])
    func hostLoopbackToNamespace(loopback: String, serverAddress: String) async throws {
        try await withTestBed { bed in
            let pcap = bed.directory + "/splice-\(Command.nextID()).pcap"
            let (target, pasta) = try bed.startPastaAttached(["-u", "7020", "-U", "none", "-p", pcap])
            let server = UDPEchoServer(sockets: [try UDPTestSocket.open(bed, in: target, address: serverAddress,
                                                                        port: 7020)])
            defer { server.stop() }
            let client = try UDPTestSocket.open(bed, in: bed.host, address: loopback, port: 0)
            defer { close(client) }
            for size in udpTestSizes {
                let payload = udpTestPayload(size)
                let reply = UDPTestSocket.exchange(client, to: loopback, port: 7020, payload: payload)
                #expect(reply == payload, "\(size) bytes to \(loopback): \(reply?.count ?? -1) back; \(pasta.stderr())")
            }
            let failure = UDPSpliceTest.bulk(client, to: loopback, port: 7020)
            #expect(failure == nil, "1 MiB to \(loopback): \(failure ?? "")")
            bed.stop(pasta)
            #expect(try CapturedFrames.count(path: pcap, protocol: 17, port: 7020) == 0, "spliced datagrams crossed the tap")
        }
    }

    @Test("--no-splice: host loopback datagrams go through the tap instead")
    func noSplice() async throws {
        try await withTestBed { bed in
            let pcap = bed.directory + "/nosplice-\(Command.nextID()).pcap"
            let (target, pasta) = try bed.startPastaAttached(["-u", "7021", "-U", "none", "--no-splice", "-p", pcap])
            let server = UDPEchoServer(sockets: [try UDPTestSocket.open(bed, in: target, address: "0.0.0.0",
                                                                        port: 7021)])
            defer { server.stop() }
            let client = try UDPTestSocket.open(bed, in: bed.host, address: "127.0.0.1", port: 0)
            defer { close(client) }
            let payload = udpTestPayload(1400)
            #expect(UDPTestSocket.exchange(client, to: "127.0.0.1", port: 7021, payload: payload) == payload)
            bed.stop(pasta)
            #expect(try CapturedFrames.count(path: pcap, protocol: 17, port: 7021) >= 2, "no UDP on the tap")
        }
    }

    @Test("Namespace loopback to host loopback through -U, 1 to 65000 bytes and 1 MiB", arguments: [
        "127.0.0.1", "::1",
    ])
    func namespaceLoopbackToHost(loopback: String) async throws {
        try await withTestBed { bed in
            let (target, pasta) = try bed.startPastaAttached(["-u", "none", "-U", "7030"])
            let server = UDPEchoServer(sockets: [try UDPTestSocket.open(bed, in: bed.host, address: loopback,
                                                                        port: 7030)])
            defer { server.stop() }
            let client = try UDPTestSocket.open(bed, in: target, address: loopback, port: 0)
            defer { close(client) }
            for size in udpTestSizes {
                let payload = udpTestPayload(size)
                let reply = UDPTestSocket.exchange(client, to: loopback, port: 7030, payload: payload)
                #expect(reply == payload, "\(size) bytes to \(loopback): \(reply?.count ?? -1) back; \(pasta.stderr())")
            }
            let failure = UDPSpliceTest.bulk(client, to: loopback, port: 7030)
            #expect(failure == nil, "1 MiB to \(loopback): \(failure ?? "")")
            bed.stop(pasta)
        }
    }

    @Test("-u auto: a port bound in the namespace is forwarded within 2 s and dropped once closed")
    func autoFollowsNamespace() async throws {
        try await withTestBed { bed in
            let (target, pasta) = try bed.startPastaAttached(["-u", "auto", "-U", "none"])
            usleep(300_000)
            let server = UDPEchoServer(sockets: [try UDPTestSocket.open(bed, in: target, address: "0.0.0.0",
                                                                        port: 7040)])
            let bound = Date()
            let client = try UDPTestSocket.open(bed, in: bed.host, address: "127.0.0.1", port: 0)
            defer { close(client) }
            UDPSpliceTest.setTimeout(client, milliseconds: 100)
            let payload = Array("auto".utf8)
            var buffer = [UInt8](repeating: 0, count: 64)
            let reachable = waitUntil(2) {
                _ = UDPTestSocket.withAddress("127.0.0.1", port: 7040) { sendto(client, payload, payload.count, 0, $0, $1) }
                let count = recv(client, &buffer, buffer.count, 0)
                return count == payload.count && Array(buffer[..<count]) == payload
            }
            #expect(reachable, "not forwarded \(Date().timeIntervalSince(bound)) s after bind; \(pasta.stderr())")
            server.stop()
            usleep(2_500_000)
            // A connected socket on the port: auto mode ignores it, a forwarded datagram would reach it.
            let second = try UDPTestSocket.open(bed, in: bed.host, address: "127.0.0.1", port: 0)
            defer { close(second) }
            let sentinel = try UDPTestSocket.open(bed, in: target, address: "0.0.0.0", port: 7040)
            defer { close(sentinel) }
            let connected = UDPTestSocket.withAddress(TestBed.hostIPv4, port: UDPTestSocket.port(of: second)) {
                connect(sentinel, $0, $1)
            }
            #expect(connected == 0)
            _ = UDPTestSocket.withAddress("127.0.0.1", port: 7040) { sendto(second, payload, payload.count, 0, $0, $1) }
            #expect(recv(sentinel, &buffer, buffer.count, 0) < 0, "datagram still forwarded after the port closed")
            bed.stop(pasta)
        }
    }

    @Test("A DNS query to the --dns-forward address is answered by the host's resolver")
    func dnsForward() async throws {
        try await withTestBed { bed in
            let resolver = "198.51.100.53"
            try "nameserver \(resolver)\n".write(toFile: bed.hostEtcDirectory + "/resolv.conf", atomically: true,
                                                 encoding: .utf8)
            try bed.ip(bed.host, "addr", "add", resolver + "/32", "dev", "lo")
            let stub = DNSStub(socket: try UDPTestSocket.open(bed, in: bed.host, address: resolver, port: 53))
            defer { stub.stop() }
            let (target, pasta) = try bed.startPastaAttached(["-u", "none", "-U", "none", "--dns-forward", "192.0.2.53"])
            let client = try UDPTestSocket.open(bed, in: target, address: "0.0.0.0", port: 0)
            defer { close(client) }
            let query: [UInt8] = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7] + Array("example".utf8)
                + [4] + Array("test".utf8) + [0, 0, 1, 0, 1]
            // The first query may go before the namespace has resolved 192.0.2.53: retry for a while.
            var reply: [UInt8]?
            _ = waitUntil(8) {
                reply = UDPTestSocket.exchange(client, to: "192.0.2.53", port: 53, payload: query)
                return reply != nil
            }
            #expect(reply?.prefix(2) == [0x12, 0x34], "no answer; \(pasta.stderr())")
            #expect(reply?.suffix(4) == [203, 0, 113, 7])
            bed.stop(pasta)
        }
    }
}
