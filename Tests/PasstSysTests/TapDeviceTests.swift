// The tap device, proven against the kernel inside a scratch network namespace: the kernel's ARP
// request comes out of the fd, a hand-made ARP reply goes in and lands in the neighbour table, and
// the datagram that was waiting for it follows, without and with the virtio-net header. Addresses
// are from 198.51.100.0/24 inside the scratch namespace only; nothing else is touched.
import Foundation
import Testing
import PasstSys

/// The tap's own address and the neighbour the kernel has to resolve.
private let tapAddress: [UInt8] = [198, 51, 100, 1]
private let peerAddress: [UInt8] = [198, 51, 100, 2]
private let peerMAC: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02]

/// Reads frames from `tap` for up to `timeoutMilliseconds` until `accept` takes one (without
/// its virtio-net header, if the tap has one).
private func readFrame(from tap: borrowing TapDevice, timeoutMilliseconds: Int32,
                       until accept: ([UInt8]) -> Bool) -> [UInt8]? {
    var buffer = [UInt8](repeating: 0, count: 65_536)
    let deadline = Date().addingTimeInterval(Double(timeoutMilliseconds) / 1000)
    while Date() < deadline {
        var pfd = pollfd(fd: tap.descriptor.raw, events: Int16(POLLIN), revents: 0)
        _ = poll(&pfd, 1, 100)
        let result = buffer.withUnsafeMutableBytes { tap.read(into: $0) }
        switch result {
        case .success(let n) where n > tap.virtioHeaderLength:
            let frame = Array(buffer[tap.virtioHeaderLength..<n])
            if accept(frame) { return frame }
        case .success, .wouldBlock: continue
        case .failure(let e):
            Issue.record("tap read: \(SyscallError(e))")
            return nil
        }
    }
    return nil
}

/// True if `frame` is an Ethernet ARP request asking for `address`.
private func isARPRequest(_ frame: [UInt8], for address: [UInt8]) -> Bool {
    frame.count >= 42 && frame[12] == 0x08 && frame[13] == 0x06 && frame[20] == 0 && frame[21] == 1
        && Array(frame[38..<42]) == address
}

/// An Ethernet ARP reply "`senderIP` is at `senderMAC`" addressed to `targetMAC`/`targetIP`.
private func arpReply(senderMAC: [UInt8], senderIP: [UInt8], targetMAC: [UInt8], targetIP: [UInt8]) -> [UInt8] {
    targetMAC + senderMAC + [0x08, 0x06]                          // Ethernet: dst, src, EtherType ARP
        + [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02]             // Ethernet/IPv4, op 2 (reply)
        + senderMAC + senderIP + targetMAC + targetIP
}

/// Opens tap "tap0" (with `offloads` if asked) in a new scratch namespace and runs `body` with
/// the namespace name.
private func withTapInScratchNamespace(offloads: Bool = false,
                                       _ body: (String, borrowing TargetNetworkNamespace, borrowing TapDevice) throws -> Void) throws {
    try NamespaceTestSupport.withScratchNamespace { name in
        let target = try TargetNetworkNamespace(path: Namespaces.networkNamespacePath(name))
        let tap = try TapDevice.open(name: "tap0", offloads: offloads, in: target).get()
        #expect(tap.name == "tap0")
        #expect(tap.virtioHeaderLength == (offloads ? TapDevice.offloadHeaderLength : 0))
        try body(name, target, tap)
    }
}

@Suite struct TapDeviceNameTests {
    @Test func tooLongNameIsRejected() {
        #expect(TapDevice.maximumNameLength == 15)
        #expect(NamespaceTestSupport.errorCode(TapDevice.open(name: String(repeating: "x", count: 16))) == EINVAL)
    }
}

