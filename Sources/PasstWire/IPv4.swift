// IPv4 header (RFC 791), view and builder; IP protocol numbers.
//
// Theory of operation: `IPv4Packet` validates once, in its initialiser, everything later reads rely
// on: version 4, IHL >= 5, 20 <= IHL*4 <= total length <= buffer length. Options (IHL > 5) are not
// interpreted, only skipped: the payload starts at IHL*4. The payload ends at the total length, not
// at the end of the buffer, so Ethernet padding of short frames is excluded. Fragments are exposed
// (`isFragment`: MF set or offset non-zero) so the caller can drop them, as passt does; reassembly
// is not done. The header checksum is verified on request (`isChecksumValid`), not in the
// initialiser, because passt's tap ingress does not check it (the guest kernel computed it).
// The builder writes the fixed 20-byte header passt sends (no options) and fills its checksum.
//
//     0                   1                   2                   3
//     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |Version|  IHL  |    DSCP   |ECN|          Total Length         |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |         Identification        |0|D|M|     Fragment Offset     |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |  Time to Live |    Protocol   |         Header Checksum       |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                       Source Address                          |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                    Destination Address                        |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                    Options (IHL > 5) ...                      |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

/// IP protocol / IPv6 next-header numbers passt meets.
public enum IPProtocol {
    /// IPv6 hop-by-hop options extension header.
    public static let hopByHop: UInt8 = 0
    /// Internet Control Message Protocol (IPv4).
    public static let icmp: UInt8 = 1
    /// Transmission Control Protocol.
    public static let tcp: UInt8 = 6
    /// User Datagram Protocol.
    public static let udp: UInt8 = 17
    /// IPv6 routing extension header.
    public static let routing: UInt8 = 43
    /// IPv6 fragment extension header.
    public static let fragment: UInt8 = 44
    /// ICMP for IPv6.
    public static let icmpv6: UInt8 = 58
    /// IPv6 "no next header".
    public static let noNextHeader: UInt8 = 59
    /// IPv6 destination options extension header.
    public static let destinationOptions: UInt8 = 60
}

/// View of an IPv4 packet: header (with options) and payload.
public struct IPv4Packet: WireView {
    /// Length of the header without options.
    public static let minimumHeaderLength = 20

    /// Start of the IPv4 header.
    public let base: UnsafeRawPointer
    /// Length of the buffer (at least `totalLength`; may hold link-layer padding after it).
    public let count: Int

    /// Validates version 4, IHL >= 5 and 20 <= IHL*4 <= total length <= `count`; nil otherwise.
    @inlinable @inline(__always) public init?(_ base: UnsafeRawPointer, count: Int) {
        guard count >= IPv4Packet.minimumHeaderLength else { return nil }
        let vihl = base.u8(0)
        let ihl = Int(vihl & 0x0f) &* 4
        let total = Int(base.be16(2))
        guard vihl >> 4 == 4, ihl >= IPv4Packet.minimumHeaderLength, ihl <= total, total <= count else { return nil }
        self.base = base
        self.count = count
    }

