// ARP for IPv4 over Ethernet (RFC 826), view and builder.
//
// Theory of operation: passt answers ARP requests itself (proxy ARP for every address but the
// guest's own), so it only needs the one ARP flavour that exists on its link: hardware type 1
// (Ethernet), protocol type 0x0800 (IPv4), 6-byte hardware and 4-byte protocol addresses. The view
// rejects anything else in its initialiser, so the address fields sit at fixed offsets and the
// accessors are unchecked. The packet is 28 bytes; frames are padded to 60 bytes by the sender and
// the padding is simply beyond the view's fields.
//
//     0                   1                   2                   3
//     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |      Hardware type (1)        |    Protocol type (0x0800)     |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |  HW len (6)   | Proto len (4) |          Operation            |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                Sender hardware address (6 bytes)              |
//    +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                               |  Sender protocol address ...  |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    | ... (4 bytes)                 |  Target hardware address ...  |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//    |                         ... (6 bytes)                         |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |               Target protocol address (4 bytes)               |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

/// ARP operation codes.
public enum ARPOperation {
    /// Who has the target protocol address?
    public static let request: UInt16 = 1
    /// The sender hardware address has the sender protocol address.
    public static let reply: UInt16 = 2
}

/// View of an Ethernet/IPv4 ARP packet (the Ethernet payload).
public struct ARPPacket: WireView {
    /// Length of an Ethernet/IPv4 ARP packet.
    public static let length = 28

    /// Start of the ARP packet.
    public let base: UnsafeRawPointer
    /// Length of the buffer (at least 28; trailing padding allowed).
    public let count: Int

    /// Validates length and the fixed fields (htype 1, ptype 0x0800, hlen 6, plen 4); nil otherwise.
    @inlinable @inline(__always) public init?(_ base: UnsafeRawPointer, count: Int) {
        guard count >= ARPPacket.length, base.be16(0) == 1, base.be16(2) == EtherType.ipv4,
              base.u8(4) == 6, base.u8(5) == 4 else { return nil }
        self.base = base
        self.count = count
    }

    /// The operation code (1 request, 2 reply).
    @inlinable @inline(__always) public var operation: UInt16 { base.be16(6) }
    /// The sender hardware address.
    @inlinable @inline(__always) public var senderMAC: MACAddress { MACAddress(at: base, offset: 8) }
    /// The sender protocol address.
    @inlinable @inline(__always) public var senderIP: IPv4Address { IPv4Address(at: base, offset: 14) }
    /// The target hardware address (zero in requests).
    @inlinable @inline(__always) public var targetMAC: MACAddress { MACAddress(at: base, offset: 18) }
    /// The target protocol address.
    @inlinable @inline(__always) public var targetIP: IPv4Address { IPv4Address(at: base, offset: 24) }

    /// Writes a 28-byte Ethernet/IPv4 ARP packet at `p`; returns its length (28).
    @inlinable @inline(__always) @discardableResult
    public static func write(to p: UnsafeMutableRawPointer, operation: UInt16,
                             senderMAC: MACAddress, senderIP: IPv4Address,
                             targetMAC: MACAddress, targetIP: IPv4Address) -> Int {
        p.setBE16(0, 1)
        p.setBE16(2, EtherType.ipv4)
        p.setU8(4, 6)
        p.setU8(5, 4)
        p.setBE16(6, operation)
        senderMAC.store(to: p, offset: 8)
        senderIP.store(to: p, offset: 14)
        targetMAC.store(to: p, offset: 18)
        targetIP.store(to: p, offset: 24)
        return length
    }
}
