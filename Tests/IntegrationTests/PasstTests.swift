// passt end to end: the real binary in the test bed's host namespace, a guest namespace whose
// kernel reaches it through FrameRelay (tap <-> passt's UNIX socket), and hand-driven stream
// clients for the socket's framing and life cycle.
//
// Paths, as for pasta: guest -> host through the gateway address (192.0.2.1 / fd00::1, which
// passt maps to the host's 127.0.0.1 / ::1), host -> guest through -t/-u on the host's own
// address (192.0.2.2 / fd00::2, which the guest is given too), with contents compared. The
// framing tests check that a bad length, a second client or a client leaving in the middle of
// a frame cost only that client, never the process or the next client's stream.
import Foundation
import Testing
import PasstSys
import PasstWire

/// Accepts one connection on `listener` within 10 s and returns the peer's address text.
func acceptedPeer(_ listener: Int32) -> String? {
    var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
    guard poll(&pfd, 1, 10_000) > 0 else { return nil }
    var address = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let fd = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(listener, $0, &length) }
    }
    guard fd >= 0 else { return nil }
    close(fd)
    var text = [CChar](repeating: 0, count: 64)
    let family = address.ss_family
    return withUnsafePointer(to: &address) { pointer -> String? in
        if family == sa_family_t(AF_INET) {
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { v4 in
                var a = v4.pointee.sin_addr
                return inet_ntop(AF_INET, &a, &text, 64).map { String(cString: $0) }
            }
        }
        return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { v6 in
            var a = v6.pointee.sin6_addr
            return inet_ntop(AF_INET6, &a, &text, 64).map { String(cString: $0) }
        }
    }
}

