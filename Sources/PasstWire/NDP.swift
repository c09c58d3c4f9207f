// Neighbor Discovery (RFC 4861) messages and options: views and builders.
//
// Theory of operation: the four NDP messages passt deals with are ICMPv6 messages; every view here
// starts at the ICMPv6 header (the IPv6 header and any extension headers are someone else's job)
// and covers exactly the ICMPv6 message (IPv6 payload length). All share the ICMPv6 header
//
//      0                   1                   2                   3
//      0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//     |     Type      |     Code      |          Checksum             |
//     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// followed by a fixed part and then options:
//
//     Router Solicitation (133)        | Reserved (4)                                  | options
//     Router Advertisement (134)       | Cur Hop Limit |M|O|H|Prf|Rsv| Router Lifetime |
//                                      | Reachable Time (4)  | Retrans Timer (4)       | options
//     Neighbor Solicitation (135)      | Reserved (4)  | Target Address (16)           | options
//     Neighbor Advertisement (136)     |R|S|O| Reserved (29 bits) | Target Address (16)| options
//
// Options are type-length-value with the length in units of 8 bytes, header included:
//
//     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//     |     Type      |    Length     |              ...              |
//     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//     1/2  Source/Target Link-Layer Address: | 1 | 1 | MAC (6) |
//     3    Prefix Information: | 3 | 4 | Prefix Len |L|A| Rsv | Valid Lifetime (4) |
//                              Preferred Lifetime (4) | Reserved (4) | Prefix (16) |
//     5    MTU: | 5 | 1 | Reserved (2) | MTU (4) |
//     25   RDNSS (RFC 8106): | 25 | 1+2n | Reserved (2) | Lifetime (4) | n addresses (16 each) |
//     31   DNSSL (RFC 8106): | 31 | len | Reserved (2) | Lifetime (4) | names, uncompressed,
//                              zero-padded to a multiple of 8 bytes |
//
// Each message view's failable initialiser checks, once, what RFC 4861 §6.1 / §7.1.1 ask of a
// receiver that can be checked without the IP header: the type, code 0, the fixed part present,
// and an option area made of whole options of non-zero length (a zero-length option would make a
// naive walk loop forever; the RFC says to drop such messages). Hop limit 255 and the checksum
// need the IPv6 header and are left to the caller (`NDP.isChecksumValid`). Field reads after that
// are unchecked. `NDPOptions` is an independent, always bounds-checked iterator: it stops at a
// zero length or an option that would run past the end, so it is safe even on unvalidated bytes.
//
// Builders write a message into caller memory and return its length, or nil when it does not fit
// the given capacity; they leave the checksum zero, to be filled by `NDP.fillChecksum` once the IPv6
// source and destination are known. Option values are passed as `NDPOptionValue`s (control-rate
// traffic: one RA per RS or timer tick); Neighbor Advertisement, sent once per solicitation, takes
// its single target link-layer address directly and allocates nothing.

/// NDP constants and the ICMPv6 checksum helpers.
public enum NDP {
    /// ICMPv6 type of a Router Solicitation.
    public static let routerSolicitationType: UInt8 = 133
    /// ICMPv6 type of a Router Advertisement.
    public static let routerAdvertisementType: UInt8 = 134
    /// ICMPv6 type of a Neighbor Solicitation.
    public static let neighborSolicitationType: UInt8 = 135
    /// ICMPv6 type of a Neighbor Advertisement.
    public static let neighborAdvertisementType: UInt8 = 136
    /// IPv6 next-header value of ICMPv6, for the pseudo header.
    public static let icmpv6NextHeader: UInt8 = 58
    /// IPv6 hop limit every NDP message must carry (RFC 4861 §6.1.1, §7.1.1).
    public static let hopLimit: UInt8 = 255
    /// Lifetime value meaning "infinity" in prefix, RDNSS and DNSSL options.
    public static let infiniteLifetime: UInt32 = 0xffff_ffff

