// Rule tests for the services (spec §4): what is ignored, what the --no-* switches and the
// configuration take away, DHCP option order and option 121, RA options, DHCPv6 server id and
// NotOnLink rules, classification. Requests start from the golden fixtures where they can.
import Testing
import PasstWire
@testable import PasstServices

@Suite struct ARPRuleTests {
    @Test func noIPv4MeansNoAnswer() {
        var config = Golden.configA
        config.ipv4 = nil
        #expect(ServiceHarness().reply(Golden.named("arp_request").request, config) == nil)
    }

    @Test func onlyEthernetIPv4RequestsAreAnswered() {
        let harness = ServiceHarness()
        var request = Golden.named("arp_request").request
        #expect(harness.reply(request, Golden.configA) != nil)
        request[15] = 6                                       // hardware type IEEE 802
        #expect(harness.reply(request, Golden.configA) == nil)
        request = Golden.named("arp_request").request
        request[21] = 3                                       // opcode RARP request
        #expect(harness.reply(request, Golden.configA) == nil)
    }

    @Test func paddedRequestIsAnsweredWithUnpaddedReply() {
        let reply = ServiceHarness().reply(Golden.named("arp_request").request + [UInt8](repeating: 0, count: 18),
                                           Golden.configA)
        #expect(hex(reply) == hex(Golden.named("arp_request").reply))
    }

    @Test func replyGoesToTheFramesSourceMAC() throws {
        var config = Golden.configA
        config.guestMAC = .broadcast                          // not learned yet: ARP does not need it
        let reply = try #require(ServiceHarness().reply(Golden.named("arp_request").request, config))
        #expect(Array(reply[0..<6]) == Golden.guestMAC.array)
    }
}

@Suite struct DHCPRuleTests {
    static let discover = Golden.named("dhcp_discover").request

    /// The option codes of the reply to `request` under `config`.
    static func codes(_ request: [UInt8], _ config: ServiceConfig = Golden.configA) -> [UInt8]? {
        ServiceHarness().reply(request, config).flatMap(dhcpOptions)?.map(\.code)
    }

    /// The discover fixture with its 14-byte parameter request list replaced by `list`.
    static func discover(requesting list: [UInt8]) -> [UInt8] {
        precondition(list.count == 14)
        var frame = discover
        let at = (0..<frame.count - 1).first { frame[$0] == 55 && frame[$0 + 1] == 14 }! + 2
        frame.replaceSubrange(at..<at + 14, with: list)
        return refreshUDPChecksum(frame)
    }

    /// `frame` (IPv4/UDP, IHL 5) with its UDP checksum recomputed.
    static func refreshUDPChecksum(_ frame: [UInt8]) -> [UInt8] {
        var copy = frame
        copy.withUnsafeMutableBytes { p in
            let base = p.baseAddress!
            UDPDatagram.fillChecksum(base + 34, count: p.count - 34, source: IPv4Address(at: base, offset: 26),
                                     destination: IPv4Address(at: base, offset: 30))
        }
        return copy
    }

    @Test func switchesAndConfigurationTurnDHCPOff() {
        let harness = ServiceHarness()
        var config = Golden.configA
        config.noDHCP = true
        #expect(harness.reply(Self.discover, config) == nil)
        config = Golden.configA
        config.ipv4?.gateway = nil
        config.ipv4?.ourTapAddress = nil
        #expect(harness.reply(Self.discover, config) == nil)
        config = Golden.configA
        config.ipv4 = nil
        #expect(harness.reply(Self.discover, config) == nil)
    }

    @Test func optionOrderFollowsTheParameterRequestList() throws {
        var rng = SeededGenerator(state: 55)
        let pool: [UInt8] = [1, 3, 6, 12, 15, 26, 28, 42, 51, 53, 54, 58, 59, 80, 119, 121, 252, 2, 4]
        let served: Set<UInt8> = [1, 3, 6, 26, 51, 53, 54, 119]
        for _ in 0..<300 {
            let list = Array(pool.shuffled(using: &rng).prefix(14))
            let codes = try #require(Self.codes(Self.discover(requesting: list)))
            var expected: [UInt8] = list.contains(53) ? [] : [53]
            expected += list.filter { served.contains($0) }
            expected += served.subtracting(expected).sorted()
            #expect(codes == expected, "list \(list)")
        }
    }

