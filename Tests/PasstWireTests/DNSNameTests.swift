// RFC 1035 domain name encoding with compression and the hardened decoder.
import Testing
import PasstWire

/// Decodes the name at `offset` of `bytes` (in a guarded buffer, so over-reads fault).
private func decode(_ bytes: [UInt8], at offset: Int = 0, compression: Bool = true) -> (name: String, next: Int)? {
    ServiceFixtures.GuardedBuffer(capacity: 1024).with(bytes) {
        DNSName.decode($0, count: $1, at: offset, allowCompression: compression)
    }
}

/// ASCII bytes of `text`.
private func a(_ text: String) -> [UInt8] { Array(text.utf8) }

/// The concatenation of `parts` (keeps long byte expressions cheap to type-check).
private func cat(_ parts: [UInt8]...) -> [UInt8] { parts.flatMap { $0 } }

@Suite struct DNSNameTests {
    /// RFC 1035 §4.1.4's example: F.ISI.ARPA, FOO.F.ISI.ARPA, ARPA, written back to back (offsets
    /// here start at 0 instead of the RFC's 20).
    static let rfcExample: [UInt8] = cat([1], a("F"), [3], a("ISI"), [4], a("ARPA"), [0],   // 0: F.ISI.ARPA
                                         [3], a("FOO"), [0xc0, 0],                          // 12: FOO + ptr 0
                                         [0xc0, 6])                                         // 18: ptr to ARPA

    @Test func rfc1035CompressionExample() {
        #expect(DNSName.encodeList(["F.ISI.ARPA", "FOO.F.ISI.ARPA", "ARPA"], compress: true) == Self.rfcExample)
        #expect(decode(Self.rfcExample, at: 0)! == ("F.ISI.ARPA", 12))
        #expect(decode(Self.rfcExample, at: 12)! == ("FOO.F.ISI.ARPA", 18))
        #expect(decode(Self.rfcExample, at: 18)! == ("ARPA", 20))
        #expect(decode(Self.rfcExample, at: 2)! == ("ISI.ARPA", 12))
        #expect(DNSName.decodeList(Self.rfcExample, allowCompression: true) == ["F.ISI.ARPA", "FOO.F.ISI.ARPA", "ARPA"])
        #expect(DNSName.decodeList(Self.rfcExample, allowCompression: false) == nil)
    }

