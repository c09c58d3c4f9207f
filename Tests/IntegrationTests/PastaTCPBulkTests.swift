// Bulk TCP through pasta (issue 5): large transfers checked end to end by SHA-256, many
// concurrent connections, and no retransmission timeout at either MTU or congestion control.
//
// The data is one file of random bytes made once per test run; the sender hands it to its socket
// with sendfile(2), the receiver pipes everything it reads into `sha256sum`, and the digests must
// match. Every path of pasta carries it both ways: namespace -> host through the gateway address
// (tap), host -> namespace through `-t` on the host's address (tap) and from host loopback
// (splice), namespace loopback -> host through `-T` (splice). "Upload": the client sends, then
// half-closes. "Download": the client sends a 4-byte request and half-closes first, then receives
// the whole file (a half-closed client still gets a large reply; upstream stalls there). The
// stall test reads TcpExtTCPTimeouts of both namespaces around each transfer: zero is required.
// 500 connections at once each carry 1 MiB (a connection number, then a common pattern) that the
// server compares and answers with a verdict, through both tap paths.
import Foundation
import Synchronization
import Testing
import PasstSys

/// The random data of the bulk tests, in a file, with its SHA-256 (made once per test run).
struct BulkFile: Sendable {
    let path: String
    let size: Int
    let sha256: String

    /// 256 MiB of random bytes in the temporary directory, removed when the test process exits.
    static let shared: BulkFile = {
        let file = BulkFile(size: 256 << 20)
        atexit { unlink(BulkFile.shared.path) }
        return file
    }()

    /// Writes `size` random bytes to a new file and hashes them.
    init(size: Int) {
        self.size = size
        path = NSTemporaryDirectory() + "swift-passt-bulk-\(getpid()).bin"
        let made = try? Command.check(["sh", "-c", "head -c \(size) /dev/urandom > '\(path)'"], timeout: 60)
        let digest = made == nil ? nil : try? Command.check(["sha256sum", path], timeout: 60)
        sha256 = digest.map { String($0.prefix(64)) } ?? "missing"
    }
}

/// Moving the bulk file over connected sockets and hashing what arrives.
enum BulkTransfer {
    /// Sends the whole file on `fd` with sendfile(2), then half-closes; returns the bytes sent.
    static func sendFile(_ fd: Int32, _ file: BulkFile) -> Int {
        let source = open(file.path, O_RDONLY | O_CLOEXEC)
        guard source >= 0 else { return 0 }
        defer { close(source) }
        var sent = 0
        while sent < file.size {
            let n = sendfile(fd, source, nil, min(file.size - sent, 1 << 22))
            if n <= 0 { break }
            sent += n
        }
        shutdown(fd, Int32(SHUT_WR))
        return sent
    }

    /// Reads `fd` to end of file (or error / time-out) into `sha256sum`; returns the byte count and digest.
    static func receiveHashed(_ fd: Int32) -> (count: Int, sha256: String) {
        let hasher = Process()
        hasher.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        let input = Pipe(), output = Pipe()
        hasher.standardInput = input
        hasher.standardOutput = output
        guard (try? hasher.run()) != nil else { return (0, "sha256sum did not start") }
        let sink = input.fileHandleForWriting.fileDescriptor
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var count = 0
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            var written = 0
            while written < n {
                let w = buffer.withUnsafeBytes { write(sink, $0.baseAddress! + written, n - written) }
                if w <= 0 { break }
                written += w
            }
            count += n
        }
        try? input.fileHandleForWriting.close()
        let digest = output.fileHandleForReading.readDataToEndOfFile()
        hasher.waitUntilExit()
        return (count, String(decoding: digest.prefix(64), as: UTF8.self))
    }

    /// Sends the file from `sender` (on a second thread) while `receiver` hashes it here.
    static func move(from sender: Int32, to receiver: Int32, _ file: BulkFile) -> (sent: Int, count: Int, sha256: String) {
        let sent = Mutex(0)
        let done = DispatchSemaphore(value: 0)
        Thread {
            let n = sendFile(sender, file)
            sent.withLock { $0 = n }
            done.signal()
        }.start()
        let received = receiveHashed(receiver)
        done.wait()
        return (sent.withLock { $0 }, received.count, received.sha256)
    }

    /// Accepts one connection on `listener`, waiting up to 10 s; -1 if none came.
    static func accept(_ listener: Int32) -> Int32 {
        var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 10_000) > 0 else { return -1 }
        let fd = Glibc.accept(listener, nil, nil)
        if fd >= 0 {
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        return fd
    }

    /// Reads `fd` to end of file; returns the byte count.
    static func drain(_ fd: Int32) -> Int {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var count = 0
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return count }
            count += n
        }
    }
}

