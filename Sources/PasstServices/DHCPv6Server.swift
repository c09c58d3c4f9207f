// DHCPv6 server (RFC 8415): the one assigned address, name servers and search list.
//
// Theory of operation: like the DHCP server, this one has a single client and a single address
// and keeps no bindings (spec §4.4). It answers client messages sent to a multicast address
// (ff02::1:2 in practice; unicast ones are dropped) that carry a Client Identifier of at most
// 128 bytes; a Server Identifier, if present, must be exactly our DUID's 14 bytes long. Ours is a
// DUID-LLT: hardware type Ethernet, the start time in `ServiceConfig.dhcpv6DUIDTime`, our MAC.
//
//     SOLICIT              no Server ID                  -> ADVERTISE   (no Rapid Commit)
//     REQUEST, RENEW       our Server ID                 -> REPLY, or NotOnLink (below)
//     CONFIRM              no Server ID                  -> REPLY, or NotOnLink (below)
//     REBIND               our Server ID (upstream's rule, although RFC 8415 clients omit it)
//                                                        -> REPLY
//     INFORMATION-REQUEST  no IA_NA/IA_TA, Server ID optional but ours if present -> REPLY
//     RELEASE, DECLINE, anything else                    -> no reply
//
// NotOnLink (RFC 8415 §18.3.2, §18.3.3): if an IA_NA or IA_TA of a REQUEST, RENEW or CONFIRM holds
// an IA Address other than the assigned one, the REPLY carries only our Server ID, that IA (IAID,
// and T1/T2 for an IA_NA, echoed) holding a Status Code 4 "Prefix not appropriate for link.",
// and the Client ID. IA_NAs are checked before IA_TAs, each in message order.
//
// Every other answer carries, in this order: Server ID; an IA_NA (T1 = T2 = infinite) holding an
// IA Address (assigned address, preferred and valid lifetime infinite) -- in every reply, even to
// INFORMATION-REQUEST, as upstream; the Client ID echoed; option 23 name servers (unless none or
// --no-dhcp-dns); option 24 search list, uncompressed (unless none or --no-dhcp-search). The
// IA_NA's IAID is the client's first IA_NA's; a request without one gets the bytes 01 00 00 00,
// what upstream sends until some request has carried an IA_NA (it then repeats the last IAID it
// saw; this server keeps no such state).
//
// The reply goes from our link-local address:547 to the request's source address:546, which is
// the guest's link-local address (upstream records it as such). The IPv6 flow label is upstream's:
// the transaction id bytes t0 t1 t2 read as a little-endian number (upstream reads a bitfield
// on a little-endian host), low 20 bits: (t2 & 0xf) << 16 | t1 << 8 | t0.
//
// One side effect upstream has is left to the caller: after a reply, the guest's IPv6 "address
// seen" becomes the assigned address (spec §3.1). DHCPv6 is control-rate traffic; the option
// builders allocate.
import PasstWire

/// Answers DHCPv6 requests from the guest.
public enum DHCPv6Server {
    /// IAID sent when the request has no IA_NA: the bytes 01 00 00 00, upstream's initial value.
    public static let defaultIAID: UInt32 = 0x0100_0000
    /// Longest Client Identifier (DUID) answered, in bytes (RFC 8415 §11.1).
    public static let maximumClientIDLength = 128
    /// Length of our DUID-LLT (type, hardware type, time, 6-byte MAC); a Server ID of any other length is refused.
    public static let serverIDLength = 14

