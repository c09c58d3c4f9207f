#!/usr/bin/env bash
# Builds the libFuzzer targets (swiftc -sanitize=fuzzer,address) and runs each one in turn.
#
# Usage: Fuzz/run.sh [--seconds N] [--merge] [--build-only] [TARGET...]
#   TARGET        wire, control, services, ingress, flow (default: all five; see Fuzz/targets/*.swift)
#   --seconds N   fuzzing time per target (-max_total_time, default 60)
#   --merge       afterwards, minimise everything found into the committed corpus Fuzz/corpus/TARGET
#                 (the fewest inputs that keep every covered edge; hit counts are not kept)
#   --build-only  build the binaries and the seeds, do not fuzz
#
# The module sources are compiled directly with swiftc, instrumented and in release mode (-O),
# into .build-fuzz/ (never .build/): PasstWire and PasstServices as static libraries, each target
# from Fuzz/targets/Support.swift and its own file (ingress also from PasstCore/TapIngress.swift,
# whose unused `import PasstConfig` is met by an empty stand-in module). The flow target needs the
# real PasstConfig and what PasstFlow stands on, so those are built apart, into .build-fuzz/flow/
# (searched before .build-fuzz/lib, so the stand-in is never seen there): CPasstShim's C files with
# clang -fsanitize=fuzzer-no-link,address into a static library with a module map, then PasstSys,
# PasstConfig and PasstFlow with swiftc; the target also compiles PasstCore/TapIngress.swift, as
# ingress does, and runs in a network namespace of its own when it can (see Flow.swift). A library
# is rebuilt when its sources or the libraries whose modules it imports changed. Each target starts
# from its committed corpus plus seeds (Fuzz/seeds.py: golden frames, flow conversations); what it
# finds goes to .build-fuzz/corpus/TARGET. A crash, sanitizer report or broken invariant saves the
# input in .build-fuzz/artifacts/TARGET/, prints its path and makes the script exit 1 (after the
# other targets ran). Reproduce one with: .build-fuzz/bin/TARGET PATH (flow: FLOW_TRACE=1 prints
# the frames).
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
        wire|control|services|ingress|flow) targets+=("$1"); shift ;;
        *) echo "usage: $0 [--seconds N] [--merge] [--build-only] [wire|control|services|ingress|flow ...]" >&2; exit 2 ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(wire control services ingress flow)

out=.build-fuzz
flags=(-sanitize=fuzzer,address -O -swift-version 6 -parse-as-library)
mkdir -p "$out/lib" "$out/bin" "$out/logs"
# Where compile_library puts its output, the module search path, and what compile_target links.
libdir="$out/lib"
includes=(-I "$out/lib")
libs=("$out/lib/libPasstServices.a" "$out/lib/libPasstWire.a")
deps=()   # libraries whose change rebuilds the next compile_library (the modules it imports)

# compile_library NAME SOURCES...: a static library and its module in $libdir, rebuilt when a source changed.
compile_library() {
    local name="$1"; shift
    local lib="$libdir/lib$name.a"
    if [ -f "$lib" ] && [ -z "$(find "$@" "$0" "${deps[@]}" -newer "$lib" 2>/dev/null)" ]; then return; fi
    echo "== building $name"
    swiftc "${flags[@]}" "${includes[@]}" -module-name "$name" -emit-module -emit-module-path "$libdir/$name.swiftmodule" \
        -emit-library -static -o "$lib" "$@" 2> >(grep -v 'ld.gold: warning: Cannot export local symbol' >&2)
}

# compile_c_library NAME INCLUDE_DIR SOURCES...: C sources (instrumented for the fuzzer and ASan)
# as a static library in $libdir, with a module map for Swift in $libdir/NAME.
compile_c_library() {
    local name="$1" include="$2"; shift 2
    local lib="$libdir/lib$name.a"
    if [ -f "$lib" ] && [ -z "$(find "$@" "$include" "$0" -newer "$lib" 2>/dev/null)" ]; then return; fi
    echo "== building $name (C)"
    local objects="$libdir/$name.objects"
    rm -rf "$objects" "$lib" && mkdir -p "$objects" "$libdir/$name"
    for source in "$@"; do
        clang -fsanitize=fuzzer-no-link,address -O2 -g -I "$include" -c "$source" \
            -o "$objects/$(basename "$source" .c).o"
    done
    llvm-ar rcs "$lib" "$objects"/*.o
    printf 'module %s {\n    umbrella header "%s"\n    export *\n}\n' "$name" "$PWD/$include/$name.h" \
        > "$libdir/$name/module.modulemap"
}

# compile_target NAME SOURCES...: one fuzzer binary linked with $libs.
compile_target() {
    local name="$1"; shift
    local bin="$out/bin/$name"
    if [ -f "$bin" ] && [ -z "$(find "$@" "$0" "${libs[@]}" -newer "$bin" 2>/dev/null)" ]; then return; fi
    echo "== building fuzz target $name"
    swiftc "${flags[@]}" "${includes[@]}" -module-name "Fuzz_$name" -o "$bin" Fuzz/targets/Support.swift "$@" \
        "${libs[@]}" 2> >(grep -v 'ld.gold: warning: Cannot export local symbol' >&2)
}

compile_library PasstWire Sources/PasstWire/*.swift
deps=("$out/lib/libPasstWire.a")
compile_library PasstServices Sources/PasstServices/*.swift
deps=()
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
if [[ " ${targets[*]} " == *" flow "* ]]; then
    libdir="$out/flow"
    includes=(-I "$out/flow" -I "$out/flow/CPasstShim" -I "$out/lib")
    compile_c_library CPasstShim Sources/CPasstShim/include Sources/CPasstShim/*.c
    deps=("$out/flow/libCPasstShim.a")
    compile_library PasstSys Sources/PasstSys/*.swift
    deps=("$out/flow/libPasstSys.a" "$out/lib/libPasstWire.a")
    compile_library PasstConfig Sources/PasstConfig/*.swift
    deps=("$out/flow/libPasstConfig.a")
    compile_library PasstFlow Sources/PasstFlow/*.swift
    libs=("$out/flow/libPasstFlow.a" "$out/flow/libPasstConfig.a" "$out/flow/libPasstSys.a" "$out/flow/libCPasstShim.a"
          "$out/lib/libPasstWire.a")
    compile_target flow Fuzz/targets/Flow.swift Sources/PasstCore/TapIngress.swift
fi
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
