// Fuzz target `services`: ARP, DHCP, NDP and DHCPv6 answers (PasstServices), frame in, frame out.
//
// Input: one byte of configuration switches, one byte of output capacity in units of 8 bytes
// (0 to 2040 bytes), then the guest's Ethernet frame. The configuration starts from the
// golden tests' A or B (bit 0) and bits 1-7 turn off RA, DNS, search list, the IPv6 address,
// the MTU, IPv4 and IPv6. The frame goes to `LocalService.answer` and to each service directly,
// each writing into its own heap block of exactly the capacity (AddressSanitizer sees any write
// past it); then an unsolicited router advertisement is built the same way.
// Invariants: at most the service that `LocalService.classify` names answers, with the same bytes
// as the dispatcher; a reply fits the capacity and parses back with PasstWire's own views: our MAC
// as source, the guest's as destination, valid IPv4/UDP/ICMPv6 checksums and lengths that match
// the frame, and a DHCP, DHCPv6, NA or RA message of the expected kind.
import PasstServices
import PasstWire

/// libFuzzer entry point: one input.
@_cdecl("LLVMFuzzerTestOneInput")
public func servicesFuzzTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let config = serviceConfig(switches: data[0])
    let capacity = Int(data[1]) * 8
    let frame = UnsafeRawPointer(data + 2), count = size - 2

    let owner = LocalService.classify(frame, count: count)
    let dispatched = reply(capacity) { LocalService.answer(frame, count: count, config: config, into: $0, capacity: $1) }
    let direct: [(LocalService, [UInt8]?)] = [
        (.arp, reply(capacity) { ARPResponder.answer(frame, count: count, config: config, into: $0, capacity: $1) }),
        (.dhcp, reply(capacity) { DHCPServer.answer(frame, count: count, config: config, into: $0, capacity: $1) }),
        (.ndp, reply(capacity) { NDPResponder.answer(frame, count: count, config: config, into: $0, capacity: $1) }),
        (.dhcpv6, reply(capacity) { DHCPv6Server.answer(frame, count: count, config: config, into: $0, capacity: $1) }),
    ]
    for (service, bytes) in direct where bytes != nil {
        require(service == owner, "\(service) answered a frame classified as \(String(describing: owner))")
        require(bytes == dispatched, "\(service) and LocalService.answer wrote different replies")
    }
    if let bytes = dispatched, let owner { check(bytes, from: owner, config: config, capacity: capacity) }
    require(dispatched == nil || direct.contains { $0.1 != nil }, "only the dispatcher answered")

    if let ra = reply(capacity, { NDPResponder.unsolicitedRouterAdvertisement(config: config, into: $0, capacity: $1) }) {
        check(ra, from: .ndp, config: config, capacity: capacity)
    }
    return 0
}

