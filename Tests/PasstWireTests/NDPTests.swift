// NDP views and builders against the golden frames of scripts/golden/gen_services.py.
// Fixtures are full Ethernet frames; the ICMPv6 message starts at offset 54 (no extension headers).
import Testing
import PasstWire

/// Values used by gen_services.py.
private enum V {
    static let ourMAC = MACAddress(0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55)
    static let guestMAC = MACAddress(0x52, 0x54, 0x00, 0x12, 0x34, 0x56)
    static let ourLL = IPv6Address("fe80::9855:9aff:fe55:9a55")!
    static let guestLL = IPv6Address("fe80::5054:ff:fe12:3456")!
    static let guestAddress = IPv6Address("2001:db8:1::5")!
    static let gateway = IPv6Address("2001:db8:1::1")!
    static let dns = [IPv6Address("2001:db8::53")!, IPv6Address("2001:db8::54")!]
    static let search = ["example.com", "sub.example.com"]
    static let mtu: UInt32 = 65520
    static let fixtures = ["ndp_rs", "ndp_ra", "ndp_ns", "ndp_ns_dad", "ndp_na"]

    /// The RA options passt sends, in its order.
    static let raOptions: [NDPOptionValue] = [
        .prefixInformation(prefix: guestAddress, prefixLength: 64, onLink: true, autonomous: true,
                           validLifetime: NDP.infiniteLifetime, preferredLifetime: NDP.infiniteLifetime),
        .sourceLinkLayerAddress(ourMAC),
        .mtu(mtu),
        .recursiveDNSServers(lifetime: NDP.infiniteLifetime, addresses: dns),
        .dnsSearchList(lifetime: NDP.infiniteLifetime, domains: search),
    ]
}

/// Reads every field and option of whichever NDP view accepts `base[0..<count]`, as a service
/// would; returns whether some view accepted it.
@discardableResult
private func exerciseNDP(_ base: UnsafeRawPointer, _ count: Int) -> Bool {
    var accepted = false
    var sink = 0
    func walk(_ options: NDPOptions) {
        var steps = 0
        for option in options {
            steps += 1
            #expect(option.byteCount >= 8 && option.byteCount == Int(option.lengthUnits) * 8)
            sink &+= Int(option.type) &+ (option.linkLayerAddress?.array.count ?? 0) &+ Int(option.mtu ?? 0)
            if let p = option.prefixInformation {
                sink &+= Int(p.prefixLength) &+ Int(p.validLifetime) &+ Int(p.preferredLifetime) &+ Int(p.prefix.low & 0xff)
                sink &+= (p.onLink ? 1 : 0) &+ (p.autonomous ? 1 : 0)
            }
            if let r = option.recursiveDNSServers { sink &+= r.addresses.count &+ Int(r.lifetime) }
            if let d = option.dnsSearchList { sink &+= (d.domainNames?.count ?? 0) &+ Int(d.lifetime) }
        }
        #expect(steps <= options.count / 8)
    }
    if let rs = NDPRouterSolicitation(base, count: count) {
        accepted = true
        #expect(rs.options.isWellFormed)
        walk(rs.options); sink &+= (rs.sourceLinkLayerAddress == nil ? 0 : 1) &+ Int(rs.checksum)
    }
    if let ra = NDPRouterAdvertisement(base, count: count) {
        accepted = true
        #expect(ra.options.isWellFormed)
        walk(ra.options)
        sink &+= Int(ra.currentHopLimit) &+ Int(ra.routerLifetime) &+ Int(ra.reachableTime) &+ Int(ra.retransTimer)
        sink &+= (ra.managed ? 1 : 0) &+ (ra.other ? 1 : 0) &+ (ra.sourceLinkLayerAddress == nil ? 0 : 1)
    }
    if let ns = NDPNeighborSolicitation(base, count: count) {
        accepted = true
        #expect(ns.options.isWellFormed)
        walk(ns.options); sink &+= Int(ns.target.low & 0xff) &+ (ns.sourceLinkLayerAddress == nil ? 0 : 1)
    }
    if let na = NDPNeighborAdvertisement(base, count: count) {
        accepted = true
        #expect(na.options.isWellFormed)
        walk(na.options)
        sink &+= Int(na.target.low & 0xff) &+ (na.targetLinkLayerAddress == nil ? 0 : 1)
        sink &+= (na.router ? 1 : 0) &+ (na.solicited ? 1 : 0) &+ (na.override ? 1 : 0)
    }
    // The raw iterator must be safe on any bytes, validated or not.
    if count >= 4 { walk(NDPOptions(base + 4, count: count - 4)) }
    _ = NDP.checksum(base, count: count, source: V.ourLL, destination: V.guestLL)
    _ = NDP.isChecksumValid(base, count: count, source: V.ourLL, destination: V.guestLL)
    _ = sink
    return accepted
}

