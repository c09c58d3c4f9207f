// DHCP (RFC 2131, RFC 2132) / BOOTP (RFC 951) messages: view, option iterator and reply builder.
//
// Theory of operation: a DHCP message is the UDP payload between ports 68 and 67; the view starts
// there (Ethernet, IPv4 and UDP are parsed elsewhere). Its layout is the fixed BOOTP header, the
// magic cookie and then options:
//
//      0                   1                   2                   3
//      0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//     +---------------+---------------+---------------+---------------+
//   0 |     op (1)    |   htype (1)   |   hlen (1)    |   hops (1)    |
//     +---------------+---------------+---------------+---------------+
//   4 |                            xid (4)                            |
//     +-------------------------------+-------------------------------+
//   8 |           secs (2)            |B|        flags (2)            |
//     +-------------------------------+-------------------------------+
//  12 |                          ciaddr  (4)                          |
//  16 |                          yiaddr  (4)                          |
//  20 |                          siaddr  (4)                          |
//  24 |                          giaddr  (4)                          |
//     +---------------------------------------------------------------+
//  28 |                          chaddr  (16)                         |
//  44 |                          sname   (64)                         |
// 108 |                          file    (128)                        |
//     +---------------------------------------------------------------+
// 236 |                magic cookie 99.130.83.99 (4)                  |
//     +---------------------------------------------------------------+
// 240 |                          options (variable)                   |
//     +---------------------------------------------------------------+
//
// Options are code, length, data; code 0 (pad) is a single byte, code 255 (end) ends the list:
//
//     | code | len | data (len bytes) |     | 0 |     | 255 |
//
// `DHCPMessage` checks, once, that the fixed header and the cookie are present and right (a
// message without the cookie is not DHCP and passt does not answer it); header reads after that
// are unchecked. `DHCPOptions` is a bounds-checked walk: it skips pads, stops at end, and stops at
// an option whose length runs past the message, so it always terminates (every step advances) and
// never reads outside [base, base + count). Option overload (52: options in sname/file) is not
// supported, as upstream. Typed accessors take the first occurrence of an option, except domain
// search (119) whose instances are concatenated as RFC 3396 says.
//
// `DHCPReply` is the emit side (smoltcp's "Repr"): header fields plus a list of `DHCPReplyOption`
// values written in the order given (`DHCPReplyOption.passtOrder` computes upstream's order from
// the client's parameter request list), then END, then zero padding so the options area is at
// least 60 bytes (RFC 951's 64-byte vendor area with the cookie; total message >= 300 bytes).
// An option longer than 255 bytes is split into several instances (RFC 3396); an option that does
// not fit the capacity is left out whole, as upstream skips it. Domain search (119) uses RFC 1035
// compression with offsets relative to the option data (RFC 3397). This is control-rate traffic
// (one reply per request), so the builder may use arrays.

/// DHCP constants.
public enum DHCP {
    /// UDP port of DHCP servers.
    public static let serverPort: UInt16 = 67
    /// UDP port of DHCP clients.
    public static let clientPort: UInt16 = 68
    /// `op` of a client message.
    public static let bootRequest: UInt8 = 1
    /// `op` of a server message.
    public static let bootReply: UInt8 = 2
    /// `htype` of Ethernet.
    public static let hardwareTypeEthernet: UInt8 = 1
    /// The broadcast bit of `flags`: the client wants the reply broadcast.
    public static let broadcastFlag: UInt16 = 0x8000
    /// The magic cookie 99.130.83.99 preceding the options.
    public static let magicCookie: UInt32 = 0x6382_5363
    /// Offset of the magic cookie.
    public static let cookieOffset = 236
    /// Offset of the first option (just after the cookie).
    public static let optionsOffset = 240
    /// Minimum options area a reply is padded to (RFC 951 vendor area; upstream OPT_MIN).
    public static let minimumOptionsLength = 60
    /// Largest message every client must accept: a 576-byte datagram minus IPv4 and UDP headers.
    public static let maximumMessageLength = 548
    /// Lease time meaning "infinite".
    public static let infiniteLease: UInt32 = 0xffff_ffff
}

