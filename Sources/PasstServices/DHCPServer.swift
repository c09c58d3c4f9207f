// DHCP server (RFC 2131, RFC 2132; BOOTP, RFC 951): one fixed lease, answered from configuration.
//
// Theory of operation: there is exactly one client and exactly one address to give it, so the
// server keeps no lease table and never says no (spec §4.2). Whatever the client asks for, the
// answer carries the configured address with an infinite lease:
//
//     DISCOVER                  -> OFFER
//     DISCOVER + Rapid Commit   -> ACK with an empty option 80 (RFC 4039)
//     REQUEST                   -> ACK     (requested address and server id are not checked)
//     no option 53 (BOOTP)      -> ACK     (BOOTP clients ignore the DHCP options they don't know)
//     DECLINE, RELEASE, INFORM, anything else -> no reply
//
// A request is answered only if the frame ends exactly where the UDP datagram does (upstream
// compares the UDP length with the bytes left in the frame), the message is a BOOTREQUEST with
// the magic cookie, and the frame is not an IPv4 fragment; the IPv4 destination may be anything.
//
// The reply is the request edited, as upstream edits it in place: the first 236 bytes (xid,
// flags, ciaddr, giaddr, chaddr, and whatever the client left in hops, siaddr, sname, file) and
// the cookie are echoed; op becomes 2 (BOOTREPLY), secs 0, yiaddr the assigned address. Options:
//
//     53 type   1 netmask   3 router   51 lease 0xffffffff   54 server id (our tap address)
//     26 MTU (unless 0)   6 name servers (unless none or --no-dhcp-dns)
//     119 search list (unless none or --no-dhcp-search)   80 (rapid commit only)
//     121 classless routes {gw/32 -> 0.0.0.0, 0/0 -> gw}, only if the gateway is off the subnet
//
// in upstream's order (DHCPReplyOption.passtOrder): 53 first if the client sent a parameter
// request list (55) without 53, then the codes of list 55 in the client's order, then the rest
// ascending. Then END, one zero byte (upstream writes it), and zero padding up to 60 option bytes
// (RFC 951's 64-byte vendor area with the cookie), so a reply is at least 300 bytes. The options
// area holds at most 308 bytes (a 548-byte message, RFC 2131's minimum every client accepts); an
// option that does not fit is left out whole, one over 255 bytes is split (RFC 3396).
//
// Option 119 uses upstream's compression, which only points at whole earlier names: a name whose
// tail after some label equals an entire earlier name ends in a pointer to that name, otherwise
// it is written in full ("lab.test" after "example.test" stays whole, where a general RFC 1035
// encoder would point into "example.test"). Clients decode both; keeping upstream's form keeps
// the reply bytes identical.
//
// The reply goes from our tap address:67 to 255.255.255.255:68 if the client set the broadcast
// flag, else to the assigned address:68, Ethernet destination the guest's MAC; unlike upstream
// (checksum 0, allowed in IPv4) the UDP checksum is filled in. DHCP runs a few times per guest
// boot, so building the option list with arrays is fine here.
import PasstWire

/// Answers DHCP and BOOTP requests from the guest.
public enum DHCPServer {
    /// Room for options in a reply: a 548-byte message minus the 240-byte header and cookie.
    static let optionsCapacity = DHCP.maximumMessageLength - DHCP.optionsOffset

