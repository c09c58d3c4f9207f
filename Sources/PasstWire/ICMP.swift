// ICMP (RFC 792) and ICMPv6 (RFC 4443) generic headers and echo request/reply, views and builders.
//
// Theory of operation: passt relays only echo requests (guest -> host ping socket) and echo
// replies (host -> guest); every ICMP message starts with type, code and checksum, so one view per
// family checks those 4 bytes and classifies, and a shared `ICMPEcho` view reads the echo fields
// (identifier, sequence number, data), which have the same layout in both families. The ICMPv4
// checksum covers the message only; the ICMPv6 checksum also covers the IPv6 pseudo header
// (RFC 8200 §8.1, next header 58). Builders write the echo header with checksum 0; the checksum is
// filled once the data follows the header. NDP messages (ICMPv6 133-137) live in NDP.swift.
//
//     0                   1                   2                   3
//     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |     Type      |     Code      |          Checksum             |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |           Identifier          |        Sequence Number        |  (echo; other types:
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+   type-specific body)
//    |                            Data ...                           |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

/// ICMPv4 message types passt meets.
public enum ICMPv4Type {
    /// Echo reply.
    public static let echoReply: UInt8 = 0
    /// Destination unreachable.
    public static let destinationUnreachable: UInt8 = 3
    /// Echo request.
    public static let echoRequest: UInt8 = 8
    /// Time exceeded.
    public static let timeExceeded: UInt8 = 11
}

/// ICMPv6 message types passt meets.
public enum ICMPv6Type {
    /// Destination unreachable.
    public static let destinationUnreachable: UInt8 = 1
    /// Packet too big.
    public static let packetTooBig: UInt8 = 2
    /// Time exceeded.
    public static let timeExceeded: UInt8 = 3
    /// Echo request.
    public static let echoRequest: UInt8 = 128
    /// Echo reply.
    public static let echoReply: UInt8 = 129
    /// NDP router solicitation.
    public static let routerSolicitation: UInt8 = 133
    /// NDP router advertisement.
    public static let routerAdvertisement: UInt8 = 134
    /// NDP neighbour solicitation.
    public static let neighborSolicitation: UInt8 = 135
    /// NDP neighbour advertisement.
    public static let neighborAdvertisement: UInt8 = 136
}

/// View of an ICMPv4 message: type, code, checksum and body.
public struct ICMPv4Packet: WireView {
    /// Length of the generic header (type, code, checksum).
    public static let headerLength = 4

    /// Start of the message.
    public let base: UnsafeRawPointer
    /// Length of the message (the IPv4 payload).
    public let count: Int

    /// Validates that the 4-byte generic header is present; nil otherwise.
    @inlinable @inline(__always) public init?(_ base: UnsafeRawPointer, count: Int) {
        guard count >= ICMPv4Packet.headerLength else { return nil }
        self.base = base
        self.count = count
    }

    /// The message type (see `ICMPv4Type`).
    @inlinable @inline(__always) public var type: UInt8 { base.u8(0) }
    /// The message code.
    @inlinable @inline(__always) public var code: UInt8 { base.u8(1) }
    /// The checksum as stored.
    @inlinable @inline(__always) public var checksum: UInt16 { base.be16(2) }
    /// Start of the type-specific body (after the 4-byte header).
    @inlinable @inline(__always) public var body: UnsafeRawPointer { base + ICMPv4Packet.headerLength }
    /// Length of the body.
    @inlinable @inline(__always) public var bodyCount: Int { count &- ICMPv4Packet.headerLength }
    /// True if the checksum over the whole message is correct.
    @inlinable @inline(__always) public var isChecksumValid: Bool { Checksum.fold(Checksum.sum(base, count: count)) == 0xffff }
    /// The echo view if this is an echo request or reply with a complete echo header, else nil.
    @inlinable @inline(__always) public var echo: ICMPEcho? {
        type == ICMPv4Type.echoRequest || type == ICMPv4Type.echoReply ? ICMPEcho(base, count: count) : nil
    }

    /// Computes and stores the checksum of the ICMPv4 message `p[0..<count]`.
    @inlinable @inline(__always) public static func fillChecksum(_ p: UnsafeMutableRawPointer, count: Int) {
        p.setBE16(2, 0)
        p.setBE16(2, Checksum.internet(UnsafeRawPointer(p), count: count))
    }
}

/// View of an ICMPv6 message: type, code, checksum and body.
public struct ICMPv6Packet: WireView {
    /// Length of the generic header (type, code, checksum).
    public static let headerLength = 4

