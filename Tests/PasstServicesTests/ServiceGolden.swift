// Shared test support for PasstServices: the two configurations of scripts/golden/gen_service_answers.py,
// fixture loading (Fixtures/*.hex and cases.txt, no Foundation), and memory with a guard page
// behind it so that any read past a frame or write past an output capacity faults at once.
#if canImport(Glibc)
import Glibc
#endif
import PasstServices
import PasstWire

/// The configurations and fixtures of gen_service_answers.py (change both together).
enum Golden {
    static let ourMAC = MACAddress.passtDefault
    static let guestMAC = MACAddress(0x52, 0x54, 0x00, 0x12, 0x34, 0x56)
    static let guest4 = IPv4Address(192, 0, 2, 2)
    static let gateway4 = IPv4Address(192, 0, 2, 1)
    static let guest6 = IPv6Address("fd00::2")!
    static let guestLinkLocal = IPv6Address("fe80::2")!
    static let ourLinkLocal = IPv6Address("fe80::1")!
    static let duidTime: UInt32 = 0x2F11_6C00

    /// Configuration A: 192.0.2.2/24 via 192.0.2.1, DNS 192.0.2.1 and fd00::1, search example.test, MTU 65520.
    static let configA = ServiceConfig(
        ourMAC: ourMAC, guestMAC: guestMAC,
        ipv4: .init(address: guest4, prefixLength: 24, gateway: gateway4, dns: [gateway4]),
        ipv6: .init(address: guest6, ourLinkLocal: ourLinkLocal, dns: [IPv6Address("fd00::1")!]),
        searchDomains: ["example.test"], mtu: 65520, dhcpv6DUIDTime: duidTime)

    /// Configuration B: gateway 203.0.113.1 (off the /24), -m 0, two name servers per family, three search domains.
    static let configB = ServiceConfig(
        ourMAC: ourMAC, guestMAC: guestMAC,
        ipv4: .init(address: guest4, prefixLength: 24, gateway: IPv4Address(203, 0, 113, 1),
                    dns: [IPv4Address(192, 0, 2, 53), IPv4Address(198, 51, 100, 53)]),
        ipv6: .init(address: guest6, ourLinkLocal: ourLinkLocal,
                    dns: [IPv6Address("2001:db8::53")!, IPv6Address("fd00::53")!]),
        searchDomains: ["example.test", "corp.example.test", "lab.test"], mtu: 0, dhcpv6DUIDTime: duidTime)

    /// One line of cases.txt.
    struct Case: CustomStringConvertible, Sendable {
        let name: String
        let config: ServiceConfig
        let expectsReply: Bool
        var description: String { name }
        /// The request frame.
        var request: [UInt8] { Golden.bytes(name + ".request") }
        /// The expected reply frame, if any.
        var reply: [UInt8]? { expectsReply ? Golden.bytes(name + ".reply") : nil }
    }

    /// Directory of the fixtures (next to this file).
    static let directory: String = {
        let path = #filePath
        return String(path[..<path.lastIndex(of: "/")!]) + "/Fixtures/"
    }()

    /// Every case of cases.txt, in file order.
    static let cases: [Case] = text("cases.txt").split(separator: "\n").map { line in
        let fields = line.split(separator: " ").map(String.init)
        precondition(fields.count == 3, "bad cases.txt line: \(line)")
        return Case(name: fields[0], config: fields[1] == "A" ? configA : configB, expectsReply: fields[2] == "reply")
    }

    /// The case called `name`.
    static func named(_ name: String) -> Case { cases.first { $0.name == name }! }

