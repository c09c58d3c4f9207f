// DHCPv6 (RFC 8415) client/server messages: view, option iterator, typed options and builder.
//
// Theory of operation: a DHCPv6 message is the UDP payload between ports 546 and 547; the view
// starts there. Client and server messages (RFC 8415 §8) are a one-byte type, a 24-bit transaction
// id and options; relay messages (types 12, 13) have another layout and are not accepted:
//
//      0                   1                   2                   3
//      0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//     |    msg-type   |               transaction-id                  |
//     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//     |                            options ...                        |
//
// Every option is a 16-bit code and a 16-bit data length (header not included):
//
//     |          option-code          |           option-len          |
//     |                    option-data (option-len bytes)             |
//
// Some options nest further options inside their data, after a fixed part:
//
//     IA_NA (3):   | IAID (4) | T1 (4) | T2 (4) | IA_NA-options ... |
//     IA_TA (4):   | IAID (4) | IA_TA-options ... |
//     IAADDR (5):  | IPv6 address (16) | preferred-lifetime (4) | valid-lifetime (4) | IAaddr-options |
//     Status (13): | status-code (2) | status-message (UTF-8, rest of the option) |
//     DNS (23):    | n * IPv6 address (16) |                         (RFC 3646)
//     Domains (24):| names in RFC 1035 wire form, not compressed |  (RFC 3646)
//     ORO (6):     | n * option code (2) |
//     Elapsed (8): | hundredths of a second (2) |
//     DUID-LLT (client/server id data, RFC 8415 §11.2):
//                  | type 1 (2) | hardware type 1 (2) | time (4, s since 2000-01-01 UTC) | MAC (6) |
//
// `DHCPv6Message` validates the 4-byte header once. `DHCPv6Options` walks any option area (the
// message's or an option's nested one) with a bounds check at every step: it stops at a header or
// data that would run past the area, so it terminates (each step advances >= 4 bytes) and never
// reads outside it. Typed views (`DHCPv6IANA`, `DHCPv6IAAddress`, ...) are failable initialisers over
// an option that check its code and minimum length; after that their reads are unchecked.
//
// The builder writes a message from `DHCPv6OptionValue`s, nested ones recursively, patching each
// option length after its data is written; it returns nil if anything does not fit the capacity.
// Control-rate traffic (one reply per request): arrays are fine here.

/// DHCPv6 constants, DUID helpers and the message builder.
public enum DHCPv6 {
    /// UDP port of clients.
    public static let clientPort: UInt16 = 546
    /// UDP port of servers and relay agents.
    public static let serverPort: UInt16 = 547
    /// ff02::1:2, All_DHCP_Relay_Agents_and_Servers.
    public static let allRelayAgentsAndServers = IPv6Address(high: 0xff02_0000_0000_0000, low: 0x0000_0000_0001_0002)
    /// Lifetime / T1 / T2 value meaning "infinity".
    public static let infiniteLifetime: UInt32 = 0xffff_ffff
    /// Length of the message header (type and transaction id).
    public static let headerLength = 4
    /// Status message upstream passt sends with NotOnLink.
    public static let notOnLinkMessage = "Prefix not appropriate for link."
    /// DUID type of a DUID-LLT (link-layer address plus time).
    public static let duidTypeLLT: UInt16 = 1
    /// DUID type of a DUID-LL (link-layer address).
    public static let duidTypeLL: UInt16 = 3
    /// Hardware type of Ethernet (IANA ARP hardware type).
    public static let hardwareTypeEthernet: UInt16 = 1
    /// Seconds from the Unix epoch to the DUID epoch, 2000-01-01 00:00:00 UTC.
    public static let duidEpochOffset: Int64 = 946_684_800

    /// The DUID time field for a Unix time: seconds since 2000-01-01 UTC, modulo 2^32.
    public static func duidTime(unixSeconds: Int64) -> UInt32 {
        UInt32(truncatingIfNeeded: unixSeconds - duidEpochOffset)
    }

