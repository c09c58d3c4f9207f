// swift-tools-version: 6.1
// Micro-benchmarks for the wire formats, kept out of the main package so the daemon has no
// third-party dependency. `swift package benchmark` runs the ordo-one/benchmark suite;
// `./compare-c.sh` runs the same loops in Swift and in C (gcc -O2) and prints ratios.
import PackageDescription
import struct Foundation.URL

/// SwiftPM names a path dependency after its folder, which is wherever the project was cloned.
let mainPackage = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "swift-passt-benchmarks",
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "WireBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "PasstWire", package: mainPackage),
            ],
            path: "Benchmarks/WireBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
        .executableTarget(
            name: "wire-loops",
            dependencies: [.product(name: "PasstWire", package: mainPackage),
                           .product(name: "PasstFlow", package: mainPackage)],
            path: "Sources/wire-loops",
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]),
    ],
    swiftLanguageModes: [.v6]
)