    @Test func requestedCodesAreSentOnceEach() throws {
        let list: [UInt8] = [6, 6, 1, 1, 3, 3, 119, 119, 6, 1, 3, 54, 54, 26]
        let codes = try #require(Self.codes(Self.discover(requesting: list)))
        #expect(codes == [53, 6, 1, 3, 119, 54, 26, 51])
    }

    @Test(arguments: [
        (IPv4Address(192, 0, 2, 1), 24, false), (IPv4Address(203, 0, 113, 1), 24, true),
        (IPv4Address(192, 0, 2, 200), 25, true), (IPv4Address(192, 0, 3, 1), 23, false),
        (IPv4Address(198, 51, 100, 1), 8, true), (IPv4Address(198, 51, 100, 1), 0, false),
    ])
    func classlessRoutesOnlyForAGatewayOffTheSubnet(gateway: IPv4Address, prefixLength: Int, routes: Bool) throws {
        var config = Golden.configA
        config.ipv4 = .init(address: Golden.guest4, prefixLength: prefixLength, gateway: gateway, dns: [gateway])
        let options = try #require(ServiceHarness().reply(Self.discover, config).flatMap(dhcpOptions))
        let option121 = options.first { $0.code == 121 }?.data
        #expect((option121 != nil) == routes)
        if routes {
            #expect(option121 == [32] + gateway.bytes + [0, 0, 0, 0] + [0] + gateway.bytes)
        }
        #expect(options.first { $0.code == 1 }?.data == IPv4Address(IPv4Address.mask(prefixLength: prefixLength)).bytes)
    }

    @Test func mtuZeroOmitsOption26() throws {
        var config = Golden.configA
        config.mtu = 0
        #expect(try #require(Self.codes(Self.discover, config)).contains(26) == false)
        config.mtu = 1500
        let options = try #require(ServiceHarness().reply(Self.discover, config).flatMap(dhcpOptions))
        #expect(options.first { $0.code == 26 }?.data == [0x05, 0xdc])
    }

    @Test func nameServersAndSearchListCanBeLeftOut() throws {
        var config = Golden.configA
        config.noDHCPDNS = true
        #expect(try #require(Self.codes(Self.discover, config)) == [53, 1, 3, 26, 51, 54, 119])
        config = Golden.configA
        config.noDHCPSearch = true
        #expect(try #require(Self.codes(Self.discover, config)) == [53, 1, 3, 6, 26, 51, 54])
        config = Golden.configA
        config.ipv4?.dns = []
        config.searchDomains = []
        #expect(try #require(Self.codes(Self.discover, config)) == [53, 1, 3, 26, 51, 54])
    }