    /// The ICMPv6 checksum of `message[0..<count]` with its checksum field taken as zero (0 if count < 4).
    public static func checksum(_ message: UnsafeRawPointer, count: Int,
                                source: IPv6Address, destination: IPv6Address) -> UInt16 {
        guard count >= 4 else { return 0 }
        let pseudo = Checksum.pseudoHeader(source: source, destination: destination,
                                           nextHeader: icmpv6NextHeader, length: count)
        let head = Checksum.sum(message, count: 2, initial: pseudo)          // type and code
        return ~Checksum.fold(Checksum.sum(message + 4, count: count &- 4, initial: head))
    }

    /// Computes and stores the ICMPv6 checksum of `message[0..<count]` (count >= 4).
    public static func fillChecksum(_ message: UnsafeMutableRawPointer, count: Int,
                                   source: IPv6Address, destination: IPv6Address) {
        guard count >= 4 else { return }
        message.setBE16(2, 0)
        let pseudo = Checksum.pseudoHeader(source: source, destination: destination,
                                           nextHeader: icmpv6NextHeader, length: count)
        message.setBE16(2, Checksum.internet(UnsafeRawPointer(message), count: count, initial: pseudo))
    }

    /// Whether the ICMPv6 checksum stored in `message[0..<count]` is correct for these addresses.
    public static func isChecksumValid(_ message: UnsafeRawPointer, count: Int,
                                       source: IPv6Address, destination: IPv6Address) -> Bool {
        guard count >= 4 else { return false }
        let pseudo = Checksum.pseudoHeader(source: source, destination: destination,
                                           nextHeader: icmpv6NextHeader, length: count)
        return Checksum.fold(Checksum.sum(message, count: count, initial: pseudo)) == 0xffff
    }

    /// Checks type, code 0, minimum length and a well-formed option area (shared by the views).
    @inline(__always)
    static func validate(_ base: UnsafeRawPointer, count: Int, type: UInt8, fixedLength: Int) -> Bool {
        guard count >= fixedLength, base.u8(0) == type, base.u8(1) == 0 else { return false }
        return NDPOptions(base + fixedLength, count: count &- fixedLength).isWellFormed
    }

    /// Writes the ICMPv6 type, zero code and zero checksum.
    @inline(__always)
    static func writeHeader(_ buffer: UnsafeMutableRawPointer, type: UInt8) {
        buffer.setU8(0, type); buffer.setU8(1, 0); buffer.setBE16(2, 0)
    }

    /// Writes a link-layer address option of `type` at `offset`; returns its length (8).
    @inline(__always)
    static func writeLinkLayerOption(_ buffer: UnsafeMutableRawPointer, at offset: Int, type: UInt8,
                                     address: MACAddress) -> Int {
        buffer.setU8(offset, type)
        buffer.setU8(offset &+ 1, 1)
        address.store(to: buffer, offset: offset &+ 2)
        return 8
    }

    /// Writes `options` in order starting at `offset`; returns the new end offset, or nil if they do
    /// not fit in `capacity` or one cannot be encoded.
    static func writeOptions(_ options: [NDPOptionValue], to buffer: UnsafeMutableRawPointer,
                             at offset: Int, capacity: Int) -> Int? {
        var end = offset
        for option in options {
            guard let n = option.write(to: buffer + end, capacity: capacity &- end) else { return nil }
            end &+= n
        }
        return end
    }
}

/// NDP option type numbers.
public enum NDPOptionType {
    /// Source Link-Layer Address (RFC 4861 §4.6.1).
    public static let sourceLinkLayerAddress: UInt8 = 1
    /// Target Link-Layer Address (RFC 4861 §4.6.1).
    public static let targetLinkLayerAddress: UInt8 = 2
    /// Prefix Information (RFC 4861 §4.6.2).
    public static let prefixInformation: UInt8 = 3
    /// MTU (RFC 4861 §4.6.4).
    public static let mtu: UInt8 = 5
    /// Recursive DNS Server (RFC 8106 §5.1).
    public static let recursiveDNSServers: UInt8 = 25
    /// DNS Search List (RFC 8106 §5.2).
    public static let dnsSearchList: UInt8 = 31
}

