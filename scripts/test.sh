#!/usr/bin/env bash
# The project's test command (README): builds everything and runs every test, the integration
# tests (network namespaces, real binaries) included. Needs root for the namespace tests; as an
# ordinary user those are skipped and reported as such. SCRATCH picks SwiftPM's build directory
# (default .build).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
scratch=${SCRATCH:-.build}
swift build --build-tests --scratch-path "$scratch"
swift test --skip-build --scratch-path "$scratch" "$@"
