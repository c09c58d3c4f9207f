// Shared helpers for the L2-L4 wire tests: the values scripts/golden/gen_l2l4.py used to build the
// golden frames, a builder harness, a buffer that ends at a guard page (any read past the end of the
// frame faults), and a walker that parses a frame through every layer touching every accessor.
#if canImport(Glibc)
import Glibc
#endif
import PasstWire

/// Values the golden-frame script used (keep in sync with scripts/golden/gen_l2l4.py).
enum L2L4 {
    static let guestMAC = MACAddress(0x52, 0x54, 0x00, 0x12, 0x34, 0x56)
    static let ourMAC = MACAddress(0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55)
    static let guest4 = IPv4Address(192, 0, 2, 15)
    static let gateway4 = IPv4Address(192, 0, 2, 1)
    static let remote4 = IPv4Address(198, 51, 100, 7)
    static let guest6 = IPv6Address("2001:db8::15")!
    static let remote6 = IPv6Address("2001:db8:1::7")!
    static let router6 = IPv6Address("2001:db8:ff::1")!

    /// Every golden L2-L4 frame (pcap_file is not an Ethernet frame and is listed separately).
    static let frameNames = ["arp_request", "arp_reply", "ipv4_udp", "ipv4_options_tcp", "ipv4_fragment",
                             "ipv4_tcp_synack", "ipv6_tcp", "ipv6_ext_udp", "icmpv4_echo_request",
                             "icmpv4_echo_reply", "icmpv6_echo_request", "icmpv6_echo_reply"]

    /// The bytes of golden frame `name`.
    static func frame(_ name: String) throws -> [UInt8] { try Fixture.bytes("l2l4/" + name) }

    /// Runs `body` on a zeroed buffer of `capacity` bytes; returns the first n bytes, n = body's result.
    static func build(capacity: Int = 2048, _ body: (UnsafeMutableRawPointer) -> Int) -> [UInt8] {
        let p = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        defer { p.deallocate() }
        p.initializeMemory(as: UInt8.self, repeating: 0, count: capacity)
        let n = body(p)
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }

    /// Copies `bytes` to `p` at `offset`; returns the number of bytes copied.
    @discardableResult
    static func copy(_ bytes: [UInt8], to p: UnsafeMutableRawPointer, at offset: Int) -> Int {
        bytes.withUnsafeBytes { if let b = $0.baseAddress { (p + offset).copyMemory(from: b, byteCount: bytes.count) } }
        return bytes.count
    }

    /// The bytes of `p[0..<count]` as an array.
    static func bytes(_ p: UnsafeRawPointer, _ count: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: p, count: count))
    }

    /// A small seeded generator (SplitMix64) so that random tests are reproducible.
    struct Random: RandomNumberGenerator {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
    }

    /// Big-endian 16-bit value at `offset` of an array.
    static func be16(_ b: [UInt8], _ offset: Int) -> UInt16 { UInt16(b[offset]) << 8 | UInt16(b[offset + 1]) }

    /// Parses `p[0..<n]` as an Ethernet frame through every layer, reading every accessor; returns
    /// the number of invariant violations (a payload range outside the frame, an impossible field)
    /// and a digest of everything read (so that no read is optimised away).
    static func walk(_ p: UnsafeRawPointer, _ n: Int) -> (violations: Int, digest: UInt64) {
        let walker = FrameWalker(p, n)
        walker.walkEthernet()
        return (walker.bad, walker.digest)
    }
}

extension L2L4 {
    /// The state of one `L2L4.walk`: the frame bounds, the violation count and the digest.
    final class FrameWalker {
        let p: UnsafeRawPointer
        let n: Int
        var bad = 0
        var digest: UInt64 = 0

        init(_ p: UnsafeRawPointer, _ n: Int) { self.p = p; self.n = n }

