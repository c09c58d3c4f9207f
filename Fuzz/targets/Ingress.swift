// Fuzz target `ingress`: the tap ingress classification (PasstCore/TapIngress.swift).
//
// Input: one byte that picks the starting guest addresses (bit 0: assigned IPv4 known, bit 1:
// assigned IPv6 known), then one or more Ethernet frames, each preceded by a 2-byte big-endian
// length (a short last frame takes what is left), classified in order with the same
// `GuestAddresses`, as the daemon does for one tap read.
// Invariants: every view a kind carries lies inside its frame, and a UDP or ICMPv6 kind holds a
// header that parses (TCP and ICMP headers are read further where present); the kinds the services own agree with
// `LocalService.classify`; no loopback packet passes; the addresses seen never become
// unspecified, multicast or loopback.
import PasstServices
import PasstWire

/// libFuzzer entry point: one input.
@_cdecl("LLVMFuzzerTestOneInput")
public func ingressFuzzTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = FuzzInput(data, size)
    var guest = GuestAddresses(assigned4: input.selector & 1 != 0 ? IPv4Address(192, 0, 2, 2) : nil,
                               assigned6: input.selector & 2 != 0 ? IPv6Address(high: 0xfd00 << 48, low: 2) : nil)
    var offset = 0
    while offset + 2 <= input.count {
        let declared = Int(input.body.load(fromByteOffset: offset, as: UInt8.self)) << 8
                     | Int(input.body.load(fromByteOffset: offset + 1, as: UInt8.self))
        let length = min(declared, input.count - offset - 2)
        classifyOne(input.body + offset + 2, count: length, guest: &guest)
        offset += 2 + length
    }
    return 0
}

/// Classifies one frame, copied to a heap block of exactly its length, and checks the result.
func classifyOne(_ bytes: UnsafeRawPointer, count: Int, guest: inout GuestAddresses) {
    let p = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 1)
    defer { p.deallocate() }
    p.copyMemory(from: bytes, byteCount: count)
    guard let frame = EthernetFrame(p, count: count) else { return }
    let owner = LocalService.classify(p, count: count)
    let kind = TapIngress.classify(frame, guest: &guest)
    switch kind {
    case .arp:
        require(owner == .arp && frame.etherType == EtherType.arp, "ARP kind")
    case .dhcp(let ip):
        require(owner == .dhcp, "DHCP kind, service \(String(describing: owner))")
        checkIPv4(ip, frame: frame, proto: IPProtocol.udp)
    case .icmp4(let ip):
        require(owner == nil, "ICMP kind owned by \(String(describing: owner))")
        checkIPv4(ip, frame: frame, proto: IPProtocol.icmp)
    case .transport4(let ip):
        require(owner == nil, "IPv4 transport kind owned by \(String(describing: owner))")
        checkIPv4(ip, frame: frame, proto: ip.protocol)
    case .dhcpv6(let ip):
        require(owner == .dhcpv6, "DHCPv6 kind, service \(String(describing: owner))")
        checkIPv6(ip, frame: frame, proto: IPProtocol.udp)
    case .ndp(let ip):
        require(owner == .ndp, "NDP kind, service \(String(describing: owner))")
        checkIPv6(ip, frame: frame, proto: IPProtocol.icmpv6)
        let type = ip.upperLayer.load(as: UInt8.self)
        require(type >= NDP.routerSolicitationType && type <= NDP.neighborAdvertisementType, "NDP type \(type)")
    case .icmp6(let ip):
        require(owner == nil, "ICMPv6 kind owned by \(String(describing: owner))")
        checkIPv6(ip, frame: frame, proto: IPProtocol.icmpv6)
    case .transport6(let ip):
        require(owner == nil, "IPv6 transport kind owned by \(String(describing: owner))")
        checkIPv6(ip, frame: frame, proto: ip.upperLayerProtocol)
    case .fragment:
        require(frame.etherType == EtherType.ipv4, "fragment kind on a non-IPv4 frame")
    case .dropped:
        break
    }
    if let seen = guest.seen4 { require(!seen.isUnspecified && !seen.isLoopback, "IPv4 seen \(seen)") }
    for seen in [guest.seen6, guest.linkLocalSeen6].compactMap({ $0 }) {
        require(!seen.isUnspecified && !seen.isMulticast && !seen.isLoopback, "IPv6 seen \(seen)")
    }
    if let seen = guest.linkLocalSeen6 { require(seen.isLinkLocal, "link-local seen \(seen)") }
}

/// Checks an IPv4 kind: inside the frame, not a fragment, no loopback, transport header parses.
func checkIPv4(_ ip: IPv4Packet, frame: EthernetFrame, proto: UInt8) {
    require(frame.etherType == EtherType.ipv4 && ip.base == frame.payload, "IPv4 view not the frame's payload")
    require(ip.totalLength <= frame.payloadCount && ip.protocol == proto, "IPv4 view bounds")
    require(!ip.isFragment && !ip.source.isLoopback && !ip.destination.isLoopback, "IPv4 fragment or loopback passed")
    switch proto {
    case IPProtocol.udp: require(UDPDatagram(ip.payload, count: ip.payloadCount) != nil, "IPv4 UDP kind without UDP")
    case IPProtocol.icmp: keep(ICMPv4Packet(ip.payload, count: ip.payloadCount)?.echo?.identifier)
    case IPProtocol.tcp: keep(TCPSegment(ip.payload, count: ip.payloadCount)?.options)
    default: require(false, "IPv4 kind with protocol \(proto)")
    }
}

/// Checks an IPv6 kind: the frame ends with its payload, no fragment or loopback, header parses.
func checkIPv6(_ ip: IPv6Packet, frame: EthernetFrame, proto: UInt8) {
    require(frame.etherType == EtherType.ipv6 && ip.base == frame.payload, "IPv6 view not the frame's payload")
    require(40 + ip.payloadLength == frame.payloadCount, "IPv6 payload length does not match the frame")
    require(ip.upperLayerOffset + ip.upperLayerCount == frame.payloadCount && ip.upperLayerProtocol == proto,
            "IPv6 upper layer bounds")
    require(!ip.isFragment && !ip.source.isLoopback && !ip.destination.isLoopback, "IPv6 fragment or loopback passed")
    switch proto {
    case IPProtocol.udp: require(UDPDatagram(ip.upperLayer, count: ip.upperLayerCount) != nil, "IPv6 UDP kind without UDP")
    case IPProtocol.icmpv6: require(ICMPv6Packet(ip.upperLayer, count: ip.upperLayerCount) != nil, "ICMPv6 kind without header")
    case IPProtocol.tcp: keep(TCPSegment(ip.upperLayer, count: ip.upperLayerCount)?.options)
    default: require(false, "IPv6 kind with protocol \(proto)")
    }
}
