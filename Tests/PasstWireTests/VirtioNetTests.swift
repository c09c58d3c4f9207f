// The virtio-net header: its byte layout as the kernel's struct virtio_net_hdr (host order, this
// machine little-endian), the TCP header our frames carry, and partial checksums: the pseudo-header
// sum stored by the builder, completed as the kernel would, gives the golden frames' checksums.
import Testing
import PasstWire

@Suite struct VirtioNetTests {
    @Test func layoutMatchesStructVirtioNetHdr() {
        let header = VirtioNetHeader.tcp(tcpOffset: 34, tcpHeaderLength: 20, payload: 44 * 1460, segmentSize: 1460,
                                         isIPv6: false)
        var bytes = [UInt8](repeating: 0xee, count: VirtioNetHeader.length)
        bytes.withUnsafeMutableBytes { header.write(to: $0.baseAddress!) }
        // flags NEEDS_CSUM, gso_type TCPV4, hdr_len 54, gso_size 1460, csum_start 34, csum_offset 16.
        #expect(bytes == [1, 1, 54, 0, 0xb4, 0x05, 34, 0, 16, 0])
        #expect(bytes.withUnsafeBytes { VirtioNetHeader(reading: $0.baseAddress!) } == header)

        let v6 = VirtioNetHeader.tcp(tcpOffset: 54, tcpHeaderLength: 20, payload: 1440, segmentSize: 1440, isIPv6: true)
        #expect(v6 == VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, headerLength: 74, checksumStart: 54,
                                      checksumOffset: 16), "one segment: no GSO")
        let big6 = VirtioNetHeader.tcp(tcpOffset: 54, tcpHeaderLength: 20, payload: 1441, segmentSize: 1440, isIPv6: true)
        #expect(big6.gsoType == VirtioNetHeader.gsoTCPv6 && big6.segmentSize == 1440)
        #expect(VirtioNetHeader.none == VirtioNetHeader(flags: 0, gsoType: 0, headerLength: 0, segmentSize: 0,
                                                        checksumStart: 0, checksumOffset: 0))
    }

    @Test func partialChecksumCompletedGivesTheGoldenChecksum() throws {
        // IPv4 with IP and TCP options and an odd payload: TCP at 42, 78 bytes.
        let golden4 = try L2L4.frame("ipv4_options_tcp")
        let completed4 = L2L4.build { p in
            L2L4.copy(golden4, to: p, at: 0)
            TCPSegment.fillPartialChecksum(p + 42, count: 78, source: L2L4.guest4, destination: L2L4.remote4)
            VirtioNetHeader.tcp(tcpOffset: 42, tcpHeaderLength: 20, payload: 58, segmentSize: 1460, isIPv6: false)
                .completeChecksum(p, count: golden4.count)
            return golden4.count
        }
        #expect(completed4 == golden4)

        // IPv6 SYN with options: TCP at 54, 28 bytes.
        let golden6 = try L2L4.frame("ipv6_tcp")
        let completed6 = L2L4.build { p in
            L2L4.copy(golden6, to: p, at: 0)
            TCPSegment.fillPartialChecksum(p + 54, count: 28, source: L2L4.guest6, destination: L2L4.remote6)
            VirtioNetHeader.tcp(tcpOffset: 54, tcpHeaderLength: 28, payload: 0, segmentSize: 1440, isIPv6: true)
                .completeChecksum(p, count: golden6.count)
            return golden6.count
        }
        #expect(completed6 == golden6)
    }

    @Test func completeChecksumLeavesOtherFramesAlone() throws {
        let golden = try L2L4.frame("ipv4_options_tcp")
        let untouched = L2L4.build { p in
            L2L4.copy(golden, to: p, at: 0)
            VirtioNetHeader.none.completeChecksum(p, count: golden.count)
            // A checksum field past the end of the frame is not written.
            VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, checksumStart: UInt16(golden.count - 1),
                            checksumOffset: 0).completeChecksum(p, count: golden.count)
            return golden.count
        }
        #expect(untouched == golden)
    }
}
