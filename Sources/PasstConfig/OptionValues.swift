// Parsers and validity rules for single option arguments (MAC, netmask, --runas, address classes).
//
// Theory of operation: each function mirrors one upstream helper (parse_mac, conf_ip4_prefix,
// conf_runas, the address checks of -a/-g/-o/--dns-forward/--map-*), returning nil where upstream
// dies so that the caller raises upstream's message, which names the option. Numbers go through the
// C library's strtol/strtoul as upstream's do, so "0x18" is a valid netmask and "1500abc" a valid MTU.
import Glibc
import PasstWire

enum OptionValues {
    /// A MAC address in the strict xx:xx:xx:xx:xx:xx form (two hex digits per byte), else nil.
    static func mac(_ text: String) -> MACAddress? {
        let bytes = Array(text.utf8)
        guard bytes.count == 17 else { return nil }
        var octets: [UInt8] = []
        for index in 0..<6 {
            let start = index * 3
            guard let high = hexDigit(bytes[start]), let low = hexDigit(bytes[start + 1]) else { return nil }
            if index < 5 && bytes[start + 2] != UInt8(ascii: ":") { return nil }
            octets.append(high << 4 | low)
        }
        return MACAddress(octets[0], octets[1], octets[2], octets[3], octets[4], octets[5])
    }

    /// The value of an ASCII hex digit, else nil.
    private static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// An IPv4 prefix length from a contiguous dotted netmask or a number 0...32 (strtoul base 0).
    static func prefixLength(_ text: String) -> Int? {
        if let mask = IPv4Address(text) {
            let length = mask.value.nonzeroBitCount
            return mask.value == IPv4Address.mask(prefixLength: length) ? length : nil
        }
        let number = CNumber.unsignedLong(text, base: 0)
        return number.outOfRange || number.value > 32 ? nil : Int(number.value)
    }

    /// --runas UID|UID:GID|LOGIN|LOGIN:GROUP; nil if invalid (unknown name, or a login name of UID 0).
    static func runAs(_ text: String) -> RunAs? {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        var ids: RunAs
        let user = CNumber.long(parts[0], base: 0)
        if user.consumedAll {
            let uid = UInt32(truncatingIfNeeded: user.value)
            ids = RunAs(uid: uid, gid: uid)
        } else {
            guard let entry = SystemFacts.lookUpUser(parts[0]), entry.uid != 0 else { return nil }
            ids = entry
        }
        guard parts.count == 2 else { return ids }
        let group = CNumber.long(parts[1], base: 0)
        if group.consumedAll {
            ids.gid = UInt32(truncatingIfNeeded: group.value)
        } else {
            guard let gid = SystemFacts.lookUpGroup(parts[1]) else { return nil }
            ids.gid = gid
        }
        return ids
    }

    /// -a, -o (IPv6): not unspecified, loopback, v4-mapped, v4-compatible or multicast.
    static func isAssignable(_ address: IPv6Address) -> Bool {
        !address.isUnspecified && !address.isLoopback && !address.isV4Mapped && !address.isV4Compatible
            && !address.isMulticast
    }

    /// -a (IPv4): not unspecified, broadcast, loopback or multicast.
    static func isAssignable(_ address: IPv4Address) -> Bool {
        !address.isUnspecified && !address.isBroadcast && !address.isLoopback && !address.isMulticast
    }

    /// --map-host-loopback, --map-guest-addr: not unspecified, loopback or multicast.
    static func isMappable(_ address: IPv6Address) -> Bool {
        !address.isUnspecified && !address.isLoopback && !address.isMulticast
    }

    /// --map-host-loopback, --map-guest-addr: not unspecified, loopback or multicast.
    static func isMappable(_ address: IPv4Address) -> Bool {
        !address.isUnspecified && !address.isLoopback && !address.isMulticast
    }
}

/// Size limits of option values, from upstream's buffers and libc constants.
enum ConfigLimits {
    /// IFNAMSIZ: interface names are shorter than this many bytes.
    static let interfaceNameSize = 16
    /// PATH_MAX: paths are shorter than this many bytes.
    static let pathMax = 4096
    /// UNIX_PATH_MAX: socket paths are shorter than this many bytes.
    static let unixPathMax = 108
    /// MAXNS: name servers kept per family.
    static let nameservers = 3
    /// MAXDNSRCH: search domains kept.
    static let searchDomains = 6
    /// NS_MAXDNAME: search domains are shorter than this many bytes.
    static let domainNameSize = 1025

    /// LOGFILE_SIZE_MIN: five times the larger of BUFSIZ (8192) and the page size.
    static var minimumLogSize: UInt {
        5 * max(8192, UInt(sysconf(Int32(_SC_PAGESIZE))))
    }
}