/// Builds into a zeroed buffer, fills the checksum for `source` -> `destination` and returns the bytes.
private func buildNDP(source: IPv6Address, destination: IPv6Address,
                      _ write: (UnsafeMutableRawPointer, Int) -> Int?) -> [UInt8]? {
    ServiceFixtures.build { buffer, capacity in
        guard let n = write(buffer, capacity) else { return nil }
        NDP.fillChecksum(buffer, count: n, source: source, destination: destination)
        return n
    }
}

@Suite struct NDPTests {
    @Test func routerSolicitation() throws {
        let frame = try ServiceFixtures.frame("ndp_rs")
        let message = ServiceFixtures.ndpMessage(frame)
        let (source, destination) = ServiceFixtures.ipv6Addresses(frame)
        #expect(source == V.guestLL && destination == IPv6Address("ff02::2")!)
        try withFrame(message) { base, count in
            let rs = try #require(NDPRouterSolicitation(base, count: count))
            #expect(rs.isChecksumValid(source: source, destination: destination))
            #expect(NDP.checksum(base, count: count, source: source, destination: destination) == rs.checksum)
            #expect(rs.sourceLinkLayerAddress == V.guestMAC)
            #expect(Array(rs.options).map(\.type) == [NDPOptionType.sourceLinkLayerAddress])
            #expect(NDPRouterAdvertisement(base, count: count) == nil)
            #expect(NDPNeighborSolicitation(base, count: count) == nil)
        }
        let built = buildNDP(source: source, destination: destination) {
            NDPRouterSolicitation.write(to: $0, capacity: $1, sourceLinkLayerAddress: V.guestMAC)
        }
        #expect(built == message)
    }

    @Test func routerAdvertisement() throws {
        let frame = try ServiceFixtures.frame("ndp_ra")
        let message = ServiceFixtures.ndpMessage(frame)
        let (source, destination) = ServiceFixtures.ipv6Addresses(frame)
        #expect(source == V.ourLL && destination == V.guestLL)
        try withFrame(message) { base, count in
            let ra = try #require(NDPRouterAdvertisement(base, count: count))
            #expect(ra.isChecksumValid(source: source, destination: destination))
            #expect(!ra.isChecksumValid(source: V.guestAddress, destination: destination))
            #expect(ra.currentHopLimit == 255)
            #expect(ra.flags == 0x80 && ra.managed && !ra.other)
            #expect(ra.routerLifetime == 65535 && ra.reachableTime == 0 && ra.retransTimer == 0)
            #expect(ra.sourceLinkLayerAddress == V.ourMAC)
            let options = Array(ra.options)
            #expect(options.map(\.type) == [3, 1, 5, 25, 31])
            #expect(options.map(\.lengthUnits) == [4, 1, 1, 5, 5])

            let prefix = try #require(options[0].prefixInformation)
            #expect(prefix.prefixLength == 64 && prefix.onLink && prefix.autonomous && prefix.flags == 0xc0)
            #expect(prefix.validLifetime == NDP.infiniteLifetime && prefix.preferredLifetime == NDP.infiniteLifetime)
            #expect(prefix.prefix == V.guestAddress)                  // full address, host bits kept
            #expect(options[1].linkLayerAddress == V.ourMAC)
            #expect(options[2].mtu == V.mtu)
            let rdnss = try #require(options[3].recursiveDNSServers)
            #expect(rdnss.lifetime == NDP.infiniteLifetime && rdnss.count == 2 && rdnss.addresses == V.dns)
            let dnssl = try #require(options[4].dnsSearchList)
            #expect(dnssl.lifetime == NDP.infiniteLifetime && dnssl.domainNames == V.search)
            // Typed views refuse other option types.
            #expect(options[0].mtu == nil && options[0].linkLayerAddress == nil && options[1].prefixInformation == nil)
            #expect(options[3].dnsSearchList == nil && options[4].recursiveDNSServers == nil)
        }
        let built = buildNDP(source: source, destination: destination) {
            NDPRouterAdvertisement.write(to: $0, capacity: $1, currentHopLimit: 255, managed: true, other: false,
                                         routerLifetime: 65535, reachableTime: 0, retransTimer: 0, options: V.raOptions)
        }
        #expect(built == message)
    }

