// Internet checksum (RFC 1071), IPv4/IPv6 pseudo-header sums and incremental update (RFC 1624).
//
// Theory of operation: a checksum is computed in two steps. `sum` adds 16-bit big-endian words of
// a buffer into a 32-bit (or wider) accumulator without folding; pseudo-header sums are added the
// same way; `fold` reduces the accumulator to 16 bits and the caller complements it. Keeping the
// unfolded sum lets a TCP/UDP checksum be built from the pseudo header plus header plus payload
// parts without copying them together.
//
// Initial version: a plain word loop. The performance work replaces the loop body, not the API.

public enum Checksum {
    /// Adds the bytes of `base[0..<count]` as big-endian 16-bit words to `initial`; an odd last byte
    /// is padded with zero. Returns the unfolded sum.
    public static func sum(_ base: UnsafeRawPointer, count: Int, initial: UInt64 = 0) -> UInt64 {
        var acc = initial
        var i = 0
        while i + 1 < count {
            acc &+= UInt64(base.be16(i))
            i &+= 2
        }
        if i < count { acc &+= UInt64(base.u8(i)) << 8 }
        return acc
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