/// Option codes used by passt (RFC 2132 and later).
public enum DHCPOptionCode {
    /// Pad: a single zero byte.
    public static let pad: UInt8 = 0
    /// Subnet mask (4 bytes).
    public static let subnetMask: UInt8 = 1
    /// Routers (n * 4 bytes).
    public static let router: UInt8 = 3
    /// DNS servers (n * 4 bytes).
    public static let dnsServers: UInt8 = 6
    /// Host name.
    public static let hostName: UInt8 = 12
    /// Interface MTU (2 bytes).
    public static let interfaceMTU: UInt8 = 26
    /// Requested IP address (4 bytes).
    public static let requestedAddress: UInt8 = 50
    /// IP address lease time in seconds (4 bytes).
    public static let leaseTime: UInt8 = 51
    /// Option overload (not supported).
    public static let overload: UInt8 = 52
    /// DHCP message type (1 byte).
    public static let messageType: UInt8 = 53
    /// Server identifier (4 bytes).
    public static let serverIdentifier: UInt8 = 54
    /// Parameter request list (n codes).
    public static let parameterRequestList: UInt8 = 55
    /// Client identifier (type byte + identifier).
    public static let clientIdentifier: UInt8 = 61
    /// Rapid commit (RFC 4039, empty).
    public static let rapidCommit: UInt8 = 80
    /// Client FQDN (RFC 4702).
    public static let clientFQDN: UInt8 = 81
    /// Domain search list (RFC 3397, compressed names).
    public static let domainSearch: UInt8 = 119
    /// Classless static routes (RFC 3442).
    public static let classlessStaticRoutes: UInt8 = 121
    /// End of options.
    public static let end: UInt8 = 255
}

/// The value of option 53.
public struct DHCPMessageType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The option byte.
    public var rawValue: UInt8
    /// Wraps an option byte.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// DHCPDISCOVER: client looks for servers.
    public static let discover = DHCPMessageType(rawValue: 1)
    /// DHCPOFFER: server offers an address.
    public static let offer = DHCPMessageType(rawValue: 2)
    /// DHCPREQUEST: client asks for the offered (or its current) address.
    public static let request = DHCPMessageType(rawValue: 3)
    /// DHCPDECLINE: address already in use.
    public static let decline = DHCPMessageType(rawValue: 4)
    /// DHCPACK: server commits the address.
    public static let ack = DHCPMessageType(rawValue: 5)
    /// DHCPNAK: server refuses the request.
    public static let nak = DHCPMessageType(rawValue: 6)
    /// DHCPRELEASE: client gives the address up.
    public static let release = DHCPMessageType(rawValue: 7)
    /// DHCPINFORM: client asks for parameters only.
    public static let inform = DHCPMessageType(rawValue: 8)

    /// The RFC 2132 name ("DHCPDISCOVER", ...) or the number.
    public var description: String {
        let names = ["DHCPDISCOVER", "DHCPOFFER", "DHCPREQUEST", "DHCPDECLINE", "DHCPACK", "DHCPNAK",
                     "DHCPRELEASE", "DHCPINFORM"]
        return (1...8).contains(rawValue) ? names[Int(rawValue) - 1] : "DHCP type \(rawValue)"
    }
}

// MARK: - Parsing

/// One option inside a message: its code and `length` data bytes at `data`.
public struct DHCPOption {
    /// The option code.
    public let code: UInt8
    /// First data byte (after code and length).
    public let data: UnsafeRawPointer
    /// Number of data bytes (0...255), all inside the message.
    public let length: Int

