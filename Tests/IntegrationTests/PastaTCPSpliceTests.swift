// pasta's TCP loopback bypass (splice), -T and `auto` end to end: the real binary attached to a
// namespace of the test bed, the real kernel, sockets the test opens in each namespace.
//
// Paths: host loopback -> namespace through `-t` (spliced: the capture of the tap must show no
// TCP on that port), namespace loopback -> host loopback through `-T`; IPv4 and IPv6; 1 byte,
// 64 KiB and 16 MiB through an echo server that writes back while it reads (both directions of
// one connection at once, then the client's half-close, after which it still receives the rest).
// A client that sends a request and half-closes gets a 4 MiB reply written only after the server
// saw its end of file. A spliced connection to a closed port is closed at once. With --no-splice the same connection does cross the tap. `-t auto`: a
// listener opened in the namespace after start is reachable from the host's loopback within
// 2 s, and refused once it is closed; `-T auto` the same the other way. Once spliced connections
// end, pasta holds no more pipes than before (both sockets and pipes were closed). Splices to the
// namespace's own IPv6 address first wait until that address is no longer tentative: right after
// start the namespace can't reach it yet (its connect fails with EHOSTUNREACH after 3 s).
import Foundation
import Testing
import PasstSys

/// Splice test helpers.
enum TCPSpliceTest {
    /// Serves one connection on `listener` from a thread: reads to end of file, then writes
    /// `reply` and closes; `wait` on the returned semaphore for the end.
    static func replyAfterEOF(_ listener: Int32, reply: [UInt8]) -> DispatchSemaphore {
        let done = DispatchSemaphore(value: 0)
        Thread {
            var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 10_000) > 0 {
                let fd = accept(listener, nil, nil)
                var buffer = [UInt8](repeating: 0, count: 4096)
                var timeout = timeval(tv_sec: 10, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                while recv(fd, &buffer, buffer.count, 0) > 0 {}
                var sent = 0
                while sent < reply.count {
                    let n = reply.withUnsafeBytes { send(fd, $0.baseAddress! + sent, reply.count - sent, Int32(MSG_NOSIGNAL)) }
                    if n <= 0 { break }
                    sent += n
                }
                close(fd)
            }
            done.signal()
        }.start()
        return done
    }

