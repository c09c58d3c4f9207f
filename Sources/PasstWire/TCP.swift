// TCP header (RFC 9293) and options (MSS, window scale RFC 7323, SACK-permitted RFC 2018,
// timestamps RFC 7323), view, options parser and builder.
//
// Theory of operation: `TCPSegment` is a view over the IP payload (the caller passes the IP
// payload length, so link padding is already cut off). Its initialiser checks the fixed header and
// that the data offset is at least 5 words and inside the segment; after that header fields,
// options and payload are reachable without checks. passt does not run a TCP stack: it reads the
// guest's sequence/ACK/window and the MSS and window-scale options of SYNs, and it builds segments
// towards the guest. Options are parsed on demand by `TCPOptions(parsing:count:)`, a single pass
// that records the options passt cares about, skips unknown kinds by their length and stops on a
// malformed length (0, 1, or past the end), flagging it, without reading outside the options.
// The builder writes the header and, for SYNs, the options as upstream passt sends them: MSS (kind
// 2, 4 bytes), then NOP and window scale (kind 3, 3 bytes). The checksum covers the IPv4 or IPv6
// pseudo header, the header and the payload, which must already follow the header in memory; a
// partial checksum (for checksum offload) is the pseudo-header sum alone.
//
//     0                   1                   2                   3
//     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |          Source Port          |       Destination Port        |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                        Sequence Number                        |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                    Acknowledgment Number                      |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |  Data |       |C|E|U|A|P|R|S|F|                               |
//    | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//    |       |       |R|E|G|K|H|T|N|N|                               |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |           Checksum            |         Urgent Pointer        |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |              Options (data offset > 5) ...                    |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//    Options: kind 0 EOL (1 byte), kind 1 NOP (1 byte), else kind, length (>= 2, counts both),
//    data: 2 MSS len 4 | 3 window scale len 3 | 4 SACK-permitted len 2 | 8 timestamps len 10.

/// TCP header flags (byte 13 of the header).
public struct TCPFlags: OptionSet, Hashable, Sendable {
    /// The flags byte as on the wire.
    public let rawValue: UInt8
    /// Creates flags from the raw byte.
    @inlinable @inline(__always) public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// No more data from sender.
    public static let fin = TCPFlags(rawValue: 0x01)
    /// Synchronise sequence numbers.
    public static let syn = TCPFlags(rawValue: 0x02)
    /// Reset the connection.
    public static let rst = TCPFlags(rawValue: 0x04)
    /// Push function.
    public static let psh = TCPFlags(rawValue: 0x08)
    /// Acknowledgment field significant.
    public static let ack = TCPFlags(rawValue: 0x10)
    /// Urgent pointer field significant.
    public static let urg = TCPFlags(rawValue: 0x20)
    /// ECN echo.
    public static let ece = TCPFlags(rawValue: 0x40)
    /// Congestion window reduced.
    public static let cwr = TCPFlags(rawValue: 0x80)
    /// Combinations used per segment, as constants: an array literal of an option set allocates
    /// in unoptimised builds, which the allocation tests run.
    public static let synAck = TCPFlags(rawValue: 0x12)
    public static let finAck = TCPFlags(rawValue: 0x11)
    public static let rstAck = TCPFlags(rawValue: 0x14)
    /// The flags that take a sequence number.
    public static let synOrFin = TCPFlags(rawValue: 0x03)
    /// What a connection-opening SYN must not carry.
    public static let ackRstFin = TCPFlags(rawValue: 0x15)
}

/// TCP option kinds.
public enum TCPOptionKind {
    /// End of option list.
    public static let endOfList: UInt8 = 0
    /// No operation (padding).
    public static let noOperation: UInt8 = 1
    /// Maximum segment size (length 4).
    public static let maximumSegmentSize: UInt8 = 2
    /// Window scale (length 3).
    public static let windowScale: UInt8 = 3
    /// SACK permitted (length 2).
    public static let sackPermitted: UInt8 = 4
    /// SACK blocks (length 2 + 8n).
    public static let sack: UInt8 = 5
    /// Timestamps (length 10).
    public static let timestamps: UInt8 = 8
}

/// The TCP options passt cares about, parsed from an options area in one pass.
public struct TCPOptions: Equatable, Sendable {
    /// Maximum segment size, if an MSS option of length 4 was present.
    public var mss: UInt16? = nil
    /// Window scale shift count as sent (not clamped), if present with length 3.
    public var windowScale: UInt8? = nil
    /// True if SACK-permitted (length 2) was present.
    public var sackPermitted: Bool = false
    /// Timestamp value TSval, if a timestamps option of length 10 was present.
    public var timestampValue: UInt32? = nil
    /// Timestamp echo reply TSecr, if a timestamps option of length 10 was present.
    public var timestampEcho: UInt32? = nil
    /// Number of options skipped by their length (unknown kinds, SACK blocks, known kinds of wrong length).
    public var skippedCount: Int = 0
    /// True if parsing stopped at a malformed length (0, 1 or running past the end).
    public var isMalformed: Bool = false