    /// A DUID-LLT: type 1, hardware type (Ethernet), time, MAC (14 bytes).
    public static func duidLLT(time: UInt32, mac: MACAddress, hardwareType: UInt16 = hardwareTypeEthernet) -> [UInt8] {
        [UInt8(duidTypeLLT >> 8), UInt8(duidTypeLLT & 0xff), UInt8(hardwareType >> 8), UInt8(hardwareType & 0xff),
         UInt8(time >> 24), UInt8((time >> 16) & 0xff), UInt8((time >> 8) & 0xff), UInt8(time & 0xff)] + mac.array
    }

    /// Writes a message of `messageType` with the low 24 bits of `transactionID` and `options` in
    /// order; returns its length, or nil if it does not fit in `capacity` or an option is too long.
    public static func write(to buffer: UnsafeMutableRawPointer, capacity: Int, messageType: DHCPv6MessageType,
                             transactionID: UInt32, options: [DHCPv6OptionValue]) -> Int? {
        guard capacity >= headerLength else { return nil }
        buffer.setBE32(0, UInt32(messageType.rawValue) << 24 | (transactionID & 0xff_ffff))
        var offset = headerLength
        for option in options {
            guard let n = option.write(to: buffer + offset, capacity: capacity - offset) else { return nil }
            offset += n
        }
        return offset
    }
}

/// A DHCPv6 message type (msg-type).
public struct DHCPv6MessageType: RawRepresentable, Hashable, Sendable {
    /// The msg-type byte.
    public var rawValue: UInt8
    /// Wraps a msg-type byte.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// SOLICIT: client looks for servers.
    public static let solicit = DHCPv6MessageType(rawValue: 1)
    /// ADVERTISE: server answers a SOLICIT.
    public static let advertise = DHCPv6MessageType(rawValue: 2)
    /// REQUEST: client asks for addresses and parameters.
    public static let request = DHCPv6MessageType(rawValue: 3)
    /// CONFIRM: client checks its addresses still fit the link.
    public static let confirm = DHCPv6MessageType(rawValue: 4)
    /// RENEW: client extends its lease with the same server.
    public static let renew = DHCPv6MessageType(rawValue: 5)
    /// REBIND: client extends its lease with any server.
    public static let rebind = DHCPv6MessageType(rawValue: 6)
    /// REPLY: server answers REQUEST, RENEW, REBIND, CONFIRM, INFORMATION-REQUEST.
    public static let reply = DHCPv6MessageType(rawValue: 7)
    /// RELEASE: client gives addresses up.
    public static let release = DHCPv6MessageType(rawValue: 8)
    /// DECLINE: client found an address in use.
    public static let decline = DHCPv6MessageType(rawValue: 9)
    /// RECONFIGURE: server asks the client to renew.
    public static let reconfigure = DHCPv6MessageType(rawValue: 10)
    /// INFORMATION-REQUEST: client asks for parameters only.
    public static let informationRequest = DHCPv6MessageType(rawValue: 11)
    /// RELAY-FORW (relay layout; not accepted by the view).
    public static let relayForward = DHCPv6MessageType(rawValue: 12)
    /// RELAY-REPL (relay layout; not accepted by the view).
    public static let relayReply = DHCPv6MessageType(rawValue: 13)
}

/// A DHCPv6 status code (option 13).
public struct DHCPv6Status: RawRepresentable, Hashable, Sendable {
    /// The status-code value.
    public var rawValue: UInt16
    /// Wraps a status-code value.
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Success.
    public static let success = DHCPv6Status(rawValue: 0)
    /// Failure, reason unspecified.
    public static let unspecFail = DHCPv6Status(rawValue: 1)
    /// No addresses available.
    public static let noAddrsAvail = DHCPv6Status(rawValue: 2)
    /// Client record (binding) unavailable.
    public static let noBinding = DHCPv6Status(rawValue: 3)
    /// The prefix of the address is not appropriate for the link.
    public static let notOnLink = DHCPv6Status(rawValue: 4)
    /// The client must use multicast.
    public static let useMulticast = DHCPv6Status(rawValue: 5)
}