// MARK: - Options: iterator and typed views

/// One NDP option inside a message: `base` points at its type byte, `byteCount` = length * 8.
public struct NDPOption {
    /// First byte of the option (its type).
    public let base: UnsafeRawPointer
    /// Total option length in bytes, header included (>= 8).
    public let byteCount: Int

    /// Wraps an option whose `byteCount` bytes have been checked to be inside the message.
    @inline(__always) init(base: UnsafeRawPointer, byteCount: Int) {
        self.base = base; self.byteCount = byteCount
    }

    /// The option type.
    @inline(__always) public var type: UInt8 { base.u8(0) }
    /// The option length in units of 8 bytes.
    @inline(__always) public var lengthUnits: UInt8 { base.u8(1) }

    /// The MAC address of a source/target link-layer address option (Ethernet: exactly 8 bytes).
    public var linkLayerAddress: MACAddress? {
        guard type == NDPOptionType.sourceLinkLayerAddress || type == NDPOptionType.targetLinkLayerAddress,
              byteCount == 8 else { return nil }
        return MACAddress(at: base, offset: 2)
    }

    /// The value of an MTU option.
    public var mtu: UInt32? {
        guard type == NDPOptionType.mtu, byteCount == 8 else { return nil }
        return base.be32(4)
    }

    /// This option as a Prefix Information option, if it is one of the right length.
    public var prefixInformation: NDPPrefixInformation? { NDPPrefixInformation(self) }
    /// This option as an RDNSS option, if it is one of a valid length.
    public var recursiveDNSServers: NDPRecursiveDNSServers? { NDPRecursiveDNSServers(self) }
    /// This option as a DNSSL option, if it is one of a valid length.
    public var dnsSearchList: NDPDNSSearchList? { NDPDNSSearchList(self) }
}

/// Iterates the options of `base[0..<count]`; stops at a zero length or at an option running past
/// the end, and never reads outside the range.
public struct NDPOptions: Sequence, IteratorProtocol {
    /// Start of the option area.
    public let base: UnsafeRawPointer
    /// Bytes in the option area.
    public let count: Int
    /// Offset of the next option to return.
    private var offset = 0

    /// Creates an iterator over the option area `base[0..<count]`.
    @inline(__always) public init(_ base: UnsafeRawPointer, count: Int) {
        self.base = base; self.count = Swift.max(0, count)
    }

    /// The next option, or nil at the end or at the first malformed option.
    public mutating func next() -> NDPOption? {
        guard count &- offset >= 2 else { offset = count; return nil }
        let length = Int(base.u8(offset &+ 1)) &* 8
        guard length > 0, length <= count &- offset else { offset = count; return nil }
        let option = NDPOption(base: base + offset, byteCount: length)
        offset &+= length
        return option
    }

    /// Whether the area is exactly a sequence of whole options, none of zero length.
    public var isWellFormed: Bool {
        var offset = 0
        while offset < count {
            guard count &- offset >= 2 else { return false }
            let length = Int(base.u8(offset &+ 1)) &* 8
            guard length > 0, length <= count &- offset else { return false }
            offset &+= length
        }
        return true
    }

    /// The first option of `type`, if any.
    public func first(type: UInt8) -> NDPOption? {
        var iterator = NDPOptions(base, count: count)
        while let option = iterator.next() {
            if option.type == type { return option }
        }
        return nil
    }
}

/// View of a Prefix Information option (type 3, 32 bytes).
public struct NDPPrefixInformation {
    /// First byte of the option.
    public let base: UnsafeRawPointer

    /// Accepts a type 3 option of length 4 (32 bytes).
    public init?(_ option: NDPOption) {
        guard option.type == NDPOptionType.prefixInformation, option.byteCount == 32 else { return nil }
        base = option.base
    }