    /// An empty option set.
    @inlinable public init() {}

    /// Parses the options in `p[0..<count]`; never reads outside that range.
    @inlinable public init(parsing p: UnsafeRawPointer, count: Int) {
        var i = 0
        while i < count {
            let kind = p.u8(i)
            if kind == TCPOptionKind.endOfList { break }
            if kind == TCPOptionKind.noOperation { i &+= 1; continue }
            guard count &- i >= 2 else { isMalformed = true; break }
            let length = Int(p.u8(i &+ 1))
            guard length >= 2, length <= count &- i else { isMalformed = true; break }
            switch (kind, length) {
            case (TCPOptionKind.maximumSegmentSize, 4): mss = p.be16(i &+ 2)
            case (TCPOptionKind.windowScale, 3): windowScale = p.u8(i &+ 2)
            case (TCPOptionKind.sackPermitted, 2): sackPermitted = true
            case (TCPOptionKind.timestamps, 10):
                timestampValue = p.be32(i &+ 2)
                timestampEcho = p.be32(i &+ 6)
            default: skippedCount &+= 1
            }
            i &+= length
        }
    }
}

/// View of a TCP segment: header, options and payload.
public struct TCPSegment: WireView {
    /// Length of the header without options.
    public static let minimumHeaderLength = 20

    /// Start of the TCP header.
    public let base: UnsafeRawPointer
    /// Length of the segment (header, options and payload).
    public let count: Int

    /// Validates count >= 20 and 5 <= data offset, data offset * 4 <= `count`; nil otherwise.
    @inlinable @inline(__always) public init?(_ base: UnsafeRawPointer, count: Int) {
        guard count >= TCPSegment.minimumHeaderLength else { return nil }
        let length = Int(base.u8(12) >> 4) &* 4
        guard length >= TCPSegment.minimumHeaderLength, length <= count else { return nil }
        self.base = base
        self.count = count
    }

    /// The source port.
    @inlinable @inline(__always) public var sourcePort: UInt16 { base.be16(0) }
    /// The destination port.
    @inlinable @inline(__always) public var destinationPort: UInt16 { base.be16(2) }
    /// The sequence number.
    @inlinable @inline(__always) public var sequenceNumber: UInt32 { base.be32(4) }
    /// The acknowledgment number.
    @inlinable @inline(__always) public var acknowledgmentNumber: UInt32 { base.be32(8) }
    /// The data offset in 32-bit words (5...15).
    @inlinable @inline(__always) public var dataOffset: UInt8 { base.u8(12) >> 4 }
    /// Header length in bytes (data offset * 4).
    @inlinable @inline(__always) public var headerLength: Int { Int(base.u8(12) >> 4) &* 4 }
    /// The flags byte.
    @inlinable @inline(__always) public var flags: TCPFlags { TCPFlags(rawValue: base.u8(13)) }
    /// The (unscaled) receive window.
    @inlinable @inline(__always) public var window: UInt16 { base.be16(14) }
    /// The checksum as stored.
    @inlinable @inline(__always) public var checksum: UInt16 { base.be16(16) }
    /// The urgent pointer.
    @inlinable @inline(__always) public var urgentPointer: UInt16 { base.be16(18) }
    /// Start of the options area.
    @inlinable @inline(__always) public var optionsArea: UnsafeRawPointer { base + TCPSegment.minimumHeaderLength }
    /// Length of the options area in bytes (0...40).
    @inlinable @inline(__always) public var optionsCount: Int { headerLength &- TCPSegment.minimumHeaderLength }
    /// The options, parsed (one pass over the options area).
    @inlinable @inline(__always) public var options: TCPOptions { TCPOptions(parsing: optionsArea, count: optionsCount) }
    /// Offset of the payload from `base` (the header length).
    @inlinable @inline(__always) public var payloadOffset: Int { headerLength }
    /// Start of the payload.
    @inlinable @inline(__always) public var payload: UnsafeRawPointer { base + headerLength }
    /// Length of the payload.
    @inlinable @inline(__always) public var payloadCount: Int { count &- headerLength }

    /// True if the checksum over the IPv4 pseudo header and the whole segment is correct.
    @inlinable @inline(__always) public func isChecksumValid(source: IPv4Address, destination: IPv4Address) -> Bool {
        let pseudo = Checksum.pseudoHeader(source: source, destination: destination, protocol: IPProtocol.tcp, length: count)
        return Checksum.fold(Checksum.sum(base, count: count, initial: pseudo)) == 0xffff
    }