    /// The data byte at `index` (0..<length; not checked).
    @inline(__always) public func byte(at index: Int) -> UInt8 { data.u8(index) }
    /// The IPv4 address at data offset `offset` (offset + 4 <= length; not checked).
    @inline(__always) public func ipv4(at offset: Int) -> IPv4Address { IPv4Address(at: data, offset: offset) }
    /// Whether some data byte equals `value` (e.g. a code in a parameter request list); no allocation.
    public func contains(_ value: UInt8) -> Bool {
        for i in 0..<length where data.u8(i) == value { return true }
        return false
    }
    /// The data bytes (control path and tests).
    public var bytes: [UInt8] { (0..<length).map { data.u8($0) } }
    /// The data as a list of IPv4 addresses (trailing bytes short of 4 ignored).
    public var ipv4Addresses: [IPv4Address] { (0..<length / 4).map { ipv4(at: 4 * $0) } }
}

/// Iterates the options of an options area; skips pads, stops at END or at an option overrunning
/// the area, never reads outside `base[0..<count]`.
public struct DHCPOptions: Sequence, IteratorProtocol {
    /// Start of the options area.
    public let base: UnsafeRawPointer
    /// Bytes in the options area.
    public let count: Int
    /// Offset of the next option code.
    private var offset = 0

    /// Creates an iterator over the options area `base[0..<count]`.
    @inline(__always) public init(_ base: UnsafeRawPointer, count: Int) {
        self.base = base; self.count = Swift.max(0, count)
    }

    /// The next option, or nil at END, at the end of the area or at a truncated option.
    public mutating func next() -> DHCPOption? {
        while offset < count {
            let code = base.u8(offset)
            if code == DHCPOptionCode.pad { offset &+= 1; continue }
            guard code != DHCPOptionCode.end, count &- offset >= 2 else { break }
            let length = Int(base.u8(offset &+ 1))
            guard length <= count &- offset &- 2 else { break }
            let option = DHCPOption(code: code, data: base + (offset &+ 2), length: length)
            offset &+= 2 &+ length
            return option
        }
        offset = count
        return nil
    }

    /// The first option with `code`, if any.
    public func first(code: UInt8) -> DHCPOption? {
        var iterator = DHCPOptions(base, count: count)
        while let option = iterator.next() {
            if option.code == code { return option }
        }
        return nil
    }
}

/// A classless static route (option 121, RFC 3442).
public struct DHCPClasslessRoute: Hashable, Sendable {
    /// Destination network (bits past `prefixLength` are not sent).
    public var destination: IPv4Address
    /// Destination prefix length, 0...32.
    public var prefixLength: UInt8
    /// Next hop (0.0.0.0: on link).
    public var router: IPv4Address

    /// Creates a route.
    public init(destination: IPv4Address, prefixLength: UInt8, router: IPv4Address) {
        self.destination = destination; self.prefixLength = prefixLength; self.router = router
    }
}

/// View of a DHCP message (the UDP payload), validated once: header and magic cookie present.
public struct DHCPMessage {
    /// First byte of the message.
    public let base: UnsafeRawPointer
    /// Length of the message (UDP payload length).
    public let count: Int

    /// Accepts `base[0..<count]` if it holds the 236-byte header and the magic cookie.
    public init?(_ base: UnsafeRawPointer, count: Int) {
        guard count >= DHCP.optionsOffset, base.be32(DHCP.cookieOffset) == DHCP.magicCookie else { return nil }
        self.base = base; self.count = count
    }