    /// Start of the message.
    public let base: UnsafeRawPointer
    /// Length of the message (the upper-layer payload of the IPv6 packet).
    public let count: Int

    /// Validates that the 4-byte generic header is present; nil otherwise.
    @inlinable @inline(__always) public init?(_ base: UnsafeRawPointer, count: Int) {
        guard count >= ICMPv6Packet.headerLength else { return nil }
        self.base = base
        self.count = count
    }

    /// The message type (see `ICMPv6Type`).
    @inlinable @inline(__always) public var type: UInt8 { base.u8(0) }
    /// The message code.
    @inlinable @inline(__always) public var code: UInt8 { base.u8(1) }
    /// The checksum as stored.
    @inlinable @inline(__always) public var checksum: UInt16 { base.be16(2) }
    /// Start of the type-specific body (after the 4-byte header).
    @inlinable @inline(__always) public var body: UnsafeRawPointer { base + ICMPv6Packet.headerLength }
    /// Length of the body.
    @inlinable @inline(__always) public var bodyCount: Int { count &- ICMPv6Packet.headerLength }
    /// The echo view if this is an echo request or reply with a complete echo header, else nil.
    @inlinable @inline(__always) public var echo: ICMPEcho? {
        type == ICMPv6Type.echoRequest || type == ICMPv6Type.echoReply ? ICMPEcho(base, count: count) : nil
    }

    /// True if the checksum over the IPv6 pseudo header and the whole message is correct.
    @inlinable @inline(__always) public func isChecksumValid(source: IPv6Address, destination: IPv6Address) -> Bool {
        let pseudo = Checksum.pseudoHeader(source: source, destination: destination, nextHeader: IPProtocol.icmpv6, length: count)
        return Checksum.fold(Checksum.sum(base, count: count, initial: pseudo)) == 0xffff
    }

    /// Computes and stores the checksum of the ICMPv6 message `p[0..<count]` over the IPv6 pseudo header.
    @inlinable @inline(__always)
    public static func fillChecksum(_ p: UnsafeMutableRawPointer, count: Int, source: IPv6Address, destination: IPv6Address) {
        p.setBE16(2, 0)
        let pseudo = Checksum.pseudoHeader(source: source, destination: destination, nextHeader: IPProtocol.icmpv6, length: count)
        p.setBE16(2, Checksum.internet(UnsafeRawPointer(p), count: count, initial: pseudo))
    }
}

/// View of an ICMP or ICMPv6 echo request/reply (same layout in both families).
public struct ICMPEcho: WireView {
    /// Length of the echo header (type, code, checksum, identifier, sequence number).
    public static let headerLength = 8

    /// Start of the message.
    public let base: UnsafeRawPointer
    /// Length of the message.
    public let count: Int

    /// Validates that the 8-byte echo header is present (the type is not checked); nil otherwise.
    @inlinable @inline(__always) public init?(_ base: UnsafeRawPointer, count: Int) {
        guard count >= ICMPEcho.headerLength else { return nil }
        self.base = base
        self.count = count
    }

    /// The message type (echo request or reply of the family).
    @inlinable @inline(__always) public var type: UInt8 { base.u8(0) }
    /// The message code (0 for echo).
    @inlinable @inline(__always) public var code: UInt8 { base.u8(1) }
    /// The checksum as stored.
    @inlinable @inline(__always) public var checksum: UInt16 { base.be16(2) }
    /// The echo identifier.
    @inlinable @inline(__always) public var identifier: UInt16 { base.be16(4) }
    /// The echo sequence number.
    @inlinable @inline(__always) public var sequenceNumber: UInt16 { base.be16(6) }
    /// Start of the echo data.
    @inlinable @inline(__always) public var data: UnsafeRawPointer { base + ICMPEcho.headerLength }
    /// Length of the echo data.
    @inlinable @inline(__always) public var dataCount: Int { count &- ICMPEcho.headerLength }

    /// Writes an 8-byte echo header at `p` with checksum 0 (fill it with the family's
    /// `fillChecksum` once the data follows); returns 8.
    @inlinable @inline(__always) @discardableResult
    public static func write(to p: UnsafeMutableRawPointer, type: UInt8, code: UInt8 = 0,
                             identifier: UInt16, sequenceNumber: UInt16) -> Int {
        p.setU8(0, type)
        p.setU8(1, code)
        p.setBE16(2, 0)
        p.setBE16(4, identifier)
        p.setBE16(6, sequenceNumber)
        return headerLength
    }
}
