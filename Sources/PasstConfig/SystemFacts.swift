// The few facts about the running system that option parsing and resolution look up.
//
// Theory of operation: upstream checks some options against the system while parsing (-i must name
// an existing interface, --runas names go through the user database, "all" and exclusion-only port
// specs skip the host's ephemeral port range) and picks the default user from the process identity
// (root in the init user namespace becomes nobody). Parsing and resolution take these as values or
// closures (`ParseEnvironment`, `ProcessIdentity`) so tests can substitute them; `.system` and
// `.current()` read the real ones.
import Glibc
import PasstSys

/// The host's ephemeral port range (net.ipv4.ip_local_port_range); may be empty if first > last.
public struct EphemeralPortRange: Equatable, Sendable {
    public var first: UInt16
    public var last: UInt16

    /// RFC 6335's range, upstream's fallback: 49152...65535.
    public static let rfc6335 = EphemeralPortRange(first: 49152, last: 65535)

    /// Creates a range from its bounds.
    public init(first: UInt16, last: UInt16) {
        self.first = first
        self.last = last
    }

    /// Whether `port` is ephemeral.
    public func contains(_ port: UInt16) -> Bool { port >= first && port <= last }

    /// Reads the kernel's range as upstream does; on failure the RFC 6335 range and upstream's warning.
    public static func probe(path: String = "/proc/sys/net/ipv4/ip_local_port_range")
        -> (range: EphemeralPortRange, warning: String?) {
        let contents: String
        switch SystemFacts.readSmallFile(path) {
        case .failure(let error):
            return (.rfc6335, "Unable to open \(path): \(error)")
        case .success(let text):
            contents = text
        }
        let line = contents.split(separator: "\n", omittingEmptySubsequences: false).first ?? ""
        let fields = line.split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false)
        guard fields.count == 2 else { return (.rfc6335, "Unable to parse \(path)") }
        let first = CNumber.long(String(fields[0]), base: 10)
        let last = CNumber.long(String(fields[1]), base: 10)
        guard first.consumedAll, last.consumedAll,
              !first.outOfRange, !last.outOfRange, (0...65535).contains(first.value),
              (0...65535).contains(last.value) else {
            return (.rfc6335, "Unable to parse \(path)")
        }
        return (EphemeralPortRange(first: UInt16(first.value), last: UInt16(last.value)), nil)
    }
}

/// System look-ups made while parsing the command line.
public struct ParseEnvironment: Sendable {
    /// Index of the named interface, or -errno if it doesn't exist (if_nametoindex).
    public var interfaceIndex: @Sendable (String) -> Int32
    /// The ephemeral port range, with upstream's warning if it couldn't be read.
    public var ephemeralPorts: @Sendable () -> (range: EphemeralPortRange, warning: String?)

    /// Creates an environment from its look-ups.
    public init(interfaceIndex: @escaping @Sendable (String) -> Int32,
                ephemeralPorts: @escaping @Sendable () -> (range: EphemeralPortRange, warning: String?)) {
        self.interfaceIndex = interfaceIndex
        self.ephemeralPorts = ephemeralPorts
    }

    /// The running system's interfaces and ephemeral port range.
    public static let system = ParseEnvironment(
        interfaceIndex: { name in
            let index = if_nametoindex(name)
            return index == 0 ? -errno : Int32(bitPattern: index)
        },
        ephemeralPorts: { EphemeralPortRange.probe() })
}

/// Who we run as, for the default of --runas (spec §2.1).
public struct ProcessIdentity: Equatable, Sendable {
    public var effectiveUID: UInt32
    public var effectiveGID: UInt32
    /// Whether we are in the initial user namespace (/proc/self/uid_map is the identity map).
    public var isInInitUserNamespace: Bool
    /// The IDs of user "nobody", nil if the user database has no such entry.
    public var nobody: RunAs?

    /// Creates an identity from its parts.
    public init(effectiveUID: UInt32, effectiveGID: UInt32, isInInitUserNamespace: Bool, nobody: RunAs?) {
        self.effectiveUID = effectiveUID
        self.effectiveGID = effectiveGID
        self.isInInitUserNamespace = isInInitUserNamespace
        self.nobody = nobody
    }

    /// The identity of this process; fails as upstream does if /proc/self/uid_map can't be read.
    public static func current() throws(ConfigError) -> ProcessIdentity {
        let initMap = "         0          0 4294967295\n"
        let uidMap: String
        switch SystemFacts.readSmallFile("/proc/self/uid_map") {
        case .failure(let error):
            throw ConfigError("Can't determine if we're in init namespace: \(error)")
        case .success(let text):
            uidMap = text
        }
        return ProcessIdentity(effectiveUID: geteuid(), effectiveGID: getegid(),
                               isInInitUserNamespace: uidMap == initMap, nobody: SystemFacts.lookUpUser("nobody"))
    }
}

/// User database and procfs look-ups.
enum SystemFacts {
    /// The UID and primary GID of a login name, nil if unknown.
    static func lookUpUser(_ name: String) -> RunAs? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return RunAs(uid: entry.pw_uid, gid: entry.pw_gid)
    }

    /// The GID of a group name, nil if unknown.
    static func lookUpGroup(_ name: String) -> UInt32? {
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getgrnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.gr_gid
    }

    /// Reads a small file (procfs) whole; the errno of open() or read() on failure.
    static func readSmallFile(_ path: String) -> Result<String, SyscallError> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return .failure(SyscallError(errno)) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(SyscallError(errno))
            }
            if count == 0 { break }
            bytes += chunk[..<count]
        }
        return .success(String(decoding: bytes, as: UTF8.self))
    }
}

/// Number conversions with the exact semantics of the C library calls upstream uses.
enum CNumber {
    /// strtol(3): value, whether the whole text was consumed, whether errno was set.
    static func long(_ text: String, base: Int32) -> (value: Int, consumedAll: Bool, outOfRange: Bool) {
        text.withCString { start in
            var end: UnsafeMutablePointer<CChar>?
            errno = 0
            let value = strtol(start, &end, base)
            let failed = errno != 0
            return (value, end?.pointee == 0, failed)
        }
    }

    /// strtoul(3): value, whether the whole text was consumed, whether errno was set.
    static func unsignedLong(_ text: String, base: Int32) -> (value: UInt, consumedAll: Bool, outOfRange: Bool) {
        text.withCString { start in
            var end: UnsafeMutablePointer<CChar>?
            errno = 0
            let value = strtoul(start, &end, base)
            let failed = errno != 0
            return (value, end?.pointee == 0, failed)
        }
    }
}