    /// Message op code: 1 BOOTREQUEST, 2 BOOTREPLY.
    public var op: UInt8 { base.u8(0) }
    /// Hardware address type (1 = Ethernet).
    public var htype: UInt8 { base.u8(1) }
    /// Hardware address length (6 for Ethernet).
    public var hlen: UInt8 { base.u8(2) }
    /// Relay hops.
    public var hops: UInt8 { base.u8(3) }
    /// Transaction ID chosen by the client.
    public var xid: UInt32 { base.be32(4) }
    /// Seconds since the client began acquisition.
    public var secs: UInt16 { base.be16(8) }
    /// Flags; only the broadcast bit (0x8000) is defined.
    public var flags: UInt16 { base.be16(10) }
    /// Whether the client asked for a broadcast reply.
    public var isBroadcast: Bool { flags & DHCP.broadcastFlag != 0 }
    /// Client address (if it already has one).
    public var ciaddr: IPv4Address { IPv4Address(at: base, offset: 12) }
    /// "Your" address: the one offered or assigned.
    public var yiaddr: IPv4Address { IPv4Address(at: base, offset: 16) }
    /// Next server in bootstrap.
    public var siaddr: IPv4Address { IPv4Address(at: base, offset: 20) }
    /// Relay agent address.
    public var giaddr: IPv4Address { IPv4Address(at: base, offset: 24) }
    /// The first six bytes of chaddr: the client MAC for htype 1.
    public var chaddr: MACAddress { MACAddress(at: base, offset: 28) }
    /// All 16 bytes of chaddr (control path and tests).
    public var chaddrBytes: [UInt8] { (0..<16).map { base.u8(28 + $0) } }
    /// The options.
    public var options: DHCPOptions { DHCPOptions(base + DHCP.optionsOffset, count: count &- DHCP.optionsOffset) }

    /// The first option with `code`, if any.
    public func option(_ code: UInt8) -> DHCPOption? { options.first(code: code) }
    /// Option 53, if present and not empty; nil means BOOTP.
    public var messageType: DHCPMessageType? {
        guard let o = option(DHCPOptionCode.messageType), o.length >= 1 else { return nil }
        return DHCPMessageType(rawValue: o.byte(at: 0))
    }
    /// Option 55: the codes the client asks for, in its order of preference.
    public var parameterRequestList: DHCPOption? { option(DHCPOptionCode.parameterRequestList) }
    /// Option 61: the client identifier (type byte then identifier).
    public var clientIdentifier: DHCPOption? { option(DHCPOptionCode.clientIdentifier) }
    /// Whether option 80 (rapid commit) is present.
    public var rapidCommit: Bool { option(DHCPOptionCode.rapidCommit) != nil }
    /// Option 50, if present with 4 bytes.
    public var requestedAddress: IPv4Address? {
        guard let o = option(DHCPOptionCode.requestedAddress), o.length == 4 else { return nil }
        return o.ipv4(at: 0)
    }
    /// Option 54, if present with 4 bytes.
    public var serverIdentifier: IPv4Address? {
        guard let o = option(DHCPOptionCode.serverIdentifier), o.length == 4 else { return nil }
        return o.ipv4(at: 0)
    }
    /// Option 119 (all instances concatenated) decoded; nil if absent or malformed.
    public var domainSearch: [String]? {
        var data: [UInt8] = []
        var found = false
        for o in options where o.code == DHCPOptionCode.domainSearch { data += o.bytes; found = true }
        return found ? DNSName.decodeList(data, allowCompression: true) : nil
    }
    /// Option 121 decoded; nil if absent or malformed.
    public var classlessStaticRoutes: [DHCPClasslessRoute]? {
        guard let o = option(DHCPOptionCode.classlessStaticRoutes) else { return nil }
        var routes: [DHCPClasslessRoute] = []
        var i = 0
        while i < o.length {
            let prefixLength = Int(o.byte(at: i))
            let significant = (prefixLength + 7) / 8
            guard prefixLength <= 32, o.length - i - 1 >= significant + 4 else { return nil }
            var destination: UInt32 = 0
            for k in 0..<4 where k < significant { destination |= UInt32(o.byte(at: i + 1 + k)) << (24 - 8 * k) }
            routes.append(DHCPClasslessRoute(destination: IPv4Address(destination), prefixLength: UInt8(prefixLength),
                                             router: o.ipv4(at: i + 1 + significant)))
            i += 1 + significant + 4
        }
        return routes
    }
}

// MARK: - Building

