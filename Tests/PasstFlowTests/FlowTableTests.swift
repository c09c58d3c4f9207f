// SipHash-2-4 against the reference vectors of the SipHash paper (key 00..0f, message 00..n-1),
// and the flow table: lookups, collisions in one probe run, backward-shift deletion, full table.
import Testing
import PasstFlow
import PasstWire

/// The first 16 reference outputs of SipHash-2-4 (vectors.h of the reference implementation),
/// as little-endian 64-bit values; entry n hashes the n-byte message 00 01 .. n-1.
let sipHashVectors: [UInt64] = [
    0x726f_db47_dd0e_0e31, 0x74f8_39c5_93dc_67fd, 0x0d6c_8009_d9a9_4f5a, 0x8567_6696_d7fb_7e2d,
    0xcf27_94e0_2771_87b7, 0x1876_5564_cd99_a68d, 0xcbc9_466e_58fe_e3ce, 0xab02_00f5_8b01_d137,
    0x93f5_f579_9a93_2462, 0x9e00_82df_0ba9_e4b0, 0x7a5d_bbc5_94dd_b9f3, 0xf4b3_2f46_226b_ada7,
    0x751e_8fbc_860e_e5fb, 0x14ea_5627_c084_3d90, 0xf723_ca90_8e7a_f2ee, 0xa129_ca61_49be_45e5,
]

let referenceKey = SipHashKey(k0: 0x0706_0504_0302_0100, k1: 0x0f0e_0d0c_0b0a_0908)

@Suite("SipHash-2-4")
struct SipHashTests {
    @Test("Reference vectors for messages of 0 to 15 bytes")
    func referenceVectors() {
        for (length, expected) in sipHashVectors.enumerated() {
            let message = (0..<length).map { UInt8($0) }
            let hash = message.withUnsafeBytes { SipHash24.hash(key: referenceKey, bytes: $0) }
            #expect(hash == expected, "length \(length)")
        }
    }

    @Test("The five-word form equals the byte form of the same 40 bytes")
    func wordsMatchBytes() {
        let words: [UInt64] = [0x0123_4567_89ab_cdef, 0, 0xffff_c000_0201, 42, 0x1100_3500_0211]
        let bytes = words.flatMap { word in (0..<8).map { UInt8(truncatingIfNeeded: word >> UInt64(8 * $0)) } }
        let fromBytes = bytes.withUnsafeBytes { SipHash24.hash(key: referenceKey, bytes: $0) }
        #expect(SipHash24.hash(key: referenceKey, words[0], words[1], words[2], words[3], words[4]) == fromBytes)
    }

    @Test("Random keys differ")
    func randomKeys() {
        #expect(SipHashKey.random() != SipHashKey.random())
    }
}

/// A UDP tap-side key for guest port `port`.
func flowKey(_ port: UInt16, interface: FlowInterface = .tap) -> FlowKey {
    FlowKey(proto: IPProtocol.udp, interface: interface, ourAddress: IPv6Address(v4Mapped: IPv4Address(192, 0, 2, 1)),
            ourPort: 53, endpointAddress: IPv6Address(v4Mapped: IPv4Address(192, 0, 2, 2)), endpointPort: port)
}

@Suite("Flow table")
struct FlowTableTests {
    @Test("Insert, lookup and remove; keys differing in any field are distinct")
    func basics() {
        var table = FlowTable(capacity: 16)
        do { let ok = table.bucketCount >= 16 * 10 / 7; #expect(ok) }
        do { let ok = table.insert(flowKey(1000), reference: 7); #expect(ok) }
        do { let ok = table.lookup(flowKey(1000)) == 7; #expect(ok) }
        do { let ok = table.lookup(flowKey(1001)) == nil; #expect(ok) }
        do { let ok = table.lookup(flowKey(1000, interface: .host)) == nil; #expect(ok) }
        var otherProto = flowKey(1000)
        otherProto.proto = IPProtocol.tcp
        do { let ok = table.lookup(otherProto) == nil; #expect(ok) }
        do { let ok = !table.insert(flowKey(1000), reference: 8); #expect(ok, "duplicate key") }
        do { let ok = table.insert(flowKey(1000, interface: .host), reference: 0); #expect(ok) }
        do { let ok = table.lookup(flowKey(1000, interface: .host)) == 0; #expect(ok) }
        do { let ok = table.count == 2; #expect(ok) }
        do { let ok = table.remove(flowKey(1000)); #expect(ok) }
        do { let ok = !table.remove(flowKey(1000)); #expect(ok) }
        do { let ok = table.lookup(flowKey(1000)) == nil; #expect(ok) }
        do { let ok = table.lookup(flowKey(1000, interface: .host)) == 0; #expect(ok) }
        do { let ok = table.count == 1; #expect(ok) }
    }

    @Test("Full table: insert fails, existing keys stay, a removal makes room")
    func full() {
        var table = FlowTable(capacity: 8)
        for port in UInt16(0)..<8 { do { let ok = table.insert(flowKey(port), reference: UInt32(port)); #expect(ok) } }
        do { let ok = !table.insert(flowKey(100), reference: 100); #expect(ok) }
        for port in UInt16(0)..<8 { do { let ok = table.lookup(flowKey(port)) == UInt32(port); #expect(ok) } }
        do { let ok = table.remove(flowKey(3)); #expect(ok) }
        do { let ok = table.insert(flowKey(100), reference: 100); #expect(ok) }
        do { let ok = table.lookup(flowKey(100)) == 100; #expect(ok) }
    }

    @Test("Collisions: keys sharing a probe run survive any deletion order")
    func collisionsAndDeletion() {
        // A tiny table (4 keys, 6 buckets) forces collisions and wrap-around; check every
        // deletion order of a full set against a model.
        let keys = (UInt16(0)..<4).map { flowKey(2000 + $0) }
        var orders: [[Int]] = [[]]
        for _ in 0..<4 {
            orders = orders.flatMap { order in (0..<4).filter { !order.contains($0) }.map { order + [$0] } }
        }
        for seed in UInt64(0)..<8 {
            for order in orders {
                var table = FlowTable(capacity: 4, secret: SipHashKey(k0: seed, k1: ~seed))
                for (index, key) in keys.enumerated() { do { let ok = table.insert(key, reference: UInt32(index)); #expect(ok) } }
                var present = Set(0..<4)
                for removed in order {
                    do { let ok = table.remove(keys[removed]); #expect(ok) }
                    present.remove(removed)
                    for (index, key) in keys.enumerated() {
                        do { let ok = table.lookup(key) == (present.contains(index) ? UInt32(index) : nil); #expect(ok) }
                    }
                }
                do { let ok = table.count == 0; #expect(ok) }
            }
        }
    }

    @Test("Many keys in a large table, then half removed")
    func manyKeys() {
        var table = FlowTable(capacity: 4096)
        for port in UInt16(0)..<4096 { do { let ok = table.insert(flowKey(port), reference: UInt32(port)); #expect(ok) } }
        for port in stride(from: UInt16(0), to: 4096, by: 2) { do { let ok = table.remove(flowKey(port)); #expect(ok) } }
        for port in UInt16(0)..<4096 {
            do { let ok = table.lookup(flowKey(port)) == (port % 2 == 1 ? UInt32(port) : nil); #expect(ok) }
        }
    }
}
