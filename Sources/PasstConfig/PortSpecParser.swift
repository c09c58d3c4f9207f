// The port specification grammar of -t, -u, -T and -U (spec §2.4), exactly as upstream's conf_ports().
//
//   SPEC  := "none" | "all" (passt) | "auto" (pasta) | [BIND "/"] ITEMS
//   BIND  := ADDR | "[" ADDR "]" | ADDR "%" IFNAME | "%" IFNAME        (-t and -u only)
//   ITEMS := ITEM ("," ITEM)*        ITEM := RANGE [":" RANGE] | "~" RANGE
//   RANGE := PORT ["-" PORT]
//
// Theory of operation: one call applies one option occurrence to the spec accumulated so far for
// that protocol and direction (nil while unset), in upstream's order of checks, so the first error
// is the one upstream reports: keyword modes and their conflicts, then the BIND part, then every
// exclusion ("~" items may come before or after base ranges, so they are all collected first), then
// base ranges one by one. Numbers are read the way strtoul(3) reads them (leading blanks and a sign
// accepted), because upstream does. An exclusion-only spec forwards every non-ephemeral port except
// the excluded ones. Nothing is bound here; see PortSpec.swift.

/// Applies -t/-u/-T/-U options to port specs with upstream's checks, warnings and error texts.
struct PortSpecParser {
    let mode: ProgramMode
    let tcpDisabled: Bool
    let udpDisabled: Bool
    /// The host's ephemeral port range, never forwarded by "all" or exclusion-only specs.
    let ephemeralPorts: EphemeralPortRange

    /// Applies one option's SPEC to `current` (nil while unset); appends warnings; throws upstream's error.
    func apply(option: Character, text: String, to current: inout PortSpec?,
               warnings: inout [String]) throws(ConfigError) {
        let modeConflict = ConfigError("Port forwarding mode '\(text)' conflicts with previous mode")
        if text == "none" {
            if current != nil { throw modeConflict }
            current = PortSpec(mode: .none)
            return
        }
        if (option == "t" || option == "T") && tcpDisabled {
            throw ConfigError("TCP port forwarding requested but TCP is disabled")
        }
        if (option == "u" || option == "U") && udpDisabled {
            throw ConfigError("UDP port forwarding requested but UDP is disabled")
        }
        if text == "auto" {
            if current != nil { throw modeConflict }
            if mode != .pasta { throw ConfigError("'auto' port forwarding is only allowed for pasta") }
            current = PortSpec(mode: .auto)
            return
        }
        if text == "all" {
            if current != nil { throw modeConflict }
            if mode == .pasta { throw ConfigError("'all' port forwarding is only allowed for passt") }
            var spec = PortSpec(mode: .all)
            spec.forwarded = nonEphemeralPorts(excluding: PortBitmap())
            spec.listeners = [PortListenerSet(option: option, specText: text, address: nil, interface: nil,
                                              ports: spec.forwarded, bindFailuresTolerated: true)]
            current = spec
            return
        }
        if let existing = current, existing.mode != .spec {
            throw ConfigError("Specific ports cannot be specified together with all/none/auto")
        }
        var spec = current ?? PortSpec(mode: .spec)
        try applyPorts(option: option, text: text, to: &spec, warnings: &warnings)
        current = spec
    }

