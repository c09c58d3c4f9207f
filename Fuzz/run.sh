#!/usr/bin/env bash
# Builds the libFuzzer targets (swiftc -sanitize=fuzzer,address) and runs each one in turn.
#
# Usage: Fuzz/run.sh [--seconds N] [--merge] [--build-only] [TARGET...]
#   TARGET        wire, control, services, ingress (default: all four; see Fuzz/targets/*.swift)
#   --seconds N   fuzzing time per target (-max_total_time, default 60)
#   --merge       afterwards, minimise everything found into the committed corpus Fuzz/corpus/TARGET
#                 (the fewest inputs that keep every covered edge; hit counts are not kept)
#   --build-only  build the binaries and the seeds, do not fuzz
#
# The module sources are compiled directly with swiftc, instrumented and in release mode (-O),
# into .build-fuzz/ (never .build/): PasstWire and PasstServices as static libraries, each target
# from Fuzz/targets/Support.swift and its own file (ingress also from PasstCore/TapIngress.swift,
# whose unused `import PasstConfig` is met by an empty stand-in module). Each target starts from
# its committed corpus plus seeds made from the golden frames (Fuzz/seeds.py); what it finds goes
# to .build-fuzz/corpus/TARGET. A crash, sanitizer report or broken invariant saves the input in
# .build-fuzz/artifacts/TARGET/, prints its path and makes the script exit 1 (after the other
# targets ran). Reproduce one with: .build-fuzz/bin/TARGET PATH
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
export SWIFT_BACKTRACE=enable=no            # the Swift backtracer hangs after a crash under libFuzzer

seconds=60
merge=0
build_only=0
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --merge) merge=1; shift ;;
        --build-only) build_only=1; shift ;;
        wire|control|services|ingress) targets+=("$1"); shift ;;
        *) echo "usage: $0 [--seconds N] [--merge] [--build-only] [wire|control|services|ingress ...]" >&2; exit 2 ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(wire control services ingress)

out=.build-fuzz
flags=(-sanitize=fuzzer,address -O -swift-version 6 -parse-as-library -I "$out/lib")
mkdir -p "$out/lib" "$out/bin" "$out/logs"

# compile_library NAME SOURCES...: a static library and its module, rebuilt when a source changed.
compile_library() {
    local name="$1"; shift
    local lib="$out/lib/lib$name.a"
    if [ -f "$lib" ] && [ -z "$(find "$@" "$0" -newer "$lib" 2>/dev/null)" ]; then return; fi
    echo "== building $name"
    swiftc "${flags[@]}" -module-name "$name" -emit-module -emit-module-path "$out/lib/$name.swiftmodule" \
        -emit-library -static -o "$lib" "$@" 2> >(grep -v 'ld.gold: warning: Cannot export local symbol' >&2)
}

# compile_target NAME SOURCES...: one fuzzer binary linked with the libraries.
compile_target() {
    local name="$1"; shift
    local bin="$out/bin/$name"
    if [ -f "$bin" ] && [ -z "$(find "$@" "$0" "$out/lib" -newer "$bin" 2>/dev/null)" ]; then return; fi
    echo "== building fuzz target $name"
    swiftc "${flags[@]}" -module-name "Fuzz_$name" -o "$bin" Fuzz/targets/Support.swift "$@" \
        "$out/lib/libPasstServices.a" "$out/lib/libPasstWire.a" \
        2> >(grep -v 'ld.gold: warning: Cannot export local symbol' >&2)
}

compile_library PasstWire Sources/PasstWire/*.swift
compile_library PasstServices Sources/PasstServices/*.swift
[ -f "$out/PasstConfig.swift" ] ||
    echo '// Empty stand-in: TapIngress.swift imports PasstConfig but uses nothing from it.' > "$out/PasstConfig.swift"
compile_library PasstConfig "$out/PasstConfig.swift"
for t in "${targets[@]}"; do
    case "$t" in
        wire) compile_target wire Fuzz/targets/Wire.swift ;;
        control) compile_target control Fuzz/targets/Control.swift ;;
        services) compile_target services Fuzz/targets/Services.swift ;;
        ingress) compile_target ingress Fuzz/targets/Ingress.swift Sources/PasstCore/TapIngress.swift ;;
    esac
done
python3 Fuzz/seeds.py "$out/seeds"
[ $build_only = 0 ] || exit 0

failed=()
for t in "${targets[@]}"; do
    mkdir -p "$out/corpus/$t" "$out/artifacts/$t" "Fuzz/corpus/$t"
    log="$out/logs/$t.log"
    echo "== fuzzing $t for ${seconds}s (log: $log)"
    if "$out/bin/$t" -max_total_time="$seconds" -max_len=2048 -timeout=10 -print_final_stats=1 \
            -artifact_prefix="$out/artifacts/$t/" "$out/corpus/$t" "Fuzz/corpus/$t" "$out/seeds/$t" >"$log" 2>&1; then
        { grep -E '^#[0-9]+[[:space:]]+DONE' "$log" || true; } | tail -1
        { grep -E 'stat::(number_of_executed_units|average_exec_per_sec)' "$log" || true; } | tr '\n' ' '; echo
    else
        failed+=("$t")
        { grep -E 'ERROR|Fatal error|invariant broken|SUMMARY' "$log" || true; } | head -5
        artifact=$(sed -n 's/.*Test unit written to //p' "$log" | tail -1)
        echo "!! $t FAILED: crashing input ${artifact:-not saved (see $log)}"
    fi
    if [ $merge = 1 ]; then
        rm -rf "$out/merged/$t" && mkdir -p "$out/merged/$t"
        "$out/bin/$t" -merge=1 -use_counters=0 -max_len=2048 "$out/merged/$t" "Fuzz/corpus/$t" "$out/corpus/$t" "$out/seeds/$t" \
            >"$out/logs/$t.merge.log" 2>&1
        rm -rf "Fuzz/corpus/$t" && mv "$out/merged/$t" "Fuzz/corpus/$t"
        echo "   merged corpus: $(ls "Fuzz/corpus/$t" | wc -l) files in Fuzz/corpus/$t"
    fi
done
if [ ${#failed[@]} -gt 0 ]; then echo "fuzzing failed: ${failed[*]}"; exit 1; fi
echo "fuzzing passed: ${targets[*]}"
