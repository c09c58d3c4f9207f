// Helpers for the NDP / DHCP / DHCPv6 / DNS name tests: fixture slicing, a buffer whose end
// touches an inaccessible page (so any read past a message's end faults instead of silently
// reading heap bytes), and a seeded random generator for reproducible mutation tests.
#if canImport(Glibc)
import Glibc
#endif
import Testing
import PasstWire

enum ServiceFixtures {
    /// Offset of the ICMPv6 message in the NDP fixtures (Ethernet 14 + IPv6 40).
    static let ndpOffset = 54
    /// Offset of the DHCP message in the DHCP fixtures (Ethernet 14 + IPv4 20 + UDP 8).
    static let dhcpOffset = 42
    /// Offset of the DHCPv6 message in the DHCPv6 fixtures (Ethernet 14 + IPv6 40 + UDP 8).
    static let dhcpv6Offset = 62

    /// The full Ethernet frame of fixture `services/name`.
    static func frame(_ name: String) throws -> [UInt8] { try Fixture.bytes("services/" + name) }

    /// The IPv6 source and destination of an IPv6 fixture frame (fixed offsets, no extension headers).
    static func ipv6Addresses(_ frame: [UInt8]) -> (source: IPv6Address, destination: IPv6Address) {
        (IPv6Address(bytes: Array(frame[22..<38]))!, IPv6Address(bytes: Array(frame[38..<54]))!)
    }

    /// The message part of an NDP fixture, after checking the frame really is IPv6/ICMPv6 with no
    /// extension headers and a payload length matching the message.
    static func ndpMessage(_ frame: [UInt8]) -> [UInt8] {
        #expect(frame[12] == 0x86 && frame[13] == 0xdd && frame[20] == 58)
        #expect(Int(frame[18]) << 8 | Int(frame[19]) == frame.count - ndpOffset)
        return Array(frame[ndpOffset...])
    }

    /// The UDP payload of a DHCP fixture, after checking IPv4 (IHL 5) / UDP and the UDP length.
    static func dhcpMessage(_ frame: [UInt8]) -> [UInt8] {
        #expect(frame[12] == 0x08 && frame[13] == 0x00 && frame[14] == 0x45 && frame[23] == 17)
        #expect(Int(frame[38]) << 8 | Int(frame[39]) == frame.count - dhcpOffset + 8)
        return Array(frame[dhcpOffset...])
    }

    /// The UDP payload of a DHCPv6 fixture, after checking IPv6 / UDP and the UDP length.
    static func dhcpv6Message(_ frame: [UInt8]) -> [UInt8] {
        #expect(frame[12] == 0x86 && frame[13] == 0xdd && frame[20] == 17)
        #expect(Int(frame[58]) << 8 | Int(frame[59]) == frame.count - dhcpv6Offset + 8)
        return Array(frame[dhcpv6Offset...])
    }

    /// A read/write region whose last usable byte is followed by a PROT_NONE page. `with` copies a
    /// message so that it ends exactly at the guard page.
    final class GuardedBuffer {
        let page: Int
        let dataSize: Int
        let region: UnsafeMutableRawPointer

        /// Maps `capacity` bytes (rounded up to pages) plus one guard page.
        init(capacity: Int = 8192) {
            page = Int(sysconf(Int32(_SC_PAGESIZE)))
            dataSize = (capacity + page - 1) / page * page
            let mapped = mmap(nil, dataSize + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            precondition(mapped != MAP_FAILED, "mmap failed")
            region = mapped!
            precondition(mprotect(region + dataSize, page, PROT_NONE) == 0, "mprotect failed")
        }

        deinit { munmap(region, dataSize + page) }

        /// Runs `body` with `bytes` copied so that their end touches the guard page.
        @discardableResult
        func with<R>(_ bytes: [UInt8], _ body: (UnsafeRawPointer, Int) throws -> R) rethrows -> R {
            precondition(bytes.count <= dataSize)
            let start = region + (dataSize - bytes.count)
            bytes.withUnsafeBytes { if let b = $0.baseAddress { start.copyMemory(from: b, byteCount: bytes.count) } }
            return try body(UnsafeRawPointer(start), bytes.count)
        }
    }

    /// SplitMix64: a tiny seeded generator so mutation tests are reproducible.
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        /// Starts the sequence at `seed`.
        init(seed: UInt64) { state = seed }
        /// The next 64 random bits.
        mutating func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
    }

    /// `bytes` with 1...4 random bytes overwritten by random values.
    static func mutate(_ bytes: [UInt8], using rng: inout SeededGenerator) -> [UInt8] {
        var out = bytes
        guard !out.isEmpty else { return out }
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            out[Int.random(in: 0..<out.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
        }
        return out
    }

    /// Runs `body` on a copy of `bytes` with the byte at `index` replaced by every value 0...255.
    static func everyValue(at index: Int, of bytes: [UInt8], _ body: ([UInt8]) -> Void) {
        var copy = bytes
        for v in 0...255 { copy[index] = UInt8(v); body(copy) }
    }

    /// Writes with `build` into a buffer of `capacity` bytes followed by sentinel bytes; returns the
    /// result and whether every byte past `capacity` is untouched.
    static func buildBounded(capacity: Int, _ build: (UnsafeMutableRawPointer, Int) -> Int?) -> (Int?, Bool) {
        let slack = 64
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity + slack, alignment: 16)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0xa5, count: capacity + slack)
        let result = build(buffer, capacity)
        let untouched = (capacity..<capacity + slack).allSatisfy { buffer.load(fromByteOffset: $0, as: UInt8.self) == 0xa5 }
        return (result, untouched)
    }

    /// Runs `build` into a fresh zero-filled buffer of `capacity` bytes and returns the bytes written.
    static func build(capacity: Int = 2048, _ build: (UnsafeMutableRawPointer, Int) -> Int?) -> [UInt8]? {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: capacity)
        guard let n = build(buffer, capacity) else { return nil }
        return Array(UnsafeRawBufferPointer(start: buffer, count: n))
    }
}