    /// Writes the DHCP reply to the guest frame `frame` at `out`; returns its length, or nil when
    /// the frame gets no reply (not an answerable request, DHCP off, or `capacity` below 342).
    public static func answer(_ frame: UnsafeRawPointer, count: Int, config: ServiceConfig,
                              into out: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        guard !config.noDHCP, let ipv4 = config.ipv4, let gateway = ipv4.gateway, let server = ipv4.ourTapAddress,
              capacity >= ServiceFrame.ipv4UDPPayloadOffset + DHCP.optionsOffset + DHCP.minimumOptionsLength,
              let ethernet = EthernetFrame(frame, count: count), ethernet.etherType == EtherType.ipv4,
              let ip = IPv4Packet(ethernet.payload, count: ethernet.payloadCount),
              ip.protocol == IPProtocol.udp, !ip.isFragment,
              let udp = UDPDatagram(ip.payload, count: ip.payloadCount), udp.destinationPort == DHCP.serverPort,
              udp.length == ethernet.payloadCount &- ip.headerLength,
              let request = DHCPMessage(udp.payload, count: udp.payloadCount), request.op == DHCP.bootRequest,
              let reply = replyType(for: request)
        else { return nil }

        let mask = IPv4Address(IPv4Address.mask(prefixLength: ipv4.prefixLength))
        var options: [DHCPReplyOption] = [.messageType(reply.type), .subnetMask(mask), .routers([gateway]),
                                          .leaseTime(DHCP.infiniteLease), .serverIdentifier(server)]
        if config.mtu != 0 { options.append(.interfaceMTU(UInt16(clamping: config.mtu))) }
        if !config.noDHCPDNS { options.append(.dnsServers(ipv4.dns)) }
        if !config.noDHCPSearch {
            let search = domainSearchData(config.searchDomains)
            if !search.isEmpty { options.append(.raw(code: DHCPOptionCode.domainSearch, data: search)) }
        }
        if reply.rapidCommit { options.append(.rapidCommit) }
        if ipv4.address.value & mask.value != gateway.value & mask.value {
            options.append(.classlessStaticRoutes([
                DHCPClasslessRoute(destination: gateway, prefixLength: 32, router: .any),
                DHCPClasslessRoute(destination: .any, prefixLength: 0, router: gateway)]))
        }
        let ordered = DHCPReplyOption.passtOrder(options, parameterRequestList: request.parameterRequestList?.bytes)

        let message = out + ServiceFrame.ipv4UDPPayloadOffset
        message.copyMemory(from: request.base, byteCount: DHCP.optionsOffset)
        message.setU8(0, DHCP.bootReply)
        message.setBE16(8, 0)
        ipv4.address.store(to: message, offset: 16)
        let room = min(optionsCapacity, capacity &- ServiceFrame.ipv4UDPPayloadOffset &- DHCP.optionsOffset)
        let length = writeOptions(ordered, to: message, limit: DHCP.optionsOffset &+ room)

        let destination = request.isBroadcast ? IPv4Address.broadcast : ipv4.address
        return ServiceFrame.finishIPv4UDP(out, payloadLength: length, config: config, source: server,
                                          sourcePort: DHCP.serverPort, destination: destination,
                                          destinationPort: DHCP.clientPort)
    }

    /// The reply type for `request` and whether it is a rapid-commit ACK, or nil if it gets no reply.
    static func replyType(for request: DHCPMessage) -> (type: DHCPMessageType, rapidCommit: Bool)? {
        guard let type = request.messageType else { return (.ack, false) }                  // BOOTP
        if type == .discover { return request.rapidCommit ? (.ack, true) : (.offer, false) }
        return type == .request ? (.ack, false) : nil
    }

    /// Writes `options` from offset 240 of `message`, then END, a zero byte and padding to 60
    /// option bytes, never past `limit` (options that don't fit are left out); returns the
    /// message length.
    static func writeOptions(_ options: [DHCPReplyOption], to message: UnsafeMutableRawPointer, limit: Int) -> Int {
        var offset = DHCP.optionsOffset
        for option in options {
            guard let data = option.data else { continue }
            let chunks = max(1, (data.count + 254) / 255)
            guard offset + 2 * chunks + data.count + 2 <= limit else { continue }
            for chunk in 0..<chunks {
                let start = chunk * 255
                let length = min(255, data.count - start)
                message.setU8(offset, option.code)
                message.setU8(offset + 1, UInt8(length))
                for i in 0..<length { message.setU8(offset + 2 + i, data[start + i]) }
                offset += 2 + length
            }
        }
        message.setU8(offset, DHCPOptionCode.end)
        message.setU8(offset + 1, 0)
        offset += 2
        let minimum = DHCP.optionsOffset + DHCP.minimumOptionsLength
        if offset < minimum {
            (message + offset).initializeMemory(as: UInt8.self, repeating: 0, count: minimum - offset)
            offset = minimum
        }
        return offset
    }

    /// Option 119 data in upstream's encoding: each valid name in RFC 1035 form, its first tail
    /// (after one or more labels) that equals a whole earlier name written in full replaced by a
    /// compression pointer to that name; empty if no name is valid.
    static func domainSearchData(_ names: [String]) -> [UInt8] {
        var data: [UInt8] = []
        var whole: [(labels: ArraySlice<[UInt8]>, offset: Int)] = []
        for name in names {
            guard let labels = DNSName.labels(of: name), !labels.isEmpty else { continue }
            let start = data.count
            var target: Int? = nil
            var kept = labels.count
            for tail in 1..<labels.count {
                if let earlier = whole.first(where: { $0.labels.elementsEqual(labels[tail...]) }) {
                    target = earlier.offset
                    kept = tail
                    break
                }
            }
            for label in labels[..<kept] { data.append(UInt8(label.count)); data += label }
            if let target {
                data += [0xc0 | UInt8(target >> 8), UInt8(target & 0xff)]
            } else {
                data.append(0)
                if start <= DNSName.maxPointerOffset { whole.append((labels[...], start)) }
            }
        }
        return data
    }
}
