// Link-layer and IP address value types, with text parsing and formatting.
//
// Theory of operation: addresses are plain value types sized like their wire form (MAC 6 bytes,
// IPv4 one UInt32 in host order, IPv6 two UInt64 in host order, high half first) so that they are
// cheap to compare, hash and copy on the packet path. Text parsing follows inet_pton(3) strictly
// (dotted quad with exactly four decimal parts; RFC 4291 IPv6 text with at most one "::" and an
// optional trailing dotted quad); formatting follows inet_ntop(3) (RFC 5952 shortest form).

/// A 48-bit Ethernet address.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public var bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    /// Creates an address from its six bytes in wire order.
    public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) {
        bytes = (b0, b1, b2, b3, b4, b5)
    }

    /// Reads an address from six bytes at `offset` of `base`.
    @inline(__always) public init(at base: UnsafeRawPointer, offset: Int) {
        bytes = (base.u8(offset), base.u8(offset + 1), base.u8(offset + 2),
                 base.u8(offset + 3), base.u8(offset + 4), base.u8(offset + 5))
    }

    /// Parses the strict `xx:xx:xx:xx:xx:xx` form (two hex digits per byte); nil otherwise.
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var values = [UInt8]()
        for part in parts {
            guard part.count == 2, let v = UInt8(part, radix: 16) else { return nil }
            values.append(v)
        }
        self.init(values[0], values[1], values[2], values[3], values[4], values[5])
    }

    /// Writes the six bytes at `offset` of `base`.
    @inline(__always) public func store(to base: UnsafeMutableRawPointer, offset: Int) {
        base.setU8(offset, bytes.0); base.setU8(offset + 1, bytes.1); base.setU8(offset + 2, bytes.2)
        base.setU8(offset + 3, bytes.3); base.setU8(offset + 4, bytes.4); base.setU8(offset + 5, bytes.5)
    }

    /// The six bytes as an array (control path and tests).
    public var array: [UInt8] { [bytes.0, bytes.1, bytes.2, bytes.3, bytes.4, bytes.5] }

    public static let broadcast = MACAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
    public static let zero = MACAddress(0, 0, 0, 0, 0, 0)
    /// passt's default own MAC address, 9a:55:9a:55:9a:55.
    public static let passtDefault = MACAddress(0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55)

    public var isBroadcast: Bool { self == .broadcast }
    public var isMulticast: Bool { bytes.0 & 1 == 1 }

    /// Compares the six bytes without building arrays (used on the packet path).
    @inline(__always) public static func == (a: MACAddress, b: MACAddress) -> Bool {
        a.bytes.0 == b.bytes.0 && a.bytes.1 == b.bytes.1 && a.bytes.2 == b.bytes.2
            && a.bytes.3 == b.bytes.3 && a.bytes.4 == b.bytes.4 && a.bytes.5 == b.bytes.5
    }
    /// Hashes the six bytes.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(bytes.0); hasher.combine(bytes.1); hasher.combine(bytes.2)
        hasher.combine(bytes.3); hasher.combine(bytes.4); hasher.combine(bytes.5)
    }

    public var description: String {
        array.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
    }
}

/// An IPv4 address; `value` is in host byte order (192.0.2.1 == 0xC000_0201).
public struct IPv4Address: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var value: UInt32

    /// Creates an address from its host-order 32-bit value.
    @inline(__always) public init(_ value: UInt32) { self.value = value }

    /// Creates an address from four dotted-quad parts.
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Reads a network-order address at `offset` of `base`.
    @inline(__always) public init(at base: UnsafeRawPointer, offset: Int) { value = base.be32(offset) }

    /// Parses dotted-quad text as inet_pton(AF_INET) does (four decimal parts 0...255); nil otherwise.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  !(part.count > 1 && part.first == "0"), let byte = UInt8(part) else { return nil }
            v = v << 8 | UInt32(byte)
        }
        value = v
    }

    /// Writes the address in network order at `offset` of `base`.
    @inline(__always) public func store(to base: UnsafeMutableRawPointer, offset: Int) {
        base.setBE32(offset, value)
    }

    public static let any = IPv4Address(0)
    public static let broadcast = IPv4Address(0xffff_ffff)
    public static let loopback = IPv4Address(127, 0, 0, 1)

    public var isUnspecified: Bool { value == 0 }
    public var isLoopback: Bool { value >> 24 == 127 }
    public var isMulticast: Bool { value >> 28 == 0xe }
    public var isBroadcast: Bool { value == 0xffff_ffff }
    public var isLinkLocal: Bool { value >> 16 == 0xa9fe }

    /// The four bytes in wire order.
    public var bytes: [UInt8] { [UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16),
                                 UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)] }

    /// The netmask for a prefix length 0...32, host order.
    public static func mask(prefixLength: Int) -> UInt32 {
        prefixLength <= 0 ? 0 : UInt32.max << UInt32(32 - min(prefixLength, 32))
    }

    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.value < b.value }
    public var description: String { bytes.map(String.init).joined(separator: ".") }
}