        /// Adds a value read from the frame to the digest.
        func mix(_ v: some BinaryInteger) { digest = digest &* 31 &+ UInt64(truncatingIfNeeded: v) }
        /// Counts a violation unless `ok`.
        func check(_ ok: Bool) { if !ok { bad += 1 } }
        /// Counts a violation unless q[0..<c] lies inside the frame.
        func inside(_ q: UnsafeRawPointer, _ c: Int) { check(c >= 0 && q >= p && q + c <= p + n) }

        /// Walks the Ethernet header and the network layer.
        func walkEthernet() {
            guard let eth = EthernetFrame(p, count: n) else { check(n < 14); return }
            mix(eth.destination.bytes.0); mix(eth.source.bytes.5); mix(eth.etherType)
            inside(eth.payload, eth.payloadCount)
            check(eth.payloadOffset == 14)
            switch eth.etherType {
            case EtherType.arp:
                guard let arp = ARPPacket(eth.payload, count: eth.payloadCount) else { return }
                mix(arp.operation); mix(arp.senderMAC.bytes.0); mix(arp.senderIP.value)
                mix(arp.targetMAC.bytes.5); mix(arp.targetIP.value)
            case EtherType.ipv4:
                guard let ip = IPv4Packet(eth.payload, count: eth.payloadCount) else { return }
                mix(ip.version); mix(ip.headerLength); mix(ip.tos); mix(ip.dscp); mix(ip.ecn); mix(ip.totalLength)
                mix(ip.identification); mix(ip.flagsAndFragmentOffset); mix(ip.fragmentOffset); mix(ip.ttl)
                mix(ip.protocol); mix(ip.headerChecksum); mix(ip.source.value); mix(ip.destination.value)
                mix(ip.isChecksumValid ? 1 : 0); mix(ip.isFragment ? 1 : 0); mix(ip.dontFragment ? 1 : 0)
                check(ip.version == 4 && ip.headerLength >= 20 && ip.headerLength <= ip.totalLength)
                inside(ip.options, ip.optionsCount)
                inside(ip.payload, ip.payloadCount)
                check(ip.payload == ip.base + ip.payloadOffset)
                walkTransport(ip.protocol, ip.payload, ip.payloadCount, v4: (ip.source, ip.destination), v6: nil)
            case EtherType.ipv6:
                guard let ip = IPv6Packet(eth.payload, count: eth.payloadCount) else { return }
                mix(ip.version); mix(ip.trafficClass); mix(ip.flowLabel); mix(ip.payloadLength); mix(ip.nextHeader)
                mix(ip.hopLimit); mix(ip.source.high); mix(ip.destination.low); mix(ip.upperLayerProtocol)
                mix(ip.fragmentOffset); mix(ip.fragmentIdentification); mix(ip.isFragment ? 1 : 0)
                mix(ip.moreFragments ? 1 : 0); mix(ip.hasFragmentHeader ? 1 : 0)
                check(ip.version == 6 && ip.upperLayerOffset >= 40)
                inside(ip.payload, ip.payloadCount)
                inside(ip.upperLayer, ip.upperLayerCount)
                if ip.hasFragmentHeader { inside(ip.base + ip.fragmentHeaderOffset, 8) }
                if !ip.isFragment {
                    walkTransport(ip.upperLayerProtocol, ip.upperLayer, ip.upperLayerCount, v4: nil,
                                  v6: (ip.source, ip.destination))
                }
            default:
                return
            }
        }

