// resolv.conf reading: the host's name servers and search domains (spec §3.2).
//
// Theory of operation: we read the file the way upstream passt does, which is simpler (and
// stricter) than the C library's resolver:
// - A line counts as a name server if it starts with exactly "nameserver " (lower case, one
//   space). The address is the text after the line's last space, cut at the first "%" (an IPv6
//   zone such as fe80::1%eth0 loses its zone). It must parse completely as an IPv4 or IPv6
//   address (so "nameserver 192.0.2.1 # comment" yields nothing); the first 3 of each family are
//   kept, in file order.
// - A line starting with "search " gives the search domains: the words after "search", separated
//   by spaces or tabs, at most 6. Only the first search line that yields a domain is used.
// - Everything else (comments, "options", "domain", lines indented or with tabs) is ignored.
// Lines end at "\n" only; we split bytes, not Swift Characters, because "\r\n" is one Character.
#if canImport(Glibc)
import Glibc
#endif
import PasstWire

/// Reads name servers and search domains from resolv.conf text or files.
public enum ResolvConf {
    /// Name servers kept per address family.
    public static let maxNameservers = 3
    /// Search domains kept.
    public static let maxSearchDomains = 6
    /// The host's resolver configuration file.
    public static let defaultPath = "/etc/resolv.conf"

    /// Parses resolv.conf `text` with the rules of spec §3.2.
    public static func parse(_ text: String) -> ResolverConfig {
        var config = ResolverConfig()
        for rawLine in Array(text.utf8).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            let line = Array(rawLine)
            if line.starts(with: "nameserver ".utf8) {
                addNameserver(line, to: &config)
            } else if line.starts(with: "search ".utf8), config.search.isEmpty {
                config.search = searchDomains(line)
            }
        }
        return config
    }

    /// Reads and parses the file at `path`; an unreadable or missing file gives what was read (nothing).
    public static func load(path: String = defaultPath) -> ResolverConfig {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return ResolverConfig() }
        defer { close(fd) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            contents.append(contentsOf: chunk[0..<n])
        }
        return parse(String(decoding: contents, as: UTF8.self))
    }

    /// Adds the address of one "nameserver " line to `config` unless its family is full.
    private static func addNameserver(_ line: [UInt8], to config: inout ResolverConfig) {
        guard let lastSpace = line.lastIndex(of: UInt8(ascii: " ")) else { return }
        let word = line[(lastSpace + 1)...].prefix { $0 != UInt8(ascii: "%") }
        let text = String(decoding: word, as: UTF8.self)
        if let v4 = IPv4Address(text) {
            if config.nameservers4.count < maxNameservers { config.nameservers4.append(v4) }
        } else if let v6 = IPv6Address(text) {
            if config.nameservers6.count < maxNameservers { config.nameservers6.append(v6) }
        }
    }

    /// The domains of one "search " line (the words after the keyword), at most `maxSearchDomains`.
    private static func searchDomains(_ line: [UInt8]) -> [String] {
        let words = line.split { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        return words.dropFirst().prefix(maxSearchDomains).map { String(decoding: $0, as: UTF8.self) }
    }
}