/// DHCPv6 option codes used by passt.
public enum DHCPv6OptionCode {
    /// Client identifier (DUID).
    public static let clientID: UInt16 = 1
    /// Server identifier (DUID).
    public static let serverID: UInt16 = 2
    /// Identity association for non-temporary addresses.
    public static let iaNA: UInt16 = 3
    /// Identity association for temporary addresses.
    public static let iaTA: UInt16 = 4
    /// IA address.
    public static let iaAddress: UInt16 = 5
    /// Option request.
    public static let optionRequest: UInt16 = 6
    /// Elapsed time.
    public static let elapsedTime: UInt16 = 8
    /// Status code.
    public static let statusCode: UInt16 = 13
    /// Rapid commit.
    public static let rapidCommit: UInt16 = 14
    /// DNS recursive name servers (RFC 3646).
    public static let dnsServers: UInt16 = 23
    /// Domain search list (RFC 3646).
    public static let domainList: UInt16 = 24
    /// Client FQDN (RFC 4704).
    public static let clientFQDN: UInt16 = 39
}

// MARK: - Parsing

/// One option: its code and `length` data bytes at `data` (inside the area it was found in).
public struct DHCPv6Option {
    /// The option code.
    public let code: UInt16
    /// First data byte (after the 4-byte header).
    public let data: UnsafeRawPointer
    /// Number of data bytes.
    public let length: Int

    /// The data byte at `index` (0..<length; not checked).
    @inline(__always) public func byte(at index: Int) -> UInt8 { data.u8(index) }
    /// The data bytes (control path and tests).
    public var bytes: [UInt8] { (0..<length).map { data.u8($0) } }
    /// The data as a list of IPv6 addresses (trailing bytes short of 16 ignored).
    public var ipv6Addresses: [IPv6Address] { (0..<length / 16).map { IPv6Address(at: data, offset: 16 * $0) } }
    /// Whether the data equals `bytes` (e.g. a server id against ours); no allocation.
    public func dataEquals(_ other: [UInt8]) -> Bool {
        guard other.count == length else { return false }
        for i in 0..<length where data.u8(i) != other[i] { return false }
        return true
    }
}

/// Iterates the options of an option area; stops at the first option whose header or data would
/// run past the area; never reads outside `base[0..<count]`.
public struct DHCPv6Options: Sequence, IteratorProtocol {
    /// Start of the option area.
    public let base: UnsafeRawPointer
    /// Bytes in the option area.
    public let count: Int
    /// Offset of the next option header.
    private var offset = 0

    /// Creates an iterator over the option area `base[0..<count]`.
    @inline(__always) public init(_ base: UnsafeRawPointer, count: Int) {
        self.base = base; self.count = Swift.max(0, count)
    }

    /// The next option, or nil at the end of the area or at a truncated option.
    public mutating func next() -> DHCPv6Option? {
        guard count &- offset >= 4 else { offset = count; return nil }
        let length = Int(base.be16(offset &+ 2))
        guard length <= count &- offset &- 4 else { offset = count; return nil }
        let option = DHCPv6Option(code: base.be16(offset), data: base + (offset &+ 4), length: length)
        offset &+= 4 &+ length
        return option
    }

    /// The first option with `code`, if any.
    public func first(code: UInt16) -> DHCPv6Option? {
        var iterator = DHCPv6Options(base, count: count)
        while let option = iterator.next() {
            if option.code == code { return option }
        }
        return nil
    }
}

/// View of an IA_NA option (3): IAID, T1, T2 and nested options.
public struct DHCPv6IANA {
    /// The option.
    public let option: DHCPv6Option

