#!/usr/bin/env bash
# Start-up time of a passt binary run as pasta (README, "The binary"): wall time of
# `pasta --version`, of `pasta --config-net -- true` (spawn a namespace, configure it, run true,
# exit) and of `pasta --config-net --netns NS` until the starting process exits, which is when the
# daemon is ready (as podman waits for it). The namespace runs happen inside a contained host
# namespace whose veth uplink leads to a router namespace, as in demo.sh, so discovery finds a
# template interface; nothing leaves the machine. Needs root; pasta runs with --runas 0 because
# /dev/net/tun may be 0600. Usage: scripts/startup-time.sh [BINARY] [RUNS] (default
# .build/release/passt, 20 runs; --version runs 10 times as often). Prints medians in ms.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$(realpath "${1:-.build/release/passt}")
runs=${2:-20}
tag=startup$$
router=$tag-router host=$tag-host
work=$(mktemp -d /tmp/pasta-startup.XXXXXX)

cleanup() {
    for ns in $(ip netns list | awk -v t="$tag" 'index($1, t) == 1 { print $1 }'); do ip netns del "$ns"; done
    rm -rf "$work"
}
trap cleanup EXIT

ln -s "$binary" "$work/pasta"
. scripts/contained-host.sh
contained_host "$router" "$host"

# The timing loops run inside the host namespace (one `ip netns exec` for all of them); each
# prints one duration in microseconds per run.
ip netns exec "$host" bash -c '
    set -euo pipefail
    pasta=$1 runs=$2 work=$3 tag=$4
    micros() { echo $(( ${EPOCHREALTIME/./} )); }
    for _ in $(seq $(( runs * 10 ))); do
        start=$(micros); "$pasta" --version > /dev/null; echo "version $(( $(micros) - start ))"
    done
    for _ in $(seq "$runs"); do
        start=$(micros); "$pasta" --runas 0 --quiet --config-net -- true; echo "spawn $(( $(micros) - start ))"
    done
    for i in $(seq "$runs"); do
        ip netns add "$tag-target$i"
        start=$(micros)
        "$pasta" --runas 0 --quiet --config-net -P "$work/pid" --netns "$tag-target$i"
        echo "ready $(( $(micros) - start ))"
        kill "$(cat "$work/pid")"
        ip netns del "$tag-target$i"
    done' sh "$work/pasta" "$runs" "$work" "$tag" > "$work/times"

echo "binary: $binary ($(stat -c %s "$binary") bytes)"
for kind in version spawn ready; do
    awk -v k="$kind" '$1 == k { print $2 }' "$work/times" | sort -n |
        awk -v k="$kind" '{ t[NR] = $1 } END { printf "%-8s median %.1f ms (min %.1f, max %.1f, %d runs)\n", k, t[int((NR + 1) / 2)] / 1000, t[1] / 1000, t[NR] / 1000, NR }'
done
