// Internet checksum (RFC 1071), IPv4/IPv6 pseudo-header sums and incremental update (RFC 1624).
//
// Theory of operation: a checksum is computed in two steps. `sum` adds 16-bit big-endian words of
// a buffer into a 32-bit (or wider) accumulator without folding; pseudo-header sums are added the
// same way; `fold` reduces the accumulator to 16 bits and the caller complements it. Keeping the
// unfolded sum lets a TCP/UDP checksum be built from the pseudo header plus header plus payload
// parts without copying them together.
//
// Speed: `sum` reads eight bytes at a time with unaligned little-endian loads into two 64-bit
// accumulators, counting the carries out of each add separately (2^64 = 1 mod 0xffff, so a carry
// is worth 1). A one's complement sum does not depend on byte order (RFC 1071 §2(B)): the words
// read little-endian are the byte-swapped big-endian words, so the folded result is byte-swapped
// once at the end. The tail (< 8 bytes) is read as 4, 2 and 1 bytes; a last odd byte is the low
// byte of a little-endian word, i.e. the high byte of the padded big-endian word, as RFC 1071 wants.
// The returned value is `initial` plus the folded sum of the buffer (0 for an all-zero buffer,
// else 1...0xffff): it is not the literal word total, but `fold` of it always equals `fold` of
// the plain word sum plus `initial`, for every length and every (odd or even) base address.

public enum Checksum {
    /// Adds the bytes of `base[0..<count]` as big-endian 16-bit words to `initial`; an odd last byte
    /// is padded with zero. Returns the unfolded sum (`initial` plus the folded sum of the bytes).
    public static func sum(_ base: UnsafeRawPointer, count: Int, initial: UInt64 = 0) -> UInt64 {
        var a: UInt64 = 0, b: UInt64 = 0, carries: UInt64 = 0
        var p = base
        var n = count
        while n >= 32 {
            let v0 = UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
            let v1 = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            let v2 = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
            let v3 = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
            let (s0, c0) = a.addingReportingOverflow(v0)
            let (s1, c1) = b.addingReportingOverflow(v1)
            let (s2, c2) = s0.addingReportingOverflow(v2)
            let (s3, c3) = s1.addingReportingOverflow(v3)
            a = s2; b = s3
            carries &+= UInt64(c0 ? 1 : 0) &+ UInt64(c1 ? 1 : 0) &+ UInt64(c2 ? 1 : 0) &+ UInt64(c3 ? 1 : 0)
            p += 32; n &-= 32
        }
        while n >= 8 {
            let (s, c) = a.addingReportingOverflow(UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)))
            a = s; carries &+= UInt64(c ? 1 : 0)
            p += 8; n &-= 8
        }
        // Fold both accumulators to 32-bit halves: no overflow in 64 bits from here on.
        var t = (a & 0xffff_ffff) &+ (a >> 32) &+ (b & 0xffff_ffff) &+ (b >> 32) &+ carries
        if n >= 4 { t &+= UInt64(UInt32(littleEndian: p.loadUnaligned(as: UInt32.self))); p += 4; n &-= 4 }
        if n >= 2 { t &+= UInt64(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self))); p += 2; n &-= 2 }
        if n >= 1 { t &+= UInt64(p.load(as: UInt8.self)) }
        return initial &+ UInt64(fold(t).byteSwapped)
    }

    /// Folds an accumulated sum to 16 bits with end-around carry (not complemented).
    @inline(__always) public static func fold(_ sum: UInt64) -> UInt16 {
        var s = (sum & 0xffff_ffff) &+ (sum >> 32)
        s = (s & 0xffff) &+ (s >> 16)
        s = (s & 0xffff) &+ (s >> 16)
        s = (s & 0xffff) &+ (s >> 16)
        return UInt16(truncatingIfNeeded: s)
    }

    /// The complemented Internet checksum of `base[0..<count]` with `initial` added (ready to store).
    @inline(__always) public static func internet(_ base: UnsafeRawPointer, count: Int, initial: UInt64 = 0) -> UInt16 {
        ~fold(sum(base, count: count, initial: initial))
    }

    /// The unfolded IPv4 pseudo-header sum for a transport segment of `length` bytes.
    @inline(__always) public static func pseudoHeader(source: IPv4Address, destination: IPv4Address,
                                                      protocol proto: UInt8, length: Int) -> UInt64 {
        UInt64(source.value >> 16) &+ UInt64(source.value & 0xffff) &+ UInt64(destination.value >> 16)
            &+ UInt64(destination.value & 0xffff) &+ UInt64(proto) &+ UInt64(length)
    }

    /// The unfolded IPv6 pseudo-header sum (RFC 8200 §8.1) for an upper-layer packet of `length` bytes.
    @inline(__always) public static func pseudoHeader(source: IPv6Address, destination: IPv6Address,
                                                      nextHeader: UInt8, length: Int) -> UInt64 {
        words(source.high) &+ words(source.low) &+ words(destination.high) &+ words(destination.low)
            &+ UInt64(nextHeader) &+ UInt64(length >> 16) &+ UInt64(length & 0xffff)
    }

    /// Sum of the four 16-bit words of a 64-bit value.
    @inline(__always) static func words(_ v: UInt64) -> UInt64 {
        (v >> 48) &+ ((v >> 32) & 0xffff) &+ ((v >> 16) & 0xffff) &+ (v & 0xffff)
    }

    /// RFC 1624 eqn. 3: the new checksum after one 16-bit field changed from `old` to `new`.
    @inline(__always) public static func update(_ checksum: UInt16, old: UInt16, new: UInt16) -> UInt16 {
        ~fold(UInt64(~checksum) &+ UInt64(~old) &+ UInt64(new))
    }
}
