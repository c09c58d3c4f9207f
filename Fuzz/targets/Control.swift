// Fuzz target `control`: the control-protocol parsers of PasstWire: DHCP, DHCPv6, NDP, DNS names.
//
// The first input byte picks the entry (modulo 8); the rest is handed to it as is:
//   0 a DHCP message (BOOTP header, cookie, options, option 119 search list, option 121 routes)
//   1 a DHCPv6 message (options, IA_NA/IA_TA with nested IA addresses and status codes, ORO, lists)
//   2-5 an NDP message: router solicitation, router advertisement, neighbour solicitation,
//     neighbour advertisement (options, prefix information, RDNSS, DNSSL, link-layer addresses)
//   6 a DNS name list, decoded with and without compression, and each name at every offset
//   7 NUL-separated names encoded with and without compression, which must decode to themselves
// Invariants: every option lies inside the buffer and option walks end; encoded names decode back.
import PasstWire

/// libFuzzer entry point: one input.
@_cdecl("LLVMFuzzerTestOneInput")
public func controlFuzzTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = FuzzInput(data, size)
    let p = input.body, n = input.count
    switch input.selector % 8 {
    case 0: if let message = DHCPMessage(p, count: n) { visit(message) }
    case 1: if let message = DHCPv6Message(p, count: n) { visit(message) }
    case 2: if let rs = NDPRouterSolicitation(p, count: n) { visitNDP(rs) }
    case 3:
        if let ra = NDPRouterAdvertisement(p, count: n) {
            keep(ra.currentHopLimit); keep(ra.managed); keep(ra.other); keep(ra.routerLifetime)
            keep(ra.reachableTime); keep(ra.retransTimer)
            visitNDP(ra)
        }
    case 4: if let ns = NDPNeighborSolicitation(p, count: n) { keep(ns.target); visitNDP(ns) }
    case 5:
        if let na = NDPNeighborAdvertisement(p, count: n) {
            keep(na.router); keep(na.solicited); keep(na.override); keep(na.target); keep(na.targetLinkLayerAddress)
            visitNDP(na)
        }
    case 6:
        keep(DNSName.decodeList(p, count: n, allowCompression: true))
        keep(DNSName.decodeList(p, count: n, allowCompression: false))
        for offset in 0..<min(n, 64) {
            if let (name, next) = DNSName.decode(p, count: n, at: offset, allowCompression: true) {
                require(next > offset && next <= n, "DNS name continues outside (\(offset) -> \(next))")
                require(name.unicodeScalars.count < DNSName.maxWireLength, "DNS name too long")
            }
        }
    default:
        checkNameRoundTrip(p, count: n)
    }
    return 0
}

/// Reads every field and option of a DHCP message.
func visit(_ message: DHCPMessage) {
    keep(message.op); keep(message.htype); keep(message.hlen); keep(message.hops); keep(message.xid)
    keep(message.secs); keep(message.isBroadcast); keep(message.ciaddr); keep(message.yiaddr)
    keep(message.siaddr); keep(message.giaddr); keep(message.chaddr); keep(message.chaddrBytes)
    let end = message.base + message.count
    for option in message.options {
        require(option.data >= message.base + DHCP.optionsOffset && option.data + option.length <= end,
                "DHCP option \(option.code) outside the message")
        keep(option.bytes); keep(option.ipv4Addresses); keep(option.contains(0))
    }
    keep(message.messageType); keep(message.parameterRequestList?.bytes); keep(message.clientIdentifier?.bytes)
    keep(message.rapidCommit); keep(message.requestedAddress); keep(message.serverIdentifier)
    keep(message.domainSearch); keep(message.classlessStaticRoutes)
}

/// Reads every field and option of a DHCPv6 message, nested IA options included.
func visit(_ message: DHCPv6Message) {
    keep(message.messageType); keep(message.transactionID)
    let end = message.base + message.count
    for option in message.options {
        require(option.data + option.length <= end, "DHCPv6 option \(option.code) outside the message")
        keep(option.bytes); keep(option.ipv6Addresses); keep(option.dataEquals([1, 2, 3]))
        if let ia = DHCPv6IANA(option) {
            keep(ia.iaid); keep(ia.t1); keep(ia.t2); keep(ia.statusCode?.message)
            visit(ia.options, inside: option)
            if let address = ia.address {
                keep(address.address); keep(address.preferredLifetime); keep(address.validLifetime)
                visit(address.options, inside: option)
            }
        }
        if let ia = DHCPv6IATA(option) { keep(ia.iaid); visit(ia.options, inside: option) }
        if let status = DHCPv6StatusCode(option) { keep(status.status); keep(status.message) }
    }
    keep(message.clientID?.bytes); keep(message.serverID?.bytes); keep(message.iaNA?.iaid)
    if let oro = message.optionRequest { keep(oro.codes); keep(oro.contains(23)) }
    keep(message.elapsedTime); keep(message.rapidCommit); keep(message.statusCode?.message)
    keep(message.dnsServers); keep(message.domainList)
}

/// Walks nested DHCPv6 options, which must stay inside their enclosing option `outer`.
func visit(_ options: DHCPv6Options, inside outer: DHCPv6Option) {
    for option in options {
        require(option.data >= outer.data && option.data + option.length <= outer.data + outer.length,
                "nested DHCPv6 option \(option.code) outside its IA")
        keep(option.bytes)
        if let address = DHCPv6IAAddress(option) { visit(address.options, inside: option) }
        if let status = DHCPv6StatusCode(option) { keep(status.message) }
    }
}

/// Reads the checksum and every option of an NDP message.
func visitNDP<M: NDPMessageView>(_ message: M) {
    keep(message.checksum); keep(message.sourceLinkLayerAddress)
    keep(message.isChecksumValid(source: .any, destination: .loopback))
    require(message.options.isWellFormed, "a validated NDP message has malformed options")
    let end = message.base + message.count
    for option in message.options {
        require(option.byteCount > 0 && option.base + option.byteCount <= end, "NDP option outside the message")
        keep(option.type); keep(option.lengthUnits); keep(option.linkLayerAddress); keep(option.mtu)
        if let prefix = option.prefixInformation {
            keep(prefix.prefixLength); keep(prefix.onLink); keep(prefix.autonomous); keep(prefix.validLifetime)
            keep(prefix.preferredLifetime); keep(prefix.prefix)
        }
        if let servers = option.recursiveDNSServers {
            require(8 + 16 * servers.count <= option.byteCount, "RDNSS addresses outside the option")
            keep(servers.lifetime); keep(servers.addresses)
        }
        if let list = option.dnsSearchList { keep(list.lifetime); keep(list.domainNames) }
    }
}

/// Encodes the NUL-separated names in `p[0..<count]` and checks that they decode to the valid ones.
func checkNameRoundTrip(_ p: UnsafeRawPointer, count: Int) {
    let bytes = UnsafeRawBufferPointer(start: p, count: count)
    let names = bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    let valid = names.compactMap { name -> String? in
        guard let labels = DNSName.labels(of: name), !labels.isEmpty else { return nil }
        return labels.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ".")
    }
    for compress in [false, true] {
        let wire = DNSName.encodeList(names, compress: compress)
        let decoded = DNSName.decodeList(wire, allowCompression: compress)
        require(decoded == valid, "names \(valid) encoded (compress \(compress)) decode as \(String(describing: decoded))")
    }
    if let first = names.first, let labels = DNSName.labels(of: first), !labels.isEmpty,
       let encoded = DNSName.encode(first) {
        require(DNSName.decodeList(encoded, allowCompression: false) == [valid[0]], "single name round trip")
    }
}