    @Test func searchListUsesUpstreamsCompression() {
        let names = ["example.test", "corp.example.test", "lab.test"]
        let data = DHCPServer.domainSearchData(names)
        #expect(data == [7] + Array("example".utf8) + [4] + Array("test".utf8) + [0]
                     + [4] + Array("corp".utf8) + [0xc0, 0]
                     + [3] + Array("lab".utf8) + [4] + Array("test".utf8) + [0])
        #expect(DNSName.decodeList(data, allowCompression: true) == names)
        // A repeated name is written again in full; invalid names are skipped; a trailing dot is dropped.
        let again = DHCPServer.domainSearchData(["example.test.", "", "bad..name", "example.test", "x.example.test"])
        #expect(DNSName.decodeList(again, allowCompression: true) == ["example.test", "example.test", "x.example.test"])
        #expect(again.count == 14 + 14 + 4)
        #expect(Array(again.suffix(4)) == [1, UInt8(ascii: "x"), 0xc0, 0])
    }

    @Test func searchListTooLongForTheMessageIsLeftOut() throws {
        var config = Golden.configA
        config.searchDomains = (0..<6).map { String(repeating: Character(UnicodeScalar(UInt8(97 + $0))), count: 60) + ".test" }
        let reply = try #require(ServiceHarness().reply(Self.discover, config))
        #expect(reply.count <= 42 + DHCP.maximumMessageLength)
        #expect(try #require(dhcpOptions(reply)).map(\.code) == [53, 1, 3, 6, 26, 51, 54])
    }

    @Test func frameMustEndWithTheUDPDatagram() {
        let harness = ServiceHarness()
        #expect(harness.reply(Self.discover + [0, 0, 0, 0], Golden.configA) == nil)
    }

    @Test func ipv4OptionsAreSkippedAndFragmentsDropped() throws {
        let payload = Array(Self.discover[42...])
        let withOptions = Frames.ipv4UDP(source: .any, destination: .broadcast, sourcePort: 68, destinationPort: 67,
                                         payload: payload, ipOptions: [0x94, 0x04, 0, 0])   // router alert
        let reply = try #require(ServiceHarness().reply(withOptions, Golden.configA))
        #expect(hex(Array(reply[42...])) == hex(Array(Golden.named("dhcp_discover").reply![42...])))
        let fragment = Frames.ipv4UDP(source: .any, destination: .broadcast, sourcePort: 68, destinationPort: 67,
                                      payload: payload, fragmentOffset: 8)
        #expect(ServiceHarness().reply(fragment, Golden.configA) == nil)
    }

    @Test func requestsToOtherPortsAreNotDHCP() {
        let payload = Array(Self.discover[42...])
        let frame = Frames.ipv4UDP(source: .any, destination: .broadcast, sourcePort: 68, destinationPort: 68, payload: payload)
        #expect(withBytes(frame) { LocalService.classify($0, count: $1) } == nil)
        #expect(ServiceHarness().reply(frame, Golden.configA, via: Entry.dhcp) == nil)
    }
}

@Suite struct NDPRuleTests {
    static let ns = Golden.named("ndp_ns").request
    static let rs = Golden.named("ndp_rs").request

    /// The option types and lengths of the RA answering `rs` under `config`.
    static func raOptions(_ config: ServiceConfig) -> [(type: UInt8, length: Int)]? {
        ServiceHarness().reply(rs, config).flatMap(routerAdvertisementOptions)
    }

    @Test func switchesTurnAdvertisementsOff() {
        let harness = ServiceHarness()
        var config = Golden.configA
        config.noNDP = true
        #expect(harness.reply(Self.ns, config) == nil)
        #expect(harness.reply(Self.rs, config) == nil)
        config = Golden.configA
        config.noRA = true
        #expect(hex(harness.reply(Self.ns, config)) == hex(Golden.named("ndp_ns").reply))
        #expect(harness.reply(Self.rs, config) == nil)
        config = Golden.configA
        config.ipv6 = nil
        #expect(harness.reply(Self.ns, config) == nil)
        #expect(harness.reply(Self.rs, config) == nil)
    }

    @Test func routerAdvertisementOptionsFollowTheConfiguration() throws {
        let full = try #require(Self.raOptions(Golden.configA))
        #expect(full.map(\.type) == [3, 1, 5, 25, 31])
        var config = Golden.configA
        config.mtu = 0
        #expect(try #require(Self.raOptions(config)).map(\.type) == [3, 1, 25, 31])
        config = Golden.configA
        config.noDHCPDNS = true
        #expect(try #require(Self.raOptions(config)).map(\.type) == [3, 1, 5])
        config = Golden.configA
        config.noDHCPSearch = true
        #expect(try #require(Self.raOptions(config)).map(\.type) == [3, 1, 5, 25])
        config = Golden.configA
        config.ipv6?.dns = []                                  // DNSSL only together with RDNSS
        #expect(try #require(Self.raOptions(config)).map(\.type) == [3, 1, 5])
        config = Golden.configA
        config.searchDomains = []
        #expect(try #require(Self.raOptions(config)).map(\.type) == [3, 1, 5, 25])
    }

