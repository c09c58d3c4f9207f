// Port forwarding configuration for one protocol and direction (-t, -u, -T or -U): a plain value.
//
// Theory of operation: upstream keeps, per protocol and direction, a mode (none, all, auto or
// specific ports), a 65536-bit map of forwarded ports and a per-port offset ("delta", mod 65536)
// added to the port number on the way to the target. It binds listening sockets while parsing each
// option, with that option's own bind address and interface, so several -t options with different
// addresses bind different sockets. We parse without opening sockets: the map and offsets are the
// forwarding rule; each option occurrence that binds something is kept as a `PortListenerSet`
// (address, interface, ports, whether bind failures are tolerated, and the option text for
// upstream's error messages), which the runtime turns into sockets. The grammar is in
// PortSpecParser.swift.
import PasstWire

/// Overall forwarding mode (spec §2.4).
public enum PortForwardMode: String, Equatable, Sendable {
    /// Forward nothing.
    case none
    /// passt: every non-ephemeral port 1...65535.
    case all
    /// pasta: follow what listens on the other side, rescanned every second.
    case auto
    /// Explicit ports (possibly exclusion-only) from one or more specs.
    case spec
}

/// A set of port numbers 0...65535.
public struct PortBitmap: Equatable, Sendable {
    private var words = [UInt64](repeating: 0, count: 65536 / 64)

    /// An empty set.
    public init() {}

    /// Whether `port` is in the set.
    public func contains(_ port: UInt16) -> Bool {
        words[Int(port) >> 6] & (1 << UInt64(port & 63)) != 0
    }

    /// Adds `port` to the set.
    public mutating func insert(_ port: UInt16) {
        words[Int(port) >> 6] |= 1 << UInt64(port & 63)
    }

    /// Number of ports in the set.
    public var count: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }

    /// Whether the set is empty.
    public var isEmpty: Bool { words.allSatisfy { $0 == 0 } }

    /// The ports in ascending order.
    public var ports: [UInt16] {
        var result: [UInt16] = []
        for (index, word) in words.enumerated() where word != 0 {
            for bit in 0..<64 where word & (1 << UInt64(bit)) != 0 {
                result.append(UInt16(index * 64 + bit))
            }
        }
        return result
    }
}

/// The address a listener is bound to (the BIND part of a spec, IPv4 written plain or in brackets).
public enum BindAddress: Equatable, Sendable, CustomStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    /// Parses like upstream's inany_pton(): dotted quad first, then IPv6 text; nil otherwise.
    public init?(_ text: some StringProtocol) {
        if let v4 = IPv4Address(text) {
            self = .v4(v4)
        } else if let v6 = IPv6Address(text) {
            self = .v6(v6)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .v4(let address): address.description
        case .v6(let address): address.description
        }
    }
}

/// The listening sockets one -t/-u/-T/-U option asks for (spec §2.4 "Address binding").
public struct PortListenerSet: Equatable, Sendable {
    /// The option letter: "t", "u", "T" or "U".
    public var option: Character
    /// The SPEC text exactly as given, for error messages.
    public var specText: String
    /// Bind address; nil means dual-stack [::] (or one socket per enabled family).
    public var address: BindAddress?
    /// Interface for SO_BINDTODEVICE, from "%IFNAME"; nil for none.
    public var interface: String?
    /// Ports to listen on (the target port is the port plus the spec's offset).
    public var ports: PortBitmap
    /// True for "all" and exclusion-only specs: single bind failures are ignored unless none binds.
    public var bindFailuresTolerated: Bool

    /// Creates a listener set for one option occurrence.
    public init(option: Character, specText: String, address: BindAddress?, interface: String?,
                ports: PortBitmap, bindFailuresTolerated: Bool) {
        self.option = option
        self.specText = specText
        self.address = address
        self.interface = interface
        self.ports = ports
        self.bindFailuresTolerated = bindFailuresTolerated
    }

    /// Upstream's fatal message when an explicitly listed port can't be bound.
    public func bindFailureMessage(port: UInt16, errorText: String) -> String {
        "Failed to bind port \(port) (\(errorText)) for option '-\(option) \(specText)', exiting"
    }

    /// Upstream's fatal message when a tolerant set could not bind a single port.
    public var noPortBoundMessage: String {
        "Failed to bind any port for '-\(option) \(specText)', exiting"
    }

    /// Upstream's fatal message when the process runs out of file descriptors while binding.
    public var tooManySocketsMessage: String {
        "Can't open enough sockets for port specifier: \(specText)"
    }
}

/// Forwarding for one protocol and direction: mode, forwarded ports with offsets, listeners.
public struct PortSpec: Equatable, Sendable {
    public var mode: PortForwardMode
    /// Ports forwarded (upstream's fwd_ports map); empty for none and auto.
    public var forwarded = PortBitmap()
    /// Listener sets in option order, for "all" and explicit specs.
    public var listeners: [PortListenerSet] = []
    /// Per-port offsets, allocated when the first non-zero offset is set.
    private var offsets: [UInt16] = []

    /// A spec of the given mode with no ports.
    public init(mode: PortForwardMode) {
        self.mode = mode
    }

    /// The offset added to `port` towards the target (mod 65536).
    public func offset(for port: UInt16) -> UInt16 {
        offsets.isEmpty ? 0 : offsets[Int(port)]
    }

    /// The target port for a forwarded `port`: the port plus its offset, mod 65536.
    public func targetPort(for port: UInt16) -> UInt16 {
        port &+ offset(for: port)
    }

    /// Sets the offset of `port` towards the target.
    public mutating func setOffset(_ offset: UInt16, for port: UInt16) {
        if offsets.isEmpty {
            if offset == 0 { return }
            offsets = [UInt16](repeating: 0, count: 65536)
        }
        offsets[Int(port)] = offset
    }

    /// Equal when mode, ports, listeners and every offset agree (however the offsets are stored).
    public static func == (lhs: PortSpec, rhs: PortSpec) -> Bool {
        guard lhs.mode == rhs.mode, lhs.forwarded == rhs.forwarded, lhs.listeners == rhs.listeners else {
            return false
        }
        switch (lhs.offsets.isEmpty, rhs.offsets.isEmpty) {
        case (true, true): return true
        case (false, false): return lhs.offsets == rhs.offsets
        case (true, false): return rhs.offsets.allSatisfy { $0 == 0 }
        case (false, true): return lhs.offsets.allSatisfy { $0 == 0 }
        }
    }
}