    /// Number of leading valid bits of the prefix.
    public var prefixLength: UInt8 { base.u8(2) }
    /// Raw flags byte (L = 0x80, A = 0x40).
    public var flags: UInt8 { base.u8(3) }
    /// On-link flag (L).
    public var onLink: Bool { flags & 0x80 != 0 }
    /// Autonomous address-configuration flag (A).
    public var autonomous: Bool { flags & 0x40 != 0 }
    /// Valid lifetime in seconds (0xffffffff = infinity).
    public var validLifetime: UInt32 { base.be32(4) }
    /// Preferred lifetime in seconds (0xffffffff = infinity).
    public var preferredLifetime: UInt32 { base.be32(8) }
    /// The prefix field as sent (passt sends the full address, host bits not cleared).
    public var prefix: IPv6Address { IPv6Address(at: base, offset: 16) }
}

/// View of a Recursive DNS Server option (type 25, RFC 8106 §5.1).
public struct NDPRecursiveDNSServers {
    /// First byte of the option.
    public let base: UnsafeRawPointer
    /// Number of addresses carried.
    public let count: Int

    /// Accepts a type 25 option of at least 3 units (one address); a trailing odd unit is ignored.
    public init?(_ option: NDPOption) {
        guard option.type == NDPOptionType.recursiveDNSServers, option.byteCount >= 24 else { return nil }
        base = option.base
        count = (option.byteCount &- 8) / 16
    }

    /// Lifetime in seconds (0xffffffff = infinity).
    public var lifetime: UInt32 { base.be32(4) }
    /// The address at `index` (0..<count; not checked).
    @inline(__always) public func address(at index: Int) -> IPv6Address {
        IPv6Address(at: base, offset: 8 &+ 16 &* index)
    }
    /// All addresses (control path and tests).
    public var addresses: [IPv6Address] { (0..<count).map { address(at: $0) } }
}

/// View of a DNS Search List option (type 31, RFC 8106 §5.2).
public struct NDPDNSSearchList {
    /// First byte of the option.
    public let base: UnsafeRawPointer
    /// Total option length in bytes.
    public let byteCount: Int

    /// Accepts a type 31 option of at least 2 units.
    public init?(_ option: NDPOption) {
        guard option.type == NDPOptionType.dnsSearchList, option.byteCount >= 16 else { return nil }
        base = option.base
        byteCount = option.byteCount
    }

    /// Lifetime in seconds (0xffffffff = infinity).
    public var lifetime: UInt32 { base.be32(4) }
    /// The domain names (uncompressed, zero padding ignored); nil if one is malformed.
    public var domainNames: [String]? {
        DNSName.decodeList(base + 8, count: byteCount &- 8, allowCompression: false)
    }
}

/// An NDP option to emit (builders).
public enum NDPOptionValue: Sendable, Equatable {
    /// Source link-layer address (type 1).
    case sourceLinkLayerAddress(MACAddress)
    /// Target link-layer address (type 2).
    case targetLinkLayerAddress(MACAddress)
    /// Prefix information (type 3).
    case prefixInformation(prefix: IPv6Address, prefixLength: UInt8, onLink: Bool, autonomous: Bool,
                           validLifetime: UInt32, preferredLifetime: UInt32)
    /// MTU (type 5).
    case mtu(UInt32)
    /// Recursive DNS servers (type 25); left out if `addresses` is empty.
    case recursiveDNSServers(lifetime: UInt32, addresses: [IPv6Address])
    /// DNS search list (type 31), names uncompressed and zero-padded; invalid names are skipped and
    /// the option is left out if none remains.
    case dnsSearchList(lifetime: UInt32, domains: [String])