    @Test func neighborSolicitation() throws {
        let frame = try ServiceFixtures.frame("ndp_ns")
        let message = ServiceFixtures.ndpMessage(frame)
        let (source, destination) = ServiceFixtures.ipv6Addresses(frame)
        try withFrame(message) { base, count in
            let ns = try #require(NDPNeighborSolicitation(base, count: count))
            #expect(ns.isChecksumValid(source: source, destination: destination))
            #expect(ns.target == V.gateway)
            #expect(ns.sourceLinkLayerAddress == V.guestMAC)
            #expect(NDPNeighborAdvertisement(base, count: count) == nil)
        }
        let built = buildNDP(source: source, destination: destination) {
            NDPNeighborSolicitation.write(to: $0, capacity: $1, target: V.gateway, sourceLinkLayerAddress: V.guestMAC)
        }
        #expect(built == message)
    }

    @Test func duplicateAddressDetectionProbe() throws {
        let frame = try ServiceFixtures.frame("ndp_ns_dad")
        let message = ServiceFixtures.ndpMessage(frame)
        let (source, destination) = ServiceFixtures.ipv6Addresses(frame)
        #expect(source.isUnspecified)
        try withFrame(message) { base, count in
            let ns = try #require(NDPNeighborSolicitation(base, count: count))
            #expect(ns.isChecksumValid(source: source, destination: destination))
            #expect(ns.target == V.guestAddress && ns.sourceLinkLayerAddress == nil)
            #expect(Array(ns.options).isEmpty)
        }
        let built = buildNDP(source: source, destination: destination) {
            NDPNeighborSolicitation.write(to: $0, capacity: $1, target: V.guestAddress, sourceLinkLayerAddress: nil)
        }
        #expect(built == message)
    }

    @Test func neighborAdvertisement() throws {
        let frame = try ServiceFixtures.frame("ndp_na")
        let message = ServiceFixtures.ndpMessage(frame)
        let (source, destination) = ServiceFixtures.ipv6Addresses(frame)
        try withFrame(message) { base, count in
            let na = try #require(NDPNeighborAdvertisement(base, count: count))
            #expect(na.isChecksumValid(source: source, destination: destination))
            #expect(na.flags == 0xe0 && na.router && na.solicited && na.override)
            #expect(na.target == V.gateway)
            #expect(na.targetLinkLayerAddress == V.ourMAC)
            #expect(Array(na.options).map(\.type) == [NDPOptionType.targetLinkLayerAddress])
        }
        let built = buildNDP(source: source, destination: destination) {
            NDPNeighborAdvertisement.write(to: $0, capacity: $1, router: true, solicited: true, override: true,
                                           target: V.gateway, targetLinkLayerAddress: V.ourMAC)
        }
        #expect(built == message)
        let flagsOnly = ServiceFixtures.build {
            NDPNeighborAdvertisement.write(to: $0, capacity: $1, router: false, solicited: true, override: false,
                                           target: V.gateway, targetLinkLayerAddress: nil)
        }
        #expect(flagsOnly?.count == 24 && flagsOnly?[4] == 0x40)
    }