    @Test func searchListOfAMultipleOfEightBytesHasNoStrayPadding() throws {
        var config = Golden.configA
        config.searchDomains = ["a.example.test"]             // 16 bytes of names: upstream appends 8 zero bytes
        let reply = try #require(ServiceHarness().reply(Self.rs, config))
        let options = try #require(routerAdvertisementOptions(reply))
        #expect(options.last?.type == 31 && options.last?.length == 24)
        #expect(reply.count == 54 + 16 + 32 + 8 + 8 + 24 + 24)
    }

    @Test func prefixWithoutAnAddressIsUnspecified() throws {
        var config = Golden.configA
        config.ipv6?.address = nil
        let reply = try #require(ServiceHarness().reply(Self.rs, config))
        #expect(Array(reply[(54 + 16 + 16)..<(54 + 16 + 32)]) == [UInt8](repeating: 0, count: 16))
    }

    @Test func solicitationsMustPassReceiverChecks() {
        let harness = ServiceHarness()
        var ns = Self.ns
        ns[55] = 1                                            // code 1
        #expect(harness.reply(ns, Golden.configA) == nil)
        var rs = Self.rs
        rs[63] = 0                                            // source link-layer option of length 0
        #expect(harness.reply(rs, Golden.configA) == nil)
    }

    @Test func unsolicitedAdvertisementFollowsTheSwitches() {
        let out = GuardedMemory()
        let changes: [(inout ServiceConfig) -> Void] = [{ $0.noRA = true }, { $0.noNDP = true }, { $0.ipv6 = nil }]
        for change in changes {
            var config = Golden.configA
            change(&config)
            #expect(NDPResponder.unsolicitedRouterAdvertisement(config: config, into: out.tail(1024), capacity: 1024) == nil)
        }
        #expect(NDPResponder.unsolicitedRouterAdvertisement(config: Golden.configA, into: out.tail(100), capacity: 100) == nil)
    }

    @Test func unsolicitedIntervalIsBetween200And599Seconds() {
        #expect(NDPResponder.unsolicitedInterval(random: 0) == 200)
        #expect(NDPResponder.unsolicitedInterval(random: 399) == 599)
        #expect(NDPResponder.unsolicitedInterval(random: 400) == 200)
        var rng = SeededGenerator(state: 600)
        for _ in 0..<1000 {
            #expect((200..<600).contains(NDPResponder.unsolicitedInterval(random: UInt32.random(in: 0...UInt32.max, using: &rng))))
        }
    }

    @Test func otherICMPv6IsNotNDP() {
        let echo = Frames.ipv6(source: Golden.guestLinkLocal, destination: Golden.ourLinkLocal,
                               nextHeader: IPProtocol.icmpv6, upperLayer: [128, 0, 0, 0, 0, 1, 0, 1])
        let redirect = Frames.ipv6(source: Golden.guestLinkLocal, destination: Golden.ourLinkLocal,
                                   nextHeader: IPProtocol.icmpv6, upperLayer: [137, 0, 0, 0] + [UInt8](repeating: 0, count: 36))
        for frame in [echo, redirect] {
            #expect(withBytes(frame) { LocalService.classify($0, count: $1) } == nil)
            #expect(ServiceHarness().reply(frame, Golden.configA, via: Entry.ndp) == nil)
        }
    }
}

@Suite struct DHCPv6RuleTests {
    static let ours = DHCPv6OptionValue.serverID(Golden.configA.dhcpv6ServerDUID)
    static let other = DHCPv6OptionValue.serverID(DHCPv6.duidLLT(time: 7, mac: Golden.ourMAC))
    static let client = DHCPv6OptionValue.clientID(Frames.clientDUID)

    @Test func switchesAndConfigurationTurnDHCPv6Off() {
        let solicit = Golden.named("dhcpv6_solicit").request
        let harness = ServiceHarness()
        let changes: [(inout ServiceConfig) -> Void] = [{ $0.noDHCPv6 = true }, { $0.ipv6?.address = nil }, { $0.ipv6 = nil }]
        for change in changes {
            var config = Golden.configA
            change(&config)
            #expect(harness.reply(solicit, config) == nil)
        }
    }