    /// Writes the option at `buffer`; returns its length (0 if left out), or nil if it does not fit
    /// in `capacity` bytes or is too long for an 8-bit length.
    public func write(to buffer: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        switch self {
        case .sourceLinkLayerAddress(let mac), .targetLinkLayerAddress(let mac):
            guard capacity >= 8 else { return nil }
            let type = if case .sourceLinkLayerAddress = self { NDPOptionType.sourceLinkLayerAddress }
                       else { NDPOptionType.targetLinkLayerAddress }
            return NDP.writeLinkLayerOption(buffer, at: 0, type: type, address: mac)
        case let .prefixInformation(prefix, prefixLength, onLink, autonomous, valid, preferred):
            guard capacity >= 32 else { return nil }
            buffer.setU8(0, NDPOptionType.prefixInformation)
            buffer.setU8(1, 4)
            buffer.setU8(2, prefixLength)
            buffer.setU8(3, (onLink ? 0x80 : 0) | (autonomous ? 0x40 : 0))
            buffer.setBE32(4, valid)
            buffer.setBE32(8, preferred)
            buffer.setBE32(12, 0)
            prefix.store(to: buffer, offset: 16)
            return 32
        case .mtu(let mtu):
            guard capacity >= 8 else { return nil }
            buffer.setU8(0, NDPOptionType.mtu)
            buffer.setU8(1, 1)
            buffer.setBE16(2, 0)
            buffer.setBE32(4, mtu)
            return 8
        case let .recursiveDNSServers(lifetime, addresses):
            if addresses.isEmpty { return 0 }
            let length = 8 + 16 * addresses.count
            guard length / 8 <= 255, capacity >= length else { return nil }
            buffer.setU8(0, NDPOptionType.recursiveDNSServers)
            buffer.setU8(1, UInt8(length / 8))
            buffer.setBE16(2, 0)
            buffer.setBE32(4, lifetime)
            for (i, address) in addresses.enumerated() { address.store(to: buffer, offset: 8 + 16 * i) }
            return length
        case let .dnsSearchList(lifetime, domains):
            let names = DNSName.encodeList(domains, compress: false)
            if names.isEmpty { return 0 }
            let length = (8 + names.count + 7) / 8 * 8
            guard length / 8 <= 255, capacity >= length else { return nil }
            buffer.setU8(0, NDPOptionType.dnsSearchList)
            buffer.setU8(1, UInt8(length / 8))
            buffer.setBE16(2, 0)
            buffer.setBE32(4, lifetime)
            names.withUnsafeBytes { buffer.advanced(by: 8).copyMemory(from: $0.baseAddress!, byteCount: names.count) }
            (buffer + 8 + names.count).initializeMemory(as: UInt8.self, repeating: 0, count: length - 8 - names.count)
            return length
        }
    }
}

// MARK: - Messages

/// What the four NDP message views share: the ICMPv6 checksum and the options after a fixed part.
public protocol NDPMessageView: WireView {
    /// First byte of the ICMPv6 header.
    var base: UnsafeRawPointer { get }
    /// Length of the ICMPv6 message.
    var count: Int { get }
    /// Bytes before the options.
    static var fixedLength: Int { get }
}

extension NDPMessageView {
    /// The stored ICMPv6 checksum.
    public var checksum: UInt16 { base.be16(2) }
    /// Whether the stored checksum is right for these IPv6 addresses.
    public func isChecksumValid(source: IPv6Address, destination: IPv6Address) -> Bool {
        NDP.isChecksumValid(base, count: count, source: source, destination: destination)
    }
    /// The options.
    public var options: NDPOptions { NDPOptions(base + Self.fixedLength, count: count &- Self.fixedLength) }
    /// The source link-layer address option's MAC, if present (absent in DAD probes and usually in NAs).
    public var sourceLinkLayerAddress: MACAddress? {
        options.first(type: NDPOptionType.sourceLinkLayerAddress)?.linkLayerAddress
    }
}

/// View of a Router Solicitation (ICMPv6 type 133), from the ICMPv6 header on.
public struct NDPRouterSolicitation: NDPMessageView {
    /// First byte of the ICMPv6 header.
    public let base: UnsafeRawPointer
    /// Length of the ICMPv6 message.
    public let count: Int
    /// Bytes before the options.
    public static let fixedLength = 8

