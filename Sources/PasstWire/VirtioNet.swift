// The virtio-net header (virtio 1.x §5.1.6, "legacy" layout; Linux include/uapi/linux/virtio_net.h)
// that a tap opened with IFF_VNET_HDR puts in front of every frame, both ways.
//
// Theory of operation: the header says what the kernel did not do to a frame, or what we leave
// to it. Reading from the tap (namespace -> us), a TCP frame may be one large segment of up to
// 64 KiB that the namespace's stack did not cut to its MTU (gso_type TCPV4/TCPV6, gso_size the
// MSS), and any TCP or UDP frame may carry a partial checksum (flag NEEDS_CSUM): the checksum
// field at csum_start + csum_offset holds only the folded pseudo-header sum. passt only
// carries the payload on, so neither matters, except to a capture, which completes the
// checksum (`completeChecksum`). Writing to the tap (us -> namespace), the same two promises
// go the other way: a TCP frame of many segments marked GSO with the segment size the guest
// accepts is taken whole by local delivery (no segmentation, one trip through its stack), and
// NEEDS_CSUM with the pseudo-header sum in the field (TCP and UDP frames) spares us computing
// checksums the kernel treats as verified (CHECKSUM_PARTIAL). hdr_len is the length of the headers (Ethernet, IP,
// TCP or UDP) the kernel puts in the linear part of its buffer. The header is 10 bytes; its 16-bit
// fields are in the host's byte order (legacy virtio, which tun uses unless told otherwise).
//
//     0               1               2               3
//     0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//    +---------------+---------------+-------------------------------+
//    |     flags     |   gso_type    |     hdr_len (Ethernet...L4)   |
//    +---------------+---------------+-------------------------------+
//    |     gso_size (segment payload)|  csum_start (from Ethernet)   |
//    +-------------------------------+-------------------------------+
//    |  csum_offset (from csum_start)|
//    +-------------------------------+

/// The virtio-net header in front of a frame on a tap with IFF_VNET_HDR.
public struct VirtioNetHeader: Equatable, Sendable {
    /// Bytes of the header (struct virtio_net_hdr).
    public static let length = 10
    /// Flag: the checksum at `checksumStart + checksumOffset` holds only the pseudo-header sum.
    public static let needsChecksum: UInt8 = 1
    /// gso_type: not a segmentation-offload frame.
    public static let gsoNone: UInt8 = 0
    /// gso_type: TCP over IPv4, to be cut into `segmentSize` payloads.
    public static let gsoTCPv4: UInt8 = 1
    /// gso_type: TCP over IPv6, to be cut into `segmentSize` payloads.
    public static let gsoTCPv6: UInt8 = 4
    /// gso_type: UDP (either IP version), to be cut into datagrams of `segmentSize` payload bytes.
    public static let gsoUDPL4: UInt8 = 5
    /// Offset of the checksum field in a TCP header.
    public static let tcpChecksumOffset: UInt16 = 16
    /// Offset of the checksum field in a UDP header.
    public static let udpChecksumOffset: UInt16 = 6
    /// A frame with nothing left to do: complete checksums, no segmentation.
    public static let none = VirtioNetHeader()

    /// VIRTIO_NET_HDR_F_* bits.
    public var flags: UInt8
    /// VIRTIO_NET_HDR_GSO_* type.
    public var gsoType: UInt8
    /// Length of the headers up to and including the transport header.
    public var headerLength: UInt16
    /// Payload bytes per segment (GSO frames only).
    public var segmentSize: UInt16
    /// Where checksumming starts, from the start of the Ethernet frame (NEEDS_CSUM only).
    public var checksumStart: UInt16
    /// Offset of the checksum field from `checksumStart` (NEEDS_CSUM only).
    public var checksumOffset: UInt16

    /// A header with the given fields (all zero by default: nothing to do).
    @inlinable @inline(__always)
    public init(flags: UInt8 = 0, gsoType: UInt8 = gsoNone, headerLength: UInt16 = 0, segmentSize: UInt16 = 0,
                checksumStart: UInt16 = 0, checksumOffset: UInt16 = 0) {
        self.flags = flags
        self.gsoType = gsoType
        self.headerLength = headerLength
        self.segmentSize = segmentSize
        self.checksumStart = checksumStart
        self.checksumOffset = checksumOffset
    }

