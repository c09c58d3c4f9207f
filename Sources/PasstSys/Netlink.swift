// rtnetlink client: links, addresses and routes over a NETLINK_ROUTE socket.
//
// Theory of operation: rtnetlink is a datagram protocol between us and the kernel. Every request is
// one message: a 16-byte `nlmsghdr` (length, type, flags, sequence, port), a fixed family header
// (`ifinfomsg` for links, `ifaddrmsg` for addresses, `rtmsg` for routes) and a list of attributes
// (`rtattr`: 16-bit length, 16-bit type, payload padded to 4 bytes; attributes may nest). All
// integers are in host byte order, addresses in network order. Replies come in datagrams that may
// hold several messages:
//
//   datagram: | nlmsghdr | family header | rtattr | rtattr ... | (pad) | nlmsghdr | ... |
//
// - A "do" request (create, change) carries NLM_F_ACK; the kernel answers with one NLMSG_ERROR
//   whose error field is 0 (success) or a negated errno. With NETLINK_EXT_ACK the kernel appends
//   a text explaining the failure, which we keep in `NetlinkError.message`.
// - A dump (NLM_F_DUMP) is answered by any number of datagrams of NLM_F_MULTI messages ended by
//   NLMSG_DONE (whose payload holds an error, normally 0). NLM_F_DUMP_INTR says the table changed
//   while dumping: the dump is then repeated.
// Replies are matched to requests by sequence number; anything else (a late reply to an earlier
// request that failed half-way) is skipped. Every receive waits at most `timeoutMilliseconds`.
//
// A socket talks to the network namespace it was created in, for its whole life. `Netlink()`
// opens one in the calling thread's namespace; `Netlink(socket:)` adopts one opened elsewhere
// (pasta opens one inside the target namespace; tests open one inside their "host" namespace).
// NETLINK_GET_STRICT_CHK lets the kernel filter dumps by table and interface; we filter again here
// because older kernels ignore it.
//
// This is control path (start-up, --config-net): it allocates freely. Kernel structure layouts
// and constants come from <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_addr.h>, which Swift
// does not import; the arithmetic of NLMSG_ALIGN/RTA_ALIGN is written out below.
#if canImport(Glibc)
import Glibc
#endif

/// Address family of rtnetlink address and route messages.
public enum NetlinkFamily: UInt8, Sendable {
    case ipv4 = 2       // AF_INET
    case ipv6 = 10      // AF_INET6

    /// Length in bytes of one address of this family.
    public var addressLength: Int { self == .ipv4 ? 4 : 16 }
}

/// An rtnetlink failure: errno from the kernel or a syscall, what we were doing, and the kernel's
/// extended-ack text if it gave one.
public struct NetlinkError: Error, Equatable, Sendable, CustomStringConvertible {
    public var errno: Int32
    public var operation: String
    public var message: String?

    /// Creates an error for `operation` failing with `errno`.
    public init(errno: Int32, operation: String, message: String? = nil) {
        self.errno = errno; self.operation = operation; self.message = message
    }

    /// "netlink: OPERATION: strerror (kernel message)".
    public var description: String {
        let text = String(cString: strerror(errno))
        return "netlink: \(operation): \(text)" + (message.map { " (\($0))" } ?? "")
    }
}

/// Constants from the kernel's rtnetlink headers that callers need to build or read messages.
public enum RTNetlink {
    // Message types (netlink.h, rtnetlink.h).
    public static let NLMSG_NOOP: UInt16 = 1
    public static let NLMSG_ERROR: UInt16 = 2
    public static let NLMSG_DONE: UInt16 = 3
    public static let NLMSG_OVERRUN: UInt16 = 4
    public static let RTM_NEWLINK: UInt16 = 16
    public static let RTM_GETLINK: UInt16 = 18
    public static let RTM_NEWADDR: UInt16 = 20
    public static let RTM_GETADDR: UInt16 = 22
    public static let RTM_NEWROUTE: UInt16 = 24
    public static let RTM_GETROUTE: UInt16 = 26

    // Header flags.
    public static let NLM_F_REQUEST: UInt16 = 0x1
    public static let NLM_F_ACK: UInt16 = 0x4
    public static let NLM_F_DUMP_INTR: UInt16 = 0x10
    public static let NLM_F_DUMP: UInt16 = 0x300
    public static let NLM_F_REPLACE: UInt16 = 0x100
    public static let NLM_F_EXCL: UInt16 = 0x200
    public static let NLM_F_CREATE: UInt16 = 0x400
    /// On NLMSG_ERROR: the echoed request was cut to its header.
    public static let NLM_F_CAPPED: UInt16 = 0x100
    /// On NLMSG_ERROR: extended-ack attributes follow.
    public static let NLM_F_ACK_TLVS: UInt16 = 0x200

    // Link attributes and flags.
    public static let IFLA_ADDRESS: UInt16 = 1
    public static let IFLA_IFNAME: UInt16 = 3
    public static let IFLA_MTU: UInt16 = 4
    public static let IFLA_TXQLEN: UInt16 = 13
    public static let IFF_UP: UInt32 = 0x1
    public static let IFF_NOARP: UInt32 = 0x80

