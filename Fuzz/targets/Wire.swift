// Fuzz target `wire`: the L2-L4 views of PasstWire, pcap headers and the Internet checksum.
//
// The first input byte picks the entry (modulo 8); the rest is handed to it as is:
//   0 a whole Ethernet frame, walked down as the daemon does: Ethernet -> ARP | IPv4 | IPv6
//     (extension headers) -> TCP (options) | UDP | ICMP/ICMPv6 (echo), every checksum checked
//   1 ARP  2 IPv4 (and its L4)  3 IPv6 (and its L4)  4 TCP and a bare TCP options area
//   5 UDP  6 ICMPv4, ICMPv6 and echo  7 pcap file header and records, checksum against a reference,
//     and a virtio-net header with its frame as pasta's tap reads them (partial checksum completed)
// Invariants: every region a valid view describes (payload, options, upper layer) lies inside
// the buffer, `Checksum` agrees with a plain byte-pair RFC 1071 sum, and completing a partial
// checksum writes only its field, inside the frame, which then verifies.
import PasstWire

/// libFuzzer entry point: one input.
@_cdecl("LLVMFuzzerTestOneInput")
public func wireFuzzTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = FuzzInput(data, size)
    let p = input.body, n = input.count
    switch input.selector % 8 {
    case 0: walkEthernet(p, count: n)
    case 1: if let arp = ARPPacket(p, count: n) { visit(arp) }
    case 2: walkIPv4(p, count: n)
    case 3: walkIPv6(p, count: n)
    case 4:
        if let tcp = TCPSegment(p, count: n) { visit(tcp) }
        keep(TCPOptions(parsing: p, count: n))
    case 5: if let udp = UDPDatagram(p, count: n) { visit(udp) }
    case 6:
        if let icmp = ICMPv4Packet(p, count: n) { visit(icmp) }
        if let icmp = ICMPv6Packet(p, count: n) { visit(icmp, source: .any, destination: .loopback) }
        if let echo = ICMPEcho(p, count: n) { visit(echo) }
    default:
        walkPcap(p, count: n)
        checkChecksum(p, count: n)
        checkPartialChecksum(p, count: n)
    }
    return 0
}

/// Walks a whole Ethernet frame down to its transport layer.
func walkEthernet(_ p: UnsafeRawPointer, count: Int) {
    guard let frame = EthernetFrame(p, count: count) else { return require(count < 14, "Ethernet rejected \(count) bytes") }
    keep(frame.destination); keep(frame.source)
    require(frame.payloadOffset + frame.payloadCount == count, "Ethernet payload bounds")
    switch frame.etherType {
    case EtherType.arp: if let arp = ARPPacket(frame.payload, count: frame.payloadCount) { visit(arp) }
    case EtherType.ipv4: walkIPv4(frame.payload, count: frame.payloadCount)
    case EtherType.ipv6: walkIPv6(frame.payload, count: frame.payloadCount)
    default: break
    }
}

/// Reads every field of an ARP packet.
func visit(_ arp: ARPPacket) {
    keep(arp.operation); keep(arp.senderMAC); keep(arp.senderIP); keep(arp.targetMAC); keep(arp.targetIP)
}

/// Parses an IPv4 packet and its transport payload.
func walkIPv4(_ p: UnsafeRawPointer, count: Int) {
    guard let ip = IPv4Packet(p, count: count) else { return }
    keep(ip.version); keep(ip.tos); keep(ip.dscp); keep(ip.ecn); keep(ip.identification)
    keep(ip.flagsAndFragmentOffset); keep(ip.dontFragment); keep(ip.moreFragments); keep(ip.fragmentOffset)
    keep(ip.isFragment); keep(ip.ttl); keep(ip.headerChecksum); keep(ip.isChecksumValid)
    require(ip.headerLength >= 20 && ip.optionsCount >= 0, "IPv4 header length")
    require(ip.payloadOffset + ip.payloadCount <= count && ip.payloadCount >= 0, "IPv4 payload bounds")
    keep(Checksum.sum(ip.options, count: ip.optionsCount))
    walkTransport(ip.protocol, ip.payload, count: ip.payloadCount, v4: (ip.source, ip.destination), v6: nil)
}