    /// Validates type 133, code 0, length >= 8 and well-formed options.
    public init?(_ base: UnsafeRawPointer, count: Int) {
        guard NDP.validate(base, count: count, type: NDP.routerSolicitationType,
                           fixedLength: Self.fixedLength) else { return nil }
        self.base = base; self.count = count
    }


    /// Writes an RS, with a source link-layer address option if given; returns its length or nil
    /// if `capacity` is too small.
    public static func write(to buffer: UnsafeMutableRawPointer, capacity: Int,
                             sourceLinkLayerAddress: MACAddress?) -> Int? {
        let length = fixedLength + (sourceLinkLayerAddress == nil ? 0 : 8)
        guard capacity >= length else { return nil }
        NDP.writeHeader(buffer, type: NDP.routerSolicitationType)
        buffer.setBE32(4, 0)
        if let mac = sourceLinkLayerAddress {
            _ = NDP.writeLinkLayerOption(buffer, at: fixedLength, type: NDPOptionType.sourceLinkLayerAddress, address: mac)
        }
        return length
    }
}

/// View of a Router Advertisement (ICMPv6 type 134), from the ICMPv6 header on.
public struct NDPRouterAdvertisement: NDPMessageView {
    /// First byte of the ICMPv6 header.
    public let base: UnsafeRawPointer
    /// Length of the ICMPv6 message.
    public let count: Int
    /// Bytes before the options.
    public static let fixedLength = 16

    /// Validates type 134, code 0, length >= 16 and well-formed options.
    public init?(_ base: UnsafeRawPointer, count: Int) {
        guard NDP.validate(base, count: count, type: NDP.routerAdvertisementType,
                           fixedLength: Self.fixedLength) else { return nil }
        self.base = base; self.count = count
    }

    /// Hop limit hosts should use (0 = unspecified).
    public var currentHopLimit: UInt8 { base.u8(4) }
    /// Raw flags byte (M = 0x80, O = 0x40, H = 0x20, Prf = 0x18).
    public var flags: UInt8 { base.u8(5) }
    /// Managed address configuration flag (M): addresses via DHCPv6.
    public var managed: Bool { flags & 0x80 != 0 }
    /// Other configuration flag (O): other settings via DHCPv6.
    public var other: Bool { flags & 0x40 != 0 }
    /// Router lifetime in seconds (0 = not a default router).
    public var routerLifetime: UInt16 { base.be16(6) }
    /// Reachable time in milliseconds (0 = unspecified).
    public var reachableTime: UInt32 { base.be32(8) }
    /// Retransmission timer in milliseconds (0 = unspecified).
    public var retransTimer: UInt32 { base.be32(12) }

    /// Writes an RA with `options` in the given order; returns its length, or nil if it does not
    /// fit in `capacity` or an option cannot be encoded.
    public static func write(to buffer: UnsafeMutableRawPointer, capacity: Int,
                             currentHopLimit: UInt8, managed: Bool, other: Bool, routerLifetime: UInt16,
                             reachableTime: UInt32, retransTimer: UInt32,
                             options: [NDPOptionValue]) -> Int? {
        guard capacity >= fixedLength else { return nil }
        NDP.writeHeader(buffer, type: NDP.routerAdvertisementType)
        buffer.setU8(4, currentHopLimit)
        buffer.setU8(5, (managed ? 0x80 : 0) | (other ? 0x40 : 0))
        buffer.setBE16(6, routerLifetime)
        buffer.setBE32(8, reachableTime)
        buffer.setBE32(12, retransTimer)
        return NDP.writeOptions(options, to: buffer, at: fixedLength, capacity: capacity)
    }
}

/// View of a Neighbor Solicitation (ICMPv6 type 135), from the ICMPv6 header on.
public struct NDPNeighborSolicitation: NDPMessageView {
    /// First byte of the ICMPv6 header.
    public let base: UnsafeRawPointer
    /// Length of the ICMPv6 message.
    public let count: Int
    /// Bytes before the options.
    public static let fixedLength = 24

