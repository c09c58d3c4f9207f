// RFC 1035 domain names in wire form: label encoding, suffix compression, safe decoding.
//
// Theory of operation: a domain name on the wire is a sequence of labels, each one length byte
// (1...63) followed by that many bytes, ended by a zero byte (the root label):
//
//     "sub.example.com"  ->  03 's' 'u' 'b' 07 'e' 'x' 'a' 'm' 'p' 'l' 'e' 03 'c' 'o' 'm' 00
//
// RFC 1035 §4.1.4 compression replaces a tail of labels that was already written earlier in the
// same message by a two-byte pointer whose top two bits are set and whose 14 low bits are the
// offset of that earlier occurrence from the start of the message (for DHCP option 119, RFC 3397,
// from the start of the option data):
//
//      0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//     +---+---+---------------------------+
//     | 1   1 |          OFFSET           |
//     +---+---+---------------------------+
//
//     offset 0:  07 example 03 com 00          "example.com"
//     offset 13: 03 sub C0 00                  "sub.example.com" = "sub" + pointer to offset 0
//
// `DNSNameEncoder` appends names to a byte array and remembers, for every label boundary it wrote
// below offset 0x4000, the uncompressed wire form of the remaining suffix. A new name is written
// label by label until its remaining suffix is one already seen (exact byte match, so the decoded
// text is exactly what was encoded), which is then replaced by a pointer. Without compression (NDP
// DNSSL, RFC 8106, and DHCPv6 option 24, RFC 8415 §21.8 / RFC 3646, forbid it) names are written in full.
//
// The decoder is written for hostile input: every byte it reads lies inside [base, base + count);
// a pointer must point strictly before the start of the label run it ends (so every jump lands
// lower than the previous one and the walk must terminate; this also rejects self-pointers, loops
// and forward pointers), at most `maxPointerJumps` are followed, labels with the reserved 01/10 top
// bits are rejected, and the decoded wire length may not exceed 255 bytes.
//
// Names are text: labels joined by "."; a trailing "." is accepted on input and the root name is
// "" (or "."). Label bytes are taken as they are (UTF-8 of the text) and decoded back with
// `String(decoding:as:)`; a "." inside a label is not representable and is not escaped.
// This is control-path code (configuration, DHCP/NDP replies): arrays are fine here.

/// Namespace for RFC 1035 domain name encoding and decoding.
public enum DNSName {
    /// Longest label, in bytes (RFC 1035 §2.3.4).
    public static let maxLabelLength = 63
    /// Longest name in wire form, length bytes and root label included (RFC 1035 §2.3.4).
    public static let maxWireLength = 255
    /// Highest offset a compression pointer can express.
    public static let maxPointerOffset = 0x3fff
    /// Most compression pointers the decoder follows within one name.
    public static let maxPointerJumps = 64