/// Many connections at once, each sending 1 MiB that the server checks and answers with its
/// verdict: a server thread and a client loop, both poll(2)-driven over non-blocking sockets.
enum ConcurrentTransfers {
    /// Bytes each connection sends: a 4-byte connection number, then the common pattern.
    static let size = 1 << 20
    /// The common pattern (the first 4 bytes are replaced by the connection number).
    static let pattern = tcpTestPayload(size)

    /// Serves `listener` until `expected` connections were answered or `deadline` passed: reads
    /// each connection to end of file, compares it with the pattern, replies with the 4-byte
    /// number and 1 (all 1 MiB as expected) or 0; returns how many were answered.
    static func serve(_ listener: Int32, expected: Int, deadline: Date) -> Int {
        struct Peer { var fd: Int32; var received = 0; var header: [UInt8] = []; var intact = true }
        var peers: [Peer] = []
        var answered = 0
        _ = fcntl(listener, F_SETFL, O_NONBLOCK)
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while answered < expected && Date() < deadline {
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            fds += peers.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            guard poll(&fds, nfds_t(fds.count), 100) > 0 else { continue }
            if fds[0].revents != 0 {
                while true {
                    let fd = accept(listener, nil, nil)
                    guard fd >= 0 else { break }
                    _ = fcntl(fd, F_SETFL, O_NONBLOCK)
                    peers.append(Peer(fd: fd))
                }
            }
            var closed: Set<Int32> = []
            for (index, pfd) in fds.dropFirst().enumerated() where pfd.revents != 0 {
                var peer = peers[index]
                while true {
                    let n = recv(peer.fd, &buffer, buffer.count, 0)
                    if n < 0 && errno == EAGAIN { break }
                    if n <= 0 {
                        let verdict: [UInt8] = peer.header + [peer.intact && peer.received == size ? 1 : 0]
                        _ = send(peer.fd, verdict, verdict.count, Int32(MSG_NOSIGNAL))
                        close(peer.fd)
                        closed.insert(peer.fd)
                        answered += 1
                        break
                    }
                    var start = 0
                    while peer.received + start < 4 && start < n {
                        peer.header.append(buffer[start])
                        start += 1
                    }
                    let offset = peer.received + start
                    if offset + (n - start) > size {
                        peer.intact = false
                    } else if n > start {
                        let same = buffer.withUnsafeBytes { got in
                            pattern.withUnsafeBytes { memcmp(got.baseAddress! + start, $0.baseAddress! + offset, n - start) }
                        }
                        if same != 0 { peer.intact = false }
                    }
                    peer.received += n
                }
                peers[index] = peer
            }
            peers.removeAll { closed.contains($0.fd) }
        }
        peers.forEach { close($0.fd) }
        return answered
    }

    /// Sends 1 MiB on each connected non-blocking socket of `clients`, half-closes, and reads
    /// the verdicts until `deadline`; returns how many came back as 1 with the right number.
    static func run(_ clients: [Int32], deadline: Date) -> Int {
        var sent = [Int](repeating: 0, count: clients.count)
        var reply = [[UInt8]](repeating: [], count: clients.count)
        var finished = [Bool](repeating: false, count: clients.count)
        var good = 0
        while finished.contains(false) && Date() < deadline {
            var fds = clients.enumerated().map { index, fd in
                pollfd(fd: fd, events: Int16(finished[index] ? 0 : (sent[index] < size ? POLLOUT : POLLIN)), revents: 0)
            }
            guard poll(&fds, nfds_t(fds.count), 100) > 0 else { continue }
            for (index, pfd) in fds.enumerated() where pfd.revents != 0 && !finished[index] {
                let fd = clients[index]
                if sent[index] < size {
                    var header = UInt32(index).bigEndian
                    while sent[index] < size {
                        let n: Int
                        if sent[index] < 4 {
                            n = withUnsafeBytes(of: &header) { send(fd, $0.baseAddress! + sent[index], 4 - sent[index], Int32(MSG_NOSIGNAL)) }
                        } else {
                            n = pattern.withUnsafeBytes { send(fd, $0.baseAddress! + sent[index], size - sent[index], Int32(MSG_NOSIGNAL)) }
                        }
                        if n <= 0 { break }
                        sent[index] += n
                    }
                    if sent[index] == size { shutdown(fd, Int32(SHUT_WR)) }
                    continue
                }
                var buffer = [UInt8](repeating: 0, count: 16)
                let n = recv(fd, &buffer, buffer.count, 0)
                if n > 0 { reply[index] += buffer[..<n]; continue }
                if n < 0 && errno == EAGAIN { continue }
                finished[index] = true
                let number = withUnsafeBytes(of: UInt32(index).bigEndian) { Array($0) }
                if reply[index] == number + [1] { good += 1 }
            }
        }
        return good
    }
}