    // Address attributes and flags (IFA_FLAGS carries all 32 bits, ifa_flags the low 8).
    public static let IFA_ADDRESS: UInt16 = 1
    public static let IFA_LOCAL: UInt16 = 2
    public static let IFA_LABEL: UInt16 = 3
    public static let IFA_FLAGS: UInt16 = 8
    public static let IFA_F_SECONDARY: UInt32 = 0x01
    public static let IFA_F_NODAD: UInt32 = 0x02
    public static let IFA_F_DADFAILED: UInt32 = 0x08
    public static let IFA_F_DEPRECATED: UInt32 = 0x20
    public static let IFA_F_TENTATIVE: UInt32 = 0x40
    public static let IFA_F_PERMANENT: UInt32 = 0x80

    // Route attributes and values.
    public static let RTA_DST: UInt16 = 1
    public static let RTA_OIF: UInt16 = 4
    public static let RTA_GATEWAY: UInt16 = 5
    public static let RTA_PRIORITY: UInt16 = 6
    public static let RTA_PREFSRC: UInt16 = 7
    public static let RTA_METRICS: UInt16 = 8
    public static let RTA_MULTIPATH: UInt16 = 9
    public static let RTA_TABLE: UInt16 = 15
    public static let RTA_PREF: UInt16 = 20
    public static let RT_TABLE_UNSPEC: UInt32 = 0
    public static let RT_TABLE_MAIN: UInt32 = 254
    public static let RT_TABLE_LOCAL: UInt32 = 255
    /// Nexthop flags a route request may carry (RTNH_F_PERVASIVE | RTNH_F_ONLINK); the others
    /// in a dump (DEAD, LINKDOWN, OFFLOAD, TRAP ...) are the kernel's observed state, and it
    /// refuses a request with DEAD or LINKDOWN.
    public static let RTNH_F_REQUESTABLE: UInt8 = 0x02 | 0x04
    public static let RTN_UNICAST: UInt8 = 1
    public static let RTN_LOCAL: UInt8 = 2
    public static let RTPROT_KERNEL: UInt8 = 2
    public static let RTPROT_BOOT: UInt8 = 3
    public static let RT_SCOPE_UNIVERSE: UInt8 = 0
    public static let RT_SCOPE_LINK: UInt8 = 253
    public static let RT_SCOPE_HOST: UInt8 = 254

    // Socket level.
    public static let NETLINK_ROUTE: Int32 = 0
    /// SOCK_RAW | SOCK_CLOEXEC, the type of rtnetlink sockets (spelled out: the Glibc module's
    /// socket-type enum is not visible here once another module claims <sys/socket.h>).
    public static let socketType: Int32 = 3 | 0o2000000
    static let SOL_NETLINK: Int32 = 270
    static let NETLINK_CAP_ACK: Int32 = 10
    static let NETLINK_EXT_ACK: Int32 = 11
    static let NETLINK_GET_STRICT_CHK: Int32 = 12
    static let NLMSGERR_ATTR_MSG: UInt16 = 1

    // Sizes of the fixed headers.
    static let headerLength = 16            // nlmsghdr
    static let ifinfomsgLength = 16
    static let ifaddrmsgLength = 8
    static let rtmsgLength = 12
    static let rtnexthopLength = 8
}

/// Rounds up to the 4-byte alignment of netlink messages, attributes and nexthops.
@inline(__always) func netlinkAlign(_ n: Int) -> Int { (n + 3) & ~3 }

/// Native-order integer access to byte arrays (message payloads).
extension Array where Element == UInt8 {
    /// Reads a host-order UInt16 at `offset`.
    func netlinkU16(_ offset: Int) -> UInt16 {
        withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt16.self) }
    }

    /// Reads a host-order UInt32 at `offset`.
    func netlinkU32(_ offset: Int) -> UInt32 {
        withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    }

    /// Appends `value` in host order.
    mutating func appendNetlink<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value) { append(contentsOf: $0) }
    }

    /// Overwrites a host-order UInt16 at `offset`.
    mutating func setNetlinkU16(_ offset: Int, _ value: UInt16) {
        withUnsafeMutableBytes { $0.storeBytes(of: value, toByteOffset: offset, as: UInt16.self) }
    }

    /// Overwrites a host-order UInt32 at `offset`.
    mutating func setNetlinkU32(_ offset: Int, _ value: UInt32) {
        withUnsafeMutableBytes { $0.storeBytes(of: value, toByteOffset: offset, as: UInt32.self) }
    }
}

/// One attribute (`rtattr`/`nlattr`): type without the NESTED/BYTEORDER bits, and its payload.
public struct NetlinkAttribute: Equatable, Sendable {
    public var type: UInt16
    public var payload: [UInt8]

    /// Creates an attribute from its type and payload.
    public init(type: UInt16, payload: [UInt8]) { self.type = type; self.payload = payload }

    /// The payload as a host-order UInt32, if it is at least 4 bytes long.
    public var u32: UInt32? { payload.count >= 4 ? payload.netlinkU32(0) : nil }