    /// The version field (always 4 in a valid view).
    @inlinable @inline(__always) public var version: UInt8 { base.u8(0) >> 4 }
    /// Header length in bytes (IHL * 4, 20...60).
    @inlinable @inline(__always) public var headerLength: Int { Int(base.u8(0) & 0x0f) &* 4 }
    /// The type-of-service byte (DSCP << 2 | ECN).
    @inlinable @inline(__always) public var tos: UInt8 { base.u8(1) }
    /// Differentiated services code point (upper 6 bits of the TOS byte).
    @inlinable @inline(__always) public var dscp: UInt8 { base.u8(1) >> 2 }
    /// Explicit congestion notification (lower 2 bits of the TOS byte).
    @inlinable @inline(__always) public var ecn: UInt8 { base.u8(1) & 3 }
    /// Total length of header and payload in bytes.
    @inlinable @inline(__always) public var totalLength: Int { Int(base.be16(2)) }
    /// The identification field.
    @inlinable @inline(__always) public var identification: UInt16 { base.be16(4) }
    /// The raw flags and fragment offset word.
    @inlinable @inline(__always) public var flagsAndFragmentOffset: UInt16 { base.be16(6) }
    /// True if the Don't Fragment flag is set.
    @inlinable @inline(__always) public var dontFragment: Bool { base.be16(6) & 0x4000 != 0 }
    /// True if the More Fragments flag is set.
    @inlinable @inline(__always) public var moreFragments: Bool { base.be16(6) & 0x2000 != 0 }
    /// Fragment offset in 8-byte units.
    @inlinable @inline(__always) public var fragmentOffset: UInt16 { base.be16(6) & 0x1fff }
    /// True if this is a fragment (MF set or offset non-zero).
    @inlinable @inline(__always) public var isFragment: Bool { base.be16(6) & 0x3fff != 0 }
    /// Time to live.
    @inlinable @inline(__always) public var ttl: UInt8 { base.u8(8) }
    /// The payload's protocol number (see `IPProtocol`).
    @inlinable @inline(__always) public var `protocol`: UInt8 { base.u8(9) }
    /// The header checksum as stored.
    @inlinable @inline(__always) public var headerChecksum: UInt16 { base.be16(10) }
    /// The source address.
    @inlinable @inline(__always) public var source: IPv4Address { IPv4Address(at: base, offset: 12) }
    /// The destination address.
    @inlinable @inline(__always) public var destination: IPv4Address { IPv4Address(at: base, offset: 16) }
    /// Start of the options (valid for `optionsCount` bytes).
    @inlinable @inline(__always) public var options: UnsafeRawPointer { base + IPv4Packet.minimumHeaderLength }
    /// Length of the options in bytes (0...40).
    @inlinable @inline(__always) public var optionsCount: Int { headerLength &- IPv4Packet.minimumHeaderLength }
    /// Offset of the payload from `base` (the header length).
    @inlinable @inline(__always) public var payloadOffset: Int { headerLength }
    /// Start of the payload.
    @inlinable @inline(__always) public var payload: UnsafeRawPointer { base + headerLength }
    /// Length of the payload (total length minus header length).
    @inlinable @inline(__always) public var payloadCount: Int { totalLength &- headerLength }
    /// True if the header checksum (over the header with options) is correct.
    @inlinable @inline(__always) public var isChecksumValid: Bool { Checksum.fold(Checksum.sum(base, count: headerLength)) == 0xffff }

    /// Writes a 20-byte header (no options) at `p` for `payloadLength` bytes of payload and fills its
    /// checksum; returns the header length (20).
    @inlinable @inline(__always) @discardableResult
    public static func write(to p: UnsafeMutableRawPointer, source: IPv4Address, destination: IPv4Address,
                             protocol proto: UInt8, payloadLength: Int, ttl: UInt8 = 255,
                             identification: UInt16 = 0, dontFragment: Bool = false,
                             moreFragments: Bool = false, fragmentOffset: UInt16 = 0, tos: UInt8 = 0) -> Int {
        p.setU8(0, 0x45)
        p.setU8(1, tos)
        p.setBE16(2, UInt16(truncatingIfNeeded: minimumHeaderLength &+ payloadLength))
        p.setBE16(4, identification)
        p.setBE16(6, (dontFragment ? 0x4000 : 0) | (moreFragments ? 0x2000 : 0) | (fragmentOffset & 0x1fff))
        p.setU8(8, ttl)
        p.setU8(9, proto)
        p.setBE16(10, 0)
        source.store(to: p, offset: 12)
        destination.store(to: p, offset: 16)
        p.setBE16(10, Checksum.internet(UnsafeRawPointer(p), count: minimumHeaderLength))
        return minimumHeaderLength
    }

    /// Recomputes and stores the header checksum of the header at `p` of `headerLength` bytes.
    @inlinable @inline(__always)
    public static func fillChecksum(_ p: UnsafeMutableRawPointer, headerLength: Int = minimumHeaderLength) {
        p.setBE16(10, 0)
        p.setBE16(10, Checksum.internet(UnsafeRawPointer(p), count: headerLength))
    }
}