/// One way through pasta: where the client connects from and to, and where the server listens.
struct BulkPath: CustomStringConvertible {
    var name: String
    var clientInTarget: Bool
    var address: String
    var port: UInt16
    var description: String { "\(name) to [\(address)]:\(port)" }
}

extension TestBed {
    /// TcpExtTCPTimeouts (retransmission timeouts) of `namespace`, from /proc/net/netstat.
    func retransmissionTimeouts(in namespace: String) throws -> Int {
        let lines = try run(in: namespace, ["cat", "/proc/net/netstat"]).stdout.split(separator: "\n")
        for (index, line) in lines.enumerated() where line.hasPrefix("TcpExt:") && index + 1 < lines.count {
            let names = line.split(separator: " "), values = lines[index + 1].split(separator: " ")
            if let column = names.firstIndex(of: "TCPTimeouts"), column < values.count { return Int(values[column]) ?? -1 }
        }
        throw TestBedError(description: "no TcpExt TCPTimeouts in \(namespace)")
    }
}

@Suite("pasta TCP bulk", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct PastaTCPBulkTests {
    /// Ports: the host's server behind the gateway and -T, the namespace's server behind -t.
    static let gatewayPort: UInt16 = 7301, spliceOutPort: UInt16 = 7302, forwardedPort: UInt16 = 7303

    /// Every path of pasta for one address family.
    static func paths(ipv6: Bool) -> [BulkPath] {
        [BulkPath(name: "namespace -> host, tap", clientInTarget: true, address: ipv6 ? "fd00::1" : "192.0.2.1",
                  port: gatewayPort),
         BulkPath(name: "host -> namespace, tap (-t)", clientInTarget: false, address: ipv6 ? "fd00::2" : "192.0.2.2",
                  port: forwardedPort),
         BulkPath(name: "host loopback -> namespace, splice (-t)", clientInTarget: false,
                  address: ipv6 ? "::1" : "127.0.0.1", port: forwardedPort),
         BulkPath(name: "namespace loopback -> host, splice (-T)", clientInTarget: true,
                  address: ipv6 ? "::1" : "127.0.0.1", port: spliceOutPort)]
    }

    /// pasta attached to a new namespace with -t and -T for the paths, plus `extra` options;
    /// the listeners of both sides (dual-stack), keyed by port.
    static func start(_ bed: TestBed, _ extra: [String] = []) throws -> (String, BackgroundProcess, [UInt16: Int32]) {
        let (target, pasta) = try bed.startPastaAttached(["-t", "\(forwardedPort)", "-T", "\(spliceOutPort)",
                                                          "-u", "none", "-U", "none"] + extra)
        let listeners: [UInt16: Int32] = [
            gatewayPort: try TCPTestSocket.listen(bed, in: bed.host, address: "::", port: gatewayPort, dualStack: true),
            spliceOutPort: try TCPTestSocket.listen(bed, in: bed.host, address: "::", port: spliceOutPort, dualStack: true),
            forwardedPort: try TCPTestSocket.listen(bed, in: target, address: "::", port: forwardedPort, dualStack: true),
        ]
        // Room for every connection of the concurrency test in the accept queues: with the
        // usual 16, 500 SYNs at once make the namespace's kernel answer with SYN cookies, which
        // (without timestamps) lose window scaling and reset segments after a dropped ACK.
        listeners.values.forEach { _ = Glibc.listen($0, 1024) }
        return (target, pasta, listeners)
    }

    /// Runs one transfer of the bulk file on `path`: upload (client sends) or download (client
    /// half-closes after a request, then receives); `congestionControl` is set on the sender.
    static func transfer(_ bed: TestBed, target: String, listeners: [UInt16: Int32], path: BulkPath,
                         download: Bool, congestionControl: String? = nil) throws -> (sent: Int, count: Int, sha256: String) {
        let client = try TCPTestSocket.connectWhenListening(bed, in: path.clientInTarget ? target : bed.host,
                                                            to: path.address, port: path.port)
        defer { close(client) }
        let server = BulkTransfer.accept(listeners[path.port]!)
        guard server >= 0 else { throw TestBedError(description: "\(path): no connection reached the server") }
        defer { close(server) }
        let sender = download ? server : client, receiver = download ? client : server
        if let congestionControl {
            let set = congestionControl.withCString { setsockopt(sender, Int32(IPPROTO_TCP), TCP_CONGESTION, $0,
                                                                 socklen_t(strlen($0))) }
            guard set == 0 else { throw TestBedError(description: "TCP_CONGESTION \(congestionControl): errno \(errno)") }
        }
        if download {
            _ = send(client, "get!", 4, Int32(MSG_NOSIGNAL))
            shutdown(client, Int32(SHUT_WR))
            guard BulkTransfer.drain(server) == 4 else { throw TestBedError(description: "\(path): request lost") }
        }
        return BulkTransfer.move(from: sender, to: receiver, BulkFile.shared)
    }

    @Test("256 MiB each way on every path, IPv4 and IPv6, SHA-256 equal; downloads after the client's half-close")
    func everyPathBothWays() async throws {
        let file = BulkFile.shared
        try #require(file.sha256 != "missing")
        try await withTestBed { bed in
            let (target, pasta, listeners) = try PastaTCPBulkTests.start(bed)
            defer { listeners.values.forEach { close($0) } }
            for path in PastaTCPBulkTests.paths(ipv6: false) + PastaTCPBulkTests.paths(ipv6: true) {
                for download in [false, true] {
                    let result = try PastaTCPBulkTests.transfer(bed, target: target, listeners: listeners, path: path,
                                                                download: download)
                    #expect(result.sent == file.size && result.count == file.size && result.sha256 == file.sha256,
                            "\(path) \(download ? "download" : "upload"): sent \(result.sent), received \(result.count); \(pasta.stderr().suffix(2000))")
                }
            }
            #expect(bed.stop(pasta) == 0, "\(pasta.stderr())")
        }
    }

    @Test("500 concurrent connections, 1 MiB each, checked by the server: namespace -> host and host -> namespace (tap)")
    func concurrentConnections() async throws {
        try await withTestBed { bed in
            let (target, pasta, listeners) = try PastaTCPBulkTests.start(bed)
            defer { listeners.values.forEach { close($0) } }
            for path in PastaTCPBulkTests.paths(ipv6: false).prefix(2) {
                let count = 500
                let deadline = Date().addingTimeInterval(90)
                let answered = Mutex(0)
                let served = DispatchSemaphore(value: 0)
                let listener = listeners[path.port]!
                Thread {
                    let n = ConcurrentTransfers.serve(listener, expected: count, deadline: deadline)
                    answered.withLock { $0 = n }
                    served.signal()
                }.start()
                var clients: [Int32] = []
                for _ in 0..<count {
                    let fd = try TCPTestSocket.connectWhenListening(bed, in: path.clientInTarget ? target : bed.host,
                                                                    to: path.address, port: path.port)
                    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                    clients.append(fd)
                }
                let good = ConcurrentTransfers.run(clients, deadline: deadline)
                clients.forEach { close($0) }
                served.wait()
                #expect(good == count && answered.withLock { $0 } == count,
                        "\(path): \(good) of \(count) verified; \(pasta.stderr().suffix(2000))")
            }
            #expect(bed.stop(pasta) == 0, "\(pasta.stderr())")
        }
    }

    @Test("Tap paths at MTU 1500 and 65520, sender with cubic and with bbr: no retransmission timeout",
          arguments: [1500, 65520])
    func noStall(mtu: Int) async throws {
        let file = BulkFile.shared
        try #require(file.sha256 != "missing")
        try await withTestBed { bed in
            let (target, pasta, listeners) = try PastaTCPBulkTests.start(bed, ["-m", "\(mtu)"])
            defer { listeners.values.forEach { close($0) } }
            let tapPaths = PastaTCPBulkTests.paths(ipv6: false).prefix(2)
            for congestionControl in ["cubic", "bbr"] {
                for path in tapPaths {
                    let before = (try bed.retransmissionTimeouts(in: target), try bed.retransmissionTimeouts(in: bed.host))
                    let result = try PastaTCPBulkTests.transfer(bed, target: target, listeners: listeners, path: path,
                                                                download: false, congestionControl: congestionControl)
                    let after = (try bed.retransmissionTimeouts(in: target), try bed.retransmissionTimeouts(in: bed.host))
                    #expect(result.count == file.size && result.sha256 == file.sha256,
                            "\(path), MTU \(mtu), \(congestionControl): received \(result.count)")
                    #expect(after.0 == before.0 && after.1 == before.1,
                            "\(path), MTU \(mtu), \(congestionControl): retransmission timeouts namespace \(after.0 - before.0), host \(after.1 - before.1)")
                }
            }
            #expect(bed.stop(pasta) == 0, "\(pasta.stderr())")
        }
    }
}
