// The TCP packet path allocates nothing once warm (DESIGN: hot-path rules; issue 7).
//
// Theory of operation: CAllocationCounter defines the malloc family in the test executable and
// counts the calls of each thread. A connection is set up through the usual rig (fake tap, real
// loopback socket, fake clock; frames of one MSS, or of many segments as for a tap with
// segmentation offload), then one pass warms up and 100 passes are counted: in each, 100
// guest segments of 1000 bytes go through handleGuestSegment and one flushGuestData into the
// socket, the server drains them, the server sends 100 000 bytes back, and the socket's data is
// carried to the guest (handleSocketEvent, then the guest's ACKs built in place) until all of it
// is acknowledged. That is 10,000 frames each way plus the ACKs. UDP likewise: 200 passes of 50
// guest datagrams queued on their flow and sent with flush (sendmmsg), echoed by the server, and
// read back as frames for the guest (receiveReplies, recvmmsg). Everything the test itself needs
// (segments, buffers, the counting tap) is made before counting starts.
import CAllocationCounter
import Foundation
import Testing
import PasstFlow
import PasstSys
import PasstWire

/// A tap that only counts frames and remembers the end of the data sent (no allocation).
struct CountingTap: TCPTap {
    let ourMAC = MACAddress(0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55)
    let guestMAC = MACAddress(0x02, 0, 0, 0, 0, 0x01)
    /// Whether the engine may send frames of many segments (marked for segmentation offload).
    var segmentationOffload = false
    var frames = 0
    /// Sequence number after the last payload byte sent to the guest.
    var dataEnd: UInt32 = 0

    /// Counts `frame` and notes where its payload ends (IPv4, TCP without options on data).
    mutating func send(_ frame: UnsafeRawBufferPointer) {
        frames += 1
        let tcp = EthernetFrame.headerLength + IPv4Packet.minimumHeaderLength
        let dataOffset = Int(frame[tcp + 12] >> 4) * 4
        let payload = frame.count - tcp - dataOffset
        guard payload > 0 else { return }
        let sequence = frame.loadUnaligned(fromByteOffset: tcp + 4, as: UInt32.self).bigEndian
        dataEnd = sequence &+ UInt32(payload)
    }
}

@Suite("Allocation-free packet path", .enabled(if: getuid() == 0), .timeLimit(.minutes(10)))
struct AllocationTests {
    static let segmentsPerPass = 100, payloadSize = 1000, passes = 100

