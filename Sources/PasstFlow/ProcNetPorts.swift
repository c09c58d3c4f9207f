// Bound ports from /proc/net/{tcp,tcp6,udp,udp6} text (spec §5.3, pasta `auto` forwarding).
//
// Theory of operation: each of these files has a header line, then one line per socket:
//     "  12: 0100007F:1F90 00000000:0000 0A 00000000:00000000 ..."
// slot number, local address:port, remote address:port, state, all in hexadecimal. A TCP
// socket listens in state 0A (TCP_LISTEN); an unconnected UDP socket is in state 07
// (TCP_CLOSE, "UDP_LISTEN" upstream). `scan` adds the local port of every line in the wanted
// state to a bitmap. The caller reads the file (kept open, from offset 0 each time); this part is
// pure and takes any buffer, so tests feed it text.
import PasstConfig

/// Parser of /proc/net socket tables.
public enum ProcNetPorts {
    /// State of a listening TCP socket.
    public static let tcpListen: UInt8 = 0x0A
    /// State of a bound, unconnected UDP socket.
    public static let udpListen: UInt8 = 0x07

    /// Adds the local port of every socket line of `text` in `state` to `ports`.
    public static func scan(_ text: UnsafeRawBufferPointer, state: UInt8, into ports: inout PortBitmap) {
        var lineStart = 0
        var isHeader = true
        while lineStart < text.count {
            var lineEnd = lineStart
            while lineEnd < text.count && text[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            if !isHeader, let (port, lineState) = parseLine(UnsafeRawBufferPointer(rebasing: text[lineStart..<lineEnd])),
               lineState == state {
                ports.insert(port)
            }
            isHeader = false
            lineStart = lineEnd + 1
        }
    }

    /// The local port and state of one socket line, nil if it doesn't parse.
    static func parseLine(_ line: UnsafeRawBufferPointer) -> (UInt16, UInt8)? {
        var fields: [Substring] = []
        let text = String(decoding: line, as: UTF8.self)
        for field in text.split(separator: " ", omittingEmptySubsequences: true) {
            fields.append(field)
            if fields.count == 4 { break }
        }
        guard fields.count == 4, fields[0].hasSuffix(":"),
              let colon = fields[1].lastIndex(of: ":"),
              let port = UInt16(fields[1][fields[1].index(after: colon)...], radix: 16),
              let state = UInt8(fields[3], radix: 16) else { return nil }
        return (port, state)
    }
}