    /// Accepts option 3 with at least its 12-byte fixed part.
    public init?(_ option: DHCPv6Option) {
        guard option.code == DHCPv6OptionCode.iaNA, option.length >= 12 else { return nil }
        self.option = option
    }

    /// Identity association identifier chosen by the client.
    public var iaid: UInt32 { option.data.be32(0) }
    /// Renew time in seconds.
    public var t1: UInt32 { option.data.be32(4) }
    /// Rebind time in seconds.
    public var t2: UInt32 { option.data.be32(8) }
    /// The nested options (IAADDR, status code).
    public var options: DHCPv6Options { DHCPv6Options(option.data + 12, count: option.length &- 12) }
    /// The first nested IA address, if any.
    public var address: DHCPv6IAAddress? { options.first(code: DHCPv6OptionCode.iaAddress).flatMap(DHCPv6IAAddress.init) }
    /// The nested status code, if any.
    public var statusCode: DHCPv6StatusCode? { options.first(code: DHCPv6OptionCode.statusCode).flatMap(DHCPv6StatusCode.init) }
}

/// View of an IA_TA option (4): IAID and nested options.
public struct DHCPv6IATA {
    /// The option.
    public let option: DHCPv6Option

    /// Accepts option 4 with at least its 4-byte IAID.
    public init?(_ option: DHCPv6Option) {
        guard option.code == DHCPv6OptionCode.iaTA, option.length >= 4 else { return nil }
        self.option = option
    }

    /// Identity association identifier chosen by the client.
    public var iaid: UInt32 { option.data.be32(0) }
    /// The nested options (IAADDR, status code).
    public var options: DHCPv6Options { DHCPv6Options(option.data + 4, count: option.length &- 4) }
}

/// View of an IAADDR option (5): address, lifetimes and nested options.
public struct DHCPv6IAAddress {
    /// The option.
    public let option: DHCPv6Option

    /// Accepts option 5 with at least its 24-byte fixed part.
    public init?(_ option: DHCPv6Option) {
        guard option.code == DHCPv6OptionCode.iaAddress, option.length >= 24 else { return nil }
        self.option = option
    }

    /// The address.
    public var address: IPv6Address { IPv6Address(at: option.data, offset: 0) }
    /// Preferred lifetime in seconds.
    public var preferredLifetime: UInt32 { option.data.be32(16) }
    /// Valid lifetime in seconds.
    public var validLifetime: UInt32 { option.data.be32(20) }
    /// The nested options (status code).
    public var options: DHCPv6Options { DHCPv6Options(option.data + 24, count: option.length &- 24) }
}

/// View of a Status Code option (13).
public struct DHCPv6StatusCode {
    /// The option.
    public let option: DHCPv6Option

    /// Accepts option 13 with at least its 2-byte code.
    public init?(_ option: DHCPv6Option) {
        guard option.code == DHCPv6OptionCode.statusCode, option.length >= 2 else { return nil }
        self.option = option
    }

    /// The status code.
    public var status: DHCPv6Status { DHCPv6Status(rawValue: option.data.be16(0)) }
    /// The status message (UTF-8, invalid sequences replaced).
    public var message: String { String(decoding: (2..<option.length).map { option.data.u8($0) }, as: UTF8.self) }
}

/// View of an Option Request option (6): a list of 16-bit codes.
public struct DHCPv6OptionRequest {
    /// The option.
    public let option: DHCPv6Option

    /// Accepts option 6 (an odd trailing byte is ignored).
    public init?(_ option: DHCPv6Option) {
        guard option.code == DHCPv6OptionCode.optionRequest else { return nil }
        self.option = option
    }

    /// Number of codes.
    public var count: Int { option.length / 2 }
    /// The code at `index` (0..<count; not checked).
    public func code(at index: Int) -> UInt16 { option.data.be16(2 &* index) }
    /// Whether `code` is requested; no allocation.
    public func contains(_ code: UInt16) -> Bool {
        for i in 0..<count where self.code(at: i) == code { return true }
        return false
    }
    /// All codes (control path and tests).
    public var codes: [UInt16] { (0..<count).map { code(at: $0) } }
}