@Suite("passt through a frame relay", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct PasstRelayTests {
    @Test("dhclient -4 leases the host's address, router, DNS, search list and MTU")
    func dhcp() async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst([])
            let (guest, relay) = try bed.startGuest(socketPath: socketPath, configure: false)
            defer { relay.stop() }
            let directory = try bed.scratchDirectory("passt-dhcp")
            let lease = directory + "/lease"
            let client = try bed.startBackground(in: guest, ["dhclient", "-4", "-1", "-d", "-sf", "/bin/true",
                                                             "-lf", lease, "-pf", directory + "/pid", "eth0"])
            let leased = waitUntil(20) {
                ((try? String(contentsOfFile: lease, encoding: .utf8)) ?? "").contains("fixed-address")
            }
            bed.stop(client)
            let text = (try? String(contentsOfFile: lease, encoding: .utf8)) ?? ""
            try #require(leased, "no lease; relay \(relay.counts); \(client.stderr()) \(passt.stderr())")
            #expect(text.contains("fixed-address 192.0.2.2;"))
            #expect(text.contains("option subnet-mask 255.255.255.0;"))
            #expect(text.contains("option routers 192.0.2.1;"))
            #expect(text.contains("option domain-name-servers 192.0.2.1;"))
            #expect(text.contains("option domain-search \"example.test.\", \"other.test.\";"))
            #expect(text.contains("option interface-mtu 65520;"))
            #expect(bed.stop(passt) == 0, "\(passt.stderr())")
        }
    }

    @Test("ping to the gateway answered over IPv4 and IPv6")
    func ping() async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst([])
            let (guest, relay) = try bed.startGuest(socketPath: socketPath)
            defer { relay.stop() }
            let v4 = try bed.run(in: guest, ["ping", "-c1", "-W2", "192.0.2.1"])
            #expect(v4.status == 0, "\(v4.stdout) \(v4.stderr); relay \(relay.counts); \(passt.stderr())")
            let v6 = try bed.run(in: guest, ["ping", "-6", "-c1", "-W2", "fd00::1"])
            #expect(v6.status == 0, "\(v6.stdout) \(v6.stderr); relay \(relay.counts); \(passt.stderr())")
            #expect(bed.stop(passt) == 0)
        }
    }

    @Test("UDP guest to host service on loopback through the gateway address, 1 to 65000 bytes",
          arguments: ["192.0.2.1", "fd00::1"])
    func udpGuestToHost(gateway: String) async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst([])
            let (guest, relay) = try bed.startGuest(socketPath: socketPath)
            defer { relay.stop() }
            let server = UDPEchoServer(sockets: [try UDPTestSocket.open(bed, in: bed.host, address: "::", port: 7201,
                                                                        dualStack: true)])
            defer { server.stop() }
            let client = try UDPTestSocket.open(bed, in: guest, address: gateway.contains(":") ? "::" : "0.0.0.0",
                                                port: 0)
            defer { close(client) }
            for size in udpTestSizes {
                let payload = udpTestPayload(size)
                let reply = UDPTestSocket.exchange(client, to: gateway, port: 7201, payload: payload)
                #expect(reply == payload, "\(size) bytes via \(gateway): \(reply?.count ?? -1) back; relay \(relay.counts)")
            }
            #expect(bed.stop(passt) == 0, "\(passt.stderr())")
        }
    }

    @Test("UDP host to guest through -u on the host's address, 1 to 65000 bytes", arguments: [
        ("192.0.2.2", "0.0.0.0"), ("fd00::2", "::"),
    ])
    func udpHostToGuest(hostAddress: String, serverAddress: String) async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst(["-u", "7202"])
            let (guest, relay) = try bed.startGuest(socketPath: socketPath)
            defer { relay.stop() }
            let server = UDPEchoServer(sockets: [try UDPTestSocket.open(bed, in: guest, address: serverAddress,
                                                                        port: 7202)])
            defer { server.stop() }
            let client = try UDPTestSocket.open(bed, in: bed.host, address: serverAddress, port: 0)
            defer { close(client) }
            for size in udpTestSizes {
                let payload = udpTestPayload(size)
                let reply = UDPTestSocket.exchange(client, to: hostAddress, port: 7202, payload: payload)
                #expect(reply == payload, "\(size) bytes to \(hostAddress): \(reply?.count ?? -1) back; relay \(relay.counts)")
            }
            #expect(bed.stop(passt) == 0, "\(passt.stderr())")
        }
    }

    @Test("TCP guest to host service on loopback through the gateway address: 1 B, 64 KiB, 16 MiB echoed",
          arguments: ["192.0.2.1", "fd00::1"])
    func tcpGuestToHost(gateway: String) async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst([])
            let (guest, relay) = try bed.startGuest(socketPath: socketPath)
            defer { relay.stop() }
            let server = TCPEchoServer(listener: try TCPTestSocket.listen(bed, in: bed.host, address: "::", port: 7203,
                                                                          dualStack: true))
            defer { server.stop() }
            for size in tcpTestSizes {
                let payload = tcpTestPayload(size)
                let client = try TCPTestSocket.connect(bed, in: guest, to: gateway, port: 7203)
                let echoed = TCPTestSocket.echo(client, payload: payload)
                close(client)
                #expect(echoed.count == size && echoed == payload,
                        "\(size) bytes via \(gateway): \(echoed.count) back; relay \(relay.counts)")
            }
            #expect(bed.stop(passt) == 0, "\(passt.stderr())")
        }
    }

    @Test("TCP host to guest through -t on the host's address: 1 B, 64 KiB, 16 MiB echoed", arguments: [
        ("192.0.2.2", "0.0.0.0"), ("fd00::2", "::"),
    ])
    func tcpHostToGuest(hostAddress: String, serverAddress: String) async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst(["-t", "7204"])
            let (guest, relay) = try bed.startGuest(socketPath: socketPath)
            defer { relay.stop() }
            let server = TCPEchoServer(listener: try TCPTestSocket.listen(bed, in: guest, address: serverAddress,
                                                                          port: 7204))
            defer { server.stop() }
            for size in tcpTestSizes {
                let payload = tcpTestPayload(size)
                let client = try TCPTestSocket.connectWhenListening(bed, in: bed.host, to: hostAddress, port: 7204)
                let echoed = TCPTestSocket.echo(client, payload: payload)
                close(client)
                #expect(echoed.count == size && echoed == payload,
                        "\(size) bytes to \(hostAddress): \(echoed.count) back; relay \(relay.counts)")
            }
            #expect(bed.stop(passt) == 0, "\(passt.stderr())")
        }
    }

    @Test("-t all and -u all forward every non-ephemeral port (ephemeral range 5000-60999 in the host namespace)")
    func forwardAll() async throws {
        try await withTestBed { bed in
            try Command.check(["ip", "netns", "exec", bed.host, "sysctl", "-q", "-w",
                               "net.ipv4.ip_local_port_range=5000 60999"])
            let (socketPath, passt) = try bed.startPasst(["-t", "all", "-u", "all"])
            let (guest, relay) = try bed.startGuest(socketPath: socketPath)
            defer { relay.stop() }
            let tcpServer = TCPEchoServer(listener: try TCPTestSocket.listen(bed, in: guest, address: "0.0.0.0",
                                                                             port: 4000))
            defer { tcpServer.stop() }
            let udpServer = UDPEchoServer(sockets: [try UDPTestSocket.open(bed, in: guest, address: "0.0.0.0",
                                                                           port: 4001)])
            defer { udpServer.stop() }
            let payload = tcpTestPayload(65536)
            let client = try TCPTestSocket.connectWhenListening(bed, in: bed.host, to: TestBed.hostIPv4, port: 4000)
            #expect(TCPTestSocket.echo(client, payload: payload) == payload, "relay \(relay.counts)")
            close(client)
            let udp = try UDPTestSocket.open(bed, in: bed.host, address: "0.0.0.0", port: 0)
            defer { close(udp) }
            let datagram = udpTestPayload(1400)
            #expect(UDPTestSocket.exchange(udp, to: TestBed.hostIPv4, port: 4001, payload: datagram) == datagram)
            #expect(bed.stop(passt) == 0, "\(passt.stderr())")
        }
    }

    @Test("A host connection from 127.0.0.1 / ::1 reaches the guest from the gateway address", arguments: [
        ("127.0.0.1", "0.0.0.0", "192.0.2.1"), ("::1", "::", "fd00::1"),
    ])
    func loopbackMapping(hostAddress: String, serverAddress: String, expectedPeer: String) async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst(["-t", "7205"])
            let (guest, relay) = try bed.startGuest(socketPath: socketPath)
            defer { relay.stop() }
            let listener = try TCPTestSocket.listen(bed, in: guest, address: serverAddress, port: 7205)
            defer { close(listener) }
            let client = try TCPTestSocket.connectWhenListening(bed, in: bed.host, to: hostAddress, port: 7205)
            defer { close(client) }
            #expect(acceptedPeer(listener) == expectedPeer, "relay \(relay.counts); \(passt.stderr())")
            #expect(bed.stop(passt) == 0)
        }
    }
}