/// Parses an IPv6 packet (extension headers included) and its transport payload.
func walkIPv6(_ p: UnsafeRawPointer, count: Int) {
    guard let ip = IPv6Packet(p, count: count) else { return }
    keep(ip.version); keep(ip.trafficClass); keep(ip.flowLabel); keep(ip.nextHeader); keep(ip.hopLimit)
    keep(ip.hasFragmentHeader); keep(ip.isFragment); keep(ip.fragmentOffset); keep(ip.moreFragments)
    keep(ip.fragmentIdentification)
    require(40 + ip.payloadCount <= count, "IPv6 payload bounds")
    require(ip.upperLayerOffset >= 40 && ip.upperLayerCount >= 0, "IPv6 upper layer start")
    require(ip.upperLayerOffset + ip.upperLayerCount == 40 + ip.payloadLength, "IPv6 upper layer end")
    require(ip.fragmentHeaderOffset == 0 || ip.fragmentHeaderOffset + 8 <= ip.upperLayerOffset, "IPv6 fragment header")
    keep(Checksum.sum(ip.payload, count: ip.payloadCount))
    walkTransport(ip.upperLayerProtocol, ip.upperLayer, count: ip.upperLayerCount, v4: nil,
                  v6: (ip.source, ip.destination))
}

/// Parses the transport header `proto` at `p` and checks its checksum against the addresses.
func walkTransport(_ proto: UInt8, _ p: UnsafeRawPointer, count: Int,
                   v4: (IPv4Address, IPv4Address)?, v6: (IPv6Address, IPv6Address)?) {
    switch proto {
    case IPProtocol.tcp:
        guard let tcp = TCPSegment(p, count: count) else { return }
        visit(tcp)
        if let (s, d) = v4 { keep(tcp.isChecksumValid(source: s, destination: d)) }
        if let (s, d) = v6 { keep(tcp.isChecksumValid(source: s, destination: d)) }
    case IPProtocol.udp:
        guard let udp = UDPDatagram(p, count: count) else { return }
        visit(udp)
        if let (s, d) = v4 { keep(udp.isChecksumValid(source: s, destination: d)) }
        if let (s, d) = v6 { keep(udp.isChecksumValid(source: s, destination: d)) }
    case IPProtocol.icmp:
        if let icmp = ICMPv4Packet(p, count: count) { visit(icmp) }
    case IPProtocol.icmpv6:
        if let icmp = ICMPv6Packet(p, count: count), let (s, d) = v6 { visit(icmp, source: s, destination: d) }
    default:
        break
    }
}

/// Reads every field of a TCP segment, its options included.
func visit(_ tcp: TCPSegment) {
    keep(tcp.sourcePort); keep(tcp.destinationPort); keep(tcp.sequenceNumber); keep(tcp.acknowledgmentNumber)
    keep(tcp.dataOffset); keep(tcp.flags); keep(tcp.window); keep(tcp.checksum); keep(tcp.urgentPointer)
    require(tcp.headerLength >= 20 && tcp.payloadOffset + tcp.payloadCount == tcp.count, "TCP bounds")
    let options = tcp.options
    keep(options)
    require(options.mss == nil || tcp.optionsCount >= 4, "TCP MSS without room")
    keep(Checksum.sum(tcp.payload, count: tcp.payloadCount))
}

/// Reads every field of a UDP datagram.
func visit(_ udp: UDPDatagram) {
    keep(udp.sourcePort); keep(udp.destinationPort); keep(udp.checksum)
    require(udp.length >= 8 && udp.length <= udp.count && udp.payloadCount == udp.length - 8, "UDP bounds")
    keep(Checksum.sum(udp.payload, count: udp.payloadCount))
}

/// Reads every field of an ICMPv4 message and its echo body.
func visit(_ icmp: ICMPv4Packet) {
    keep(icmp.type); keep(icmp.code); keep(icmp.checksum); keep(icmp.isChecksumValid)
    keep(Checksum.sum(icmp.body, count: icmp.bodyCount))
    if let echo = icmp.echo { visit(echo) }
}