/// View of a client/server DHCPv6 message (the UDP payload), validated once.
public struct DHCPv6Message {
    /// First byte of the message.
    public let base: UnsafeRawPointer
    /// Length of the message.
    public let count: Int

    /// Accepts `base[0..<count]` if it holds the 4-byte header and is not a relay message.
    public init?(_ base: UnsafeRawPointer, count: Int) {
        guard count >= DHCPv6.headerLength else { return nil }
        let type = base.u8(0)
        guard type != DHCPv6MessageType.relayForward.rawValue, type != DHCPv6MessageType.relayReply.rawValue
        else { return nil }
        self.base = base; self.count = count
    }

    /// The message type.
    public var messageType: DHCPv6MessageType { DHCPv6MessageType(rawValue: base.u8(0)) }
    /// The 24-bit transaction id.
    public var transactionID: UInt32 { base.be32(0) & 0xff_ffff }
    /// The top-level options.
    public var options: DHCPv6Options { DHCPv6Options(base + DHCPv6.headerLength, count: count &- DHCPv6.headerLength) }

    /// The first top-level option with `code`, if any.
    public func option(_ code: UInt16) -> DHCPv6Option? { options.first(code: code) }
    /// Client Identifier (1): the client's DUID as option data.
    public var clientID: DHCPv6Option? { option(DHCPv6OptionCode.clientID) }
    /// Server Identifier (2): the server's DUID as option data.
    public var serverID: DHCPv6Option? { option(DHCPv6OptionCode.serverID) }
    /// The first IA_NA (3), if present and long enough.
    public var iaNA: DHCPv6IANA? { option(DHCPv6OptionCode.iaNA).flatMap(DHCPv6IANA.init) }
    /// Option Request (6), if present.
    public var optionRequest: DHCPv6OptionRequest? { option(DHCPv6OptionCode.optionRequest).flatMap(DHCPv6OptionRequest.init) }
    /// Elapsed Time (8) in hundredths of a second, if present with 2 bytes.
    public var elapsedTime: UInt16? {
        guard let o = option(DHCPv6OptionCode.elapsedTime), o.length == 2 else { return nil }
        return o.data.be16(0)
    }
    /// Whether Rapid Commit (14) is present.
    public var rapidCommit: Bool { option(DHCPv6OptionCode.rapidCommit) != nil }
    /// Top-level Status Code (13), if any.
    public var statusCode: DHCPv6StatusCode? { option(DHCPv6OptionCode.statusCode).flatMap(DHCPv6StatusCode.init) }
    /// DNS Recursive Name Servers (23), if present.
    public var dnsServers: [IPv6Address]? { option(DHCPv6OptionCode.dnsServers)?.ipv6Addresses }
    /// Domain Search List (24) decoded (uncompressed names), if present and well-formed.
    public var domainList: [String]? {
        guard let o = option(DHCPv6OptionCode.domainList) else { return nil }
        return DNSName.decodeList(o.data, count: o.length, allowCompression: false)
    }
}

// MARK: - Building

