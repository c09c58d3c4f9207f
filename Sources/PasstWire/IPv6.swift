// IPv6 header (RFC 8200) with the extension-header walk, view and builder.
//
// Theory of operation: `IPv6Packet` validates, once, the fixed header (version 6, 40 + payload
// length <= buffer) and then walks the extension-header chain to find the upper-layer protocol,
// as passt's ipv6_l4hdr() does. The walk knows hop-by-hop options (0), routing (43), destination
// options (60) — all three "next header, length in 8-octet units not counting the first 8" — and
// the fixed 8-byte fragment header (44). Every step checks that the header it is about to read
// lies inside the payload; each step advances by at least 8 bytes, so the loop always ends. A chain
// that runs past the payload, or carries two fragment headers, makes the initialiser fail. A
// non-first fragment (offset != 0) ends the walk at its fragment header: what follows is data, not
// headers. Any other next-header value (TCP, UDP, ICMPv6, no-next-header, AH, ESP, ...) is the
// upper-layer protocol. The results are stored in the view, so the accessors stay unchecked.
// Jumbograms (payload length 0 with a jumbo option) are not supported: their payload is empty.
//
//     0                   1                   2                   3
//     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |Version| Traffic Class |              Flow Label               |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |         Payload Length        |  Next Header  |   Hop Limit   |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                  Source Address (16 bytes)                    |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |               Destination Address (16 bytes)                  |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//    Hop-by-hop / routing / destination options      Fragment header (8 bytes)
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+      +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |  Next Header  |  Hdr Ext Len  | ...   |      |  Next Header  |   Reserved    | Offset|Res|M|
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+       |      +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |  (Hdr Ext Len + 1) * 8 bytes in all   |      |             Identification (32)           |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+      +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

/// View of an IPv6 packet: fixed header, extension headers and upper-layer payload.
public struct IPv6Packet: WireView {
    /// Length of the fixed header.
    public static let headerLength = 40
    /// Length of the fragment extension header.
    public static let fragmentHeaderLength = 8

    /// Start of the IPv6 header.
    public let base: UnsafeRawPointer
    /// Length of the buffer (at least 40 + payload length).
    public let count: Int
    /// The upper-layer protocol after the extension headers (see `IPProtocol`).
    public let upperLayerProtocol: UInt8
    /// Offset of the upper-layer header from `base`.
    public let upperLayerOffset: Int
    /// Offset of the fragment header from `base`, or 0 if there is none.
    public let fragmentHeaderOffset: Int

    /// Validates version 6 and 40 + payload length <= `count`, then walks the extension headers;
    /// nil if the header is truncated or the chain overruns the payload.
    @inlinable @inline(__always) public init?(_ base: UnsafeRawPointer, count: Int) {
        guard count >= IPv6Packet.headerLength, base.u8(0) >> 4 == 6 else { return nil }
        let end = IPv6Packet.headerLength &+ Int(base.be16(4))
        guard end <= count else { return nil }
        var next = base.u8(6)
        var offset = IPv6Packet.headerLength
        var fragment = 0
        walk: while true {
            switch next {
            case IPProtocol.hopByHop, IPProtocol.routing, IPProtocol.destinationOptions:
                guard end &- offset >= 8 else { return nil }
                let length = (Int(base.u8(offset &+ 1)) &+ 1) &* 8
                guard length <= end &- offset else { return nil }
                next = base.u8(offset)
                offset &+= length
            case IPProtocol.fragment:
                guard fragment == 0, end &- offset >= IPv6Packet.fragmentHeaderLength else { return nil }
                fragment = offset
                next = base.u8(offset)
                offset &+= IPv6Packet.fragmentHeaderLength
                if base.be16(fragment &+ 2) & 0xfff8 != 0 { break walk }   // non-first fragment: data follows
            default:
                break walk
            }
        }
        self.base = base
        self.count = count
        self.upperLayerProtocol = next
        self.upperLayerOffset = offset
        self.fragmentHeaderOffset = fragment
    }