        /// Walks a transport header (TCP with options, UDP, ICMP, ICMPv6 with echo).
        func walkTransport(_ proto: UInt8, _ q: UnsafeRawPointer, _ c: Int,
                           v4: (IPv4Address, IPv4Address)?, v6: (IPv6Address, IPv6Address)?) {
            switch proto {
            case IPProtocol.tcp:
                guard let tcp = TCPSegment(q, count: c) else { return }
                mix(tcp.sourcePort); mix(tcp.destinationPort); mix(tcp.sequenceNumber)
                mix(tcp.acknowledgmentNumber); mix(tcp.flags.rawValue); mix(tcp.window)
                mix(tcp.checksum); mix(tcp.urgentPointer); mix(tcp.dataOffset)
                check(tcp.headerLength >= 20 && tcp.headerLength <= c)
                inside(tcp.optionsArea, tcp.optionsCount)
                inside(tcp.payload, tcp.payloadCount)
                let options = tcp.options
                mix(options.mss ?? 0); mix(options.windowScale ?? 0); mix(options.skippedCount)
                mix(options.timestampValue ?? 0); mix(options.timestampEcho ?? 0)
                if let v4 { mix(tcp.isChecksumValid(source: v4.0, destination: v4.1) ? 1 : 0) }
                if let v6 { mix(tcp.isChecksumValid(source: v6.0, destination: v6.1) ? 1 : 0) }
            case IPProtocol.udp:
                guard let udp = UDPDatagram(q, count: c) else { return }
                mix(udp.sourcePort); mix(udp.destinationPort); mix(udp.length); mix(udp.checksum)
                check(udp.length >= 8 && udp.length <= c)
                inside(udp.payload, udp.payloadCount)
                if let v4 { mix(udp.isChecksumValid(source: v4.0, destination: v4.1) ? 1 : 0) }
                if let v6 { mix(udp.isChecksumValid(source: v6.0, destination: v6.1) ? 1 : 0) }
            case IPProtocol.icmp:
                guard let icmp = ICMPv4Packet(q, count: c) else { return }
                mix(icmp.type); mix(icmp.code); mix(icmp.checksum); mix(icmp.isChecksumValid ? 1 : 0)
                inside(icmp.body, icmp.bodyCount)
                if let echo = icmp.echo {
                    mix(echo.identifier); mix(echo.sequenceNumber)
                    inside(echo.data, echo.dataCount)
                }
            case IPProtocol.icmpv6:
                guard let icmp = ICMPv6Packet(q, count: c) else { return }
                mix(icmp.type); mix(icmp.code); mix(icmp.checksum)
                if let v6 { mix(icmp.isChecksumValid(source: v6.0, destination: v6.1) ? 1 : 0) }
                inside(icmp.body, icmp.bodyCount)
                if let echo = icmp.echo {
                    mix(echo.identifier); mix(echo.sequenceNumber)
                    inside(echo.data, echo.dataCount)
                }
            default:
                return
            }
        }
    }

    /// A buffer whose last byte is immediately followed by an inaccessible page: a view that reads
    /// past the end of its frame crashes the test instead of silently reading neighbouring memory.
    final class GuardedBuffer {
        /// Start of the mapping.
        private let region: UnsafeMutableRawPointer
        /// Length of the mapping (data pages plus the guard page).
        private let regionSize: Int
        /// Start of the frame; base + count is the first byte of the guard page.
        let base: UnsafeMutableRawPointer
        /// Length of the frame.
        let count: Int

        /// Maps a buffer holding a copy of `bytes`, ending at a guard page.
        init(_ bytes: [UInt8]) {
            let page = Int(sysconf(Int32(_SC_PAGESIZE)))
            let dataPages = max(1, (bytes.count + page - 1) / page)
            regionSize = (dataPages + 1) * page
            guard let mapped = mmap(nil, regionSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                  mapped != MAP_FAILED else { fatalError("mmap failed") }
            region = mapped
            precondition(mprotect(region + dataPages * page, page, PROT_NONE) == 0, "mprotect failed")
            count = bytes.count
            base = region + dataPages * page - bytes.count
            L2L4.copy(bytes, to: base, at: 0)
        }

        deinit { munmap(region, regionSize) }

        /// The frame as a read-only pointer.
        var pointer: UnsafeRawPointer { UnsafeRawPointer(base) }

        /// Runs `walk` over the whole guarded frame.
        func walk() -> (violations: Int, digest: UInt64) { L2L4.walk(pointer, count) }
    }

    /// Walks every prefix (every truncation) of `frame`, each in its own guarded buffer; returns the
    /// total number of invariant violations.
    static func walkEveryTruncation(_ frame: [UInt8]) -> Int {
        var violations = 0
        for length in 0...frame.count {
            violations += GuardedBuffer(Array(frame[0..<length])).walk().violations
        }
        return violations
    }
}