/// An IPv6 address stored as two host-order 64-bit halves (`high` holds the first 8 bytes).
public struct IPv6Address: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    /// Creates an address from its two host-order halves.
    @inline(__always) public init(high: UInt64, low: UInt64) { self.high = high; self.low = low }

    /// Reads a network-order address at `offset` of `base`.
    @inline(__always) public init(at base: UnsafeRawPointer, offset: Int) {
        high = UInt64(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        low = UInt64(bigEndian: base.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
    }

    /// Creates an address from its sixteen bytes in wire order.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        var h: UInt64 = 0, l: UInt64 = 0
        for i in 0..<8 { h = h << 8 | UInt64(bytes[i]); l = l << 8 | UInt64(bytes[i + 8]) }
        high = h; low = l
    }

    /// The IPv4-mapped form ::ffff:a.b.c.d of an IPv4 address.
    public init(v4Mapped v4: IPv4Address) { high = 0; low = 0xffff_0000_0000 | UInt64(v4.value) }

    /// Parses RFC 4291 text as inet_pton(AF_INET6) does; nil otherwise.
    public init?(_ text: some StringProtocol) {
        let chars = Array(text.utf8)
        var gap: Int? = nil
        for i in 0..<max(0, chars.count - 1) where chars[i] == UInt8(ascii: ":") && chars[i + 1] == UInt8(ascii: ":") {
            guard gap == nil else { return nil }          // at most one "::"
            gap = i
        }
        let full = String(decoding: chars, as: UTF8.self)
        let headText = gap.map { String(decoding: chars[..<$0], as: UTF8.self) } ?? full
        let tailText = gap.map { String(decoding: chars[($0 + 2)...], as: UTF8.self) } ?? ""
        guard let head = IPv6Address.groups(of: headText, mayEndInV4: gap == nil),
              let tail = IPv6Address.groups(of: tailText, mayEndInV4: true) else { return nil }
        var all = head
        if gap != nil {
            guard head.count + tail.count <= 7 else { return nil }
            all += [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail
        }
        guard all.count == 8 else { return nil }
        var h: UInt64 = 0, l: UInt64 = 0
        for i in 0..<4 { h = h << 16 | UInt64(all[i]); l = l << 16 | UInt64(all[i + 4]) }
        high = h; low = l
    }

    /// Parses colon-separated hex groups (empty text is zero groups); a trailing dotted quad counts as two.
    private static func groups(of text: String, mayEndInV4: Bool) -> [UInt16]? {
        if text.isEmpty { return [] }
        let fields = text.split(separator: ":", omittingEmptySubsequences: false)
        var result: [UInt16] = []
        for (i, field) in fields.enumerated() {
            if mayEndInV4, i == fields.count - 1, field.contains(".") {
                guard let v4 = IPv4Address(field) else { return nil }
                result += [UInt16(v4.value >> 16), UInt16(truncatingIfNeeded: v4.value)]
            } else {
                guard !field.isEmpty, field.count <= 4, field.utf8.allSatisfy({ UInt8(ascii: "0")...UInt8(ascii: "9") ~= $0
                        || UInt8(ascii: "a")...UInt8(ascii: "f") ~= $0 || UInt8(ascii: "A")...UInt8(ascii: "F") ~= $0 }),
                      let g = UInt16(field, radix: 16) else { return nil }
                result.append(g)
            }
        }
        return result
    }

    /// Writes the address in network order at `offset` of `base`.
    @inline(__always) public func store(to base: UnsafeMutableRawPointer, offset: Int) {
        base.storeBytes(of: high.bigEndian, toByteOffset: offset, as: UInt64.self)
        base.storeBytes(of: low.bigEndian, toByteOffset: offset + 8, as: UInt64.self)
    }

    public static let any = IPv6Address(high: 0, low: 0)
    public static let loopback = IPv6Address(high: 0, low: 1)

    public var isUnspecified: Bool { high == 0 && low == 0 }
    public var isLoopback: Bool { high == 0 && low == 1 }
    public var isMulticast: Bool { high >> 56 == 0xff }
    public var isLinkLocal: Bool { high >> 54 == 0x3fa }          // fe80::/10
    public var isV4Mapped: Bool { high == 0 && low >> 32 == 0xffff }
    public var isV4Compatible: Bool { high == 0 && low >> 32 == 0 && low > 1 }
    /// The embedded IPv4 address of a v4-mapped address, else nil.
    public var v4Mapped: IPv4Address? { isV4Mapped ? IPv4Address(UInt32(truncatingIfNeeded: low)) : nil }

    /// The sixteen bytes in wire order.
    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64($0))) } +
        (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64($0))) }
    }

    /// The eight 16-bit groups in order.
    public var groups: [UInt16] {
        (0..<4).map { UInt16(truncatingIfNeeded: high >> (48 - 16 * UInt64($0))) } +
        (0..<4).map { UInt16(truncatingIfNeeded: low >> (48 - 16 * UInt64($0))) }
    }

    /// The address with all bits after `prefixLength` cleared.
    public func masked(prefixLength: Int) -> IPv6Address {
        let p = max(0, min(prefixLength, 128))
        let hm: UInt64 = p >= 64 ? .max : (p == 0 ? 0 : .max << UInt64(64 - p))
        let lm: UInt64 = p <= 64 ? 0 : (p == 128 ? .max : .max << UInt64(128 - p))
        return IPv6Address(high: high & hm, low: low & lm)
    }

    public static func < (a: IPv6Address, b: IPv6Address) -> Bool { (a.high, a.low) < (b.high, b.low) }

    /// RFC 5952 text: lowercase, leading zeros dropped, the longest run (>= 2) of zero groups as "::",
    /// IPv4-mapped addresses with a dotted quad.
    public var description: String {
        if let v4 = v4Mapped { return "::ffff:\(v4)" }
        let g = groups
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if g[i] == 0 {
                var j = i
                while j < 8 && g[j] == 0 { j += 1 }
                if j - i > bestLen { bestStart = i; bestLen = j - i }
                i = j
            } else { i += 1 }
        }
        if bestLen < 2 { return g.map { String($0, radix: 16) }.joined(separator: ":") }
        let head = g[0..<bestStart].map { String($0, radix: 16) }.joined(separator: ":")
        let tail = g[(bestStart + bestLen)...].map { String($0, radix: 16) }.joined(separator: ":")
        return head + "::" + tail
    }
}
