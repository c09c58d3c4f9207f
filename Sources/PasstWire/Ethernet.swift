// Ethernet II frame header (IEEE 802.3, DIX framing), view and builder.
//
// Theory of operation: every frame on the tap side starts with this 14-byte header; passt only
// speaks Ethernet II (an EtherType, never an 802.3 length) and does not use 802.1Q tags, so the
// payload always starts at offset 14. `EthernetFrame` checks once that the buffer holds the whole
// header; afterwards the accessors are unchecked unaligned loads. The builder writes the header in
// front of a payload the caller has placed (or will place) at offset 14. The frame check sequence
// is never present (the kernel and qemu strip and add it).
//
//     0                   1                   2                   3
//     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                  Destination MAC (6 bytes)                    |
//    +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                               |                               |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//    |                     Source MAC (6 bytes)                      |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |           EtherType           |    Payload (offset 14) ...    |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// `WireView` (below) is the small contract every PasstWire view follows; its `parse` helper is
// the safe entry for tests and fuzzers (it copies an array into a private buffer first).

/// A packet view: a struct over a raw buffer, validated once by its failable initialiser.
public protocol WireView {
    /// Validates `base[0..<count]` and returns a view, or nil if the bytes are truncated or inconsistent.
    init?(_ base: UnsafeRawPointer, count: Int)
}

extension WireView {
    /// Safe entry for tests and fuzzing: copies `bytes` to a private buffer, validates it as `Self`
    /// and calls `body` with the view (which must not escape). Returns nil if validation fails.
    public static func parse<R>(_ bytes: [UInt8], _ body: (Self) throws -> R) rethrows -> R? {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        defer { buffer.deallocate() }
        bytes.withUnsafeBytes { if let b = $0.baseAddress { buffer.copyMemory(from: b, byteCount: bytes.count) } }
        guard let view = Self(UnsafeRawPointer(buffer), count: bytes.count) else { return nil }
        return try body(view)
    }
}

/// EtherType values passt handles (host order).
public enum EtherType {
    /// Internet Protocol version 4.
    public static let ipv4: UInt16 = 0x0800
    /// Address Resolution Protocol.
    public static let arp: UInt16 = 0x0806
    /// IEEE 802.1Q VLAN tag (recognised only to be dropped).
    public static let vlan: UInt16 = 0x8100
    /// Internet Protocol version 6.
    public static let ipv6: UInt16 = 0x86dd
}

/// View of an Ethernet II frame: 14-byte header followed by the payload.
public struct EthernetFrame: WireView {
    /// Length of the header (no VLAN tag).
    public static let headerLength = 14

    /// Start of the frame.
    public let base: UnsafeRawPointer
    /// Length of the whole frame (header and payload).
    public let count: Int

    /// Validates that `base[0..<count]` holds at least a full header; nil otherwise.
    @inlinable @inline(__always) public init?(_ base: UnsafeRawPointer, count: Int) {
        guard count >= EthernetFrame.headerLength else { return nil }
        self.base = base
        self.count = count
    }

    /// The destination MAC address (bytes 0..5).
    @inlinable @inline(__always) public var destination: MACAddress { MACAddress(at: base, offset: 0) }
    /// The source MAC address (bytes 6..11).
    @inlinable @inline(__always) public var source: MACAddress { MACAddress(at: base, offset: 6) }
    /// The EtherType (bytes 12..13), host order.
    @inlinable @inline(__always) public var etherType: UInt16 { base.be16(12) }
    /// Offset of the payload from `base` (always 14).
    @inlinable @inline(__always) public var payloadOffset: Int { EthernetFrame.headerLength }
    /// Start of the payload.
    @inlinable @inline(__always) public var payload: UnsafeRawPointer { base + EthernetFrame.headerLength }
    /// Length of the payload (may include padding up to the 60-byte minimum frame).
    @inlinable @inline(__always) public var payloadCount: Int { count &- EthernetFrame.headerLength }

    /// Writes a 14-byte header at `p`; returns the header length (14).
    @inlinable @inline(__always) @discardableResult
    public static func write(to p: UnsafeMutableRawPointer, destination: MACAddress, source: MACAddress,
                             etherType: UInt16) -> Int {
        destination.store(to: p, offset: 0)
        source.store(to: p, offset: 6)
        p.setBE16(12, etherType)
        return headerLength
    }
}