    /// Writes the DHCPv6 reply to the guest frame `frame` at `out`; returns its length, or nil when
    /// the frame gets no reply (not an answerable request, DHCPv6 off, or `capacity` too small).
    /// After a reply the caller sets the guest's IPv6 address seen to the assigned address.
    public static func answer(_ frame: UnsafeRawPointer, count: Int, config: ServiceConfig,
                              into out: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        guard !config.noDHCPv6, let ipv6 = config.ipv6, let assigned = ipv6.address,
              let ip = ServiceFrame.exactIPv6(frame, count: count), ip.upperLayerProtocol == IPProtocol.udp,
              let udp = UDPDatagram(ip.upperLayer, count: ip.upperLayerCount),
              udp.destinationPort == DHCPv6.serverPort, ip.destination.isMulticast,
              udp.length == ip.upperLayerCount,
              let request = DHCPv6Message(udp.payload, count: udp.payloadCount),
              let clientID = request.clientID, clientID.length <= maximumClientIDLength
        else { return nil }
        let serverID = request.serverID
        if let serverID, serverID.length != serverIDLength { return nil }
        let iaNA = request.option(DHCPv6OptionCode.iaNA)
        if let iaNA, iaNA.length < 4 { return nil }
        let ourDUID = config.dhcpv6ServerDUID
        let ours = serverID?.dataEquals(ourDUID) ?? false

        var type = DHCPv6MessageType.reply
        switch request.messageType {
        case .request, .renew, .confirm:
            let allowed = request.messageType == .confirm ? serverID == nil : ours
            if !allowed { return nil }
            if let bad = foreignIA(in: request, assigned: assigned) {
                return write(type: .reply, request: request, options: [.serverID(ourDUID), bad, .clientID(clientID.bytes)],
                             source: ipv6.ourLinkLocal, destination: ip.source, config: config, out: out, capacity: capacity)
            }
        case .informationRequest:
            if serverID != nil && !ours { return nil }
            if iaNA != nil || request.option(DHCPv6OptionCode.iaTA) != nil { return nil }
        case .rebind:
            if !ours { return nil }
        case .solicit:
            if serverID != nil { return nil }
            type = .advertise
        default:
            return nil
        }

        var options: [DHCPv6OptionValue] = [
            .serverID(ourDUID),
            .iaNA(iaid: iaNA?.data.be32(0) ?? defaultIAID, t1: DHCPv6.infiniteLifetime, t2: DHCPv6.infiniteLifetime,
                  options: [.iaAddress(assigned, preferredLifetime: DHCPv6.infiniteLifetime,
                                       validLifetime: DHCPv6.infiniteLifetime, options: [])]),
            .clientID(clientID.bytes),
        ]
        if !config.noDHCPDNS { options.append(.dnsServers(ipv6.dns)) }
        if !config.noDHCPSearch { options.append(.domainList(config.searchDomains)) }
        return write(type: type, request: request, options: options, source: ipv6.ourLinkLocal,
                     destination: ip.source, config: config, out: out, capacity: capacity)
    }

    /// The first IA (IA_NAs before IA_TAs) holding an IA Address other than `assigned`, rebuilt
    /// with a NotOnLink status in place of its addresses; nil if every address is the assigned one.
    static func foreignIA(in request: DHCPv6Message, assigned: IPv6Address) -> DHCPv6OptionValue? {
        let status = DHCPv6OptionValue.statusCode(.notOnLink, message: DHCPv6.notOnLinkMessage)
        for option in request.options where option.code == DHCPv6OptionCode.iaNA {
            if let ia = DHCPv6IANA(option), holdsForeignAddress(ia.options, assigned: assigned) {
                return .iaNA(iaid: ia.iaid, t1: ia.t1, t2: ia.t2, options: [status])
            }
        }
        for option in request.options where option.code == DHCPv6OptionCode.iaTA {
            if let ia = DHCPv6IATA(option), holdsForeignAddress(ia.options, assigned: assigned) {
                return .iaTA(iaid: ia.iaid, options: [status])
            }
        }
        return nil
    }

    /// Whether the IA options `options` hold an IA Address other than `assigned`.
    static func holdsForeignAddress(_ options: DHCPv6Options, assigned: IPv6Address) -> Bool {
        options.contains { option in DHCPv6IAAddress(option).map { $0.address != assigned } ?? false }
    }

    /// Writes a message of `type` echoing the transaction id of `request`, with `options`, as a
    /// UDP frame from `source`:547 to `destination`:546; returns its length, or nil if it does not fit.
    static func write(type: DHCPv6MessageType, request: DHCPv6Message, options: [DHCPv6OptionValue],
                      source: IPv6Address, destination: IPv6Address, config: ServiceConfig,
                      out: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        guard capacity > ServiceFrame.ipv6UDPPayloadOffset,
              let length = DHCPv6.write(to: out + ServiceFrame.ipv6UDPPayloadOffset,
                                        capacity: capacity &- ServiceFrame.ipv6UDPPayloadOffset,
                                        messageType: type, transactionID: request.transactionID, options: options)
        else { return nil }
        return ServiceFrame.finishIPv6UDP(out, payloadLength: length, config: config, source: source,
                                          sourcePort: DHCPv6.serverPort, destination: destination,
                                          destinationPort: DHCPv6.clientPort,
                                          flowLabel: flowLabel(transactionID: request.transactionID))
    }

    /// Upstream's flow label for a transaction id: its three bytes read little-endian, low 20 bits.
    static func flowLabel(transactionID: UInt32) -> UInt32 {
        let t0 = transactionID >> 16 & 0xff, t1 = transactionID >> 8 & 0xff, t2 = transactionID & 0xff
        return (t2 & 0xf) << 16 | t1 << 8 | t0
    }
}