    @Test func passtSearchListExample() {
        let golden: [UInt8] = cat([7], a("example"), [3], a("com"), [0, 3], a("sub"), [0xc0, 0])
        #expect(DNSName.encodeList(["example.com", "sub.example.com"], compress: true) == golden)
        // Repeated and trailing-dot names compress to a bare pointer; unrelated names are written in full.
        #expect(DNSName.encodeList(["example.com", "example.com.", "example.org"], compress: true)
                == cat([7], a("example"), [3], a("com"), [0, 0xc0, 0, 7], a("example"), [3], a("org"), [0]))
        #expect(DNSName.encodeList(["example.com", "sub.example.com"], compress: false)
                == cat([7], a("example"), [3], a("com"), [0, 3], a("sub"), [7], a("example"), [3], a("com"), [0]))
    }

    @Test func encoderChainsPointersThroughEarlierPointers() {
        var encoder = DNSNameEncoder(compress: true)
        let appended = [encoder.append("b.c"),
                        encoder.append("a.b.c"),      // "a" + ptr 0
                        encoder.append("x.a.b.c")]    // "x" + ptr to "a..." at 5
        #expect(appended == [true, true, true])
        #expect(encoder.bytes == cat([1], a("b"), [1], a("c"), [0, 1], a("a"), [0xc0, 0, 1], a("x"), [0xc0, 5]))
        #expect(DNSName.decodeList(encoder.bytes, allowCompression: true) == ["b.c", "a.b.c", "x.a.b.c"])
        // Matching is exact: a differently cased suffix is written out.
        let upper = encoder.append("B.C")
        #expect(upper)
        #expect(encoder.bytes.suffix(5) == cat([1], a("B"), [1], a("C"), [0]))
    }

    @Test func invalidNamesAreRefused() {
        let label63 = String(repeating: "a", count: 63)
        let label64 = String(repeating: "a", count: 64)
        #expect(DNSName.encode(label63 + ".com")?.count == 63 + 1 + 4 + 1)
        #expect(DNSName.encode(label64 + ".com") == nil)
        #expect(DNSName.encode("a..b") == nil)
        #expect(DNSName.encode(".a") == nil)
        #expect(DNSName.encode("") == [0] && DNSName.encode(".") == [0])
        // 255 bytes of wire form is the limit: 4 labels of 63 = 4 * 64 + 1 = 257 > 255.
        let long = [label63, label63, label63, label63].joined(separator: ".")
        #expect(DNSName.encode(long) == nil)
        let limit = [label63, label63, label63, String(repeating: "b", count: 61)].joined(separator: ".")
        #expect(DNSName.encode(limit)?.count == 255)
        var encoder = DNSNameEncoder(compress: true)
        let refused = [encoder.append(""), encoder.append("."), encoder.append(long)]
        #expect(refused == [false, false, false] && encoder.bytes.isEmpty)
        #expect(DNSName.encodeList(["", "ok", "a..b"], compress: true) == cat([2], a("ok"), [0]))
    }

    @Test func decoderRejectsLoopsAndOverruns() {
        #expect(decode([0xc0, 0]) == nil)                                  // points at itself
        #expect(decode([0xc0, 2, 0xc0, 0], at: 2) == nil)                  // 2 -> 0 -> 2: second is forward
        #expect(decode([0xc0, 2, 0]) == nil)                               // forward pointer
        #expect(decode([0xc0, 0xff]) == nil)                               // far past the end
        #expect(decode([0xc0]) == nil)                                     // pointer cut in half
        #expect(decode(cat([5], a("ab"))) == nil)                              // label runs past the end
        #expect(decode(cat([3], a("abc"))) == nil)                             // no root label
        #expect(decode([0x40, 0]) == nil && decode([0x80, 0]) == nil)     // reserved label types
        #expect(decode(cat([1], a("a"), [0, 0xc0, 0]), at: 3, compression: false) == nil)
        #expect(decode([0], at: 1) == nil && decode([0], at: -1) == nil)
        // A label that swallows a later pointer, which points back into the label: the jump target
        // must lie below the run it ends, so this cannot cycle.
        let overlap: [UInt8] = cat([1], a("x"), [4, 0xc0, 0x00, 0xc0, 0x02, 0xc0, 2])
        #expect(decode(overlap, at: 7) == nil)
        // A chain of backward pointers longer than the jump limit is refused; a short one is followed.
        var chain: [UInt8] = cat([1], a("z"), [0])
        for i in 0..<100 { chain += [0xc0, UInt8(i == 0 ? 0 : 3 + 2 * (i - 1))] }
        #expect(decode(chain, at: 3 + 2 * 10)! == ("z", 3 + 2 * 10 + 2))
        #expect(decode(chain, at: chain.count - 2) == nil)
        // More than 255 bytes of name through pointers is refused.
        let l63 = cat([63], [UInt8](repeating: 0x61, count: 63))
        let big = cat(l63, l63, l63, [0],                                   // 193 bytes of wire form
                      l63, [0xc0, 0])                                       // 64 + 193 > 255
        #expect(decode(big, at: 0) != nil && decode(big, at: 193) == nil)
    }

    @Test func decodeListStopsAtPaddingAndRejectsGarbage() {
        let padded: [UInt8] = cat([2], a("ab"), [0, 1], a("c"), [0, 0, 0, 0])
        #expect(DNSName.decodeList(padded, allowCompression: false) == ["ab", "c"])
        #expect(DNSName.decodeList([], allowCompression: false) == [])
        #expect(DNSName.decodeList(cat([2], a("ab")), allowCompression: false) == nil)
    }

    @Test func randomBytesNeverHangOrCrash() {
        let guarded = ServiceFixtures.GuardedBuffer(capacity: 256)
        var rng = ServiceFixtures.SeededGenerator(seed: 0xd25)
        for _ in 0..<20000 {
            let count = Int.random(in: 0...48, using: &rng)
            // Bias towards small lengths and pointers so structure is actually exercised.
            let bytes = (0..<count).map { _ -> UInt8 in
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: UInt8.random(in: 0...6, using: &rng)
                case 1: 0xc0 | UInt8.random(in: 0...1, using: &rng)
                case 2: UInt8.random(in: 0...48, using: &rng)
                default: UInt8.random(in: 0...255, using: &rng)
                }
            }
            guarded.with(bytes) { base, count in
                for offset in 0..<count {
                    if let (name, next) = DNSName.decode(base, count: count, at: offset, allowCompression: true) {
                        #expect(next > offset && next <= count && name.utf8.count <= 253)
                    }
                }
                _ = DNSName.decodeList(base, count: count, allowCompression: true)
                _ = DNSName.decodeList(base, count: count, allowCompression: false)
            }
        }
    }

    @Test func encodeDecodeRoundTrip() {
        let names = ["a.b.c.d", "b.c.d", "x.c.d", "d", "mail.example.co.uk", "example.co.uk", "co.uk", "www.example.co.uk"]
        for compress in [true, false] {
            let bytes = DNSName.encodeList(names, compress: compress)
            #expect(DNSName.decodeList(bytes, allowCompression: compress) == names)
        }
        #expect(DNSName.encodeList(names, compress: true).count < DNSName.encodeList(names, compress: false).count)
    }
}