/// A DHCP option to emit.
public enum DHCPReplyOption: Hashable, Sendable {
    /// 1: subnet mask.
    case subnetMask(IPv4Address)
    /// 3: routers (left out if empty).
    case routers([IPv4Address])
    /// 6: DNS servers (left out if empty).
    case dnsServers([IPv4Address])
    /// 26: interface MTU.
    case interfaceMTU(UInt16)
    /// 51: lease time in seconds (`DHCP.infiniteLease` for infinite).
    case leaseTime(UInt32)
    /// 53: message type.
    case messageType(DHCPMessageType)
    /// 54: server identifier.
    case serverIdentifier(IPv4Address)
    /// 80: rapid commit (empty).
    case rapidCommit
    /// 119: domain search, RFC 1035 compressed (invalid names skipped; left out if none remains).
    case domainSearch([String])
    /// 121: classless static routes (left out if empty).
    case classlessStaticRoutes([DHCPClasslessRoute])
    /// Any other option, data as given.
    case raw(code: UInt8, data: [UInt8])

    /// The option code.
    public var code: UInt8 {
        switch self {
        case .subnetMask: DHCPOptionCode.subnetMask
        case .routers: DHCPOptionCode.router
        case .dnsServers: DHCPOptionCode.dnsServers
        case .interfaceMTU: DHCPOptionCode.interfaceMTU
        case .leaseTime: DHCPOptionCode.leaseTime
        case .messageType: DHCPOptionCode.messageType
        case .serverIdentifier: DHCPOptionCode.serverIdentifier
        case .rapidCommit: DHCPOptionCode.rapidCommit
        case .domainSearch: DHCPOptionCode.domainSearch
        case .classlessStaticRoutes: DHCPOptionCode.classlessStaticRoutes
        case .raw(let code, _): code
        }
    }

    /// The option data, or nil if the option is to be left out.
    public var data: [UInt8]? {
        switch self {
        case .subnetMask(let a), .serverIdentifier(let a): return a.bytes
        case .routers(let list), .dnsServers(let list): return list.isEmpty ? nil : list.flatMap(\.bytes)
        case .interfaceMTU(let mtu): return [UInt8(mtu >> 8), UInt8(mtu & 0xff)]
        case .leaseTime(let t): return [UInt8(t >> 24), UInt8((t >> 16) & 0xff), UInt8((t >> 8) & 0xff), UInt8(t & 0xff)]
        case .messageType(let type): return [type.rawValue]
        case .rapidCommit: return []
        case .domainSearch(let names):
            let bytes = DNSName.encodeList(names, compress: true)
            return bytes.isEmpty ? nil : bytes
        case .classlessStaticRoutes(let routes):
            if routes.isEmpty { return nil }
            var out: [UInt8] = []
            for route in routes {
                let length = Swift.min(Int(route.prefixLength), 32)
                out.append(UInt8(length))
                out += route.destination.bytes.prefix((length + 7) / 8)
                out += route.router.bytes
            }
            return out
        case .raw(_, let data): return data
        }
    }

    /// `options` in upstream passt's order: if the client sent a parameter request list without
    /// 53, option 53 first; then the requested codes in the client's order; then the rest by
    /// ascending code (ties keep their given order).
    public static func passtOrder(_ options: [DHCPReplyOption], parameterRequestList: [UInt8]?) -> [DHCPReplyOption] {
        var remaining = Array(options.enumerated())
        var result: [DHCPReplyOption] = []
        /// Moves every option with `code` from `remaining` to `result`.
        func take(_ code: UInt8) {
            result += remaining.filter { $0.element.code == code }.map(\.element)
            remaining.removeAll { $0.element.code == code }
        }
        let requested = parameterRequestList ?? []
        if !requested.isEmpty && !requested.contains(DHCPOptionCode.messageType) { take(DHCPOptionCode.messageType) }
        for code in requested { take(code) }
        remaining.sort { ($0.element.code, $0.offset) < ($1.element.code, $1.offset) }
        return result + remaining.map(\.element)
    }
}