    /// The version field (always 6 in a valid view).
    @inlinable @inline(__always) public var version: UInt8 { base.u8(0) >> 4 }
    /// The traffic class (DSCP << 2 | ECN).
    @inlinable @inline(__always) public var trafficClass: UInt8 { UInt8(truncatingIfNeeded: base.be32(0) >> 20) }
    /// The 20-bit flow label.
    @inlinable @inline(__always) public var flowLabel: UInt32 { base.be32(0) & 0x000f_ffff }
    /// The payload length field (extension headers and upper-layer data).
    @inlinable @inline(__always) public var payloadLength: Int { Int(base.be16(4)) }
    /// The next-header field of the fixed header.
    @inlinable @inline(__always) public var nextHeader: UInt8 { base.u8(6) }
    /// The hop limit.
    @inlinable @inline(__always) public var hopLimit: UInt8 { base.u8(7) }
    /// The source address.
    @inlinable @inline(__always) public var source: IPv6Address { IPv6Address(at: base, offset: 8) }
    /// The destination address.
    @inlinable @inline(__always) public var destination: IPv6Address { IPv6Address(at: base, offset: 24) }
    /// Start of the payload (first extension header or the upper-layer header).
    @inlinable @inline(__always) public var payload: UnsafeRawPointer { base + IPv6Packet.headerLength }
    /// Length of the payload (the payload length field).
    @inlinable @inline(__always) public var payloadCount: Int { Int(base.be16(4)) }
    /// Start of the upper-layer header.
    @inlinable @inline(__always) public var upperLayer: UnsafeRawPointer { base + upperLayerOffset }
    /// Length of the upper-layer header and data (to the end of the payload).
    @inlinable @inline(__always) public var upperLayerCount: Int {
        IPv6Packet.headerLength &+ Int(base.be16(4)) &- upperLayerOffset
    }
    /// True if a fragment header is present (even an atomic one with offset 0 and M clear).
    @inlinable @inline(__always) public var hasFragmentHeader: Bool { fragmentHeaderOffset != 0 }
    /// True if this is a fragment (fragment header with M set or offset non-zero).
    @inlinable @inline(__always) public var isFragment: Bool {
        fragmentHeaderOffset != 0 && base.be16(fragmentHeaderOffset &+ 2) & 0xfff9 != 0
    }
    /// Fragment offset in 8-byte units (0 without a fragment header).
    @inlinable @inline(__always) public var fragmentOffset: UInt16 {
        fragmentHeaderOffset == 0 ? 0 : base.be16(fragmentHeaderOffset &+ 2) >> 3
    }
    /// True if the fragment header's M (more fragments) flag is set.
    @inlinable @inline(__always) public var moreFragments: Bool {
        fragmentHeaderOffset != 0 && base.be16(fragmentHeaderOffset &+ 2) & 1 != 0
    }
    /// The fragment identification (0 without a fragment header).
    @inlinable @inline(__always) public var fragmentIdentification: UInt32 {
        fragmentHeaderOffset == 0 ? 0 : base.be32(fragmentHeaderOffset &+ 4)
    }

    /// Writes a 40-byte header at `p` for `payloadLength` bytes of payload; returns 40.
    @inlinable @inline(__always) @discardableResult
    public static func write(to p: UnsafeMutableRawPointer, source: IPv6Address, destination: IPv6Address,
                             nextHeader: UInt8, payloadLength: Int, hopLimit: UInt8 = 255,
                             flowLabel: UInt32 = 0, trafficClass: UInt8 = 0) -> Int {
        p.setBE32(0, 6 << 28 | UInt32(trafficClass) << 20 | (flowLabel & 0x000f_ffff))
        p.setBE16(4, UInt16(truncatingIfNeeded: payloadLength))
        p.setU8(6, nextHeader)
        p.setU8(7, hopLimit)
        source.store(to: p, offset: 8)
        destination.store(to: p, offset: 24)
        return headerLength
    }
}