    /// The payload as a string up to its first NUL.
    public var string: String {
        String(decoding: payload.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// The attributes nested in the payload.
    public var nested: [NetlinkAttribute] { NetlinkAttribute.parse(payload) }

    /// Parses the attribute list in `bytes` from `offset`; stops at the first malformed attribute.
    public static func parse(_ bytes: [UInt8], from offset: Int = 0) -> [NetlinkAttribute] {
        var result: [NetlinkAttribute] = []
        var at = offset
        while at + 4 <= bytes.count {
            let length = Int(bytes.netlinkU16(at))
            guard length >= 4, at + length <= bytes.count else { break }
            let type = bytes.netlinkU16(at + 2) & 0x3fff
            result.append(NetlinkAttribute(type: type, payload: Array(bytes[(at + 4)..<(at + length)])))
            at += netlinkAlign(length)
        }
        return result
    }
}

extension Array where Element == NetlinkAttribute {
    /// The first attribute of `type`, if any.
    public func first(_ type: UInt16) -> NetlinkAttribute? { first { $0.type == type } }
}

/// One received message: header fields and the payload after the 16-byte header.
public struct NetlinkMessage: Sendable {
    public var type: UInt16
    public var flags: UInt16
    public var sequence: UInt32
    public var payload: [UInt8]

    /// Creates a message from its header fields and payload.
    public init(type: UInt16, flags: UInt16, sequence: UInt32, payload: [UInt8]) {
        self.type = type; self.flags = flags; self.sequence = sequence; self.payload = payload
    }

    /// The attributes following a fixed family header of `headerLength` bytes.
    public func attributes(after headerLength: Int) -> [NetlinkAttribute] {
        NetlinkAttribute.parse(payload, from: netlinkAlign(headerLength))
    }
}

/// Builds one request message: header, fixed family header, attributes (nested ones included).
public struct NetlinkRequest: Sendable {
    /// The message so far; length and sequence are filled in when it is sent.
    public private(set) var bytes: [UInt8]

    /// Starts a message of `type`; NLM_F_REQUEST is always added to `flags`.
    public init(type: UInt16, flags: UInt16 = 0) {
        bytes = []
        bytes.appendNetlink(UInt32(0))                              // nlmsg_len, set on send
        bytes.appendNetlink(type)
        bytes.appendNetlink(flags | RTNetlink.NLM_F_REQUEST)
        bytes.appendNetlink(UInt32(0))                              // nlmsg_seq, set on send
        bytes.appendNetlink(UInt32(0))                              // nlmsg_pid: kernel fills in
    }

    /// The header flags.
    public var flags: UInt16 {
        get { bytes.netlinkU16(6) }
        set { bytes.setNetlinkU16(6, newValue) }
    }

    /// Appends raw bytes (a fixed family header), padded to 4 bytes.
    public mutating func append(_ raw: [UInt8]) {
        pad()
        bytes.append(contentsOf: raw)
    }

    /// Appends one attribute with `payload`.
    public mutating func appendAttribute(_ type: UInt16, _ payload: [UInt8]) {
        pad()
        bytes.appendNetlink(UInt16(4 + payload.count))
        bytes.appendNetlink(type)
        bytes.append(contentsOf: payload)
    }

    /// Appends one attribute holding a host-order UInt32.
    public mutating func appendAttribute(_ type: UInt16, u32 value: UInt32) {
        var payload: [UInt8] = []
        payload.appendNetlink(value)
        appendAttribute(type, payload)
    }

    /// Opens a nested attribute of `type`; returns the mark to pass to `endNested`.
    public mutating func beginNested(_ type: UInt16) -> Int {
        pad()
        let mark = bytes.count
        bytes.appendNetlink(UInt16(0))
        bytes.appendNetlink(type)
        return mark
    }

    /// Closes the nested attribute (or nexthop) opened at `mark` by writing its length.
    public mutating func endNested(_ mark: Int) {
        bytes.setNetlinkU16(mark, UInt16(bytes.count - mark))
    }

    /// Opens one `rtnexthop` inside RTA_MULTIPATH (weight 1...256); close it with `endNested`.
    public mutating func beginNexthop(interfaceIndex: Int32, weight: Int, flags: UInt8 = 0) -> Int {
        pad()
        let mark = bytes.count
        bytes.appendNetlink(UInt16(0))                              // rtnh_len
        bytes.appendNetlink(flags)
        bytes.appendNetlink(UInt8(clamping: max(weight, 1) - 1))   // rtnh_hops = weight - 1
        bytes.appendNetlink(interfaceIndex)
        return mark
    }

    /// Pads the message to the next 4-byte boundary.
    private mutating func pad() {
        while bytes.count % 4 != 0 { bytes.append(0) }
    }

    /// The finished message with length and `sequence` filled in.
    func finished(sequence: UInt32) -> [UInt8] {
        var out = bytes
        while out.count % 4 != 0 { out.append(0) }
        out.setNetlinkU32(0, UInt32(out.count))
        out.setNetlinkU32(8, sequence)
        return out
    }
}

/// A network interface as RTM_NEWLINK describes it.
public struct NetlinkLink: Equatable, Sendable {
    public var index: Int32
    public var name: String
    public var mtu: UInt32
    /// IFF_* flags (IFF_UP = 0x1 ...).
    public var flags: UInt32
    /// Link-layer address (6 bytes on Ethernet); empty if the link has none (e.g. tun).
    public var mac: [UInt8]

    /// Whether the link is administratively up.
    public var isUp: Bool { flags & RTNetlink.IFF_UP != 0 }

    /// Parses an RTM_NEWLINK message; nil if it is too short.
    public init?(parsing message: NetlinkMessage) {
        let p = message.payload
        guard p.count >= RTNetlink.ifinfomsgLength else { return nil }
        index = Int32(bitPattern: p.netlinkU32(4))
        flags = p.netlinkU32(8)
        let attributes = message.attributes(after: RTNetlink.ifinfomsgLength)
        name = attributes.first(RTNetlink.IFLA_IFNAME)?.string ?? ""
        mtu = attributes.first(RTNetlink.IFLA_MTU)?.u32 ?? 0
        mac = attributes.first(RTNetlink.IFLA_ADDRESS)?.payload ?? []
    }
}

/// An interface address as RTM_NEWADDR describes it.
public struct NetlinkAddress: Equatable, Sendable {
    public var family: NetlinkFamily
    public var interfaceIndex: Int32
    public var prefixLength: Int
    /// RT_SCOPE_* (0 universe/global, 253 link, 254 host).
    public var scope: UInt8
    /// IFA_F_* flags, all 32 bits (from IFA_FLAGS when present).
    public var flags: UInt32
    /// IFA_ADDRESS: the address (IPv6), or the peer on point-to-point IPv4 links.
    public var address: [UInt8]?
    /// IFA_LOCAL: the local IPv4 address (IPv6 has it only on point-to-point links).
    public var local: [UInt8]?
    public var label: String?

    /// The host's own address: IFA_LOCAL if present, else IFA_ADDRESS.
    public var localAddress: [UInt8]? { local ?? address }
    /// Whether the preferred lifetime ran out (IFA_F_DEPRECATED).
    public var isDeprecated: Bool { flags & RTNetlink.IFA_F_DEPRECATED != 0 }

    /// Parses an RTM_NEWADDR message; nil if it is too short or of another family.
    public init?(parsing message: NetlinkMessage) {
        let p = message.payload
        guard p.count >= RTNetlink.ifaddrmsgLength, let family = NetlinkFamily(rawValue: p[0]) else { return nil }
        self.family = family
        prefixLength = Int(p[1])
        scope = p[3]
        interfaceIndex = Int32(bitPattern: p.netlinkU32(4))
        let attributes = message.attributes(after: RTNetlink.ifaddrmsgLength)
        flags = attributes.first(RTNetlink.IFA_FLAGS)?.u32 ?? UInt32(p[2])
        address = attributes.first(RTNetlink.IFA_ADDRESS)?.payload
        local = attributes.first(RTNetlink.IFA_LOCAL)?.payload
        label = attributes.first(RTNetlink.IFA_LABEL)?.string
    }
}

/// One nexthop of a multipath route (RTA_MULTIPATH).
public struct NetlinkNexthop: Equatable, Sendable {
    public var interfaceIndex: Int32
    public var gateway: [UInt8]?
    /// Weight 1...256 (the kernel stores weight - 1 in rtnh_hops).
    public var weight: Int
    /// RTNH_F_* flags.
    public var flags: UInt8

    /// Creates a nexthop.
    public init(interfaceIndex: Int32, gateway: [UInt8]?, weight: Int = 1, flags: UInt8 = 0) {
        self.interfaceIndex = interfaceIndex; self.gateway = gateway; self.weight = weight; self.flags = flags
    }
}

/// A route as RTM_NEWROUTE describes it; also the input of `Netlink.addRoute`.
public struct NetlinkRoute: Equatable, Sendable {
    public var family: NetlinkFamily
    /// RTA_DST; nil for a default route.
    public var destination: [UInt8]?
    public var prefixLength: Int
    public var gateway: [UInt8]?
    /// RTA_OIF; nil for multipath routes (see `nexthops`) and routes without a device.
    public var outputInterface: Int32?
    public var nexthops: [NetlinkNexthop]
    public var table: UInt32
    /// RTN_* (1 unicast, 2 local, 3 broadcast, 6 blackhole, 7 unreachable ...).
    public var type: UInt8
    /// RTPROT_* (2 kernel, 3 boot, 4 static ...).
    public var routeProtocol: UInt8
    public var scope: UInt8
    /// RTA_PRIORITY (the metric).
    public var priority: UInt32?
    public var preferredSource: [UInt8]?
    /// RTA_METRICS as dumped (nested RTAX_* attributes: mtu, advmss, hoplimit ...), copied whole.
    public var metrics: [UInt8]?
    /// RTA_PREF: an IPv6 route's router preference (0 medium, 1 high, 3 low).
    public var preference: UInt8?
    /// rtm_flags (RTNH_F_ONLINK ...).
    public var flags: UInt32

    /// Creates a route; the scope defaults to link for IPv4 routes without a gateway, else universe.
    public init(family: NetlinkFamily, destination: [UInt8]? = nil, prefixLength: Int = 0,
                gateway: [UInt8]? = nil, outputInterface: Int32? = nil, nexthops: [NetlinkNexthop] = [],
                table: UInt32 = RTNetlink.RT_TABLE_MAIN, type: UInt8 = RTNetlink.RTN_UNICAST,
                routeProtocol: UInt8 = RTNetlink.RTPROT_BOOT, scope: UInt8? = nil, priority: UInt32? = nil,
                preferredSource: [UInt8]? = nil, flags: UInt32 = 0) {
        self.family = family; self.destination = destination; self.prefixLength = prefixLength
        self.gateway = gateway; self.outputInterface = outputInterface; self.nexthops = nexthops
        self.table = table; self.type = type; self.routeProtocol = routeProtocol
        self.scope = scope ?? (family == .ipv4 && gateway == nil && nexthops.isEmpty
                               ? RTNetlink.RT_SCOPE_LINK : RTNetlink.RT_SCOPE_UNIVERSE)
        self.priority = priority; self.preferredSource = preferredSource; self.flags = flags
    }

    /// Whether this is a default route (prefix length 0).
    public var isDefault: Bool { prefixLength == 0 }

    /// The route's interface: RTA_OIF, else the first nexthop's (as upstream picks it); nil if none.
    public var interfaceIndex: Int32? {
        let index = outputInterface ?? nexthops.first?.interfaceIndex
        return index == 0 ? nil : index
    }

    /// Parses an RTM_NEWROUTE message; nil if it is too short or of another family.
    public init?(parsing message: NetlinkMessage) {
        let p = message.payload
        guard p.count >= RTNetlink.rtmsgLength, let family = NetlinkFamily(rawValue: p[0]) else { return nil }
        let attributes = message.attributes(after: RTNetlink.rtmsgLength)
        self.family = family
        prefixLength = Int(p[1])
        table = attributes.first(RTNetlink.RTA_TABLE)?.u32 ?? UInt32(p[4])
        routeProtocol = p[5]
        scope = p[6]
        type = p[7]
        flags = p.netlinkU32(8)
        destination = attributes.first(RTNetlink.RTA_DST)?.payload
        gateway = attributes.first(RTNetlink.RTA_GATEWAY)?.payload
        outputInterface = attributes.first(RTNetlink.RTA_OIF)?.u32.map { Int32(bitPattern: $0) }
        priority = attributes.first(RTNetlink.RTA_PRIORITY)?.u32
        preferredSource = attributes.first(RTNetlink.RTA_PREFSRC)?.payload
        metrics = attributes.first(RTNetlink.RTA_METRICS)?.payload
        preference = attributes.first(RTNetlink.RTA_PREF)?.payload.first
        nexthops = attributes.first(RTNetlink.RTA_MULTIPATH).map { NetlinkRoute.parseNexthops($0.payload) } ?? []
    }

    /// Parses the `rtnexthop` list of an RTA_MULTIPATH payload.
    private static func parseNexthops(_ bytes: [UInt8]) -> [NetlinkNexthop] {
        var result: [NetlinkNexthop] = []
        var at = 0
        while at + RTNetlink.rtnexthopLength <= bytes.count {
            let length = Int(bytes.netlinkU16(at))
            guard length >= RTNetlink.rtnexthopLength, at + length <= bytes.count else { break }
            let inner = NetlinkAttribute.parse(Array(bytes[(at + RTNetlink.rtnexthopLength)..<(at + length)]))
            result.append(NetlinkNexthop(interfaceIndex: Int32(bitPattern: bytes.netlinkU32(at + 4)),
                                         gateway: inner.first(RTNetlink.RTA_GATEWAY)?.payload,
                                         weight: Int(bytes[at + 3]) + 1, flags: bytes[at + 2]))
            at += netlinkAlign(length)
        }
        return result
    }
}

/// An rtnetlink connection: one NETLINK_ROUTE socket, bound to the namespace it was created in.
public final class Netlink {
    private let socket: FileDescriptor
    private var sequence: UInt32
    private var buffer: [UInt8] = []
    /// How long one receive waits for the kernel before failing with ETIMEDOUT.
    public var timeoutMilliseconds: Int32 = 5000

    /// Opens a NETLINK_ROUTE socket in the calling thread's network namespace.
    public convenience init() throws(NetlinkError) {
        let fd = Glibc.socket(AF_NETLINK, RTNetlink.socketType, RTNetlink.NETLINK_ROUTE)
        guard fd >= 0 else { throw NetlinkError(errno: errno, operation: "socket(AF_NETLINK)") }
        self.init(socket: FileDescriptor(taking: fd))
    }

    /// Adopts an open NETLINK_ROUTE socket (e.g. one created inside another network namespace).
    public init(socket: consuming FileDescriptor) {
        self.socket = socket
        sequence = UInt32(truncatingIfNeeded: time(nil))
        for option in [RTNetlink.NETLINK_EXT_ACK, RTNetlink.NETLINK_CAP_ACK, RTNetlink.NETLINK_GET_STRICT_CHK] {
            var on: Int32 = 1   // best effort: older kernels lack some, we cope without them
            _ = setsockopt(self.socket.raw, RTNetlink.SOL_NETLINK, option, &on, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// The socket's descriptor number (owned by this object).
    public var fileDescriptor: Int32 { socket.raw }

    // MARK: Generic requests

    /// Sends `request` with NLM_F_ACK and waits for the kernel's acknowledgement; throws its error.
    public func perform(_ request: NetlinkRequest, operation: String) throws(NetlinkError) {
        var request = request
        request.flags |= RTNetlink.NLM_F_ACK
        let seq = try send(request, operation: operation)
        _ = try receive(sequence: seq, operation: operation, collecting: false)
    }

    /// Sends `request` as a dump and returns every reply message up to NLMSG_DONE.
    public func dump(_ request: NetlinkRequest, operation: String) throws(NetlinkError) -> [NetlinkMessage] {
        var request = request
        request.flags |= RTNetlink.NLM_F_DUMP
        for _ in 0..<4 {
            let seq = try send(request, operation: operation)
            let (messages, interrupted) = try receive(sequence: seq, operation: operation, collecting: true)
            if !interrupted { return messages }
        }
        throw NetlinkError(errno: EINTR, operation: operation, message: "dump interrupted repeatedly")
    }

    // MARK: Queries

    /// All links of the namespace.
    public func links() throws(NetlinkError) -> [NetlinkLink] {
        var request = NetlinkRequest(type: RTNetlink.RTM_GETLINK)
        request.append([UInt8](repeating: 0, count: RTNetlink.ifinfomsgLength))
        return try dump(request, operation: "RTM_GETLINK").compactMap {
            $0.type == RTNetlink.RTM_NEWLINK ? NetlinkLink(parsing: $0) : nil
        }
    }

    /// The link called `name`, or nil if there is none.
    public func link(named name: String) throws(NetlinkError) -> NetlinkLink? {
        try links().first { $0.name == name }
    }

    /// Addresses of `family`, of one interface if `interfaceIndex` is given, in kernel order.
    public func addresses(family: NetlinkFamily, interfaceIndex: Int32? = nil) throws(NetlinkError) -> [NetlinkAddress] {
        var request = NetlinkRequest(type: RTNetlink.RTM_GETADDR)
        var header: [UInt8] = [family.rawValue, 0, 0, 0]            // family, prefixlen, flags, scope
        header.appendNetlink(UInt32(bitPattern: interfaceIndex ?? 0))
        request.append(header)
        return try dump(request, operation: "RTM_GETADDR").compactMap {
            guard $0.type == RTNetlink.RTM_NEWADDR, let address = NetlinkAddress(parsing: $0),
                  address.family == family, interfaceIndex == nil || address.interfaceIndex == interfaceIndex
            else { return nil }
            return address
        }
    }

    /// Routes of `family` in `table` (default: main), in kernel order.
    public func routes(family: NetlinkFamily, table: UInt32 = RTNetlink.RT_TABLE_MAIN) throws(NetlinkError) -> [NetlinkRoute] {
        var request = NetlinkRequest(type: RTNetlink.RTM_GETROUTE)
        request.append(NetlinkRequest.rtmsg(family: family, prefixLength: 0, table: table, routeProtocol: 0,
                                            scope: 0, type: 0, flags: 0))
        if table > 255 { request.appendAttribute(RTNetlink.RTA_TABLE, u32: table) }
        return try dump(request, operation: "RTM_GETROUTE").compactMap {
            guard $0.type == RTNetlink.RTM_NEWROUTE, let route = NetlinkRoute(parsing: $0),
                  route.family == family, route.table == table else { return nil }
            return route
        }
    }

    // MARK: Changes

    /// Sets the link flags selected by `mask` to their values in `flags` (e.g. IFF_UP, IFF_NOARP).
    public func setLinkFlags(index: Int32, flags: UInt32, mask: UInt32) throws(NetlinkError) {
        var request = NetlinkRequest(type: RTNetlink.RTM_NEWLINK)
        request.append(NetlinkRequest.ifinfomsg(index: index, flags: flags, change: mask))
        try perform(request, operation: "set flags of link \(index)")
    }

    /// Brings a link up or down.
    public func setLinkUp(index: Int32, _ up: Bool = true) throws(NetlinkError) {
        try setLinkFlags(index: index, flags: up ? RTNetlink.IFF_UP : 0, mask: RTNetlink.IFF_UP)
    }

    /// Sets a link's MTU.
    public func setMTU(index: Int32, _ mtu: UInt32) throws(NetlinkError) {
        var request = NetlinkRequest(type: RTNetlink.RTM_NEWLINK)
        request.append(NetlinkRequest.ifinfomsg(index: index, flags: 0, change: 0))
        request.appendAttribute(RTNetlink.IFLA_MTU, u32: mtu)
        try perform(request, operation: "set MTU of link \(index)")
    }

    /// Sets a link's transmit queue length (for a tap: the frames queued towards its reader).
    public func setTransmitQueueLength(index: Int32, _ length: UInt32) throws(NetlinkError) {
        var request = NetlinkRequest(type: RTNetlink.RTM_NEWLINK)
        request.append(NetlinkRequest.ifinfomsg(index: index, flags: 0, change: 0))
        request.appendAttribute(RTNetlink.IFLA_TXQLEN, u32: length)
        try perform(request, operation: "set transmit queue length of link \(index)")
    }

    /// Sets a link's hardware (MAC) address.
    public func setMAC(index: Int32, _ mac: [UInt8]) throws(NetlinkError) {
        var request = NetlinkRequest(type: RTNetlink.RTM_NEWLINK)
        request.append(NetlinkRequest.ifinfomsg(index: index, flags: 0, change: 0))
        request.appendAttribute(RTNetlink.IFLA_ADDRESS, mac)
        try perform(request, operation: "set MAC of link \(index)")
    }

    /// Adds `address/prefixLength` to a link with IFA_F_* `flags` (e.g. IFA_F_NODAD); fails with
    /// EEXIST if present unless `replace` (which also updates the flags of an existing address).
    public func addAddress(index: Int32, family: NetlinkFamily, address: [UInt8], prefixLength: Int,
                           flags: UInt32 = 0, scope: UInt8 = RTNetlink.RT_SCOPE_UNIVERSE,
                           replace: Bool = false) throws(NetlinkError) {
        guard address.count == family.addressLength else {
            throw NetlinkError(errno: EINVAL, operation: "add address", message: "address length \(address.count)")
        }
        var request = NetlinkRequest(type: RTNetlink.RTM_NEWADDR,
                                     flags: RTNetlink.NLM_F_CREATE | (replace ? RTNetlink.NLM_F_REPLACE : RTNetlink.NLM_F_EXCL))
        var header: [UInt8] = [family.rawValue, UInt8(clamping: prefixLength), UInt8(truncatingIfNeeded: flags), scope]
        header.appendNetlink(UInt32(bitPattern: index))
        request.append(header)
        request.appendAttribute(RTNetlink.IFA_LOCAL, address)
        request.appendAttribute(RTNetlink.IFA_ADDRESS, address)
        if flags != 0 { request.appendAttribute(RTNetlink.IFA_FLAGS, u32: flags) }
        try perform(request, operation: "add address to link \(index)")
    }

    /// Adds `route` (single gateway/interface or multipath nexthops); EEXIST if present unless `replace`.
    public func addRoute(_ route: NetlinkRoute, replace: Bool = false) throws(NetlinkError) {
        var request = NetlinkRequest(type: RTNetlink.RTM_NEWROUTE,
                                     flags: RTNetlink.NLM_F_CREATE | (replace ? RTNetlink.NLM_F_REPLACE : RTNetlink.NLM_F_EXCL))
        request.append(NetlinkRequest.rtmsg(family: route.family, prefixLength: route.prefixLength, table: route.table,
                                            routeProtocol: route.routeProtocol, scope: route.scope, type: route.type,
                                            flags: route.flags))
        if route.table > 255 { request.appendAttribute(RTNetlink.RTA_TABLE, u32: route.table) }
        if route.prefixLength > 0, let destination = route.destination {
            request.appendAttribute(RTNetlink.RTA_DST, destination)
        }
        if let gateway = route.gateway { request.appendAttribute(RTNetlink.RTA_GATEWAY, gateway) }
        if let oif = route.outputInterface { request.appendAttribute(RTNetlink.RTA_OIF, u32: UInt32(bitPattern: oif)) }
        if let priority = route.priority { request.appendAttribute(RTNetlink.RTA_PRIORITY, u32: priority) }
        if let source = route.preferredSource { request.appendAttribute(RTNetlink.RTA_PREFSRC, source) }
        if let metrics = route.metrics, !metrics.isEmpty { request.appendAttribute(RTNetlink.RTA_METRICS, metrics) }
        if let preference = route.preference { request.appendAttribute(RTNetlink.RTA_PREF, [preference]) }
        if !route.nexthops.isEmpty {
            let multipath = request.beginNested(RTNetlink.RTA_MULTIPATH)
            for hop in route.nexthops {
                let mark = request.beginNexthop(interfaceIndex: hop.interfaceIndex, weight: hop.weight, flags: hop.flags)
                if let gateway = hop.gateway { request.appendAttribute(RTNetlink.RTA_GATEWAY, gateway) }
                request.endNested(mark)
            }
            request.endNested(multipath)
        }
        try perform(request, operation: "add route")
    }

    // MARK: Transport

    /// Sends `request` with the next sequence number; returns that number.
    private func send(_ request: NetlinkRequest, operation: String) throws(NetlinkError) -> UInt32 {
        sequence &+= 1
        let bytes = request.finished(sequence: sequence)
        let result = retryingEINTR { bytes.withUnsafeBytes { Glibc.send(socket.raw, $0.baseAddress, $0.count, 0) } }
        switch result {
        case .success(let sent) where sent == bytes.count: return sequence
        case .success: throw NetlinkError(errno: EMSGSIZE, operation: operation, message: "short send")
        case .wouldBlock: throw NetlinkError(errno: EAGAIN, operation: operation)
        case .failure(let e): throw NetlinkError(errno: e, operation: operation)
        }
    }

    /// Reads replies to `sequence` until the ACK (or NLMSG_DONE); returns the other messages if
    /// `collecting`, and whether any carried NLM_F_DUMP_INTR.
    private func receive(sequence seq: UInt32, operation: String,
                         collecting: Bool) throws(NetlinkError) -> ([NetlinkMessage], Bool) {
        var messages: [NetlinkMessage] = []
        var interrupted = false
        while true {
            let length = try receiveDatagram(operation: operation)
            var at = 0
            while at + RTNetlink.headerLength <= length {
                let messageLength = Int(buffer.netlinkU32(at))
                guard messageLength >= RTNetlink.headerLength, at + messageLength <= length else {
                    throw NetlinkError(errno: EBADMSG, operation: operation, message: "malformed reply")
                }
                let message = NetlinkMessage(type: buffer.netlinkU16(at + 4), flags: buffer.netlinkU16(at + 6),
                                             sequence: buffer.netlinkU32(at + 8),
                                             payload: Array(buffer[(at + RTNetlink.headerLength)..<(at + messageLength)]))
                at += netlinkAlign(messageLength)
                guard message.sequence == seq else { continue }          // late reply to an old request
                switch message.type {
                case RTNetlink.NLMSG_ERROR:
                    let error = message.payload.count >= 4 ? Int32(bitPattern: message.payload.netlinkU32(0)) : -EBADMSG
                    if error == 0 { return (messages, interrupted) }
                    throw NetlinkError(errno: -error, operation: operation, message: Netlink.extendedAck(message))
                case RTNetlink.NLMSG_DONE:
                    if message.payload.count >= 4 {
                        let error = Int32(bitPattern: message.payload.netlinkU32(0))
                        if error < 0 { throw NetlinkError(errno: -error, operation: operation) }
                    }
                    return (messages, interrupted)
                case RTNetlink.NLMSG_NOOP:
                    continue
                case RTNetlink.NLMSG_OVERRUN:
                    throw NetlinkError(errno: ENOBUFS, operation: operation, message: "overrun")
                default:
                    if message.flags & RTNetlink.NLM_F_DUMP_INTR != 0 { interrupted = true }
                    if collecting { messages.append(message) }
                }
            }
        }
    }

    /// Waits (bounded by `timeoutMilliseconds`) for one datagram and reads it whole into `buffer`.
    private func receiveDatagram(operation: String) throws(NetlinkError) -> Int {
        while true {
            var pfd = pollfd(fd: socket.raw, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, timeoutMilliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                throw NetlinkError(errno: errno, operation: operation)
            }
            if ready == 0 { throw NetlinkError(errno: ETIMEDOUT, operation: operation, message: "no reply from kernel") }
            // Learn the datagram's size first, so that no reply is ever truncated.
            let peek = retryingEINTR { Glibc.recv(socket.raw, nil, 0, Int32(MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT)) }
            let size: Int
            switch peek {
            case .success(let n): size = n
            case .wouldBlock: continue
            case .failure(let e): throw NetlinkError(errno: e, operation: operation)
            }
            if buffer.count < max(size, 1) { buffer = [UInt8](repeating: 0, count: max(size, 65536)) }
            let result = retryingEINTR { buffer.withUnsafeMutableBytes { Glibc.recv(socket.raw, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) } }
            switch result {
            case .success(let n): return n
            case .wouldBlock: continue
            case .failure(let e): throw NetlinkError(errno: e, operation: operation)
            }
        }
    }

    /// The kernel's explanation (NLMSGERR_ATTR_MSG) carried by an NLMSG_ERROR message, if any.
    private static func extendedAck(_ message: NetlinkMessage) -> String? {
        guard message.flags & RTNetlink.NLM_F_ACK_TLVS != 0, message.payload.count >= 4 + RTNetlink.headerLength else {
            return nil
        }
        let echoed = message.flags & RTNetlink.NLM_F_CAPPED != 0
            ? RTNetlink.headerLength : Int(message.payload.netlinkU32(4))
        let text = NetlinkAttribute.parse(message.payload, from: 4 + netlinkAlign(echoed)).first(RTNetlink.NLMSGERR_ATTR_MSG)?.string
        return text?.isEmpty == false ? text : nil
    }
}

extension NetlinkRequest {
    /// An `ifinfomsg` (AF_UNSPEC) for link `index` with `flags` under `change` mask.
    static func ifinfomsg(index: Int32, flags: UInt32, change: UInt32) -> [UInt8] {
        var header: [UInt8] = [0, 0]                                 // family, pad
        header.appendNetlink(UInt16(0))                              // type
        header.appendNetlink(index)
        header.appendNetlink(flags)
        header.appendNetlink(change)
        return header
    }

    /// An `rtmsg`; tables above 255 go in RTA_TABLE, with RT_TABLE_UNSPEC here.
    static func rtmsg(family: NetlinkFamily, prefixLength: Int, table: UInt32, routeProtocol: UInt8, scope: UInt8,
                      type: UInt8, flags: UInt32) -> [UInt8] {
        var header: [UInt8] = [family.rawValue, UInt8(clamping: prefixLength), 0, 0,
                               UInt8(truncatingIfNeeded: table > 255 ? RTNetlink.RT_TABLE_UNSPEC : table),
                               routeProtocol, scope, type]
        header.appendNetlink(flags)
        return header
    }
}