@Suite(.enabled(if: NamespaceTestSupport.isRoot, "needs root")) struct TapDeviceTests {
    @Test(arguments: [false, true]) func arpRequestOutReplyInNeighbourLearned(offloads: Bool) throws {
        try withTapInScratchNamespace(offloads: offloads) { name, target, tap in
            let ip = NamespaceTestSupport.self
            try ip.check(["ip", "-n", name, "addr", "add", "198.51.100.1/24", "dev", "tap0"])
            try ip.check(["ip", "-n", name, "link", "set", "tap0", "up"])
            let tapMAC = try tap.hardwareAddress().get()

            // A datagram to the neighbour makes the kernel ask for its MAC address.
            let udp = try target.socket(domain: AF_INET, type: Int32(SOCK_DGRAM.rawValue)).get()
            var destination = sockaddr_in()
            destination.sin_family = sa_family_t(AF_INET)
            destination.sin_port = UInt16(9).bigEndian
            destination.sin_addr.s_addr = peerAddress.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            let payload: [UInt8] = Array("passt".utf8)
            let sent = withUnsafePointer(to: &destination) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(udp.raw, payload, payload.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            #expect(sent == payload.count)

            // Not `#require(readFrame(...) { ... })`: inside a closure, swiftc 6.3.1 gives a trailing
            // closure within #require and the next closure the same symbol, so the second
            // readFrame below would run this one's predicate.
            let arp = readFrame(from: tap, timeoutMilliseconds: 5_000) { isARPRequest($0, for: peerAddress) }
            let request = try #require(arp)
            #expect(Array(request[0..<6]) == [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
            #expect(Array(request[6..<12]) == tapMAC)
            #expect(Array(request[22..<28]) == tapMAC)
            #expect(Array(request[28..<32]) == tapAddress)

            let reply = arpReply(senderMAC: peerMAC, senderIP: peerAddress, targetMAC: tapMAC, targetIP: tapAddress)
            if offloads {
                // An all-zero virtio-net header: a complete frame, nothing for the kernel to do.
                let header = [UInt8](repeating: 0, count: tap.virtioHeaderLength)
                let written = header.withUnsafeBytes { h in reply.withUnsafeBytes { tap.write(header: h, frame: $0) } }
                #expect(NamespaceTestSupport.value(written) == header.count + reply.count)
            } else {
                let written = reply.withUnsafeBytes { tap.write($0) }
                #expect(NamespaceTestSupport.value(written) == reply.count)
            }

            // The queued datagram now leaves, addressed to the MAC we supplied.
            let datagram = readFrame(from: tap, timeoutMilliseconds: 5_000) {
                $0.count >= 42 && $0[12] == 0x08 && $0[13] == 0x00 && $0[23] == 17
            }
            #expect(datagram.map { Array($0[0..<6]) } == peerMAC)
            #expect(datagram.map { Array($0[$0.count - payload.count..<$0.count]) } == payload)

            var neighbours = ""
            let deadline = Date().addingTimeInterval(5)
            repeat {
                neighbours = try ip.check(["ip", "-n", name, "neigh", "show", "198.51.100.2", "dev", "tap0"])
                if neighbours.contains("lladdr 02:00:00:00:00:02") { break }
                usleep(50_000)
            } while Date() < deadline
            #expect(neighbours.contains("lladdr 02:00:00:00:00:02"), "neighbours: \(neighbours)")
        }
    }

    @Test func emptyQueueReadsAsWouldBlock() throws {
        try withTapInScratchNamespace { _, _, tap in
            var buffer = [UInt8](repeating: 0, count: 2048)
            let result = buffer.withUnsafeMutableBytes { tap.read(into: $0) }
            guard case .wouldBlock = result else {
                Issue.record("expected wouldBlock, got \(result)")
                return
            }
        }
    }

    @Test func macAddressCanBeSetAndRead() throws {
        try withTapInScratchNamespace { name, _, tap in
            let mac: [UInt8] = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55]
            #expect(tap.setHardwareAddress(mac).errorCode == nil)
            #expect(try tap.hardwareAddress().get() == mac)
            let link = try NamespaceTestSupport.check(["ip", "-n", name, "link", "show", "tap0"])
            #expect(link.contains("link/ether 9a:55:9a:55:9a:55"))
            #expect(tap.setHardwareAddress([1, 2, 3]).errorCode == EINVAL)
        }
    }

    @Test func interfaceLivesAsLongAsTheDevice() throws {
        try NamespaceTestSupport.withScratchNamespace { name in
            let target = try TargetNetworkNamespace(path: Namespaces.networkNamespacePath(name))
            do {
                let tap = try TapDevice.open(name: "", in: target).get()
                #expect(tap.name.hasPrefix("tap"))
                try NamespaceTestSupport.check(["ip", "-n", name, "link", "show", tap.name])
                // The interface is in the target namespace, not ours.
                #expect(if_nametoindex(tap.name) == 0)
            }
            let links = try NamespaceTestSupport.check(["ip", "-n", name, "-o", "link", "show"])
            #expect(!links.contains("tap"), "links: \(links)")
        }
    }
}