    @Test("10,000 segments from the guest to a socket and 10,000 back: no allocation after one warm-up pass",
          arguments: [false, true])
    func tcpBothWays(segmentationOffload: Bool) throws {
        try inPrivateNetworkNamespace {
            var rig = TCPRig()
            let (server, serverPort) = try LoopbackTCP.listener()
            defer { close(server) }
            let guestPort: UInt16 = 40100
            let (accepted, slot, guestSeq, ourSeq) = try TCPFlowTests.connect(&rig, guestPort: guestPort, server: server,
                                                                             serverPort: serverPort)
            defer { close(accepted) }
            let header = TCPSegment.headerLength(mss: nil, windowScale: nil)
            let segmentSize = header + AllocationTests.payloadSize
            let perPass = AllocationTests.segmentsPerPass * AllocationTests.payloadSize
            let totalPasses = AllocationTests.passes + 1
            // Every guest segment of every pass, in order, made up front.
            let segments = UnsafeMutableRawPointer.allocate(byteCount: segmentSize * AllocationTests.segmentsPerPass * totalPasses,
                                                            alignment: 8)
            defer { segments.deallocate() }
            for index in 0..<(AllocationTests.segmentsPerPass * totalPasses) {
                let segment = segments + index * segmentSize
                TCPSegment.write(to: segment, sourcePort: guestPort, destinationPort: serverPort,
                                 sequenceNumber: guestSeq &+ UInt32(index * AllocationTests.payloadSize),
                                 acknowledgmentNumber: ourSeq, flags: .ack, window: 65535, mss: nil, windowScale: nil)
                (segment + header).initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: index),
                                                    count: AllocationTests.payloadSize)
            }
            let ack = UnsafeMutableRawPointer.allocate(byteCount: header, alignment: 8)
            defer { ack.deallocate() }
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: perPass, alignment: 8)
            defer { buffer.deallocate() }
            var tap = CountingTap()
            tap.segmentationOffload = segmentationOffload
            tap.dataEnd = ourSeq
            let guest = IPv6Address(v4Mapped: TCPRig.guest), gateway = IPv6Address(v4Mapped: TCPRig.gateway)
            var drained = 0, acknowledged = ourSeq, counted = 0, failures = 0

            for pass in 0..<totalPasses {
                let before = allocation_counter_thread_total()
                // Guest -> socket: one read pass of segments, then the server reads them all.
                for index in 0..<AllocationTests.segmentsPerPass {
                    let segment = segments + (pass * AllocationTests.segmentsPerPass + index) * segmentSize
                    rig.flows.handleGuestSegment(isIPv6: false, source: guest, destination: gateway,
                                                 segment: TCPSegment(UnsafeRawPointer(segment), count: segmentSize)!,
                                                 now: rig.now, table: &rig.table, tap: &tap)
                }
                rig.flows.flushGuestData(now: rig.now, table: &rig.table, tap: &tap)
                var received = 0
                while received < perPass {
                    let n = recv(accepted, buffer + received, perPass - received, 0)
                    if n <= 0 { break }
                    received += n
                }
                drained += received
                // Socket -> guest: the server's bytes reach the guest, whose ACKs are built in place.
                if send(accepted, buffer, perPass, 0) != perPass { failures += 1 }
                let target = acknowledged &+ UInt32(perPass)
                let token = rig.flows.socketToken(slot: slot)
                var rounds = 0
                while acknowledged != target && rounds < 10_000 {
                    rounds += 1
                    rig.flows.handleSocketEvent(token, events: .input, now: rig.now, table: &rig.table, tap: &tap)
                    guard tap.dataEnd != acknowledged else { continue }
                    acknowledged = tap.dataEnd
                    TCPSegment.write(to: ack, sourcePort: guestPort, destinationPort: serverPort,
                                     sequenceNumber: guestSeq &+ UInt32(drained), acknowledgmentNumber: acknowledged,
                                     flags: .ack, window: 65535, mss: nil, windowScale: nil)
                    rig.flows.handleGuestSegment(isIPv6: false, source: guest, destination: gateway,
                                                 segment: TCPSegment(UnsafeRawPointer(ack), count: header)!,
                                                 now: rig.now, table: &rig.table, tap: &tap)
                }
                if acknowledged != target { failures += 1 }
                if pass > 0 { counted += allocation_counter_thread_total() - before }
            }
            #expect(failures == 0 && drained == perPass * totalPasses, "drained \(drained) bytes, \(failures) failures")
            #expect(counted == 0, "\(counted) allocations while moving \(AllocationTests.passes * AllocationTests.segmentsPerPass) segments each way")
        }
    }

    @Test("10,000 guest datagrams to a socket and 10,000 replies back as frames: no allocation after one warm-up pass")
    func udpBothWays() throws {
        // 50 datagrams of 1000 bytes per pass: a default socket buffer holds about 90 of them.
        let datagramsPerPass = 50, udpPasses = 200
        try inPrivateNetworkNamespace {
            var rules = ForwardingRules()
            rules.mapHostLoopback4 = UDPFlowTests.gateway
            var flows = UDPFlows(capacity: 16, rules: rules)
            var table = FlowTable(capacity: 16)
            let (server, serverPort) = try loopbackServer()
            defer { close(server) }
            let datagramSize = UDPDatagram.headerLength + AllocationTests.payloadSize
            let datagrams = UnsafeMutableRawPointer.allocate(byteCount: datagramSize * datagramsPerPass,
                                                             alignment: 8)
            defer { datagrams.deallocate() }
            for index in 0..<datagramsPerPass {
                let datagram = datagrams + index * datagramSize
                UDPDatagram.write(to: datagram, sourcePort: 40200, destinationPort: serverPort,
                                  payloadLength: AllocationTests.payloadSize)
                (datagram + UDPDatagram.headerLength).initializeMemory(as: UInt8.self, repeating: UInt8(index),
                                                                       count: AllocationTests.payloadSize)
            }
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 8)
            defer { buffer.deallocate() }
            var peer = sockaddr_in()
            var peerLength = socklen_t(MemoryLayout<sockaddr_in>.size)
            let guest = IPv6Address(v4Mapped: UDPFlowTests.guest), gateway = IPv6Address(v4Mapped: UDPFlowTests.gateway)
            var slot = -1, counted = 0, echoed = 0, framed = 0

            for pass in 0..<(udpPasses + 1) {
                let before = allocation_counter_thread_total()
                for index in 0..<datagramsPerPass {
                    let outcome = flows.handleGuestDatagram(
                        isIPv6: false, source: guest, destination: gateway,
                        datagram: UDPDatagram(UnsafeRawPointer(datagrams + index * datagramSize), count: datagramSize)!,
                        now: 1, table: &table)
                    if case .newFlow(let created, _) = outcome { slot = created }
                }
                flows.flush()
                for _ in 0..<datagramsPerPass {
                    guard waitReadable(server) else { break }
                    let count = withUnsafeMutablePointer(to: &peer) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(server, buffer, 65536, 0, $0, &peerLength) }
                    }
                    guard count > 0 else { break }
                    _ = withUnsafePointer(to: &peer) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(server, buffer, count, 0, $0, peerLength) }
                    }
                    echoed += 1
                }
                var replies = 0
                while replies < datagramsPerPass {
                    guard waitReadable(flows.socket(ofSlot: slot)) else { break }
                    guard let count = flows.receiveReplies(slot: slot, now: 2, ourMAC: ourMAC, guestMAC: guestMAC),
                          count > 0 else { break }
                    replies += count
                }
                framed += replies
                if pass > 0 { counted += allocation_counter_thread_total() - before }
            }
            let total = datagramsPerPass * (udpPasses + 1)
            #expect(echoed == total && framed == total, "\(echoed) echoed, \(framed) frames of \(total)")
            #expect(counted == 0, "\(counted) allocations while moving \(udpPasses * datagramsPerPass) datagrams each way")
        }
    }
}