    /// The header of a TCP frame whose transport header starts at `tcpOffset` and is
    /// `tcpHeaderLength` long, with `payload` bytes after it and a partial checksum; a GSO
    /// frame of `segmentSize` segments when the payload is longer than that.
    @inlinable @inline(__always)
    public static func tcp(tcpOffset: Int, tcpHeaderLength: Int, payload: Int, segmentSize: Int,
                           isIPv6: Bool) -> VirtioNetHeader {
        let segmented = payload > segmentSize
        return VirtioNetHeader(flags: needsChecksum,
                               gsoType: segmented ? (isIPv6 ? gsoTCPv6 : gsoTCPv4) : gsoNone,
                               headerLength: UInt16(truncatingIfNeeded: tcpOffset &+ tcpHeaderLength),
                               segmentSize: segmented ? UInt16(truncatingIfNeeded: segmentSize) : 0,
                               checksumStart: UInt16(truncatingIfNeeded: tcpOffset),
                               checksumOffset: tcpChecksumOffset)
    }

    /// The header of a UDP frame whose UDP header starts at `udpOffset`, with a partial checksum;
    /// with a `segmentSize`, a GSO frame of datagrams of that many payload bytes (the last may be
    /// shorter).
    @inlinable @inline(__always)
    public static func udp(udpOffset: Int, segmentSize: Int? = nil) -> VirtioNetHeader {
        VirtioNetHeader(flags: needsChecksum, gsoType: segmentSize == nil ? gsoNone : gsoUDPL4,
                        headerLength: UInt16(truncatingIfNeeded: udpOffset &+ 8),
                        segmentSize: UInt16(truncatingIfNeeded: segmentSize ?? 0),
                        checksumStart: UInt16(truncatingIfNeeded: udpOffset), checksumOffset: udpChecksumOffset)
    }

    /// Reads the header at `p` (`length` bytes).
    @inlinable @inline(__always) public init(reading p: UnsafeRawPointer) {
        flags = p.u8(0)
        gsoType = p.u8(1)
        headerLength = p.loadUnaligned(fromByteOffset: 2, as: UInt16.self)
        segmentSize = p.loadUnaligned(fromByteOffset: 4, as: UInt16.self)
        checksumStart = p.loadUnaligned(fromByteOffset: 6, as: UInt16.self)
        checksumOffset = p.loadUnaligned(fromByteOffset: 8, as: UInt16.self)
    }

    /// Writes the header at `p` (`length` bytes).
    @inlinable @inline(__always) public func write(to p: UnsafeMutableRawPointer) {
        p.setU8(0, flags)
        p.setU8(1, gsoType)
        p.storeBytes(of: headerLength, toByteOffset: 2, as: UInt16.self)
        p.storeBytes(of: segmentSize, toByteOffset: 4, as: UInt16.self)
        p.storeBytes(of: checksumStart, toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: checksumOffset, toByteOffset: 8, as: UInt16.self)
    }

    /// Whether the frame's checksum is partial (NEEDS_CSUM).
    @inlinable @inline(__always) public var hasPartialChecksum: Bool { flags & VirtioNetHeader.needsChecksum != 0 }

    /// Completes the partial checksum of `frame` (`count` bytes), if this header says it has one:
    /// the one's complement sum from `checksumStart` to the end, which includes the
    /// pseudo-header sum already in the field, stored complemented (0 as 0xffff, as UDP needs).
    /// A checksum field outside the frame is left alone.
    @inlinable public func completeChecksum(_ frame: UnsafeMutableRawPointer, count: Int) {
        guard hasPartialChecksum else { return }
        let start = Int(checksumStart)
        let field = start &+ Int(checksumOffset)
        guard field &+ 2 <= count else { return }
        let sum = ~Checksum.fold(Checksum.sum(UnsafeRawPointer(frame) + start, count: count &- start))
        frame.setBE16(field, sum == 0 ? 0xffff : sum)
    }
}