/// The golden configuration A or B with the switches in `switches` applied.
func serviceConfig(switches: UInt8) -> ServiceConfig {
    let ourMAC = MACAddress.passtDefault, guestMAC = MACAddress(0x52, 0x54, 0x00, 0x12, 0x34, 0x56)
    let guest4 = IPv4Address(192, 0, 2, 2), guest6 = IPv6Address(high: 0xfd00 << 48, low: 2)
    let ourLinkLocal = IPv6Address(high: 0xfe80 << 48, low: 1)
    var config = switches & 1 == 0
        ? ServiceConfig(ourMAC: ourMAC, guestMAC: guestMAC,
                        ipv4: .init(address: guest4, prefixLength: 24, gateway: IPv4Address(192, 0, 2, 1),
                                    dns: [IPv4Address(192, 0, 2, 1)]),
                        ipv6: .init(address: guest6, ourLinkLocal: ourLinkLocal,
                                    dns: [IPv6Address(high: 0xfd00 << 48, low: 1)]),
                        searchDomains: ["example.test"], mtu: 65520, dhcpv6DUIDTime: 0x2F11_6C00)
        : ServiceConfig(ourMAC: ourMAC, guestMAC: guestMAC,
                        ipv4: .init(address: guest4, prefixLength: 24, gateway: IPv4Address(203, 0, 113, 1),
                                    dns: [IPv4Address(192, 0, 2, 53), IPv4Address(198, 51, 100, 53)]),
                        ipv6: .init(address: guest6, ourLinkLocal: ourLinkLocal,
                                    dns: [IPv6Address(high: 0x2001_0db8 << 32, low: 0x53),
                                          IPv6Address(high: 0xfd00 << 48, low: 0x53)]),
                        searchDomains: ["example.test", "corp.example.test", "lab.test"], mtu: 0,
                        dhcpv6DUIDTime: 0x2F11_6C00)
    config.noRA = switches & 2 != 0
    config.noDHCPDNS = switches & 4 != 0
    config.noDHCPSearch = switches & 8 != 0
    if switches & 16 != 0 { config.ipv6?.address = nil }
    if switches & 32 != 0 { config.mtu = 1500 - Int(switches >> 6) * 100 }
    if switches & 64 != 0 && switches & 128 == 0 { config.ipv4 = nil }
    if switches & 128 != 0 && switches & 64 == 0 { config.ipv6 = nil }
    return config
}

/// Runs `answer` on a heap block of exactly `capacity` bytes; the reply's bytes, or nil.
func reply(_ capacity: Int, _ answer: (UnsafeMutableRawPointer, Int) -> Int?) -> [UInt8]? {
    let out = UnsafeMutableRawPointer.allocate(byteCount: max(capacity, 1), alignment: 1)
    defer { out.deallocate() }
    guard let length = answer(out, capacity) else { return nil }
    require(length > 0 && length <= capacity, "reply length \(length) with capacity \(capacity)")
    return Array(UnsafeRawBufferPointer(start: out, count: length))
}

/// Parses the reply `bytes` of `service` back and checks its framing, checksums and message
/// (DHCP options that did not fit a small `capacity` may be missing).
func check(_ bytes: [UInt8], from service: LocalService, config: ServiceConfig, capacity: Int) {
    bytes.withUnsafeBytes { raw in
        let p = raw.baseAddress!, count = raw.count
        guard let frame = EthernetFrame(p, count: count) else { return require(false, "\(service) reply is no frame") }
        require(frame.source == config.ourMAC, "\(service) reply not from our MAC")
        switch service {
        case .arp:
            require(frame.etherType == EtherType.arp && count == ARPResponder.replyLength, "ARP reply framing")
            guard let arp = ARPPacket(frame.payload, count: frame.payloadCount) else { return require(false, "ARP reply") }
            require(arp.operation == ARPOperation.reply && arp.senderMAC == config.ourMAC, "ARP reply fields")
        case .dhcp:
            require(frame.destination == config.guestMAC, "DHCP reply not to the guest's MAC")
            guard let ip = IPv4Packet(frame.payload, count: frame.payloadCount), ip.isChecksumValid,
                  ip.totalLength == frame.payloadCount, ip.protocol == IPProtocol.udp,
                  let udp = UDPDatagram(ip.payload, count: ip.payloadCount), udp.length == ip.payloadCount,
                  udp.isChecksumValid(source: ip.source, destination: ip.destination), udp.checksum != 0,
                  udp.sourcePort == DHCP.serverPort, udp.destinationPort == DHCP.clientPort,
                  let message = DHCPMessage(udp.payload, count: udp.payloadCount)
            else { return require(false, "DHCP reply framing") }
            require(message.op == DHCP.bootReply && message.yiaddr == config.ipv4?.address, "DHCP reply header")
            require(message.count >= DHCP.optionsOffset + DHCP.minimumOptionsLength &&
                    message.count <= DHCP.maximumMessageLength, "DHCP reply length \(message.count)")
            if capacity >= 42 + DHCP.maximumMessageLength {
                require(message.messageType == .offer || message.messageType == .ack, "DHCP reply type")
                require(message.serverIdentifier == config.ipv4?.ourTapAddress, "DHCP server identifier")
            }
            keep(message.domainSearch); keep(message.classlessStaticRoutes)
        case .ndp, .dhcpv6:
            require(frame.destination == config.guestMAC && frame.etherType == EtherType.ipv6, "IPv6 reply framing")
            guard let ip = IPv6Packet(frame.payload, count: frame.payloadCount),
                  40 + ip.payloadLength == frame.payloadCount, ip.upperLayerOffset == 40, ip.hopLimit == 255,
                  ip.source == config.ipv6?.ourLinkLocal
            else { return require(false, "\(service) reply IPv6 header") }
            if service == .ndp { checkNDP(ip, config: config) } else { checkDHCPv6(ip, config: config) }
        }
    }
}