/// A DHCPv6 option to emit; IA options carry their nested options.
public indirect enum DHCPv6OptionValue: Hashable, Sendable {
    /// 1: client identifier, DUID bytes.
    case clientID([UInt8])
    /// 2: server identifier, DUID bytes.
    case serverID([UInt8])
    /// 3: IA_NA with nested options.
    case iaNA(iaid: UInt32, t1: UInt32, t2: UInt32, options: [DHCPv6OptionValue])
    /// 4: IA_TA with nested options.
    case iaTA(iaid: UInt32, options: [DHCPv6OptionValue])
    /// 5: IA address with nested options.
    case iaAddress(IPv6Address, preferredLifetime: UInt32, validLifetime: UInt32, options: [DHCPv6OptionValue])
    /// 6: option request.
    case optionRequest([UInt16])
    /// 8: elapsed time in hundredths of a second.
    case elapsedTime(UInt16)
    /// 13: status code and message.
    case statusCode(DHCPv6Status, message: String)
    /// 14: rapid commit.
    case rapidCommit
    /// 23: DNS servers (left out if empty).
    case dnsServers([IPv6Address])
    /// 24: domain search list, uncompressed (invalid names skipped; left out if none remains).
    case domainList([String])
    /// Any other option, data as given.
    case raw(code: UInt16, data: [UInt8])

    /// The option code.
    public var code: UInt16 {
        switch self {
        case .clientID: DHCPv6OptionCode.clientID
        case .serverID: DHCPv6OptionCode.serverID
        case .iaNA: DHCPv6OptionCode.iaNA
        case .iaTA: DHCPv6OptionCode.iaTA
        case .iaAddress: DHCPv6OptionCode.iaAddress
        case .optionRequest: DHCPv6OptionCode.optionRequest
        case .elapsedTime: DHCPv6OptionCode.elapsedTime
        case .statusCode: DHCPv6OptionCode.statusCode
        case .rapidCommit: DHCPv6OptionCode.rapidCommit
        case .dnsServers: DHCPv6OptionCode.dnsServers
        case .domainList: DHCPv6OptionCode.domainList
        case .raw(let code, _): code
        }
    }

    /// Writes the option (header included) at `buffer`; returns its length (0 if left out), or nil
    /// if it does not fit in `capacity` or its data exceeds 65535 bytes.
    public func write(to buffer: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        var end = 4                                                  // data is written from here
        /// Appends raw bytes, failing if they do not fit.
        func put(_ bytes: [UInt8]) -> Bool {
            guard capacity - end >= bytes.count else { return false }
            for (i, b) in bytes.enumerated() { buffer.setU8(end + i, b) }
            end += bytes.count
            return true
        }
        /// Appends a big-endian 32-bit value.
        func put32(_ v: UInt32) -> Bool { put([UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)]) }
        /// Appends a big-endian 16-bit value.
        func put16(_ v: UInt16) -> Bool { put([UInt8(v >> 8), UInt8(v & 0xff)]) }
        /// Appends nested options.
        func nest(_ options: [DHCPv6OptionValue]) -> Bool {
            for option in options {
                guard let n = option.write(to: buffer + end, capacity: capacity - end) else { return false }
                end += n
            }
            return true
        }

        guard capacity >= 4 else { return nil }
        let ok: Bool
        switch self {
        case .clientID(let d), .serverID(let d), .raw(_, let d):
            ok = put(d)
        case let .iaNA(iaid, t1, t2, options):
            ok = put32(iaid) && put32(t1) && put32(t2) && nest(options)
        case let .iaTA(iaid, options):
            ok = put32(iaid) && nest(options)
        case let .iaAddress(address, preferred, valid, options):
            ok = put(address.bytes) && put32(preferred) && put32(valid) && nest(options)
        case .optionRequest(let codes):
            ok = codes.allSatisfy { put16($0) }
        case .elapsedTime(let t):
            ok = put16(t)
        case let .statusCode(status, message):
            ok = put16(status.rawValue) && put(Array(message.utf8))
        case .rapidCommit:
            ok = true
        case .dnsServers(let addresses):
            if addresses.isEmpty { return 0 }
            ok = addresses.allSatisfy { put($0.bytes) }
        case .domainList(let names):
            let bytes = DNSName.encodeList(names, compress: false)
            if bytes.isEmpty { return 0 }
            ok = put(bytes)
        }
        guard ok, end - 4 <= 0xffff else { return nil }
        buffer.setBE16(0, code)
        buffer.setBE16(2, UInt16(end - 4))
        return end
    }
}
