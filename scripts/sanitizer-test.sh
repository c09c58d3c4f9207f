#!/usr/bin/env bash
# Runs the integration tests against passt and pasta built with AddressSanitizer: every frame,
# socket and timer path the tests drive, through the real kernel, checked for out-of-bounds and
# use-after-free accesses of the daemon's unsafe buffers. Needs root, as the integration tests.
#
# The binaries are built into .build-asan (ASAN_SCRATCH) with PASST_SANITIZED defined, which
# leaves out their seccomp filter (the sanitizer's runtime makes system calls outside it); the
# test executable is the ordinary debug build (SCRATCH, default .build) and finds them through
# PASST_TEST_BINARIES. PASST_TEST_SANITIZED=1 tells the tests what differs in such a build (no
# filter, more memory, slower). A sanitizer report makes the daemon exit with status 66, which
# fails a test that checks its status; any report that reaches the test output (a failed
# expectation quotes the daemon's stderr) also fails the script, which prints it. A daemon whose
# stderr and status no test reads (one that daemonised) would go unseen.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
scratch=${SCRATCH:-.build}
asan=${ASAN_SCRATCH:-.build-asan}

swift build --build-tests --scratch-path "$scratch"
swift build --product passt --scratch-path "$asan" --sanitize=address -Xswiftc -DPASST_SANITIZED
ln -sf passt "$asan/debug/pasta"     # the program name picks the mode
binaries=$(cd "$asan/debug" && pwd)

log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
PASST_TEST_BINARIES=$binaries PASST_TEST_SANITIZED=1 ASAN_OPTIONS=detect_leaks=0:exitcode=66 \
    swift test --skip-build --scratch-path "$scratch" --filter IntegrationTests "$@" 2>&1 | tee "$log" || rc=$?
if grep -q "AddressSanitizer" "$log"; then
    echo "sanitizer-test: AddressSanitizer reports:" >&2
    grep -E -A30 "(ERROR|SUMMARY): AddressSanitizer" "$log" >&2 || true
    rc=1
fi
exit "$rc"