    /// Reads from `fd` until end of file (or error); returns what came.
    static func readAll(_ fd: Int32) -> [UInt8] {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return received }
            received += buffer[..<n]
        }
    }

    /// Number of pipes process `pid` holds open (two per spliced connection).
    static func pipeCount(_ pid: pid_t) -> Int {
        let directory = "/proc/\(pid)/fd"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return entries.filter {
            ((try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/" + $0)) ?? "").hasPrefix("pipe:")
        }.count
    }

    /// Whether the namespace's global IPv6 address (the host's, copied) already has its local route:
    /// without it, a splice to that address is sent out to be resolved (EHOSTUNREACH after 3 s).
    /// pasta waits for it before it reports ready; the kernel otherwise adds it up to 1 s later.
    static func ownAddressRouted(_ bed: TestBed, in namespace: String) -> Bool {
        ((try? bed.ip(namespace, "-6", "route", "show", "table", "local")) ?? "").contains("local \(TestBed.hostIPv6) ")
    }

    /// Whether a 5-byte echo through `address`:`port`, connected from `namespace`, comes back.
    static func echoes(_ bed: TestBed, in namespace: String, to address: String, port: UInt16) -> Bool {
        guard let client = try? TCPTestSocket.connect(bed, in: namespace, to: address, port: port) else { return false }
        defer { close(client) }
        let payload = Array("probe".utf8)
        return TCPTestSocket.echo(client, payload: payload) == payload
    }
}

@Suite("pasta TCP splice, -T and auto", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct PastaTCPSpliceTests {
    @Test("Host loopback to namespace through -t is spliced: 1 B, 64 KiB, 16 MiB echoed, nothing on the tap",
          arguments: [("127.0.0.1", "0.0.0.0"), ("::1", "::")])
    func hostLoopbackToNamespace(loopback: String, serverAddress: String) async throws {
        try await withTestBed { bed in
            let pcap = bed.directory + "/tcp-splice-\(Command.nextID()).pcap"
            let (target, pasta) = try bed.startPastaAttached(["-t", "7201", "-p", pcap] + PastaTCPTests.quiet)
            let server = TCPEchoServer(listener: try TCPTestSocket.listen(bed, in: target, address: serverAddress,
                                                                          port: 7201))
            defer { server.stop() }
            #expect(TCPSpliceTest.ownAddressRouted(bed, in: target))
            let pipes = TCPSpliceTest.pipeCount(pasta.pid)
            for size in tcpTestSizes {
                let payload = tcpTestPayload(size)
                let client = try TCPTestSocket.connectWhenListening(bed, in: bed.host, to: loopback, port: 7201)
                let echoed = TCPTestSocket.echo(client, payload: payload)
                close(client)
                #expect(echoed.count == size && echoed == payload,
                        "\(size) bytes to \(loopback): \(echoed.count) back; \(pasta.stderr().suffix(3000))")
            }
            #expect(waitUntil(2) { TCPSpliceTest.pipeCount(pasta.pid) == pipes }, "spliced connections left open")
            #expect(bed.stop(pasta) == 0, "\(pasta.stderr())")
            #expect(try CapturedFrames.count(path: pcap, protocol: 6, port: 7201) == 0, "spliced TCP crossed the tap")
        }
    }

    @Test("Namespace loopback to host loopback through -T: 1 B, 64 KiB, 16 MiB echoed", arguments: [
        "127.0.0.1", "::1",
    ])
    func namespaceLoopbackToHost(loopback: String) async throws {
        try await withTestBed { bed in
            let (target, pasta) = try bed.startPastaAttached(["-t", "none", "-T", "7202", "-u", "none", "-U", "none"])
            let server = TCPEchoServer(listener: try TCPTestSocket.listen(bed, in: bed.host, address: loopback,
                                                                          port: 7202))
            defer { server.stop() }
            for size in tcpTestSizes {
                let payload = tcpTestPayload(size)
                let client = try TCPTestSocket.connectWhenListening(bed, in: target, to: loopback, port: 7202)
                let echoed = TCPTestSocket.echo(client, payload: payload)
                close(client)
                #expect(echoed.count == size && echoed == payload,
                        "\(size) bytes to \(loopback): \(echoed.count) back; \(pasta.stderr().suffix(3000))")
            }
            #expect(bed.stop(pasta) == 0, "\(pasta.stderr())")
        }
    }

    @Test("Half-close on a spliced connection: the client's FIN arrives, a 4 MiB reply still comes back",
          arguments: ["127.0.0.1", "::1"])
    func halfClose(loopback: String) async throws {
        try await withTestBed { bed in
            let (target, pasta) = try bed.startPastaAttached(["-t", "7203"] + PastaTCPTests.quiet)
            let listener = try TCPTestSocket.listen(bed, in: target, address: loopback.contains(":") ? "::" : "0.0.0.0",
                                                    port: 7203)
            defer { close(listener) }
            #expect(TCPSpliceTest.ownAddressRouted(bed, in: target))
            let reply = tcpTestPayload(4 << 20)
            let pipes = TCPSpliceTest.pipeCount(pasta.pid)
            let served = TCPSpliceTest.replyAfterEOF(listener, reply: reply)
            let client = try TCPTestSocket.connectWhenListening(bed, in: bed.host, to: loopback, port: 7203)
            let request = Array("request".utf8)
            #expect(send(client, request, request.count, 0) == request.count)
            shutdown(client, Int32(SHUT_WR))
            let received = TCPSpliceTest.readAll(client)
            close(client)
            served.wait()
            #expect(received.count == reply.count && received == reply,
                    "\(received.count) of \(reply.count) bytes after the half-close; \(pasta.stderr().suffix(3000))")
            #expect(waitUntil(2) { TCPSpliceTest.pipeCount(pasta.pid) == pipes }, "spliced connection left open")
            bed.stop(pasta)
        }
    }

    @Test("A spliced connection to a closed namespace port is closed at once, its pipes with it")
    func closedTarget() async throws {
        try await withTestBed { bed in
            let (_, pasta) = try bed.startPastaAttached(["-t", "7207"] + PastaTCPTests.quiet)
            let pipes = TCPSpliceTest.pipeCount(pasta.pid)
            let client = try TCPTestSocket.connectWhenListening(bed, in: bed.host, to: "127.0.0.1", port: 7207)
            let started = Date()
            var byte: UInt8 = 0
            #expect(recv(client, &byte, 1, 0) <= 0, "data from a closed port")
            close(client)
            #expect(Date().timeIntervalSince(started) < 2)
            #expect(waitUntil(2) { TCPSpliceTest.pipeCount(pasta.pid) == pipes }, "pipes left open")
            #expect(bed.stop(pasta) == 0, "\(pasta.stderr())")
        }
    }

    @Test("--no-splice: a host loopback connection goes through the tap instead")
    func noSplice() async throws {
        try await withTestBed { bed in
            let pcap = bed.directory + "/tcp-nosplice-\(Command.nextID()).pcap"
            let (target, pasta) = try bed.startPastaAttached(["-t", "7204", "--no-splice", "-p", pcap]
                                                             + PastaTCPTests.quiet)
            let server = TCPEchoServer(listener: try TCPTestSocket.listen(bed, in: target, address: "0.0.0.0",
                                                                          port: 7204))
            defer { server.stop() }
            let payload = tcpTestPayload(65536)
            let client = try TCPTestSocket.connectWhenListening(bed, in: bed.host, to: "127.0.0.1", port: 7204)
            let echoed = TCPTestSocket.echo(client, payload: payload)
            close(client)
            #expect(echoed == payload, "\(echoed.count) bytes back; \(pasta.stderr().suffix(3000))")
            bed.stop(pasta)
            #expect(try CapturedFrames.count(path: pcap, protocol: 6, port: 7204) >= 4, "no TCP on the tap")
        }
    }

    @Test("-t auto: a namespace listener is reachable from host loopback within 2 s, refused once closed")
    func autoFollowsNamespace() async throws {
        try await withTestBed { bed in
            let (target, pasta) = try bed.startPastaAttached(["-t", "auto", "-T", "none", "-u", "none", "-U", "none"])
            usleep(300_000)
            let server = TCPEchoServer(listener: try TCPTestSocket.listen(bed, in: target, address: "0.0.0.0",
                                                                          port: 7205))
            let opened = Date()
            let reachable = waitUntil(2) { TCPSpliceTest.echoes(bed, in: bed.host, to: "127.0.0.1", port: 7205) }
            #expect(reachable, "not forwarded \(Date().timeIntervalSince(opened)) s after listen; \(pasta.stderr())")
            server.stop()
            usleep(2_500_000)
            #expect(throws: SyscallError(ECONNREFUSED)) {
                close(try TCPTestSocket.connect(bed, in: bed.host, to: "127.0.0.1", port: 7205))
            }
            bed.stop(pasta)
        }
    }

    @Test("-T auto: a host loopback listener is reachable from namespace loopback within 2 s, refused once closed")
    func autoFollowsHost() async throws {
        try await withTestBed { bed in
            let (target, pasta) = try bed.startPastaAttached(["-t", "none", "-T", "auto", "-u", "none", "-U", "none"])
            usleep(300_000)
            let server = TCPEchoServer(listener: try TCPTestSocket.listen(bed, in: bed.host, address: "127.0.0.1",
                                                                          port: 7206))
            let opened = Date()
            let reachable = waitUntil(2) { TCPSpliceTest.echoes(bed, in: target, to: "127.0.0.1", port: 7206) }
            #expect(reachable, "not forwarded \(Date().timeIntervalSince(opened)) s after listen; \(pasta.stderr())")
            server.stop()
            usleep(2_500_000)
            #expect(throws: SyscallError(ECONNREFUSED)) {
                close(try TCPTestSocket.connect(bed, in: target, to: "127.0.0.1", port: 7206))
            }
            bed.stop(pasta)
        }
    }
}