    /// Splits `name` into labels (a trailing dot is allowed); nil if a label is empty or longer than
    /// 63 bytes or the wire form exceeds 255 bytes. The root name ("" or ".") gives no labels.
    public static func labels(of name: String) -> [[UInt8]]? {
        var text = Array(name.utf8)
        if text.last == UInt8(ascii: ".") { text.removeLast() }
        if text.isEmpty { return [] }
        var result: [[UInt8]] = []
        var wire = 1
        for part in text.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            guard !part.isEmpty, part.count <= maxLabelLength else { return nil }
            wire += 1 + part.count
            result.append(Array(part))
        }
        return wire <= maxWireLength ? result : nil
    }

    /// The uncompressed wire form of `name` (labels then a zero byte); nil if the name is invalid.
    public static func encode(_ name: String) -> [UInt8]? {
        guard let labels = labels(of: name) else { return nil }
        return wire(labels[...])
    }

    /// The wire form of a sequence of labels, root label included.
    static func wire(_ labels: ArraySlice<[UInt8]>) -> [UInt8] {
        var out: [UInt8] = []
        for label in labels { out.append(UInt8(label.count)); out += label }
        out.append(0)
        return out
    }

    /// Encodes `names` back to back, compressing shared suffixes if `compress`; invalid and root
    /// names are skipped (as upstream passt skips them).
    public static func encodeList(_ names: [String], compress: Bool) -> [UInt8] {
        var encoder = DNSNameEncoder(compress: compress)
        for name in names { _ = encoder.append(name) }
        return encoder.bytes
    }

    /// Decodes the name at `offset` of `base[0..<count]`, following compression pointers (relative
    /// to `base`) if `allowCompression`. Returns the dotted text ("" for the root) and the offset just
    /// after the name's bytes at `offset`, or nil if the name is malformed, truncated or loops.
    public static func decode(_ base: UnsafeRawPointer, count: Int, at offset: Int,
                              allowCompression: Bool) -> (name: String, next: Int)? {
        guard offset >= 0, offset < count else { return nil }
        var text: [UInt8] = []
        var position = offset
        var runStart = offset          // start of the label run being read; pointers must go below it
        var next: Int? = nil           // where the caller continues: after the first pointer or the root
        var wireLength = 1             // the root label
        var jumps = 0
        while true {
            guard position < count else { return nil }
            let length = Int(base.u8(position))
            if length == 0 {
                return (String(decoding: text, as: UTF8.self), next ?? position &+ 1)
            }
            switch length & 0xc0 {
            case 0xc0:
                guard allowCompression, position &+ 1 < count, jumps < maxPointerJumps else { return nil }
                let target = (length & 0x3f) << 8 | Int(base.u8(position &+ 1))
                guard target < runStart else { return nil }
                if next == nil { next = position &+ 2 }
                jumps &+= 1
                position = target
                runStart = target
            case 0x00:
                guard length <= count &- position &- 1 else { return nil }
                wireLength &+= 1 &+ length
                guard wireLength <= maxWireLength else { return nil }
                if !text.isEmpty { text.append(UInt8(ascii: ".")) }
                for i in 1...length { text.append(base.u8(position &+ i)) }
                position &+= 1 &+ length
            default:
                return nil                                  // 01 / 10: extended or reserved label types
            }
        }
    }

    /// Decodes names back to back from `base[0..<count]` until the data ends or a name would start
    /// with a zero byte (the root, used as padding in NDP DNSSL). Nil if any name is malformed.
    public static func decodeList(_ base: UnsafeRawPointer, count: Int, allowCompression: Bool) -> [String]? {
        var names: [String] = []
        var offset = 0
        while offset < count, base.u8(offset) != 0 {
            guard let (name, next) = decode(base, count: count, at: offset, allowCompression: allowCompression)
            else { return nil }
            names.append(name)
            offset = next                                   // always > offset: a name uses >= 2 bytes here
        }
        return names
    }

    /// `decodeList` over the bytes of an array (tests and control path).
    public static func decodeList(_ bytes: [UInt8], allowCompression: Bool) -> [String]? {
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return [] }
            return decodeList(base, count: raw.count, allowCompression: allowCompression)
        }
    }
}

/// Appends domain names in wire form to a byte array, optionally with RFC 1035 compression
/// pointers to suffixes written earlier into the same array (offsets relative to its start).
public struct DNSNameEncoder {
    /// The encoded names so far.
    public private(set) var bytes: [UInt8] = []
    /// Whether suffixes already written are replaced by compression pointers.
    public let compress: Bool
    /// Offsets of suffixes written so far, keyed by their uncompressed wire form.
    private var suffixes: [[UInt8]: Int] = [:]

    /// Creates an empty encoder.
    public init(compress: Bool) { self.compress = compress }

    /// Appends `name`; returns false (and writes nothing) if it is invalid or the root name.
    @discardableResult
    public mutating func append(_ name: String) -> Bool {
        guard let labels = DNSName.labels(of: name), !labels.isEmpty else { return false }
        var written = 0
        var pointer: Int? = nil
        if compress {
            for i in 0..<labels.count {
                if let target = suffixes[DNSName.wire(labels[i...])] { pointer = target; break }
                written += 1
            }
        } else {
            written = labels.count
        }
        for i in 0..<written {
            let offset = bytes.count
            if compress && offset <= DNSName.maxPointerOffset {
                suffixes[DNSName.wire(labels[i...])] = offset
            }
            bytes.append(UInt8(labels[i].count))
            bytes += labels[i]
        }
        if let target = pointer {
            bytes += [0xc0 | UInt8(target >> 8), UInt8(target & 0xff)]
        } else {
            bytes.append(0)
        }
        return true
    }
}