    /// Validates type 135, code 0, length >= 24 and well-formed options.
    public init?(_ base: UnsafeRawPointer, count: Int) {
        guard NDP.validate(base, count: count, type: NDP.neighborSolicitationType,
                           fixedLength: Self.fixedLength) else { return nil }
        self.base = base; self.count = count
    }

    /// The address being resolved.
    public var target: IPv6Address { IPv6Address(at: base, offset: 8) }

    /// Writes an NS for `target`, with a source link-layer address option if given; returns its
    /// length or nil if `capacity` is too small.
    public static func write(to buffer: UnsafeMutableRawPointer, capacity: Int, target: IPv6Address,
                             sourceLinkLayerAddress: MACAddress?) -> Int? {
        let length = fixedLength + (sourceLinkLayerAddress == nil ? 0 : 8)
        guard capacity >= length else { return nil }
        NDP.writeHeader(buffer, type: NDP.neighborSolicitationType)
        buffer.setBE32(4, 0)
        target.store(to: buffer, offset: 8)
        if let mac = sourceLinkLayerAddress {
            _ = NDP.writeLinkLayerOption(buffer, at: fixedLength, type: NDPOptionType.sourceLinkLayerAddress, address: mac)
        }
        return length
    }
}

/// View of a Neighbor Advertisement (ICMPv6 type 136), from the ICMPv6 header on.
public struct NDPNeighborAdvertisement: NDPMessageView {
    /// First byte of the ICMPv6 header.
    public let base: UnsafeRawPointer
    /// Length of the ICMPv6 message.
    public let count: Int
    /// Bytes before the options.
    public static let fixedLength = 24

    /// Validates type 136, code 0, length >= 24 and well-formed options.
    public init?(_ base: UnsafeRawPointer, count: Int) {
        guard NDP.validate(base, count: count, type: NDP.neighborAdvertisementType,
                           fixedLength: Self.fixedLength) else { return nil }
        self.base = base; self.count = count
    }

    /// Raw flags byte (R = 0x80, S = 0x40, O = 0x20).
    public var flags: UInt8 { base.u8(4) }
    /// Router flag (R): the sender is a router.
    public var router: Bool { flags & 0x80 != 0 }
    /// Solicited flag (S): sent in response to an NS.
    public var solicited: Bool { flags & 0x40 != 0 }
    /// Override flag (O): the link-layer address should replace a cached one.
    public var override: Bool { flags & 0x20 != 0 }
    /// The address whose link-layer address is advertised.
    public var target: IPv6Address { IPv6Address(at: base, offset: 8) }
    /// The target link-layer address option's MAC, if present.
    public var targetLinkLayerAddress: MACAddress? {
        options.first(type: NDPOptionType.targetLinkLayerAddress)?.linkLayerAddress
    }

    /// Writes an NA for `target` with the given flags and, if given, a target link-layer address
    /// option; returns its length (24 or 32) or nil if `capacity` is too small. Allocates nothing.
    public static func write(to buffer: UnsafeMutableRawPointer, capacity: Int, router: Bool,
                             solicited: Bool, override: Bool, target: IPv6Address,
                             targetLinkLayerAddress: MACAddress?) -> Int? {
        let length = fixedLength + (targetLinkLayerAddress == nil ? 0 : 8)
        guard capacity >= length else { return nil }
        NDP.writeHeader(buffer, type: NDP.neighborAdvertisementType)
        buffer.setBE32(4, (router ? 0x8000_0000 : 0) | (solicited ? 0x4000_0000 : 0) | (override ? 0x2000_0000 : 0))
        target.store(to: buffer, offset: 8)
        if let mac = targetLinkLayerAddress {
            _ = NDP.writeLinkLayerOption(buffer, at: fixedLength, type: NDPOptionType.targetLinkLayerAddress, address: mac)
        }
        return length
    }
}
