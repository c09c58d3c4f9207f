#!/usr/bin/env bash
# Runs the same micro-benchmark loops in Swift (release build of wire-loops) and in C (gcc -O2)
# and prints, per loop, nanoseconds per operation for each and the ratio Swift/C (lower is better).
set -euo pipefail
cd "$(dirname "$0")"
export PATH="/opt/swift/usr/bin:$PATH"
swift build -c release --product wire-loops >/dev/null 2>&1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
gcc -O2 -o "$out/wire_loops_c" c/wire_loops.c
"$out/wire_loops_c" > "$out/c.txt"
"$(swift build -c release --show-bin-path)/wire-loops" > "$out/swift.txt"
printf '| loop | Swift ns/op | C (gcc -O2) ns/op | Swift/C |\n|---|---|---|---|\n'
join <(sort "$out/swift.txt") <(sort "$out/c.txt") | while read -r name s c; do
    awk -v n="$name" -v s="$s" -v c="$c" 'BEGIN { printf "| %s | %s | %s | %.2f |\n", n, s, c, s / c }'
done
