// UDP header (RFC 768; IPv6 use in RFC 8200 §8.1), view and builder.
//
// Theory of operation: `UDPDatagram` is a view over the IP payload. Its initialiser checks that the
// 8-byte header is present and that the length field is consistent with the buffer: at least 8
// and at most the IP payload length. The payload is then [8, length), so bytes the IP layer
// carries beyond the UDP length are ignored. The builder writes the header with checksum 0; the
// checksum, over the IPv4 or IPv6 pseudo header, header and payload (which must already follow the
// header), is filled separately once the payload is in place. A computed checksum of 0 is sent as
// 0xffff, because 0 means "no checksum" in IPv4 and is forbidden in IPv6.
//
//     0                   1                   2                   3
//     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |          Source Port          |       Destination Port        |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |            Length             |           Checksum            |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                          Payload ...                          |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

/// View of a UDP datagram: 8-byte header and payload.
public struct UDPDatagram: WireView {
    /// Length of the header.
    public static let headerLength = 8

    /// Start of the UDP header.
    public let base: UnsafeRawPointer
    /// Length of the buffer (the IP payload; at least `length`).
    public let count: Int

    /// Validates count >= 8 and 8 <= length field <= `count`; nil otherwise.
    @inlinable @inline(__always) public init?(_ base: UnsafeRawPointer, count: Int) {
        guard count >= UDPDatagram.headerLength else { return nil }
        let length = Int(base.be16(4))
        guard length >= UDPDatagram.headerLength, length <= count else { return nil }
        self.base = base
        self.count = count
    }

    /// The source port.
    @inlinable @inline(__always) public var sourcePort: UInt16 { base.be16(0) }
    /// The destination port.
    @inlinable @inline(__always) public var destinationPort: UInt16 { base.be16(2) }
    /// The length field (header and payload).
    @inlinable @inline(__always) public var length: Int { Int(base.be16(4)) }
    /// The checksum as stored (0: none, IPv4 only).
    @inlinable @inline(__always) public var checksum: UInt16 { base.be16(6) }
    /// Start of the payload.
    @inlinable @inline(__always) public var payload: UnsafeRawPointer { base + UDPDatagram.headerLength }
    /// Length of the payload (length field minus 8).
    @inlinable @inline(__always) public var payloadCount: Int { Int(base.be16(4)) &- UDPDatagram.headerLength }

    /// True if the checksum over the IPv4 pseudo header is correct, or absent (0).
    @inlinable @inline(__always) public func isChecksumValid(source: IPv4Address, destination: IPv4Address) -> Bool {
        if checksum == 0 { return true }
        let pseudo = Checksum.pseudoHeader(source: source, destination: destination, protocol: IPProtocol.udp, length: length)
        return Checksum.fold(Checksum.sum(base, count: length, initial: pseudo)) == 0xffff
    }

    /// True if the checksum over the IPv6 pseudo header is correct (0 is never valid in IPv6).
    @inlinable @inline(__always) public func isChecksumValid(source: IPv6Address, destination: IPv6Address) -> Bool {
        if checksum == 0 { return false }
        let pseudo = Checksum.pseudoHeader(source: source, destination: destination, nextHeader: IPProtocol.udp, length: length)
        return Checksum.fold(Checksum.sum(base, count: length, initial: pseudo)) == 0xffff
    }

    /// Writes an 8-byte header at `p` for `payloadLength` bytes of payload, checksum 0; returns 8.
    @inlinable @inline(__always) @discardableResult
    public static func write(to p: UnsafeMutableRawPointer, sourcePort: UInt16, destinationPort: UInt16,
                             payloadLength: Int) -> Int {
        p.setBE16(0, sourcePort)
        p.setBE16(2, destinationPort)
        p.setBE16(4, UInt16(truncatingIfNeeded: headerLength &+ payloadLength))
        p.setBE16(6, 0)
        return headerLength
    }

    /// Computes and stores the checksum of the datagram `p[0..<count]` given the unfolded
    /// pseudo-header sum; a result of 0 is stored as 0xffff.
    @inlinable @inline(__always)
    public static func fillChecksum(_ p: UnsafeMutableRawPointer, count: Int, pseudoHeaderSum: UInt64) {
        p.setBE16(6, 0)
        let sum = Checksum.internet(UnsafeRawPointer(p), count: count, initial: pseudoHeaderSum)
        p.setBE16(6, sum == 0 ? 0xffff : sum)
    }

    /// Computes and stores the checksum of the datagram `p[0..<count]` over the IPv4 pseudo header.
    @inlinable @inline(__always)
    public static func fillChecksum(_ p: UnsafeMutableRawPointer, count: Int, source: IPv4Address, destination: IPv4Address) {
        fillChecksum(p, count: count, pseudoHeaderSum: Checksum.pseudoHeader(
            source: source, destination: destination, protocol: IPProtocol.udp, length: count))
    }

    /// Computes and stores the checksum of the datagram `p[0..<count]` over the IPv6 pseudo header.
    @inlinable @inline(__always)
    public static func fillChecksum(_ p: UnsafeMutableRawPointer, count: Int, source: IPv6Address, destination: IPv6Address) {
        fillChecksum(p, count: count, pseudoHeaderSum: Checksum.pseudoHeader(
            source: source, destination: destination, nextHeader: IPProtocol.udp, length: count))
    }

    /// Stores the partial checksum of the datagram at `p` given its unfolded pseudo-header sum:
    /// that sum folded, uncomplemented, for whoever completes it (the kernel, from a virtio-net
    /// header's NEEDS_CSUM, or `VirtioNetHeader.completeChecksum`).
    @inlinable @inline(__always)
    public static func fillPartialChecksum(_ p: UnsafeMutableRawPointer, pseudoHeaderSum: UInt64) {
        p.setBE16(6, Checksum.fold(pseudoHeaderSum))
    }
}