    /// Parses BIND and ITEMS of an explicit spec and adds its ports to `spec`.
    private func applyPorts(option: Character, text: String, to spec: inout PortSpec,
                            warnings: inout [String]) throws(ConfigError) {
        let invalid = ConfigError("Invalid port specifier \(text)")
        let bytes = Array(text.utf8)
        var address: BindAddress?
        var interface: String?
        var itemsStart = 0
        if let slash = bytes.firstIndex(of: UInt8(ascii: "/")) {
            guard option == "t" || option == "u" else { throw invalid }
            var addressEnd = slash
            if let percent = bytes[..<slash].firstIndex(of: UInt8(ascii: "%")) {
                guard slash - percent - 1 < ConfigLimits.interfaceNameSize else { throw invalid }
                if slash - percent > 1 {
                    interface = String(decoding: bytes[(percent + 1)..<slash], as: UTF8.self)
                }
                addressEnd = percent
            }
            let interfaceWithoutAddress = bytes.first == UInt8(ascii: "%")
            if !interfaceWithoutAddress {
                var addressBytes = bytes[..<addressEnd]
                if addressBytes.first == UInt8(ascii: "["), addressBytes.last == UInt8(ascii: "]") {
                    addressBytes = addressBytes.dropFirst().dropLast()
                }
                guard let parsed = BindAddress(String(decoding: addressBytes, as: UTF8.self)) else {
                    throw invalid
                }
                address = parsed
            }
            itemsStart = slash + 1
        }
        let items = bytes[itemsStart...].split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
            .map { Array($0) }

        var excluded = PortBitmap()
        var exclusionOnly = true
        for item in items {
            guard item.first == UInt8(ascii: "~") else {
                exclusionOnly = false
                continue
            }
            guard let (range, end) = Self.scanRange(item, from: 1), end == item.count else { throw invalid }
            for port in range {
                if excluded.contains(port) { throw ConfigError("Overlapping excluded ranges \(text)") }
                excluded.insert(port)
            }
        }

        if exclusionOnly {
            let ports = nonEphemeralPorts(excluding: excluded)
            for port in ports.ports { spec.forwarded.insert(port) }
            spec.listeners.append(PortListenerSet(option: option, specText: text, address: address,
                                                  interface: interface, ports: ports,
                                                  bindFailuresTolerated: true))
            return
        }

        var listened = PortBitmap()
        for item in items where item.first != UInt8(ascii: "~") {
            guard let (original, originalEnd) = Self.scanRange(item, from: 0) else { throw invalid }
            var mapped = original
            var end = originalEnd
            if end < item.count, item[end] == UInt8(ascii: ":") {
                guard let (target, targetEnd) = Self.scanRange(item, from: end + 1),
                      target.count == original.count else { throw invalid }
                mapped = target
                end = targetEnd
            }
            guard end == item.count else { throw invalid }
            let offset = mapped.lowerBound &- original.lowerBound
            for port in original {
                if spec.forwarded.contains(port) {
                    warnings.append("Altering mapping of already mapped port number: \(text)")
                }
                if excluded.contains(port) { continue }
                spec.forwarded.insert(port)
                spec.setOffset(offset, for: port)
                listened.insert(port)
            }
        }
        spec.listeners.append(PortListenerSet(option: option, specText: text, address: address,
                                              interface: interface, ports: listened,
                                              bindFailuresTolerated: false))
    }

    /// Ports 1...65535 outside the ephemeral range and not in `excluded`.
    private func nonEphemeralPorts(excluding excluded: PortBitmap) -> PortBitmap {
        var ports = PortBitmap()
        for port in UInt16(1)...UInt16.max where !ephemeralPorts.contains(port) && !excluded.contains(port) {
            ports.insert(port)
        }
        return ports
    }

    /// Reads "FIRST[-LAST]" at `start` like upstream's parse_port_range(); nil if absent or out of range.
    static func scanRange(_ bytes: [UInt8], from start: Int) -> (range: ClosedRange<UInt16>, end: Int)? {
        guard let (first, firstEnd) = scanUnsignedDecimal(bytes, from: start) else { return nil }
        var last = first
        var end = firstEnd
        if end < bytes.count, bytes[end] == UInt8(ascii: "-") {
            guard let (value, lastEnd) = scanUnsignedDecimal(bytes, from: end + 1) else { return nil }
            last = value
            end = lastEnd
        }
        guard last >= first, last <= UInt64(UInt16.max) else { return nil }
        return (UInt16(first)...UInt16(last), end)
    }

    /// strtoul(3) in base 10 at `start`: value (saturated, negated mod 2^64 after "-") and end; nil if no digits.
    static func scanUnsignedDecimal(_ bytes: [UInt8], from start: Int) -> (value: UInt64, end: Int)? {
        var index = start
        while index < bytes.count, [0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d].contains(bytes[index]) { index += 1 }
        var negative = false
        if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
            negative = bytes[index] == UInt8(ascii: "-")
            index += 1
        }
        let digitsStart = index
        var value: UInt64 = 0
        var overflow = false
        while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(bytes[index] - UInt8(ascii: "0")))
            overflow = overflow || o1 || o2
            value = sum
            index += 1
        }
        if index == digitsStart { return nil }
        if overflow { return (UInt64.max, index) }
        return (negative ? 0 &- value : value, index)
    }
}