    @Test(arguments: [DHCPv6MessageType.request, .renew, .rebind, .informationRequest])
    func serverIDMustBeOurs(_ type: DHCPv6MessageType) {
        let harness = ServiceHarness()
        let ia: [DHCPv6OptionValue] = type == .informationRequest ? [] : [Frames.iaNA(Golden.guest6)]
        #expect(harness.reply(Frames.dhcpv6(type, options: [Self.client, Self.other] + ia), Golden.configA) == nil)
        let reply = harness.reply(Frames.dhcpv6(type, options: [Self.client, Self.ours] + ia), Golden.configA)
        #expect(reply.flatMap(dhcpv6Reply)?.type == DHCPv6MessageType.reply.rawValue)
        let short = DHCPv6OptionValue.serverID(Array(Golden.configA.dhcpv6ServerDUID.prefix(13)))
        #expect(harness.reply(Frames.dhcpv6(type, options: [Self.client, short] + ia), Golden.configA) == nil)
    }

    @Test func informationRequestWithAnIAIsIgnored() {
        let harness = ServiceHarness()
        for ia in [Frames.iaNA(Golden.guest6), .iaTA(iaid: 1, options: [])] {
            #expect(harness.reply(Frames.dhcpv6(.informationRequest, options: [Self.client, ia]), Golden.configA) == nil)
        }
    }

    @Test func notOnLinkForATemporaryAddress() throws {
        let foreign = IPv6Address("2001:db8::99")!
        let iaTA = DHCPv6OptionValue.iaTA(iaid: 0x0102_0304, options: [
            .iaAddress(foreign, preferredLifetime: 0, validLifetime: 0, options: [])])
        let reply = try #require(ServiceHarness().reply(Frames.dhcpv6(.confirm, options: [Self.client, iaTA]), Golden.configA))
        let message = try #require(dhcpv6Reply(reply))
        #expect(message.type == DHCPv6MessageType.reply.rawValue)
        #expect(message.options.map(\.code) == [2, 4, 1])
        let status: [UInt8] = [0, 13, 0, 34, 0, 4] + Array(DHCPv6.notOnLinkMessage.utf8)
        #expect(message.options[1].data == [1, 2, 3, 4] + status)
    }

    @Test func notOnLinkNamesIANABeforeIATA() throws {
        let foreign = IPv6Address("2001:db8::99")!
        let iaTA = DHCPv6OptionValue.iaTA(iaid: 9, options: [.iaAddress(foreign, preferredLifetime: 0, validLifetime: 0, options: [])])
        let frame = Frames.dhcpv6(.request, options: [Self.client, Self.ours, iaTA, Frames.iaNA(Golden.guest6, iaid: 1),
                                                      Frames.iaNA(foreign, iaid: 2)])
        let message = try #require(ServiceHarness().reply(frame, Golden.configA).flatMap(dhcpv6Reply))
        #expect(message.options.map(\.code) == [2, 3, 1])
        #expect(Array(message.options[1].data.prefix(4)) == [0, 0, 0, 2])
    }

    @Test func ourAddressInEveryIAIsNotNotOnLink() throws {
        let frame = Frames.dhcpv6(.renew, options: [Self.client, Self.ours, Frames.iaNA(Golden.guest6, iaid: 5),
                                                    .iaTA(iaid: 6, options: [.iaAddress(Golden.guest6, preferredLifetime: 0,
                                                                                        validLifetime: 0, options: [])])])
        let message = try #require(ServiceHarness().reply(frame, Golden.configA).flatMap(dhcpv6Reply))
        #expect(message.options.map(\.code) == [2, 3, 1, 23, 24])
        #expect(Array(message.options[1].data.prefix(4)) == [0, 0, 0, 5])
    }

    @Test func nameServersAndSearchListCanBeLeftOut() throws {
        let solicit = Golden.named("dhcpv6_solicit").request
        var config = Golden.configA
        config.noDHCPDNS = true
        #expect(try #require(ServiceHarness().reply(solicit, config).flatMap(dhcpv6Reply)).options.map(\.code) == [2, 3, 1, 24])
        config = Golden.configA
        config.noDHCPSearch = true
        #expect(try #require(ServiceHarness().reply(solicit, config).flatMap(dhcpv6Reply)).options.map(\.code) == [2, 3, 1, 23])
        config.ipv6?.dns = []
        #expect(try #require(ServiceHarness().reply(solicit, config).flatMap(dhcpv6Reply)).options.map(\.code) == [2, 3, 1])
    }