/// Reads every field of an ICMPv6 message and its echo body.
func visit(_ icmp: ICMPv6Packet, source: IPv6Address, destination: IPv6Address) {
    keep(icmp.type); keep(icmp.code); keep(icmp.checksum)
    keep(icmp.isChecksumValid(source: source, destination: destination))
    keep(Checksum.sum(icmp.body, count: icmp.bodyCount))
    if let echo = icmp.echo { visit(echo) }
}

/// Reads every field of an echo request or reply.
func visit(_ echo: ICMPEcho) {
    keep(echo.type); keep(echo.code); keep(echo.checksum); keep(echo.identifier); keep(echo.sequenceNumber)
    require(echo.dataCount >= 0, "echo bounds")
    keep(Checksum.sum(echo.data, count: echo.dataCount))
}

/// Walks a pcap file: the file header, then records while they fit.
func walkPcap(_ p: UnsafeRawPointer, count: Int) {
    guard let file = PcapFileHeader(p, count: count) else { return }
    keep(file.versionMajor); keep(file.versionMinor); keep(file.thisZone); keep(file.sigFigs)
    keep(file.snapLength); keep(file.linkType)
    var offset = Pcap.fileHeaderLength
    while let record = PcapRecordHeader(p + offset, count: count - offset) {
        keep(record.seconds); keep(record.microseconds); keep(record.originalLength)
        let captured = Int(record.capturedLength)
        require(offset + Pcap.recordHeaderLength + captured <= count, "pcap record bounds")
        walkEthernet(record.data, count: captured)
        offset += Pcap.recordHeaderLength + captured
    }
}

/// Reads a virtio-net header and completes the partial checksum of the frame after it, in a
/// copy: only the two bytes of the field may change, only when they lie inside the frame, and the
/// sum from csum_start plus the pseudo-header sum that was in the field then checks out (for a
/// field at an even distance from csum_start, where its bytes form one word of the sum).
func checkPartialChecksum(_ p: UnsafeRawPointer, count: Int) {
    guard count >= VirtioNetHeader.length else { return }
    let header = VirtioNetHeader(reading: p)
    let n = count - VirtioNetHeader.length
    let original = p + VirtioNetHeader.length
    let frame = UnsafeMutableRawPointer.allocate(byteCount: max(n, 1), alignment: 1)
    defer { frame.deallocate() }
    frame.copyMemory(from: original, byteCount: n)
    header.completeChecksum(frame, count: n)
    let start = Int(header.checksumStart), field = start + Int(header.checksumOffset)
    let written = header.hasPartialChecksum && field + 2 <= n
    for i in 0..<n where !written || (i != field && i != field + 1) {
        require(frame.load(fromByteOffset: i, as: UInt8.self) == original.load(fromByteOffset: i, as: UInt8.self),
                "completing the checksum changed byte \(i)")
    }
    guard written, header.checksumOffset % 2 == 0 else { return }
    let pseudo = UInt64(original.be16(field))
    require(Checksum.fold(Checksum.sum(frame + start, count: n - start, initial: pseudo)) == 0xffff,
            "the completed checksum does not verify")
}

/// Compares `Checksum` over `p[0..<count]` (at every start alignment) with a byte-pair sum.
func checkChecksum(_ p: UnsafeRawPointer, count: Int) {
    for start in 0..<min(count, 8) {
        var reference: UInt32 = 0
        var i = start
        while i + 1 < count { reference += UInt32(p.load(fromByteOffset: i, as: UInt8.self)) << 8
                                          | UInt32(p.load(fromByteOffset: i + 1, as: UInt8.self)); i += 2 }
        if i < count { reference += UInt32(p.load(fromByteOffset: i, as: UInt8.self)) << 8 }
        while reference > 0xffff { reference = (reference & 0xffff) + (reference >> 16) }
        let folded = Checksum.fold(Checksum.sum(p + start, count: count - start))
        require(folded == UInt16(reference) || (folded == 0 && reference == 0xffff) || (folded == 0xffff && reference == 0),
                "checksum differs from the reference at start \(start)")
    }
}