@Suite("passt's qemu socket", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct PasstSocketTests {
    @Test("A bad frame length (0, 13, 65536) drops that client; the next one is served")
    func badFrameLength() async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst([])
            for length in [0, 13, 65536] {
                let bad = try StreamClient(path: socketPath)
                bad.write(lengthPrefix(length) + [UInt8](repeating: 0, count: 64))
                #expect(bad.closedByPeer(within: 3), "length \(length) accepted")
            }
            let good = try StreamClient(path: socketPath)
            #expect(good.arpExchange(), "\(passt.stderr())")
            #expect(passt.stderr().contains("Bad frame size from guest"))
            #expect(bed.stop(passt) == 0)
        }
    }

    @Test("A second client is closed at once while the first keeps working")
    func secondClientRefused() async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst([])
            let first = try StreamClient(path: socketPath)
            try #require(first.arpExchange(), "\(passt.stderr())")
            let second = try StreamClient(path: socketPath)
            #expect(second.closedByPeer(within: 3))
            #expect(first.arpExchange(mac: [0x02, 0, 0, 0, 0, 0x07]))
            #expect(bed.stop(passt) == 0)
        }
    }

    @Test("A client leaving in the middle of a frame leaves nothing behind for the next one")
    func clientVanishesMidFrame() async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst([])
            let request = StreamClient.arpRequest(from: StreamClient.guestMAC)
            for (index, cut) in [2, 4 + 20].enumerated() {
                do {
                    let leaving = try StreamClient(path: socketPath)
                    leaving.write(Array((lengthPrefix(request.count) + request).prefix(cut)))
                }
                // The next client is only served once passt has seen this one leave.
                let seen = waitUntil(10) { passt.stderr().components(separatedBy: "Client connection closed").count > index + 1 }
                #expect(seen, "\(passt.stderr())")
            }
            let next = try StreamClient(path: socketPath)
            #expect(next.arpExchange(), "\(passt.stderr())")
            #expect(next.arpExchange(), "\(passt.stderr())")
            #expect(bed.stop(passt) == 0)
        }
    }

    @Test("Frames arriving in pieces and several in one write are all answered")
    func fragmentedStream() async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst([])
            let client = try StreamClient(path: socketPath)
            let one = lengthPrefix(42) + StreamClient.arpRequest(from: StreamClient.guestMAC)
            for piece in stride(from: 0, to: one.count, by: 5) {
                client.write(Array(one[piece..<min(piece + 5, one.count)]))
                usleep(5_000)
            }
            let first = client.readFrame()
            #expect(first.map { StreamClient.isARPReply($0, to: StreamClient.guestMAC) } == true, "\(passt.stderr())")
            client.write(one + one + one)
            for _ in 0..<3 {
                #expect(client.readFrame().map { StreamClient.isARPReply($0, to: StreamClient.guestMAC) } == true)
            }
            #expect(bed.stop(passt) == 0)
        }
    }

    @Test("A client that stops reading costs frames, never the framing: every frame read later is whole, to its MAC")
    func stalledClient() async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst(["-u", "7209"])
            let client = try StreamClient(path: socketPath)
            try #require(client.arpExchange(), "\(passt.stderr())")
            let sender = try UDPTestSocket.open(bed, in: bed.host, address: "0.0.0.0", port: 0)
            defer { close(sender) }
            let payload = udpTestPayload(8000)
            for _ in 0..<400 {
                _ = UDPTestSocket.withAddress(TestBed.hostIPv4, port: 7209) {
                    sendto(sender, payload, payload.count, Int32(MSG_DONTWAIT), $0, $1)
                }
            }
            usleep(1_000_000)
            var timeout = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(client.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var whole = 0
            while let frame = client.readFrame() {
                let isIPv4 = frame.count > 42 && frame[12] == 0x08 && frame[13] == 0x00
                let totalLength = isIPv4 ? Int(frame[16]) << 8 | Int(frame[17]) : -1
                guard isIPv4, totalLength == frame.count - 14, Array(frame[0..<6]) == StreamClient.guestMAC,
                      Array(frame[42...]) == payload else {
                    Issue.record("frame \(whole + 1) is not one of ours: \(frame.count) bytes")
                    break
                }
                whole += 1
            }
            #expect(whole >= 10, "only \(whole) frames; \(passt.stderr())")
            #expect(kill(passt.pid, 0) == 0)
            #expect(bed.stop(passt) == 0, "\(passt.stderr())")
        }
    }

    @Test("A TCP segment for no connection is answered with RST (at its ACK, or RST+ACK past it); a RST is not",
          arguments: [false, true])
    func strayTCPSegmentsReset(isIPv6: Bool) async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst([])
            let client = try StreamClient(path: socketPath)
            try #require(client.arpExchange(), "\(passt.stderr())")
            client.send(frame: StrayTCP.frame(isIPv6: isIPv6, seq: 1000, ack: 5000, flags: [.ack, .psh], payload: [1, 2, 3]))
            let acknowledged = client.readFrame().flatMap { StrayTCP.reply($0, isIPv6: isIPv6) }
            #expect(acknowledged?.flags == .rst && acknowledged?.seq == 5000, "\(String(describing: acknowledged))")
            client.send(frame: StrayTCP.frame(isIPv6: isIPv6, seq: 7000, ack: 0, flags: .fin, payload: [4, 5]))
            let unacknowledged = client.readFrame().flatMap { StrayTCP.reply($0, isIPv6: isIPv6) }
            #expect(unacknowledged?.flags == .rstAck && unacknowledged?.ack == 7003, "\(String(describing: unacknowledged))")
            // A RST gets no answer: the ARP reply sent after it is the next frame.
            client.send(frame: StrayTCP.frame(isIPv6: isIPv6, seq: 9000, ack: 0, flags: .rst, payload: []))
            #expect(client.arpExchange(), "a reply to the RST came first")
            #expect(bed.stop(passt) == 0, "\(passt.stderr())")
        }
    }

    @Test("-1: passt exits 0 when its client leaves")
    func oneOff() async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst(["-1"])
            do {
                let client = try StreamClient(path: socketPath)
                #expect(client.arpExchange(), "\(passt.stderr())")
            }
            var status: Int32 = 0
            #expect(waitUntil(5) { waitpid(passt.pid, &status, WNOHANG) == passt.pid }, "\(passt.stderr())")
            #expect(Command.decode(status) == 0)
            bed.stop(passt)
        }
    }

    @Test("-F: an inherited connected socket is the client, without a listening socket; exit 0 when it leaves")
    func inheritedSocket() async throws {
        try await withTestBed { bed in
            try bed.allowPingSockets()
            var pair: [Int32] = [-1, -1]
            try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0)
            let base = bed.directory + "/inherit"
            let pid = try spawnInheriting(["ip", "netns", "exec", bed.host, try passtBinary(), "-f", "-F", "5"],
                                          socket: pair[1], as: 5, base: base)
            close(pair[1])
            let stderr = { (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? "" }
            do {
                let client = StreamClient(connected: pair[0])
                #expect(client.arpExchange(), "\(stderr())")
            }
            let (status, timedOut) = Command.wait(pid: pid, timeout: 5)
            #expect(!timedOut && status == 0, "\(stderr())")
            #expect(!stderr().contains("UNIX domain socket bound"))
        }
    }

    @Test("Without -1 the next client is served after one leaves; SIGQUIT exits 0")
    func reconnect() async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst([])
            for index in 0..<3 {
                let client = try StreamClient(path: socketPath)
                #expect(client.arpExchange(mac: [0x02, 0, 0, 0, 0, UInt8(index + 1)]), "client \(index)")
            }
            #expect(bed.stop(passt, signal: SIGQUIT) == 0)
        }
    }

    @Test("A host connection to a forwarded port before any client connected does no harm")
    func hostConnectionWithoutGuest() async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst(["-t", "7206", "-u", "7207"])
            let client = try TCPTestSocket.connectWhenListening(bed, in: bed.host, to: "127.0.0.1", port: 7206)
            let udp = try UDPTestSocket.open(bed, in: bed.host, address: "0.0.0.0", port: 0)
            #expect(UDPTestSocket.exchange(udp, to: "127.0.0.1", port: 7207, payload: [1, 2, 3]) == nil)
            close(udp)
            usleep(200_000)
            #expect(kill(passt.pid, 0) == 0)
            let guest = try StreamClient(path: socketPath)
            #expect(guest.arpExchange(), "\(passt.stderr())")
            close(client)
            #expect(bed.stop(passt) == 0, "\(passt.stderr())")
        }
    }

    @Test("Without -s: the first free /tmp/passt_N.socket, announced with the qemu command line")
    func defaultSocketPath() async throws {
        try await withTestBed { bed in
            try bed.allowPingSockets()
            let pidFile = bed.directory + "/default.pid"
            let passt = try bed.startBackground(in: bed.host, [try passtBinary(), "-f", "-P", pidFile])
            try #require(waitUntil(10) { pidFileWritten(pidFile) }, "\(passt.stderr())")
            let log = passt.stderr()
            let marker = "UNIX domain socket bound at "
            let line = try #require(log.split(separator: "\n").first { $0.hasPrefix(marker) }, "\(log)")
            let path = String(line.dropFirst(marker.count))
            defer { unlink(path) }
            let number = path.dropFirst("/tmp/passt_".count).dropLast(".socket".count)
            #expect(path.hasPrefix("/tmp/passt_") && path.hasSuffix(".socket") && (Int(number) ?? 0) >= 1
                    && (Int(number) ?? 100) <= 99, "\(path)")
            #expect(log.contains("-device virtio-net-pci,netdev=s -netdev stream,id=s,server=off,addr.type=unix,addr.path=\(path)\n"))
            #expect(try String(contentsOfFile: pidFile, encoding: .utf8) == "\(passt.pid)\n")
            let client = try StreamClient(path: path)
            #expect(client.arpExchange())
            #expect(bed.stop(passt) == 0)
        }
    }

    @Test("-s with a path someone serves is fatal")
    func socketPathInUse() async throws {
        try await withTestBed { bed in
            let (socketPath, passt) = try bed.startPasst([])
            let second = try bed.run(in: bed.host, [try passtBinary(), "-f", "-s", socketPath])
            #expect(second.status == 1)
            #expect(second.stderr.contains("Socket path \(socketPath) already in use"), "\(second.stderr)")
            #expect(bed.stop(passt) == 0)
        }
    }

    @Test("Without -f: returns 0 once ready, the PID file names the daemon serving the socket")
    func daemonises() async throws {
        try await withTestBed { bed in
            try bed.allowPingSockets()
            let socketPath = bed.directory + "/daemon.socket"
            let pidFile = bed.directory + "/daemon.pid"
            let result = try bed.run(in: bed.host, [try passtBinary(), "--one-off", "--socket", socketPath,
                                                    "--pid", pidFile])
            try #require(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("addr.path=\(socketPath)"))
            let text = try String(contentsOfFile: pidFile, encoding: .utf8)
            let attributes = try FileManager.default.attributesOfItem(atPath: pidFile)
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
            let pid = try #require(pid_t(text.trimmingCharacters(in: .newlines)))
            #expect(text == "\(pid)\n")
            do {
                let client = try StreamClient(path: socketPath)
                #expect(client.arpExchange())
            }
            #expect(waitUntil(5) { kill(pid, 0) != 0 }, "--one-off daemon still running after its client left")
            if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        }
    }
}

