// SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012).
//
// Theory of operation: the state is four 64-bit words initialised from the 128-bit key; every
// 8-byte little-endian message word is mixed in with two SipRounds ("compression"), and the last
// word carries the remaining 0-7 bytes plus the message length in its top byte. Four more rounds
// ("finalisation") produce the 64-bit result. The flow table hashes a fixed 40-byte key as five
// words, so `hash(words:)` takes the words directly and the byte-oriented `hash(bytes:)` (used by
// the tests against the paper's reference vectors) goes through the same core. Nothing here
// allocates; keys come from getrandom(2) via `SipHashKey.random()`.
import PasstConfig
import PasstSys

/// A 128-bit SipHash key as two little-endian 64-bit halves.
public struct SipHashKey: Equatable, Sendable {
    /// Key bytes 0-7, little-endian.
    public var k0: UInt64
    /// Key bytes 8-15, little-endian.
    public var k1: UInt64

    /// A key from its two halves.
    public init(k0: UInt64, k1: UInt64) {
        self.k0 = k0
        self.k1 = k1
    }

    /// A key of 16 random bytes from getrandom(2); dies if the kernel cannot provide them.
    public static func random() -> SipHashKey {
        var words: (UInt64, UInt64) = (0, 0)
        let filled = withUnsafeMutableBytes(of: &words) { Sys.getRandom(into: $0) }
        guard case .success = filled else { Log.die("Can't get random bytes for the flow hash secret") }
        return SipHashKey(k0: UInt64(littleEndian: words.0), k1: UInt64(littleEndian: words.1))
    }
}

/// SipHash-2-4 state.
public struct SipHash24 {
    @usableFromInline var v0: UInt64
    @usableFromInline var v1: UInt64
    @usableFromInline var v2: UInt64
    @usableFromInline var v3: UInt64

    /// A fresh state for `key`.
    @inlinable public init(key: SipHashKey) {
        v0 = key.k0 ^ 0x736f_6d65_7073_6575
        v1 = key.k1 ^ 0x646f_7261_6e64_6f6d
        v2 = key.k0 ^ 0x6c79_6765_6e65_7261
        v3 = key.k1 ^ 0x7465_6462_7974_6573
    }

    /// One SipRound.
    @inlinable @inline(__always) mutating func round() {
        v0 = v0 &+ v1; v1 = v1.rotateLeft(13); v1 ^= v0; v0 = v0.rotateLeft(32)
        v2 = v2 &+ v3; v3 = v3.rotateLeft(16); v3 ^= v2
        v0 = v0 &+ v3; v3 = v3.rotateLeft(21); v3 ^= v0
        v2 = v2 &+ v1; v1 = v1.rotateLeft(17); v1 ^= v2; v2 = v2.rotateLeft(32)
    }

    /// Mixes in one 8-byte message word (two compression rounds).
    @inlinable @inline(__always) public mutating func compress(_ m: UInt64) {
        v3 ^= m
        round()
        round()
        v0 ^= m
    }

    /// Mixes in the final word (`tail`: the last 0-7 bytes, little-endian) for a message of
    /// `length` bytes and returns the 64-bit hash.
    @inlinable @inline(__always) public mutating func finalize(tail: UInt64, length: Int) -> UInt64 {
        compress(tail | UInt64(truncatingIfNeeded: length) << 56)
        v2 ^= 0xff
        round(); round(); round(); round()
        return v0 ^ v1 ^ v2 ^ v3
    }

    /// The hash of the 40-byte message made of five little-endian words.
    @inlinable @inline(__always)
    public static func hash(key: SipHashKey, _ w0: UInt64, _ w1: UInt64, _ w2: UInt64, _ w3: UInt64,
                            _ w4: UInt64) -> UInt64 {
        var state = SipHash24(key: key)
        state.compress(w0); state.compress(w1); state.compress(w2); state.compress(w3); state.compress(w4)
        return state.finalize(tail: 0, length: 40)
    }

    /// The hash of `bytes`.
    public static func hash(key: SipHashKey, bytes: UnsafeRawBufferPointer) -> UInt64 {
        var state = SipHash24(key: key)
        let whole = bytes.count & ~7
        var offset = 0
        while offset < whole {
            state.compress(UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
            offset += 8
        }
        var tail: UInt64 = 0
        for index in 0..<(bytes.count - whole) {
            tail |= UInt64(bytes[whole + index]) << UInt64(8 * index)
        }
        return state.finalize(tail: tail, length: bytes.count)
    }
}

extension UInt64 {
    /// The word rotated left by `count` bits.
    @inlinable @inline(__always) func rotateLeft(_ count: UInt64) -> UInt64 {
        (self << count) | (self >> (64 &- count))
    }
}
