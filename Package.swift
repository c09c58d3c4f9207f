// swift-tools-version: 6.1
// swift-passt: passt and pasta in Swift. Modules depend downward only (see DESIGN notes in README).
import PackageDescription

/// Release builds of the packet-path modules skip dynamic exclusivity checks (see README, performance).
let hotPathSettings: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

/// Release binaries carry the Swift runtime inside (glibc stays shared): nothing to install beside
/// them, and pasta has its namespace configured some 5 ms sooner than when it loads 9 libraries.
let staticRuntime: [LinkerSetting] = [
    .unsafeFlags(["-static-stdlib"], .when(configuration: .release)),
]

let package = Package(
    name: "swift-passt",
    products: [
        .executable(name: "passt", targets: ["passt"]),
        .executable(name: "pasta", targets: ["pasta"]),
        .library(name: "PasstWire", targets: ["PasstWire"]),
        .library(name: "PasstFlow", targets: ["PasstFlow"]),
    ],
    targets: [
        .target(name: "CPasstShim"),
        .target(name: "PasstWire", swiftSettings: hotPathSettings),
        .target(name: "PasstSys", dependencies: ["CPasstShim"], swiftSettings: hotPathSettings),
        .target(name: "PasstConfig", dependencies: ["PasstWire", "PasstSys", "CPasstShim"]),
        .target(name: "PasstServices", dependencies: ["PasstWire", "PasstConfig"], swiftSettings: hotPathSettings),
        .target(name: "PasstFlow", dependencies: ["PasstWire", "PasstSys", "PasstConfig", "PasstServices"],
                swiftSettings: hotPathSettings),
        .target(name: "PasstCore",
                dependencies: ["PasstWire", "PasstSys", "PasstConfig", "PasstServices", "PasstFlow", "CPasstShim"],
                swiftSettings: hotPathSettings),
        .executableTarget(name: "passt", dependencies: ["PasstCore"], linkerSettings: staticRuntime),
        .executableTarget(name: "pasta", dependencies: ["PasstCore"], linkerSettings: staticRuntime),
        .testTarget(name: "PasstWireTests", dependencies: ["PasstWire"], exclude: ["Fixtures"]),
        .testTarget(name: "PasstSysTests", dependencies: ["PasstSys"]),
        .testTarget(name: "PasstConfigTests", dependencies: ["PasstConfig", "PasstWire"]),
        .testTarget(name: "IntegrationTests", dependencies: ["PasstConfig", "PasstWire", "PasstSys", "PasstCore"]),
        .testTarget(name: "PasstServicesTests", dependencies: ["PasstServices", "PasstWire"], exclude: ["Fixtures"]),
        .target(name: "CAllocationCounter", path: "Tests/CAllocationCounter"),
        .executableTarget(name: "getopt-oracle", path: "Tests/GetoptOracle"),
        .testTarget(name: "PasstFlowTests", dependencies: ["PasstFlow", "PasstWire", "PasstSys", "CAllocationCounter"]),
    ],
    swiftLanguageModes: [.v6]
)