/// Hand-made TCP frames from the relay's guest (192.0.2.2 / fd00::2 port 40000) to the gateway's
/// port 7999, where nothing is connected, and the reading of passt's answers.
enum StrayTCP {
    static let guest4 = IPv4Address(192, 0, 2, 2), gateway4 = IPv4Address(192, 0, 2, 1)
    static let guest6 = IPv6Address("fd00::2")!, gateway6 = IPv6Address("fd00::1")!
    static let guestPort: UInt16 = 40000, gatewayPort: UInt16 = 7999

    /// An Ethernet frame with a TCP segment of `flags` and `payload`, checksums filled.
    static func frame(isIPv6: Bool, seq: UInt32, ack: UInt32, flags: TCPFlags, payload: [UInt8]) -> [UInt8] {
        let ipLength = isIPv6 ? IPv6Packet.headerLength : IPv4Packet.minimumHeaderLength
        let segmentLength = TCPSegment.minimumHeaderLength + payload.count
        var bytes = [UInt8](repeating: 0, count: EthernetFrame.headerLength + ipLength + segmentLength)
        bytes.withUnsafeMutableBytes { buffer in
            let frame = buffer.baseAddress!, ip = frame + EthernetFrame.headerLength, tcp = ip + ipLength
            EthernetFrame.write(to: frame, destination: MACAddress(0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55),
                                source: MACAddress(0x02, 0, 0, 0, 0, 0x01),
                                etherType: isIPv6 ? EtherType.ipv6 : EtherType.ipv4)
            TCPSegment.write(to: tcp, sourcePort: guestPort, destinationPort: gatewayPort, sequenceNumber: seq,
                             acknowledgmentNumber: ack, flags: flags, window: 65535, mss: nil, windowScale: nil)
            payload.withUnsafeBytes { (tcp + TCPSegment.minimumHeaderLength).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            if isIPv6 {
                IPv6Packet.write(to: ip, source: guest6, destination: gateway6, nextHeader: IPProtocol.tcp,
                                 payloadLength: segmentLength)
                TCPSegment.fillChecksum(tcp, count: segmentLength, source: guest6, destination: gateway6)
            } else {
                IPv4Packet.write(to: ip, source: guest4, destination: gateway4, protocol: IPProtocol.tcp,
                                 payloadLength: segmentLength)
                TCPSegment.fillChecksum(tcp, count: segmentLength, source: guest4, destination: gateway4)
            }
        }
        return bytes
    }

    /// The flags, sequence and acknowledgment numbers of `frame` if it is a TCP segment from the
    /// gateway's port to the guest's with a valid checksum and no payload; nil otherwise.
    static func reply(_ frame: [UInt8], isIPv6: Bool) -> (flags: TCPFlags, seq: UInt32, ack: UInt32)? {
        EthernetFrame.parse(frame) { ethernet -> (flags: TCPFlags, seq: UInt32, ack: UInt32)? in
            func fields(_ tcp: TCPSegment, valid: Bool) -> (flags: TCPFlags, seq: UInt32, ack: UInt32)? {
                guard valid, tcp.sourcePort == gatewayPort, tcp.destinationPort == guestPort, tcp.payloadCount == 0
                else { return nil }
                return (tcp.flags, tcp.sequenceNumber, tcp.acknowledgmentNumber)
            }
            if isIPv6 {
                guard ethernet.etherType == EtherType.ipv6,
                      let ip = IPv6Packet(ethernet.payload, count: ethernet.payloadCount), ip.nextHeader == IPProtocol.tcp,
                      ip.source == gateway6, ip.destination == guest6,
                      let tcp = TCPSegment(ip.payload, count: ip.payloadCount) else { return nil }
                return fields(tcp, valid: tcp.isChecksumValid(source: gateway6, destination: guest6))
            }
            guard ethernet.etherType == EtherType.ipv4, let ip = IPv4Packet(ethernet.payload, count: ethernet.payloadCount),
                  ip.protocol == IPProtocol.tcp, ip.source == gateway4, ip.destination == guest4,
                  let tcp = TCPSegment(ip.payload, count: ip.payloadCount) else { return nil }
            return fields(tcp, valid: tcp.isChecksumValid(source: gateway4, destination: guest4))
        } ?? nil
    }
}