/// A DHCP message to emit: BOOTP header fields and options in the order given.
public struct DHCPReply: Hashable, Sendable {
    /// Message op code (2, BOOTREPLY, for replies).
    public var op: UInt8 = DHCP.bootReply
    /// Hardware address type.
    public var htype: UInt8 = DHCP.hardwareTypeEthernet
    /// Hardware address length.
    public var hlen: UInt8 = 6
    /// Relay hops.
    public var hops: UInt8 = 0
    /// Transaction ID (echoed from the request).
    public var xid: UInt32
    /// Seconds field (0 in replies).
    public var secs: UInt16 = 0
    /// Flags (echoed from the request).
    public var flags: UInt16
    /// Client address (echoed from the request).
    public var ciaddr: IPv4Address = .any
    /// The address offered or assigned.
    public var yiaddr: IPv4Address
    /// Next server address (0 in passt).
    public var siaddr: IPv4Address = .any
    /// Relay agent address (echoed from the request).
    public var giaddr: IPv4Address = .any
    /// Client hardware address field, up to 16 bytes (zero-filled after).
    public var chaddr: [UInt8]
    /// Options, written in this order.
    public var options: [DHCPReplyOption]

    /// Creates a reply from explicit header fields.
    public init(xid: UInt32, flags: UInt16, ciaddr: IPv4Address = .any, yiaddr: IPv4Address,
                siaddr: IPv4Address = .any, giaddr: IPv4Address = .any, chaddr: MACAddress,
                options: [DHCPReplyOption]) {
        self.xid = xid; self.flags = flags; self.ciaddr = ciaddr; self.yiaddr = yiaddr
        self.siaddr = siaddr; self.giaddr = giaddr; self.chaddr = chaddr.array; self.options = options
    }

    /// Creates the reply upstream passt builds for `request`: htype, hlen, xid, flags, ciaddr,
    /// giaddr and all of chaddr echoed; op 2, hops, secs and siaddr zero; yiaddr as given.
    public init(replyingTo request: DHCPMessage, yiaddr: IPv4Address, options: [DHCPReplyOption]) {
        htype = request.htype; hlen = request.hlen; xid = request.xid; flags = request.flags
        ciaddr = request.ciaddr; self.yiaddr = yiaddr; giaddr = request.giaddr
        chaddr = request.chaddrBytes; self.options = options
    }

    /// Writes the message at `buffer`; returns its length (>= 300), or nil if `capacity` cannot
    /// hold the header and a 60-byte options area. Options that do not fit are left out whole.
    public func write(to buffer: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        let minimum = DHCP.optionsOffset + DHCP.minimumOptionsLength
        guard capacity >= minimum else { return nil }
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: DHCP.optionsOffset)
        buffer.setU8(0, op); buffer.setU8(1, htype); buffer.setU8(2, hlen); buffer.setU8(3, hops)
        buffer.setBE32(4, xid); buffer.setBE16(8, secs); buffer.setBE16(10, flags)
        ciaddr.store(to: buffer, offset: 12); yiaddr.store(to: buffer, offset: 16)
        siaddr.store(to: buffer, offset: 20); giaddr.store(to: buffer, offset: 24)
        for (i, byte) in chaddr.prefix(16).enumerated() { buffer.setU8(28 + i, byte) }
        buffer.setBE32(DHCP.cookieOffset, DHCP.magicCookie)

        var offset = DHCP.optionsOffset
        let limit = capacity - 1                                   // keep room for END
        for option in options {
            guard let data = option.data else { continue }
            let chunks = Swift.max(1, (data.count + 254) / 255)
            guard offset + 2 * chunks + data.count <= limit else { continue }
            for chunk in 0..<chunks {
                let start = chunk * 255
                let length = Swift.min(255, data.count - start)
                buffer.setU8(offset, option.code)
                buffer.setU8(offset + 1, UInt8(length))
                for i in 0..<length { buffer.setU8(offset + 2 + i, data[start + i]) }
                offset += 2 + length
            }
        }
        buffer.setU8(offset, DHCPOptionCode.end)
        offset += 1
        if offset < minimum {
            (buffer + offset).initializeMemory(as: UInt8.self, repeating: 0, count: minimum - offset)
            offset = minimum
        }
        return offset
    }
}