    @Test func clientIDUpTo128Bytes() {
        let harness = ServiceHarness()
        let longest = Frames.dhcpv6(.solicit, options: [.clientID([UInt8](repeating: 7, count: 128))])
        #expect(harness.reply(longest, Golden.configA) != nil)
        let tooLong = Frames.dhcpv6(.solicit, options: [.clientID([UInt8](repeating: 7, count: 129))])
        #expect(harness.reply(tooLong, Golden.configA) == nil)
    }

    @Test func replyGoesToTheRequestsSource() throws {
        let source = IPv6Address("fe80::99")!
        let reply = try #require(ServiceHarness().reply(Frames.dhcpv6(.solicit, options: [Self.client], source: source),
                                                        Golden.configA))
        #expect(Array(reply[38..<54]) == source.bytes)
        #expect(Array(reply[22..<38]) == Golden.ourLinkLocal.bytes)
    }

    @Test func flowLabelIsTheTransactionIDReadLittleEndian() {
        #expect(DHCPv6Server.flowLabel(transactionID: 0x12_3456) == 0x6_3412)
        #expect(DHCPv6Server.flowLabel(transactionID: 0xff_ffff) == 0xf_ffff)
        #expect(DHCPv6Server.flowLabel(transactionID: 0x00_00a5) == 0x5_0000)
    }

    @Test func relayMessagesAreIgnored() {
        let relay = Frames.dhcpv6(DHCPv6MessageType.relayForward, options: [Self.client])
        #expect(withBytes(relay) { LocalService.classify($0, count: $1) } == .dhcpv6)
        #expect(ServiceHarness().reply(relay, Golden.configA) == nil)
    }
}

@Suite struct ClassificationTests {
    @Test func framesNoServiceOwns() {
        let tcp = buildFrame(54) { p in
            EthernetFrame.write(to: p, destination: Golden.ourMAC, source: Golden.guestMAC, etherType: EtherType.ipv4)
            IPv4Packet.write(to: p + 14, source: Golden.guest4, destination: Golden.gateway4, protocol: IPProtocol.tcp,
                             payloadLength: 20)
            p.setBE16(36, 67)
        }
        let vlan = buildFrame(60) { p in
            EthernetFrame.write(to: p, destination: .broadcast, source: Golden.guestMAC, etherType: EtherType.vlan)
        }
        let udp68 = Frames.ipv6(source: Golden.guestLinkLocal, destination: DHCPv6.allRelayAgentsAndServers,
                                nextHeader: IPProtocol.udp, upperLayer: [2, 34, 2, 34, 0, 8, 0, 0])
        for frame in [tcp, vlan, udp68, [], [UInt8](repeating: 0, count: 13)] {
            #expect(withBytes(frame) { LocalService.classify($0, count: $1) } == nil)
            #expect(ServiceHarness().reply(frame, Golden.configA) == nil)
        }
    }

    @Test func garbageToAServicePortIsOwnedButNotAnswered() {
        let dhcp = Frames.ipv4UDP(source: .any, destination: .broadcast, sourcePort: 68, destinationPort: 67,
                                  payload: [1, 2, 3])
        #expect(withBytes(dhcp) { LocalService.classify($0, count: $1) } == .dhcp)
        #expect(ServiceHarness().reply(dhcp, Golden.configA) == nil)
        let dhcpv6 = Frames.ipv6(source: Golden.guestLinkLocal, destination: DHCPv6.allRelayAgentsAndServers,
                                 nextHeader: IPProtocol.udp, upperLayer: [2, 34, 2, 35, 0, 9, 0, 0, 1])
        #expect(withBytes(dhcpv6) { LocalService.classify($0, count: $1) } == .dhcpv6)
        #expect(ServiceHarness().reply(dhcpv6, Golden.configA) == nil)
    }
}
