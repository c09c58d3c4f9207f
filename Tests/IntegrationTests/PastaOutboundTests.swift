// Forwarding details end to end: TCP port mapping (`-t 8080:80`, ranges with an offset) and the
// binding of outbound sockets (`-o`, `--outbound-if4`) and the MSS they offer.
//
// Mapping: a server in the namespace on port 80 (and on 7500-7502) is reached from the host's
// address on 8080 (and 7400-7402). Outbound binding needs a destination that is not the host
// itself, so these tests use `--no-map-gw` and a server in the bed's router namespace on
// 192.0.2.1, the namespace's gateway: without mapping, pasta connects there for real, out of
// the host's eth0. The host gets a second address, 192.0.2.3; with `-o 192.0.2.3` the router's
// TCP and UDP servers see that address as the client's, not 192.0.2.2. `--outbound-if4 eth0`
// still reaches the router; through `--outbound-if4 side0`, a second link of the host that is up
// but leads nowhere, the SYN leaves by side0 (the kernel takes an unrouted destination of a
// device-bound socket as on-link), so the namespace's connect fails and the router sees nothing
// (`-i eth0` keeps eth0 the template interface, which the outbound interface would otherwise be).
// MSS: with `-m 1280` a server on another host (an address of the router) is offered the guest's
// MSS in the SYN, while a server on the host's own loopback gets loopback's.
import Foundation
import Testing
import PasstSys

