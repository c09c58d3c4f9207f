// Helpers shared by every fuzz target (compiled into each target's own module).
//
// A target is a libFuzzer entry point, `LLVMFuzzerTestOneInput`, over the input bytes that
// libFuzzer hands it in a heap block of exactly the input's size, so AddressSanitizer reports any
// read past the end. Targets read every field a view offers through `keep` (so the optimiser
// cannot drop the loads) and state their invariants with `require`, which traps: libFuzzer treats
// the trap as a crash and saves the input.

/// Forces `value` to be computed: the reads behind it happen even when nothing else uses them.
@inline(never) @_optimize(none)
func keep<T>(_ value: T) {}

/// Traps with `message` when `condition` is false (a finding, like an AddressSanitizer report).
func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("invariant broken: \(message())") }
}

/// The input as a byte buffer: the first byte, and the bytes after it.
struct FuzzInput {
    /// The first input byte (0 for an empty input): targets use it to pick a parser or a setting.
    let selector: UInt8
    /// The bytes after the first, in libFuzzer's own allocation (exactly `count` bytes long).
    let body: UnsafeRawPointer
    /// Number of bytes after the first (0 or more).
    let count: Int

    /// Splits libFuzzer's `data[0..<size]`.
    init(_ data: UnsafePointer<UInt8>, _ size: Int) {
        selector = size > 0 ? data[0] : 0
        body = UnsafeRawPointer(data + min(size, 1))
        count = max(size - 1, 0)
    }
}
