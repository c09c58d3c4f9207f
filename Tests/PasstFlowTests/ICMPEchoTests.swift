// ICMP echo flows against real ping sockets, with a fake tap (frames in memory).
//
// The test body moves its thread into a fresh network namespace and back afterwards (setns and
// unshare of a network namespace are per thread), brings `lo` up there and opens ping sockets to
// every group (ping_group_range is per network namespace), so nothing outside the test changes
// and all traffic goes to that namespace's loopback. The guest's echo requests go to the
// map-host-loopback address, which the flows translate to 127.0.0.1 / ::1; the replies must come
// back from that address with the guest's own identifier, a valid checksum and the same data.
import Foundation
import Testing
import PasstFlow
import PasstSys
import PasstWire

/// Runs `body` inside a new network namespace with `lo` up and ping sockets allowed, on the
/// calling thread, which returns to its own namespace afterwards: what `body` records belongs to
/// the running test (on a thread of its own it was reported for no test).
func inPrivateNetworkNamespace(_ body: () throws -> Void) throws {
    let home = try Namespaces.openCurrent(.network).get()
    try Namespaces.unshare(.network).get()
    defer {
        // Left in the test's namespace, this thread would run other tests there.
        guard case .success = Namespaces.enter(home, type: .network) else {
            fatalError("cannot return the test thread to its network namespace")
        }
    }
    let netlink = try Netlink()
    guard let lo = try netlink.link(named: "lo") else { throw SyscallError(ENODEV) }
    try netlink.setLinkUp(index: lo.index)
    try "0 2147483647".write(toFile: "/proc/sys/net/ipv4/ping_group_range", atomically: false, encoding: .utf8)
    try body()
}

/// An echo request message (ICMP or ICMPv6 by `type`) with `data`, checksum filled for ICMPv4.
func echoRequest(type: UInt8, identifier: UInt16, sequence: UInt16, data: [UInt8]) -> [UInt8] {
    var message = [UInt8](repeating: 0, count: ICMPEcho.headerLength + data.count)
    message.withUnsafeMutableBytes { buffer in
        ICMPEcho.write(to: buffer.baseAddress!, type: type, identifier: identifier, sequenceNumber: sequence)
        buffer.baseAddress!.advanced(by: ICMPEcho.headerLength).copyMemory(from: data, byteCount: data.count)
        if type == ICMPv4Type.echoRequest { ICMPv4Packet.fillChecksum(buffer.baseAddress!, count: buffer.count) }
    }
    return message
}

/// Waits up to 2 s for `fd` to become readable.
func waitReadable(_ fd: Int32) -> Bool {
    var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    return poll(&pfd, 1, 2000) == 1
}

let ourMAC = MACAddress(0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55)
let guestMAC = MACAddress(0x02, 0, 0, 0, 0, 0x01)

