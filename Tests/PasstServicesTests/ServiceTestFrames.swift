// Frame builders and reply parsers for the rule tests: requests the golden script does not cover
// are built here with PasstWire's writers; replies are taken apart with PasstWire's views.
import PasstWire

/// Runs `body` with a pointer to a private copy of `bytes` (valid even when empty; must not escape).
func withBytes<R>(_ bytes: [UInt8], _ body: (UnsafeRawPointer, Int) -> R) -> R {
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
    defer { buffer.deallocate() }
    bytes.withUnsafeBytes { if let b = $0.baseAddress { buffer.copyMemory(from: b, byteCount: bytes.count) } }
    return body(UnsafeRawPointer(buffer), bytes.count)
}

/// Builds a frame of `length` bytes with `write` into a zeroed buffer.
func buildFrame(_ length: Int, _ write: (UnsafeMutableRawPointer) -> Void) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: length)
    bytes.withUnsafeMutableBytes { write($0.baseAddress!) }
    return bytes
}

enum Frames {
    /// A guest IPv4/UDP frame carrying `payload`, with `ipOptions` (a multiple of 4 bytes) in the IPv4 header.
    static func ipv4UDP(source: IPv4Address, destination: IPv4Address, sourcePort: UInt16, destinationPort: UInt16,
                        payload: [UInt8], ipOptions: [UInt8] = [], fragmentOffset: UInt16 = 0) -> [UInt8] {
        let ipHeader = 20 + ipOptions.count
        return buildFrame(14 + ipHeader + 8 + payload.count) { p in
            EthernetFrame.write(to: p, destination: .broadcast, source: Golden.guestMAC, etherType: EtherType.ipv4)
            IPv4Packet.write(to: p + 14, source: source, destination: destination, protocol: IPProtocol.udp,
                             payloadLength: ipOptions.count + 8 + payload.count, ttl: 64, fragmentOffset: fragmentOffset)
            p.setU8(14, UInt8(0x40 | ipHeader / 4))
            for (i, b) in ipOptions.enumerated() { p.setU8(34 + i, b) }
            IPv4Packet.fillChecksum(p + 14, headerLength: ipHeader)
            let udp = p + 14 + ipHeader
            UDPDatagram.write(to: udp, sourcePort: sourcePort, destinationPort: destinationPort, payloadLength: payload.count)
            for (i, b) in payload.enumerated() { udp.setU8(8 + i, b) }
            UDPDatagram.fillChecksum(udp, count: 8 + payload.count, source: source, destination: destination)
        }
    }

    /// A guest IPv6 frame with `upperLayer` (ICMPv6 or UDP, checksum filled) as its payload.
    static func ipv6(source: IPv6Address, destination: IPv6Address, nextHeader: UInt8, upperLayer: [UInt8]) -> [UInt8] {
        buildFrame(54 + upperLayer.count) { p in
            EthernetFrame.write(to: p, destination: MACAddress(0x33, 0x33, 0, 1, 0, 2), source: Golden.guestMAC,
                                etherType: EtherType.ipv6)
            IPv6Packet.write(to: p + 14, source: source, destination: destination, nextHeader: nextHeader,
                             payloadLength: upperLayer.count)
            for (i, b) in upperLayer.enumerated() { p.setU8(54 + i, b) }
            if nextHeader == IPProtocol.udp {
                UDPDatagram.fillChecksum(p + 54, count: upperLayer.count, source: source, destination: destination)
            } else {
                NDP.fillChecksum(p + 54, count: upperLayer.count, source: source, destination: destination)
            }
        }
    }

    /// A guest DHCPv6 message of `type` with `options`, from `source`:546 to `destination`:547.
    static func dhcpv6(_ type: DHCPv6MessageType, xid: UInt32 = 0x2468ac, options: [DHCPv6OptionValue],
                       source: IPv6Address = Golden.guestLinkLocal,
                       destination: IPv6Address = DHCPv6.allRelayAgentsAndServers) -> [UInt8] {
        var message = [UInt8](repeating: 0, count: 2048)
        let length = message.withUnsafeMutableBytes {
            DHCPv6.write(to: $0.baseAddress!, capacity: $0.count, messageType: type, transactionID: xid, options: options)!
        }
        let udp = buildFrame(8 + length) { p in
            UDPDatagram.write(to: p, sourcePort: DHCPv6.clientPort, destinationPort: DHCPv6.serverPort, payloadLength: length)
            for i in 0..<length { p.setU8(8 + i, message[i]) }
        }
        return ipv6(source: source, destination: destination, nextHeader: IPProtocol.udp, upperLayer: udp)
    }

    /// The guest's DHCPv6 client identifier (DUID-LL of its MAC), as the golden requests carry it.
    static let clientDUID: [UInt8] = [0, 3, 0, 1] + Golden.guestMAC.array

    /// An IA_NA (IAID 0x0c0d0e0f, T1 = T2 = 0) holding `address` with zero lifetimes.
    static func iaNA(_ address: IPv6Address, iaid: UInt32 = 0x0c0d_0e0f) -> DHCPv6OptionValue {
        .iaNA(iaid: iaid, t1: 0, t2: 0, options: [.iaAddress(address, preferredLifetime: 0, validLifetime: 0, options: [])])
    }
}

/// The options of a DHCP reply frame (IPv4 header without options) in order, or nil if it does not parse.
func dhcpOptions(_ frame: [UInt8]) -> [(code: UInt8, data: [UInt8])]? {
    guard frame.count > 42 else { return nil }
    return withBytes(Array(frame[42...])) { base, count in
        DHCPMessage(base, count: count).map { message in message.options.map { ($0.code, $0.bytes) } }
    }
}

/// The option types of an RA frame (ICMPv6 at 54) in order, or nil if the RA does not validate.
func routerAdvertisementOptions(_ frame: [UInt8]) -> [(type: UInt8, length: Int)]? {
    guard frame.count > 54 else { return nil }
    return withBytes(Array(frame[54...])) { base, count in
        NDPRouterAdvertisement(base, count: count).map { ra in ra.options.map { ($0.type, $0.byteCount) } }
    }
}

/// The DHCPv6 message of a reply frame (UDP payload at 62): type and top-level options with data.
func dhcpv6Reply(_ frame: [UInt8]) -> (type: UInt8, xid: UInt32, options: [(code: UInt16, data: [UInt8])])? {
    guard frame.count > 62 else { return nil }
    return withBytes(Array(frame[62...])) { base, count in
        DHCPv6Message(base, count: count).map { m in
            (m.messageType.rawValue, m.transactionID, m.options.map { ($0.code, $0.bytes) })
        }
    }
}