    /// The bytes of fixture `name` (without ".hex").
    static func bytes(_ name: String) -> [UInt8] {
        let digits = text(name + ".hex").utf8.filter { !$0.isASCIIWhitespace }
        precondition(digits.count % 2 == 0, "odd number of hex digits in \(name)")
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(hexDigit(digits[$0]) << 4 | hexDigit(digits[$0 + 1])) }
    }

    /// The value of one ASCII hex digit.
    private static func hexDigit(_ c: UInt8) -> UInt8 {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: preconditionFailure("not a hex digit: \(c)")
        }
    }

    /// The contents of fixture file `name`.
    private static func text(_ name: String) -> String {
        guard let file = fopen(directory + name, "r") else { preconditionFailure("missing fixture \(name)") }
        defer { fclose(file) }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n <= 0 { break }
            data += chunk[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }
}

extension UInt8 {
    /// Whether this is an ASCII space, tab, CR or LF.
    fileprivate var isASCIIWhitespace: Bool { self == 0x20 || self == 0x09 || self == 0x0a || self == 0x0d }
}

/// A service entry point: frame, count, config, output, capacity -> reply length.
typealias ServiceFunction = @Sendable (UnsafeRawPointer, Int, ServiceConfig, UnsafeMutableRawPointer, Int) -> Int?

/// The entry points under test.
enum Entry {
    static let all: ServiceFunction = { LocalService.answer($0, count: $1, config: $2, into: $3, capacity: $4) }
    static let arp: ServiceFunction = { ARPResponder.answer($0, count: $1, config: $2, into: $3, capacity: $4) }
    static let dhcp: ServiceFunction = { DHCPServer.answer($0, count: $1, config: $2, into: $3, capacity: $4) }
    static let ndp: ServiceFunction = { NDPResponder.answer($0, count: $1, config: $2, into: $3, capacity: $4) }
    static let dhcpv6: ServiceFunction = { DHCPv6Server.answer($0, count: $1, config: $2, into: $3, capacity: $4) }
}

/// Memory whose usable part ends right before a PROT_NONE page.
final class GuardedMemory {
    let page: Int
    let size: Int
    let region: UnsafeMutableRawPointer

    /// Maps at least `capacity` usable bytes plus one guard page.
    init(capacity: Int = 65536) {
        page = Int(sysconf(Int32(_SC_PAGESIZE)))
        size = (capacity + page - 1) / page * page
        let mapped = mmap(nil, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        precondition(mapped != MAP_FAILED, "mmap failed")
        region = mapped!
        precondition(mprotect(region + size, page, PROT_NONE) == 0, "mprotect failed")
    }

    deinit { munmap(region, size + page) }

    /// The last `count` usable bytes (they end at the guard page).
    func tail(_ count: Int) -> UnsafeMutableRawPointer {
        precondition(count <= size)
        return region + (size - count)
    }
}

/// Runs services with their input ending at a guard page and their output capacity ending at another.
final class ServiceHarness {
    let input = GuardedMemory()
    let output = GuardedMemory()

    /// The reply `service` writes for `frame` with `config` into exactly `capacity` bytes, or nil.
    func reply(_ frame: [UInt8], _ config: ServiceConfig, via service: ServiceFunction = Entry.all,
               capacity: Int = 65536) -> [UInt8]? {
        let start = input.tail(frame.count)
        frame.withUnsafeBytes { if let b = $0.baseAddress { start.copyMemory(from: b, byteCount: frame.count) } }
        let out = output.tail(capacity)
        out.initializeMemory(as: UInt8.self, repeating: 0xa5, count: capacity)
        guard let n = service(UnsafeRawPointer(start), frame.count, config, out, capacity) else { return nil }
        precondition(n >= 0 && n <= capacity, "reply length \(n) outside the capacity \(capacity)")
        return Array(UnsafeRawBufferPointer(start: out, count: n))
    }
}

/// SplitMix64: a small seeded generator so the mutation tests are reproducible.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    /// The next 64 random bits.
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// Hex of `bytes`, for failure messages.
func hex(_ bytes: [UInt8]?) -> String {
    guard let bytes else { return "nil" }
    let digits: [Character] = Array("0123456789abcdef")
    return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] })
}
