// Loads golden frames: each fixture is a file of hex digits (whitespace ignored) made by the
// generator scripts in scripts/golden/ (scapy) and committed beside this file.
import Foundation

enum Fixture {
    /// Directory holding the committed fixtures.
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// The bytes of fixture `name` (path relative to Fixtures/, without ".hex").
    static func bytes(_ name: String) throws -> [UInt8] {
        let text = try String(contentsOf: directory.appendingPathComponent(name + ".hex"), encoding: .utf8)
        let digits = Array(text.unicodeScalars.filter { !$0.properties.isWhitespace })
        precondition(digits.count % 2 == 0, "odd hex digit count in \(name)")
        return stride(from: 0, to: digits.count, by: 2).map {
            UInt8(String(String.UnicodeScalarView(digits[$0...$0 + 1])), radix: 16)!
        }
    }
}

/// Runs `body` with a pointer to a private copy of `bytes` (so views see exactly this buffer).
func withFrame<R>(_ bytes: [UInt8], _ body: (UnsafeRawPointer, Int) throws -> R) rethrows -> R {
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
    defer { buffer.deallocate() }
    bytes.withUnsafeBytes { if let b = $0.baseAddress { buffer.copyMemory(from: b, byteCount: bytes.count) } }
    return try body(UnsafeRawPointer(buffer), bytes.count)
}