@Suite("pasta port mapping and outbound binding", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct PastaOutboundTests {
    /// The host's second address, used with -o.
    static let secondAddress = "192.0.2.3"

    /// The IPv4 address of a peer returned by accept/recvfrom into `storage`.
    static func peerAddress(_ storage: sockaddr_in) -> String {
        var address = storage.sin_addr
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        inet_ntop(AF_INET, &address, &text, socklen_t(text.count))
        return String(cString: text)
    }

    /// Accepts one connection on `listener` (10 s at most); returns it and the client's address.
    static func acceptWithPeer(_ listener: Int32) -> (Int32, String)? {
        var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 10_000) > 0 else { return nil }
        var peer = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = withUnsafeMutablePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(listener, $0, &length) }
        }
        return fd >= 0 ? (fd, peerAddress(peer)) : nil
    }

    @Test("-t 8080:80 and -t 7400-7402:7500-7502 reach the mapped ports in the namespace")
    func portMapping() async throws {
        try await withTestBed { bed in
            let (target, pasta) = try bed.startPastaAttached(["-t", "8080:80,7400-7402:7500-7502"] + PastaTCPTests.quiet)
            for (outside, inside) in [(8080, 80), (7400, 7500), (7401, 7501), (7402, 7502)] {
                let server = TCPEchoServer(listener: try TCPTestSocket.listen(bed, in: target, address: "0.0.0.0",
                                                                              port: UInt16(inside)))
                defer { server.stop() }
                let client = try TCPTestSocket.connectWhenListening(bed, in: bed.host, to: TestBed.hostIPv4,
                                                                    port: UInt16(outside))
                let payload = Array("to \(outside), served on \(inside)".utf8)
                #expect(TCPTestSocket.echo(client, payload: payload) == payload, "\(outside) -> \(inside)")
                close(client)
            }
            #expect(bed.stop(pasta) == 0, "\(pasta.stderr())")
        }
    }

    @Test("-o: the router's TCP and UDP servers see the -o address as the client's")
    func outboundAddress() async throws {
        try await withTestBed { bed in
            _ = try bed.ip(bed.host, "addr", "add", PastaOutboundTests.secondAddress + "/24", "dev", "eth0")
            let (target, pasta) = try bed.startPastaAttached(["-t", "none", "--no-map-gw", "-o",
                                                              PastaOutboundTests.secondAddress] + PastaTCPTests.quiet)
            // TCP: the router accepts, the client's source is the -o address.
            let listener = try TCPTestSocket.listen(bed, in: bed.router, address: TestBed.routerIPv4, port: 7410)
            defer { close(listener) }
            let client = try TCPTestSocket.connect(bed, in: target, to: TestBed.routerIPv4, port: 7410)
            defer { close(client) }
            let accepted = PastaOutboundTests.acceptWithPeer(listener)
            #expect(accepted?.1 == PastaOutboundTests.secondAddress, "TCP client seen as \(accepted?.1 ?? "nothing")")
            if let (fd, _) = accepted { close(fd) }

            // UDP: the router receives the datagram from the -o address and its reply comes back.
            let server = try UDPTestSocket.open(bed, in: bed.router, address: TestBed.routerIPv4, port: 7411)
            defer { close(server) }
            let udpClient = try UDPTestSocket.open(bed, in: target, address: "0.0.0.0", port: 0)
            defer { close(udpClient) }
            let payload = Array("from behind -o".utf8)
            let sent = UDPTestSocket.withAddress(TestBed.routerIPv4, port: 7411) { sendto(udpClient, payload, payload.count, 0, $0, $1) }
            #expect(sent == payload.count)
            var pfd = pollfd(fd: server, events: Int16(POLLIN), revents: 0)
            #expect(poll(&pfd, 1, 5_000) == 1, "no datagram reached the router")
            var buffer = [UInt8](repeating: 0, count: 2048)
            var peer = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let count = withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(server, &buffer, buffer.count, Int32(MSG_DONTWAIT), $0, &length) }
            }
            #expect(count == payload.count && PastaOutboundTests.peerAddress(peer) == PastaOutboundTests.secondAddress,
                    "UDP client seen as \(PastaOutboundTests.peerAddress(peer))")
            let reply = Array("reply".utf8)
            _ = withUnsafePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(server, reply, reply.count, 0, $0, length) }
            }
            var replyPoll = pollfd(fd: udpClient, events: Int16(POLLIN), revents: 0)
            #expect(poll(&replyPoll, 1, 5_000) == 1 && recv(udpClient, &buffer, buffer.count, 0) == reply.count,
                    "the reply did not come back to the namespace")
            #expect(bed.stop(pasta) == 0, "\(pasta.stderr())")
        }
    }

    @Test("--outbound-if4: eth0 reaches the router, a link leading nowhere does not")
    func outboundInterface() async throws {
        try await withTestBed { bed in
            let listener = try TCPTestSocket.listen(bed, in: bed.router, address: TestBed.routerIPv4, port: 7420)
            defer { close(listener) }
            // A second link of the host, up but without addresses or routes.
            _ = try bed.ip(bed.host, "link", "add", "side0", "type", "veth", "peer", "name", "side1")
            _ = try bed.ip(bed.host, "link", "set", "side0", "up")
            for (interface, reachable) in [("eth0", true), ("side0", false)] {
                let (target, pasta) = try bed.startPastaAttached(["-t", "none", "--no-map-gw", "-i", "eth0",
                                                                  "--outbound-if4", interface] + PastaTCPTests.quiet)
                let outcome = Result { try TCPTestSocket.connect(bed, in: target, to: TestBed.routerIPv4, port: 7420) }
                switch outcome {
                case .success(let client):
                    #expect(reachable, "connected through \(interface)")
                    if let (fd, _) = PastaOutboundTests.acceptWithPeer(listener) { close(fd) }
                    close(client)
                case .failure(let error):
                    #expect(!reachable, "through \(interface): \(error)")
                    var pending = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
                    #expect(poll(&pending, 1, 0) == 0, "the router saw a connection through \(interface)")
                }
                #expect(bed.stop(pasta) == 0, "\(pasta.stderr())")
            }
        }
    }

    @Test("-m 1280: a remote server is offered the guest's MSS, a server on the host loopback's")
    func guestSegmentSize() async throws {
        try await withTestBed { bed in
            // An address of the router that the host reaches through its default route.
            _ = try bed.ip(bed.router, "addr", "add", "198.51.100.1/32", "dev", "lo")
            let (target, pasta) = try bed.startPastaAttached(["-m", "1280", "-t", "none"] + PastaTCPTests.quiet)
            /// The MSS a server on `address`:`port` in `namespace` settles on for a connection from
            /// pasta's namespace to `destination`; -1 if none arrives.
            func serverMSS(in namespace: String, address: String, port: UInt16, destination: String) throws -> Int32 {
                let listener = try TCPTestSocket.listen(bed, in: namespace, address: address, port: port)
                defer { close(listener) }
                let client = try TCPTestSocket.connect(bed, in: target, to: destination, port: port)
                defer { close(client) }
                guard let (accepted, _) = PastaOutboundTests.acceptWithPeer(listener) else { return -1 }
                defer { close(accepted) }
                return (try? Sys.getOption(accepted, level: Int32(IPPROTO_TCP), name: TCP_MAXSEG, as: Int32.self).get()) ?? -1
            }
            // Remote: the router's server sees the guest's MSS (1240, less 12 for timestamps).
            let remoteMSS = try serverMSS(in: bed.router, address: "198.51.100.1", port: 7430, destination: "198.51.100.1")
            #expect(remoteMSS > 0 && remoteMSS <= 1240, "the router's server got MSS \(remoteMSS)")
            // Local: the gateway maps to the host's 127.0.0.1, whose MTU is 65536.
            let localMSS = try serverMSS(in: bed.host, address: "127.0.0.1", port: 7431, destination: TestBed.routerIPv4)
            #expect(localMSS > 60000, "the host's loopback server got MSS \(localMSS)")
            #expect(bed.stop(pasta) == 0, "\(pasta.stderr())")
        }
    }
}
