// Micro-benchmarks of the packet-path building blocks (ordo-one/benchmark): the checksum over a
// 64 KiB buffer, and classifying an Ethernet/IPv4/TCP frame with the packet views. Run with
// `swift package benchmark` in this folder; compare-c.sh sets the same loops beside C.
import Benchmark
import PasstWire

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .throughput, .mallocCountTotal], maxDuration: .seconds(2))

    Benchmark("Checksum 64 KiB") { benchmark in
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 64)
        defer { buffer.deallocate() }
        for i in 0..<65536 { buffer.storeBytes(of: UInt8(truncatingIfNeeded: i &* 7 &+ 3), toByteOffset: i, as: UInt8.self) }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(Checksum.internet(UnsafeRawPointer(buffer), count: 65536))
        }
    }

    Benchmark("Parse Ethernet/IPv4/TCP", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let count = 14 + 20 + 20 + 64
        let frame = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 16)
        defer { frame.deallocate() }
        frame.initializeMemory(as: UInt8.self, repeating: 0, count: count)
        frame.setU8(12, 0x08); frame.setU8(14, 0x45); frame.setU8(17, UInt8(20 + 20 + 64)); frame.setU8(23, 6)
        frame.setU8(34 + 12, 0x50)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            guard let eth = EthernetFrame(UnsafeRawPointer(frame), count: count),
                  let ip = IPv4Packet(eth.payload, count: eth.payloadCount),
                  let tcp = TCPSegment(ip.payload, count: ip.payloadCount) else { continue }
            blackHole(tcp.sourcePort &+ tcp.destinationPort)
        }
    }
}