/// Checks an NDP reply: a neighbour or router advertisement with a valid checksum and options.
func checkNDP(_ ip: IPv6Packet, config: ServiceConfig) {
    require(ip.upperLayerProtocol == IPProtocol.icmpv6, "NDP reply not ICMPv6")
    require(NDP.isChecksumValid(ip.upperLayer, count: ip.upperLayerCount, source: ip.source, destination: ip.destination),
            "NDP reply checksum")
    if let na = NDPNeighborAdvertisement(ip.upperLayer, count: ip.upperLayerCount) {
        require(na.solicited && na.targetLinkLayerAddress == config.ourMAC, "NA fields")
    } else if let ra = NDPRouterAdvertisement(ip.upperLayer, count: ip.upperLayerCount) {
        require(!config.noRA && ra.managed && ra.sourceLinkLayerAddress == config.ourMAC, "RA fields")
        var sawPrefix = false
        for option in ra.options {
            if let prefix = option.prefixInformation {
                sawPrefix = true
                require(prefix.prefix == config.ipv6?.address ?? .any && prefix.prefixLength == 64, "RA prefix")
            }
            if let mtu = option.mtu { require(Int(mtu) == config.mtu, "RA MTU") }
            if let servers = option.recursiveDNSServers { require(servers.addresses == config.ipv6?.dns, "RA RDNSS") }
            if let list = option.dnsSearchList { require(list.domainNames == config.searchDomains, "RA DNSSL") }
        }
        require(sawPrefix, "RA without prefix information")
    } else {
        require(false, "NDP reply is neither NA nor RA")
    }
}

/// Checks a DHCPv6 reply: UDP 547 -> 546 with a valid checksum, our server ID, an echoed client ID.
func checkDHCPv6(_ ip: IPv6Packet, config: ServiceConfig) {
    guard ip.upperLayerProtocol == IPProtocol.udp, let udp = UDPDatagram(ip.upperLayer, count: ip.upperLayerCount),
          udp.length == ip.upperLayerCount, udp.isChecksumValid(source: ip.source, destination: ip.destination),
          udp.sourcePort == DHCPv6.serverPort, udp.destinationPort == DHCPv6.clientPort,
          let message = DHCPv6Message(udp.payload, count: udp.payloadCount)
    else { return require(false, "DHCPv6 reply framing") }
    require(message.messageType == .reply || message.messageType == .advertise, "DHCPv6 reply type")
    require(message.serverID?.bytes == config.dhcpv6ServerDUID, "DHCPv6 server ID")
    require(message.clientID != nil, "DHCPv6 reply without client ID")
    var end = 0
    var options = message.options
    while let option = options.next() { end = option.data - udp.payload + option.length }
    require(end == udp.payloadCount, "DHCPv6 reply options do not fill the message")
    if let address = message.iaNA?.address { require(address.address == config.ipv6?.address, "DHCPv6 IA address") }
    keep(message.dnsServers); keep(message.domainList)
}
