// The Swift side of the micro-benchmark comparison: the same loops as c/wire_loops.c, written
// with PasstWire's checksum and packet views and PasstFlow's flow table. Prints
// "<name> <nanoseconds per operation>" lines that compare-c.sh joins with the C figures.
import PasstFlow
import PasstWire
#if canImport(Glibc)
import Glibc
#endif

/// Monotonic time in nanoseconds.
func nowNanoseconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) * 1e9 + Double(ts.tv_nsec)
}

/// Classifies an Ethernet/IPv4/TCP frame and returns a digest of its 5-tuple (0: not IPv4 TCP).
@inline(never) func parseFrame(_ base: UnsafeRawPointer, count: Int) -> UInt64 {
    guard let eth = EthernetFrame(base, count: count), eth.etherType == 0x0800,
          let ip = IPv4Packet(eth.payload, count: eth.payloadCount), ip.protocol == 6,
          let tcp = TCPSegment(ip.payload, count: ip.payloadCount) else { return 0 }
    return (UInt64(ip.source.value) ^ UInt64(ip.destination.value) << 16) &+ UInt64(tcp.sourcePort)
        &+ UInt64(tcp.destinationPort) << 32 &+ UInt64(ip.payloadCount &- tcp.headerLength)
}

var sink: UInt64 = 0
let buffer = UnsafeMutableRawPointer.allocate(byteCount: 65536 + 1, alignment: 64)
for i in 0..<(65536 + 1) { buffer.storeBytes(of: UInt8(truncatingIfNeeded: i &* 7 &+ 3), toByteOffset: i, as: UInt8.self) }

var n = 20000
var t0 = nowNanoseconds()
for i in 0..<n {
    sink &+= UInt64(Checksum.fold(Checksum.sum(UnsafeRawPointer(buffer + (i & 1)), count: 65536, initial: UInt64(i))))
}
var t1 = nowNanoseconds()
print("checksum_64k", String(format1: (t1 - t0) / Double(n)))

let frameCount = 14 + 20 + 20 + 64
let frame = UnsafeMutableRawPointer.allocate(byteCount: frameCount, alignment: 16)
frame.initializeMemory(as: UInt8.self, repeating: 0, count: frameCount)
frame.setU8(12, 0x08); frame.setU8(14, 0x45); frame.setU8(17, UInt8(20 + 20 + 64)); frame.setU8(23, 6)
frame.setU8(26, 192); frame.setU8(29, 2); frame.setU8(30, 192); frame.setU8(33, 1); frame.setU8(34 + 12, 0x50)
n = 50_000_000
t0 = nowNanoseconds()
for i in 0..<n {
    frame.setU8(34 + 1, UInt8(truncatingIfNeeded: i))   // vary the source port so the loop cannot be hoisted
    sink &+= parseFrame(UnsafeRawPointer(frame), count: frameCount)
}
t1 = nowNanoseconds()
print("parse_ipv4_tcp", String(format2: (t1 - t0) / Double(n)))
// Flow lookup: 100,000 TCP keys in a table of upstream's size, looked up in a scattered order
// (the same keys, secret and order as c/wire_loops.c).
do {
    let keyCount = 100_000
    var table = FlowTable(capacity: FlowTable.upstreamCapacity,
                          secret: SipHashKey(k0: 0x0706_0504_0302_0100, k1: 0x0f0e_0d0c_0b0a_0908))
    let ours = IPv6Address(v4Mapped: IPv4Address(192, 0, 2, 1))
    let keys = (0..<keyCount).map { index in
        FlowKey(proto: 6, interface: .tap, ourAddress: ours, ourPort: 80,
                endpointAddress: IPv6Address(v4Mapped: IPv4Address(198, 51, 100, UInt8(truncatingIfNeeded: index))),
                endpointPort: UInt16(1024 + index / 256))
    }
    for (index, key) in keys.enumerated() { table.insert(key, reference: UInt32(index)) }
    n = 10_000_000
    t0 = nowNanoseconds()
    keys.withUnsafeBufferPointer { keys in
        for i in 0..<n {
            sink &+= UInt64(table.lookup(keys[(i &* 7919) % keyCount]) ?? UInt32.max)
        }
    }
    t1 = nowNanoseconds()
    print("flow_lookup", String(format2: (t1 - t0) / Double(n)))
}
if sink == 42 { print("") }

extension String {
    /// `value` with one decimal.
    init(format1 value: Double) { self = String(Double(Int(value * 10)) / 10) }
    /// `value` with two decimals.
    init(format2 value: Double) { self = String(Double(Int(value * 100)) / 100) }
}