@Suite("ICMP echo flows", .enabled(if: getuid() == 0), .timeLimit(.minutes(10)))
struct ICMPEchoTests {
    @Test("IPv4: id mapped back, source is the original destination, flow reused, repeats dropped, idle flows expire")
    func ipv4() throws {
        try inPrivateNetworkNamespace {
            var rules = ForwardingRules()
            rules.mapHostLoopback4 = IPv4Address(192, 0, 2, 1)
            var flows = ICMPEchoFlows(capacity: 4, rules: rules)
            let guest = IPv4Address(192, 0, 2, 2), gateway = IPv4Address(192, 0, 2, 1)
            let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 16)
            defer { frame.deallocate() }

            for sequence: UInt16 in [1, 2] {
                let request = echoRequest(type: ICMPv4Type.echoRequest, identifier: 0x1234, sequence: sequence,
                                          data: Array("ping".utf8))
                let outcome = request.withUnsafeBytes {
                    flows.handleRequest(source: guest, destination: gateway, message: $0, now: 1)
                }
                let fd = flows.socket(ofSlot: 0)
                #expect(outcome == (sequence == 1 ? .newFlow(slot: 0, fd: fd) : .sent))
                try #require(waitReadable(fd))
                let received = flows.receiveReply(slot: 0, into: frame, ourMAC: ourMAC, guestMAC: guestMAC, now: 2)
                let length = try #require(received)
                let ethernet = try #require(EthernetFrame(frame.baseAddress!, count: length))
                #expect(ethernet.destination == guestMAC && ethernet.source == ourMAC && ethernet.etherType == EtherType.ipv4)
                let ip = try #require(IPv4Packet(ethernet.payload, count: ethernet.payloadCount))
                #expect(ip.source == gateway && ip.destination == guest && ip.isChecksumValid && ip.ttl == 255)
                let icmp = try #require(ICMPv4Packet(ip.payload, count: ip.payloadCount))
                #expect(icmp.isChecksumValid)
                let echo = try #require(icmp.echo)
                #expect(echo.type == ICMPv4Type.echoReply && echo.identifier == 0x1234 && echo.sequenceNumber == sequence)
                #expect(Array(UnsafeRawBufferPointer(start: echo.data, count: echo.dataCount)) == Array("ping".utf8))
            }
            let openFlows = flows.count
            #expect(openFlows == 1)

            let repeated = echoRequest(type: ICMPv4Type.echoRequest, identifier: 0x1234, sequence: 2, data: [1])
            _ = repeated.withUnsafeBytes { flows.handleRequest(source: guest, destination: gateway, message: $0, now: 3) }
            let socket = flows.socket(ofSlot: 0)
            try #require(waitReadable(socket))
            let duplicate = flows.receiveReply(slot: 0, into: frame, ourMAC: ourMAC, guestMAC: guestMAC, now: 3)
            #expect(duplicate == 0)

            let other = echoRequest(type: ICMPv4Type.echoRequest, identifier: 0x4321, sequence: 1, data: [])
            let second = other.withUnsafeBytes { flows.handleRequest(source: guest, destination: gateway, message: $0, now: 4) }
            let secondSocket = flows.socket(ofSlot: 1)
            #expect(second == .newFlow(slot: 1, fd: secondSocket))
            let reply = echoRequest(type: ICMPv4Type.echoReply, identifier: 1, sequence: 1, data: [])
            let notRequest = reply.withUnsafeBytes { flows.handleRequest(source: guest, destination: gateway, message: $0, now: 4) }
            #expect(notRequest == .dropped)

            let firstExpiry = flows.expire(now: 3 + ICMPEchoFlows.idleTimeout)
            let afterFirst = flows.count
            let secondExpiry = flows.expire(now: 4 + ICMPEchoFlows.idleTimeout)
            let afterSecond = flows.count
            #expect(firstExpiry == 1 && afterFirst == 1 && secondExpiry == 1 && afterSecond == 0)
        }
    }

    @Test("IPv6: id mapped back, checksum over the new pseudo header")
    func ipv6() throws {
        try inPrivateNetworkNamespace {
            var rules = ForwardingRules()
            let gateway = try #require(IPv6Address("fd00::1")), guest = try #require(IPv6Address("fd00::2"))
            rules.mapHostLoopback6 = gateway
            var flows = ICMPEchoFlows(capacity: 4, rules: rules)
            let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 16)
            defer { frame.deallocate() }

            let request = echoRequest(type: ICMPv6Type.echoRequest, identifier: 0xbeef, sequence: 7, data: Array("six".utf8))
            let outcome = request.withUnsafeBytes { flows.handleRequest(source: guest, destination: gateway, message: $0, now: 1) }
            let fd = flows.socket(ofSlot: 0)
            #expect(outcome == .newFlow(slot: 0, fd: fd))
            try #require(waitReadable(fd))
            let received = flows.receiveReply(slot: 0, into: frame, ourMAC: ourMAC, guestMAC: guestMAC, now: 2)
            let length = try #require(received)
            let ethernet = try #require(EthernetFrame(frame.baseAddress!, count: length))
            #expect(ethernet.etherType == EtherType.ipv6)
            let ip = try #require(IPv6Packet(ethernet.payload, count: ethernet.payloadCount))
            #expect(ip.source == gateway && ip.destination == guest && ip.hopLimit == 255)
            let icmp = try #require(ICMPv6Packet(ip.upperLayer, count: ip.upperLayerCount))
            #expect(icmp.isChecksumValid(source: gateway, destination: guest))
            let echo = try #require(icmp.echo)
            #expect(echo.type == ICMPv6Type.echoReply && echo.identifier == 0xbeef && echo.sequenceNumber == 7)
        }
    }
}
