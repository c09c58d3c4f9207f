// The test bed itself: its network works, its helpers bound time, and teardown leaves nothing behind.
import Foundation
import Testing
import PasstSys

@Suite("Test bed", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct TestBedTests {
    @Test("Host reaches the router over IPv4 and IPv6; resolv.conf is private to the bed")
    func network() async throws {
        try await withTestBed { bed in
            for (family, router) in [(AF_INET, TestBed.routerIPv4), (AF_INET6, TestBed.routerIPv6)] {
                let server = try bed.openSocket(in: bed.router, domain: family, type: datagram, protocol: 0)
                let client = try bed.openSocket(in: bed.host, domain: family, type: datagram, protocol: 0)
                let address = try socketAddress(router, port: 5353)
                let bound = address.withUnsafeBytes {
                    bind(server.raw, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
                }
                try #require(bound == 0, "bind \(router): \(String(cString: strerror(errno)))")
                let sent = address.withUnsafeBytes {
                    sendto(client.raw, "hello", 5, 0, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
                }
                #expect(sent == 5)
                var pfd = pollfd(fd: server.raw, events: Int16(POLLIN), revents: 0)
                #expect(poll(&pfd, 1, 2000) == 1, "no datagram from the host to \(router)")
                var buffer = [UInt8](repeating: 0, count: 16)
                let received = recv(server.raw, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                #expect(received == 5 && Array(buffer[0..<5]) == Array("hello".utf8))
            }
            let text = try String(contentsOfFile: bed.resolvConfPath, encoding: .utf8)
            #expect(text == TestBed.resolvConfText)
            #expect(bed.resolvConfPath.hasPrefix(bed.directory + "/"))
        }
    }

    @Test("Commands are killed at their time limit")
    func timeLimit() throws {
        let started = Date()
        let result = try Command.run(["sleep", "5"], timeout: 0.3)
        #expect(result.timedOut && result.status == 128 + SIGKILL)
        #expect(Date().timeIntervalSince(started) < 3)
        let failing = try Command.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        #expect(failing.status == 3 && failing.stdout == "out\n" && failing.stderr == "err\n" && !failing.timedOut)
    }

    @Test("Background processes stop by PID, and teardown kills the rest and deletes the namespaces")
    func cleanup() async throws {
        let (leftover, names) = try await withTestBed { bed -> (pid_t, [String]) in
            let stopped = try bed.startBackground(in: bed.host, ["sleep", "30"])
            let kept = try bed.startBackground(in: bed.router, ["sh", "-c", "echo ready; exec sleep 30"])
            #expect(bed.stop(stopped) == 128 + SIGTERM)
            let deadline = Date().addingTimeInterval(5)
            while kept.stdout() != "ready\n" && Date() < deadline { usleep(10_000) }
            #expect(kept.stdout() == "ready\n")
            return (kept.pid, [bed.host, bed.router, try bed.makeNamespace("x")])
        }
        #expect(kill(leftover, 0) == -1 && errno == ESRCH)
        for name in names { #expect(access("/run/netns/\(name)", F_OK) != 0) }
    }

    @Test("A socket opened in the host namespace can bind the host's address; one in the router cannot")
    func socketInNamespace() async throws {
        try await withTestBed { bed in
            let fd = try bed.openSocket(in: bed.host, domain: AF_INET, type: datagram, protocol: 0)
            let address = try socketAddress(TestBed.hostIPv4, port: 0)
            let rc = address.withUnsafeBytes {
                bind(fd.raw, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
            }
            #expect(rc == 0, "bind: \(String(cString: strerror(errno)))")
            let outside = try bed.openSocket(in: bed.router, domain: AF_INET, type: datagram, protocol: 0)
            let refused = address.withUnsafeBytes {
                bind(outside.raw, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
            }
            #expect(refused == -1 && errno == EADDRNOTAVAIL)
        }
    }

    @Test("The built passt and pasta binaries are found next to the tests")
    func binaries() {
        #expect(TestBed.binary("passt") != nil)
        #expect(TestBed.binary("pasta") != nil)
        #expect(TestBed.binary("no-such-binary") == nil)
    }
}

/// SOCK_DGRAM (spelled out, see `RTNetlink.socketType`).
private let datagram: Int32 = 2

/// The bytes of a sockaddr_in or sockaddr_in6 for `text` and `port`.
private func socketAddress(_ text: String, port: UInt16) throws -> [UInt8] {
    if text.contains(":") {
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = port.bigEndian
        try #require(inet_pton(AF_INET6, text, &address.sin6_addr) == 1)
        return withUnsafeBytes(of: address) { Array($0) }
    }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    try #require(inet_pton(AF_INET, text, &address.sin_addr) == 1)
    return withUnsafeBytes(of: address) { Array($0) }
}