    /// True if the checksum over the IPv6 pseudo header and the whole segment is correct.
    @inlinable @inline(__always) public func isChecksumValid(source: IPv6Address, destination: IPv6Address) -> Bool {
        let pseudo = Checksum.pseudoHeader(source: source, destination: destination, nextHeader: IPProtocol.tcp, length: count)
        return Checksum.fold(Checksum.sum(base, count: count, initial: pseudo)) == 0xffff
    }

    /// Length of the header `write` produces for these options (20, 24 with MSS, +4 with window scale).
    @inlinable @inline(__always) public static func headerLength(mss: UInt16?, windowScale: UInt8?) -> Int {
        minimumHeaderLength &+ (mss == nil ? 0 : 4) &+ (windowScale == nil ? 0 : 4)
    }

    /// Writes a TCP header at `p` with checksum 0 and, if given, the options MSS then NOP + window
    /// scale (upstream's SYN layout); returns the header length.
    @inlinable @inline(__always) @discardableResult
    public static func write(to p: UnsafeMutableRawPointer, sourcePort: UInt16, destinationPort: UInt16,
                             sequenceNumber: UInt32, acknowledgmentNumber: UInt32, flags: TCPFlags,
                             window: UInt16, urgentPointer: UInt16 = 0,
                             mss: UInt16? = nil, windowScale: UInt8? = nil) -> Int {
        var length = minimumHeaderLength
        if let mss {
            p.setU8(length, TCPOptionKind.maximumSegmentSize)
            p.setU8(length &+ 1, 4)
            p.setBE16(length &+ 2, mss)
            length &+= 4
        }
        if let windowScale {
            p.setU8(length, TCPOptionKind.noOperation)
            p.setU8(length &+ 1, TCPOptionKind.windowScale)
            p.setU8(length &+ 2, 3)
            p.setU8(length &+ 3, windowScale)
            length &+= 4
        }
        p.setBE16(0, sourcePort)
        p.setBE16(2, destinationPort)
        p.setBE32(4, sequenceNumber)
        p.setBE32(8, acknowledgmentNumber)
        p.setU8(12, UInt8(truncatingIfNeeded: length >> 2) << 4)
        p.setU8(13, flags.rawValue)
        p.setBE16(14, window)
        p.setBE16(16, 0)
        p.setBE16(18, urgentPointer)
        return length
    }

    /// Computes and stores the checksum of the segment `p[0..<count]` (header, options, payload)
    /// given the unfolded pseudo-header sum.
    @inlinable @inline(__always)
    public static func fillChecksum(_ p: UnsafeMutableRawPointer, count: Int, pseudoHeaderSum: UInt64) {
        p.setBE16(16, 0)
        p.setBE16(16, Checksum.internet(UnsafeRawPointer(p), count: count, initial: pseudoHeaderSum))
    }

    /// Computes and stores the checksum of the segment `p[0..<count]` over the IPv4 pseudo header.
    @inlinable @inline(__always)
    public static func fillChecksum(_ p: UnsafeMutableRawPointer, count: Int, source: IPv4Address, destination: IPv4Address) {
        fillChecksum(p, count: count, pseudoHeaderSum: Checksum.pseudoHeader(
            source: source, destination: destination, protocol: IPProtocol.tcp, length: count))
    }

    /// Computes and stores the checksum of the segment `p[0..<count]` over the IPv6 pseudo header.
    @inlinable @inline(__always)
    public static func fillChecksum(_ p: UnsafeMutableRawPointer, count: Int, source: IPv6Address, destination: IPv6Address) {
        fillChecksum(p, count: count, pseudoHeaderSum: Checksum.pseudoHeader(
            source: source, destination: destination, nextHeader: IPProtocol.tcp, length: count))
    }

    /// Stores the partial checksum of a `count`-byte segment at `p` over the IPv4 pseudo header:
    /// the folded pseudo-header sum, uncomplemented, for whoever completes it (the kernel, from a
    /// virtio-net header's NEEDS_CSUM, or `VirtioNetHeader.completeChecksum`).
    @inlinable @inline(__always)
    public static func fillPartialChecksum(_ p: UnsafeMutableRawPointer, count: Int, source: IPv4Address,
                                           destination: IPv4Address) {
        p.setBE16(16, Checksum.fold(Checksum.pseudoHeader(source: source, destination: destination,
                                                          protocol: IPProtocol.tcp, length: count)))
    }

    /// Stores the partial checksum of a `count`-byte segment at `p` over the IPv6 pseudo header
    /// (see the IPv4 variant).
    @inlinable @inline(__always)
    public static func fillPartialChecksum(_ p: UnsafeMutableRawPointer, count: Int, source: IPv6Address,
                                           destination: IPv6Address) {
        p.setBE16(16, Checksum.fold(Checksum.pseudoHeader(source: source, destination: destination,
                                                          nextHeader: IPProtocol.tcp, length: count)))
    }
}
