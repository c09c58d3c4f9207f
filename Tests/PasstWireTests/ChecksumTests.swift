// Checksum: the fast `sum` against a plain RFC 1071 word loop, folding, RFC 1624 update.
import Testing
@testable import PasstWire

@Suite struct ChecksumTests {
    /// The plain RFC 1071 reference: big-endian 16-bit words, last odd byte padded with zero.
    static func referenceSum(_ bytes: ArraySlice<UInt8>, initial: UInt64 = 0) -> UInt64 {
        var acc = initial
        var i = bytes.startIndex
        while i + 1 < bytes.endIndex {
            acc += UInt64(bytes[i]) << 8 | UInt64(bytes[i + 1])
            i += 2
        }
        if i < bytes.endIndex { acc += UInt64(bytes[i]) << 8 }
        return acc
    }

    /// The reference folded to 16 bits with end-around carry.
    static func referenceFold(_ sum: UInt64) -> UInt16 {
        var s = sum
        while s >> 16 != 0 { s = (s & 0xffff) + (s >> 16) }
        return UInt16(s)
    }

    @Test func matchesReferenceForEveryLengthAndOffset() {
        var rng = L2L4.Random(seed: 1071)
        let buffer = (0..<2100).map { _ in UInt8.random(in: 0...255, using: &rng) }
        var mismatches = 0
        buffer.withUnsafeBytes { raw in
            for offset in [0, 1, 2, 3, 5, 7] {
                for length in 0...2000 {
                    let initial = UInt64.random(in: 0...0xffff_ffff, using: &rng)
                    let slice = buffer[offset..<(offset + length)]
                    let fast = Checksum.sum(raw.baseAddress! + offset, count: length, initial: initial)
                    if Checksum.fold(fast) != Self.referenceFold(Self.referenceSum(slice, initial: initial)) { mismatches += 1 }
                    let plain = Checksum.sum(raw.baseAddress! + offset, count: length)
                    if Checksum.fold(plain) != Self.referenceFold(Self.referenceSum(slice)) { mismatches += 1 }
                }
            }
        }
        #expect(mismatches == 0)
    }

    @Test func matchesReferenceOnCarryHeavyBuffers() {
        var mismatches = 0
        for fill: UInt8 in [0xff, 0xfe, 0x80, 0x00, 0x01] {
            let buffer = [UInt8](repeating: fill, count: 65_536 + 8)
            buffer.withUnsafeBytes { raw in
                for length in Array(0...300) + [1999, 2000, 9000, 65_535, 65_536] {
                    for offset in [0, 1] {
                        let fast = Checksum.sum(raw.baseAddress! + offset, count: length, initial: 0xffff_ffff)
                        let ref = Self.referenceSum(buffer[offset..<(offset + length)], initial: 0xffff_ffff)
                        if Checksum.fold(fast) != Self.referenceFold(ref) { mismatches += 1 }
                    }
                }
            }
        }
        #expect(mismatches == 0)
    }

    @Test func zeroBufferLeavesInitialUnchanged() {
        let zeros = [UInt8](repeating: 0, count: 77)
        zeros.withUnsafeBytes { raw in
            #expect(Checksum.sum(raw.baseAddress!, count: 77, initial: 1234) == 1234)
            #expect(Checksum.sum(raw.baseAddress!, count: 0, initial: 99) == 99)
            #expect(Checksum.sum(raw.baseAddress! + 8, count: -3, initial: 7) == 7)
        }
    }

    @Test func rfc1071Example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0x2ddf0, folded 0xddf2.
        let bytes: [UInt8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]
        bytes.withUnsafeBytes { raw in
            #expect(Checksum.fold(Checksum.sum(raw.baseAddress!, count: 8)) == 0xddf2)
            #expect(Checksum.internet(raw.baseAddress!, count: 8) == ~UInt16(0xddf2))
        }
    }

    @Test func foldHandlesLargeSums() {
        #expect(Checksum.fold(0) == 0)
        #expect(Checksum.fold(0xffff) == 0xffff)
        #expect(Checksum.fold(0x1_0000) == 1)
        #expect(Checksum.fold(0x2_ddf0) == 0xddf2)
        #expect(Checksum.fold(UInt64.max) == 0xffff)
        #expect(Checksum.fold(0xffff_ffff_0000_0001) == Self.referenceFold(0xffff_ffff_0000_0001 % 0xffff))
    }

    @Test func rfc1624Example() {
        // RFC 1624 §4: HC 0xdd2f, m 0x5555 -> m' 0x3285 gives 0x0000 with eqn. 3.
        #expect(Checksum.update(0xdd2f, old: 0x5555, new: 0x3285) == 0x0000)
    }

    @Test func rfc1624UpdateMatchesRecompute() {
        var rng = L2L4.Random(seed: 1624)
        var mismatches = 0
        for _ in 0..<5000 {
            var header = (0..<20).map { _ in UInt8.random(in: 0...255, using: &rng) }
            header[10] = 0; header[11] = 0
            let checksum = header.withUnsafeBytes { Checksum.internet($0.baseAddress!, count: 20) }
            header[10] = UInt8(checksum >> 8); header[11] = UInt8(checksum & 0xff)
            let word = [0, 2, 4, 6, 8, 12, 14, 16, 18].randomElement(using: &rng)!
            let old = L2L4.be16(header, word)
            let new = UInt16.random(in: 0...0xffff, using: &rng)
            header[word] = UInt8(new >> 8); header[word + 1] = UInt8(new & 0xff)
            let updated = Checksum.update(checksum, old: old, new: new)
            header[10] = 0; header[11] = 0
            let recomputed = header.withUnsafeBytes { Checksum.internet($0.baseAddress!, count: 20) }
            // Both are valid: equal, or the two representations of one's complement zero.
            if updated != recomputed && !(updated == 0xffff && recomputed == 0) { mismatches += 1 }
        }
        #expect(mismatches == 0)
    }

    @Test func pseudoHeadersMatchWireLayout() {
        // IPv4 pseudo header: src, dst, 0, proto, length as bytes.
        let v4: [UInt8] = [192, 0, 2, 15, 198, 51, 100, 7, 0, 17, 0x01, 0x23]
        let expected4 = Self.referenceFold(Self.referenceSum(v4[...]))
        #expect(Checksum.fold(Checksum.pseudoHeader(source: L2L4.guest4, destination: L2L4.remote4,
                                                    protocol: 17, length: 0x123)) == expected4)
        // IPv6 pseudo header: src, dst, 32-bit length, 3 zero bytes, next header.
        let v6 = L2L4.guest6.bytes + L2L4.remote6.bytes + [0, 1, 0x23, 0x45, 0, 0, 0, 58]
        let expected6 = Self.referenceFold(Self.referenceSum(v6[...]))
        #expect(Checksum.fold(Checksum.pseudoHeader(source: L2L4.guest6, destination: L2L4.remote6,
                                                    nextHeader: 58, length: 0x1_2345)) == expected6)
    }
}