    @Test func checksumDetectsCorruption() throws {
        let frame = try ServiceFixtures.frame("ndp_ra")
        let (source, destination) = ServiceFixtures.ipv6Addresses(frame)
        var message = ServiceFixtures.ndpMessage(frame)
        message[20] ^= 0x01
        withFrame(message) { base, count in
            #expect(!NDP.isChecksumValid(base, count: count, source: source, destination: destination))
        }
    }

    @Test func rejectsWrongTypeCodeAndZeroLengthOption() throws {
        let message = ServiceFixtures.ndpMessage(try ServiceFixtures.frame("ndp_ns"))
        var badCode = message; badCode[1] = 1
        withFrame(badCode) { #expect(NDPNeighborSolicitation($0, count: $1) == nil) }
        var zeroLength = message; zeroLength[25] = 0                // the SLLA option's length
        withFrame(zeroLength) { base, count in
            #expect(NDPNeighborSolicitation(base, count: count) == nil)
            #expect(Array(NDPOptions(base + 24, count: count - 24)).isEmpty)   // iterator stops at once
            #expect(!NDPOptions(base + 24, count: count - 24).isWellFormed)
        }
        var overrun = message; overrun[25] = 2                      // claims 16 bytes, 8 present
        withFrame(overrun) { base, count in
            #expect(NDPNeighborSolicitation(base, count: count) == nil)
            #expect(Array(NDPOptions(base + 24, count: count - 24)).isEmpty)
        }
    }

    @Test func everyTruncationIsRejectedOrSafe() throws {
        let guarded = ServiceFixtures.GuardedBuffer()
        for name in V.fixtures {
            let message = ServiceFixtures.ndpMessage(try ServiceFixtures.frame(name))
            // A prefix is a valid message exactly when it ends on an option boundary.
            var boundaries: Set<Int> = []
            var offset = message[0] == NDP.routerSolicitationType ? 8 : message[0] == NDP.routerAdvertisementType ? 16 : 24
            while offset <= message.count {
                boundaries.insert(offset)
                guard offset < message.count else { break }
                offset += Int(message[offset + 1]) * 8
            }
            #expect(boundaries.contains(message.count))
            for length in 0...message.count {
                let accepted = guarded.with(Array(message.prefix(length))) { exerciseNDP($0, $1) }
                #expect(accepted == boundaries.contains(length), "\(name) prefix \(length)")
            }
        }
    }

    @Test func corruptedOptionLengthsNeverCrash() throws {
        let guarded = ServiceFixtures.GuardedBuffer()
        for name in V.fixtures {
            let message = ServiceFixtures.ndpMessage(try ServiceFixtures.frame(name))
            let fixed = message[0] == NDP.routerSolicitationType ? 8 : message[0] == NDP.routerAdvertisementType ? 16 : 24
            var offset = fixed
            while offset + 1 < message.count {
                ServiceFixtures.everyValue(at: offset + 1, of: message) { corrupted in
                    _ = guarded.with(corrupted) { exerciseNDP($0, $1) }
                }
                offset += Int(message[offset + 1]) * 8
            }
        }
    }

    @Test func randomMutationsNeverCrash() throws {
        let guarded = ServiceFixtures.GuardedBuffer()
        var rng = ServiceFixtures.SeededGenerator(seed: 0x4e44_5021)
        for name in V.fixtures {
            let message = ServiceFixtures.ndpMessage(try ServiceFixtures.frame(name))
            for _ in 0..<1500 {
                var mutated = ServiceFixtures.mutate(message, using: &rng)
                mutated = Array(mutated.prefix(Int.random(in: 0...mutated.count, using: &rng)))
                guarded.with(mutated) { exerciseNDP($0, $1) }
            }
        }
    }

    @Test func buildersRespectCapacity() throws {
        let full = try #require(ServiceFixtures.build {
            NDPRouterAdvertisement.write(to: $0, capacity: $1, currentHopLimit: 255, managed: true, other: false,
                                         routerLifetime: 65535, reachableTime: 0, retransTimer: 0, options: V.raOptions)
        })
        for capacity in 0..<full.count {
            let (result, untouched) = ServiceFixtures.buildBounded(capacity: capacity) {
                NDPRouterAdvertisement.write(to: $0, capacity: $1, currentHopLimit: 255, managed: true, other: false,
                                             routerLifetime: 65535, reachableTime: 0, retransTimer: 0, options: V.raOptions)
            }
            #expect(result == nil && untouched)
        }
        for capacity in 0..<32 {
            let (na, naUntouched) = ServiceFixtures.buildBounded(capacity: capacity) {
                NDPNeighborAdvertisement.write(to: $0, capacity: $1, router: true, solicited: true, override: true,
                                               target: V.gateway, targetLinkLayerAddress: V.ourMAC)
            }
            #expect(na == nil && naUntouched)
            let (rs, rsUntouched) = ServiceFixtures.buildBounded(capacity: capacity / 2) {
                NDPRouterSolicitation.write(to: $0, capacity: $1, sourceLinkLayerAddress: V.guestMAC)
            }
            #expect(rs == nil && rsUntouched)
            let (ns, nsUntouched) = ServiceFixtures.buildBounded(capacity: capacity) {
                NDPNeighborSolicitation.write(to: $0, capacity: $1, target: V.gateway, sourceLinkLayerAddress: V.guestMAC)
            }
            #expect(ns == nil && nsUntouched)
        }
    }

    @Test func optionValueEdgeCases() throws {
        // Empty RDNSS and a DNSSL without valid names are left out.
        let empty = ServiceFixtures.build {
            NDPRouterAdvertisement.write(to: $0, capacity: $1, currentHopLimit: 0, managed: false, other: true,
                                         routerLifetime: 0, reachableTime: 1, retransTimer: 2,
                                         options: [.recursiveDNSServers(lifetime: 1, addresses: []),
                                                   .dnsSearchList(lifetime: 1, domains: ["", "a..b"])])
        }
        #expect(empty?.count == 16 && empty?[5] == 0x40)
        // A name list that is already a multiple of 8 bytes gets no extra padding (upstream adds 8).
        let aligned = try #require(ServiceFixtures.build {
            NDPOptionValue.dnsSearchList(lifetime: 7, domains: ["abcdef"]).write(to: $0, capacity: $1)
        })
        #expect(aligned == [31, 2, 0, 0, 0, 0, 0, 7, 6, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0])
        let odd = try #require(ServiceFixtures.build {
            NDPOptionValue.dnsSearchList(lifetime: 7, domains: ["ab"]).write(to: $0, capacity: $1)
        })
        #expect(odd.count == 16 && odd[1] == 2 && odd[12...] == [0, 0, 0, 0])
        try withFrame(odd) { base, count in
            let option = try #require(Array(NDPOptions(base, count: count)).first)
            #expect(option.dnsSearchList?.domainNames == ["ab"])
        }
        // 128 addresses do not fit an 8-bit length.
        let many = [IPv6Address](repeating: V.gateway, count: 128)
        #expect(ServiceFixtures.build(capacity: 4096) {
            NDPOptionValue.recursiveDNSServers(lifetime: 1, addresses: many).write(to: $0, capacity: $1)
        } == nil)
        // A DNSSL with a malformed name inside decodes to nil rather than garbage.
        let broken: [UInt8] = [31, 2, 0, 0, 0, 0, 0, 1, 9, 0x61, 0, 0, 0, 0, 0, 0]
        try withFrame(broken) { base, count in
            let option = try #require(Array(NDPOptions(base, count: count)).first)
            #expect(option.dnsSearchList != nil && option.dnsSearchList?.domainNames == nil)
        }
    }
}
