#!/usr/bin/env bash
# Soak test (opt-in, not part of CI): runs one pasta for N minutes under moderate mixed traffic and
# watches it for crashes, fd leaks and memory growth.
#
# Everything happens in namespaces this script creates: a contained "host" namespace whose veth
# uplink leads to a "router" namespace (scripts/contained-host.sh; 192.0.2.0/24, fd00::/64), and a
# namespace pasta attaches to (`pasta --config-net -f --runas 0 -t ... -u ... -P FILE --netns`).
# Nothing leaves the machine. Traffic, all rate-limited so a 2-core machine stays usable:
#   - TCP through the tap both ways: iperf3 namespace -> 192.0.2.1 (the gateway, mapped to the
#     host's loopback) and host -> 192.0.2.2:-t port, 40 Mbit/s each, in 30 s runs;
#   - spliced TCP: iperf3 host 127.0.0.1 -> -t port, 40 Mbit/s;
#   - UDP both ways: iperf3 -u namespace -> gateway and host -> 192.0.2.2:-u port, 10 Mbit/s;
#   - connection churn with end-to-end checks: clients open a new TCP connection per transfer
#     (1 KiB..256 KiB, every 25th 8 MiB), alternately uploading (the server answers the SHA-256
#     of what it got) and downloading (pseudo-random bytes from a seed, checked by SHA-256), from
#     the namespace to the gateway over IPv4 and IPv6 and from the host to the -t port through the
#     tap and spliced; UDP echo clients (sequence number + payload, echoes compared byte for
#     byte) in both directions, including -u forwarding, spliced and through the tap;
#   - ICMP echo from the namespace to the gateway (IPv4 and IPv6) and to 203.0.113.1 on the
#     host's lo (routed through pasta), 5 per second each.
# Every --interval seconds it samples pasta's VmRSS and VmHWM (/proc/PID/status) and its open fds
# (/proc/PID/fd) and checks it is alive; at the end it prints the samples, a summary and the
# traffic totals.
#
# Usage (root): scripts/soak.sh [--minutes N (30)] [--binary PATH (.build/release/pasta)]
#               [--interval S (10)] [--out FILE] [--rss-bound KB (16384)] [--fd-slack N (16)]
#               [--keep]   (keep the work directory with every client's log and JSON)
# Failure (exit 1): pasta died or exited; its fd count grew steadily (the lowest count over the
# last third of the samples exceeds the highest over the first third by more than --fd-slack, or
# 200 s after the traffic stopped, when idle UDP flows have expired (180 s), it is still more
# than --fd-slack above its idle count before the traffic); its RSS after the first minute (a third of the run if shorter) rose more than
# --rss-bound kB above the RSS at that point; any transfer failed or arrived different from what
# was sent (iperf3 errors, TCP connect/transfer errors, SHA-256 mismatches, corrupted UDP echoes,
# UDP echo loss above 2 %, ping loss above 2 %). Exit 2: bad usage or set-up failure.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=30 binary=.build/release/pasta interval=10 out='' rss_bound=16384 fd_slack=16 keep=''
usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --rss-bound) rss_bound=$2; shift 2 ;;
    --fd-slack) fd_slack=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "soak: unknown argument $1" >&2; usage 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "soak: must run as root (creates network namespaces)" >&2; exit 2; }
for tool in ip iperf3 python3 ping; do
    command -v "$tool" > /dev/null || { echo "soak: missing $tool" >&2; exit 2; }
done
[ -x "$binary" ] || { echo "soak: $binary is not executable" >&2; exit 2; }
binary=$(realpath -s "$binary")
duration=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')
[ "$duration" -ge 30 ] || { echo "soak: --minutes must be at least 0.5" >&2; exit 2; }

tag=soak$$
router=$tag-router host=$tag-host guest=$tag-ns
work=$(mktemp -d /tmp/pasta-soak.XXXXXX)
pids=()            # every background process we started (clients, servers, loops, pasta)
pasta_pid=''

# descendants PID: every process below PID (our loops' iperf3 and ping children).
descendants() { local c; for c in $(pgrep -P "$1" 2>/dev/null || true); do echo "$c"; descendants "$c"; done; }
# ours PID: true if PID is still a child of this shell (never signal a reused PID).
ours() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; [ "$(cut -d' ' -f2 <<< "$s")" = "$$" ]; }
# stop PID...: SIGTERM each (and its descendants), SIGKILL after 2 s, reap.
stop() {
    local p d victims=()
    for p in "$@"; do
        ours "$p" || continue
        victims+=("$p" $(descendants "$p"))
    done
    [ ${#victims[@]} -gt 0 ] || return 0
    kill -TERM "${victims[@]}" 2>/dev/null || true
    for _ in $(seq 20); do
        d=0; for p in "${victims[@]}"; do [ -d "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && d=1; done
        [ $d = 0 ] && break; sleep 0.1
    done
    kill -KILL "${victims[@]}" 2>/dev/null || true
    for p in "$@"; do wait "$p" 2>/dev/null || true; done
}
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    stop "${pids[@]}" $pasta_pid
    for ns in "$guest" "$host" "$router"; do ip netns del "$ns" 2>/dev/null; done
    if [ -n "$keep" ]; then echo "soak: work directory kept: $work" >&2; else rm -rf "$work"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ peers --
# One Python program for every server and client of the churn and echo traffic.
cat > "$work/peer.py" << 'PY'
"""soak peers: tcp-server / udp-server ADDR PORT; tcp-client / udp-client HOST PORT SECONDS STATS."""
import hashlib, json, os, random, socket, struct, sys, threading, time

def serve_tcp(addr, port):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port)); ls.listen(512)
    def handle(c):
        try:
            c.settimeout(60)
            hdr = b""
            while len(hdr) < 17:
                d = c.recv(17 - len(hdr))
                if not d: return
                hdr += d
            op, size, seed = struct.unpack("!BQQ", hdr)
            if op == 1:                      # upload: hash what arrives, answer the digest
                h, got = hashlib.sha256(), 0
                while got < size:
                    d = c.recv(min(262144, size - got))
                    if not d: break
                    h.update(d); got += len(d)
                c.sendall(h.digest() + struct.pack("!Q", got))
            else:                            # download: seeded pseudo-random bytes
                c.sendall(random.Random(seed).randbytes(size))
            c.shutdown(socket.SHUT_WR)
            while c.recv(65536): pass
        except OSError:
            pass
        finally:
            c.close()
    while True:
        c, _ = ls.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()

def serve_udp(addr, port):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        d, peer = s.recvfrom(65535)
        s.sendto(d, peer)

class Stats:
    def __init__(self, path, **kw):
        self.path, self.d, self.last = path, dict(kw, errors=0, error_samples=[]), 0
    def error(self, msg):
        self.d["errors"] += 1
        if len(self.d["error_samples"]) < 10:
            self.d["error_samples"].append(time.strftime("%H:%M:%S ") + msg)
        self.flush(True)
    def flush(self, force=False):
        now = time.monotonic()
        if force or now - self.last >= 2:
            self.last = now
            with open(self.path + ".tmp", "w") as f: json.dump(self.d, f)
            os.replace(self.path + ".tmp", self.path)

def tcp_client(host, port, seconds, path):
    st = Stats(path, kind="tcp-churn", target=f"{host}:{port}", connections=0, bytes_up=0, bytes_down=0, verified=0)
    end, n, rng = time.monotonic() + seconds, 0, random.Random(os.getpid())
    while time.monotonic() < end:
        n += 1
        size = 8 << 20 if n % 25 == 0 else rng.randint(1024, 256 << 10)
        seed, op = rng.getrandbits(63), 1 + n % 2
        try:
            c = socket.create_connection((host, port), timeout=30)
            st.d["connections"] += 1
            c.sendall(struct.pack("!BQQ", op, size, seed))
            data = random.Random(seed).randbytes(size)
            if op == 1:
                c.sendall(data); c.shutdown(socket.SHUT_WR)
                reply = b""
                while True:
                    d = c.recv(4096)
                    if not d: break
                    reply += d
                if len(reply) != 40:
                    st.error(f"upload of {size} bytes: no digest from the server ({len(reply)} bytes of reply)")
                elif reply != hashlib.sha256(data).digest() + struct.pack("!Q", size):
                    st.error(f"upload of {size} bytes: server saw {struct.unpack('!Q', reply[32:])[0]} bytes, digest {'ok' if reply[:32] == hashlib.sha256(data).digest() else 'mismatch'}")
                else:
                    st.d["verified"] += 1; st.d["bytes_up"] += size
            else:
                c.shutdown(socket.SHUT_WR)
                h, got = hashlib.sha256(), 0
                while True:
                    d = c.recv(262144)
                    if not d: break
                    h.update(d); got += len(d)
                if got != size or h.digest() != hashlib.sha256(data).digest():
                    st.error(f"download of {size} bytes: got {got}, digest {'ok' if h.digest() == hashlib.sha256(data).digest() else 'mismatch'}")
                else:
                    st.d["verified"] += 1; st.d["bytes_down"] += size
            c.close()
        except OSError as e:
            st.error(f"connection {n} ({'up' if op == 1 else 'down'} {size} bytes): {e!r}")
            time.sleep(0.5)
        st.flush()
        time.sleep(0.02)
    st.flush(True)

def udp_client(host, port, seconds, path, rate=100):
    info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    s = socket.socket(info[0], socket.SOCK_DGRAM)
    s.connect(info[4]); s.setblocking(False)
    st = Stats(path, kind="udp-echo", target=f"{host}:{port}", sent=0, received=0, bytes_sent=0, corrupted=0, duplicates=0)
    pending, rng, seq = {}, random.Random(os.getpid()), 0
    start = time.monotonic(); end = start + seconds
    def drain():
        while True:
            try: d = s.recv(65535)
            except BlockingIOError: return
            except OSError as e:  # e.g. ECONNREFUSED from an ICMP error
                st.error(f"recv: {e!r}"); return
            if len(d) < 8: st.d["corrupted"] += 1; continue
            (k,) = struct.unpack("!Q", d[:8])
            want = pending.pop(k, None)
            if want is None: st.d["duplicates"] += 1
            elif want != hashlib.sha256(d).digest(): st.d["corrupted"] += 1; st.error(f"echo {k} differs")
            else: st.d["received"] += 1
    while time.monotonic() < end:
        seq += 1
        size = 8000 if seq % 50 == 0 else rng.randint(8, 1400)
        d = struct.pack("!Q", seq) + rng.randbytes(size - 8)
        pending[seq] = hashlib.sha256(d).digest()
        try:
            s.send(d); st.d["sent"] += 1; st.d["bytes_sent"] += size
        except OSError as e:
            pending.pop(seq); st.error(f"send: {e!r}")
        drain(); st.flush()
        time.sleep(max(0, start + seq / rate - time.monotonic()))
    deadline = time.monotonic() + 3
    while pending and time.monotonic() < deadline:
        drain(); time.sleep(0.05)
    st.d["lost"] = len(pending)
    st.flush(True)

mode = sys.argv[1]
if mode == "tcp-server": serve_tcp(sys.argv[2], int(sys.argv[3]))
elif mode == "udp-server": serve_udp(sys.argv[2], int(sys.argv[3]))
elif mode == "tcp-client": tcp_client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
elif mode == "udp-client": udp_client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
PY

# bg NS LOG CMD...: run CMD in namespace NS in the background, remember its PID.
bg() { local ns=$1 log=$2; shift 2; ip netns exec "$ns" "$@" > "$work/$log" 2>&1 & pids+=($!); }
# listening NS PROTO PORT: wait up to 10 s for a listener.
listening() {
    for _ in $(seq 100); do
        [ -n "$(ip netns exec "$1" ss -Hln"${2:0:1}" "( sport = :$3 )" 2>/dev/null)" ] && return 0; sleep 0.1
    done
    echo "soak: nothing listens on $2 port $3 in $1" >&2; return 1
}
# iperf_loop NAME NS ARGS...: iperf3 client runs of up to 30 s until the end of the soak, each
# run's JSON in NAME.N.json.
iperf_loop() {
    local name=$1 ns=$2 i=0 left; shift 2
    while left=$(( end_time - $(date +%s) )); [ "$left" -ge 3 ]; do
        i=$((i + 1))
        timeout $(( (left < 30 ? left : 30) + 30 )) ip netns exec "$ns" iperf3 -J -t $(( left < 30 ? left : 30 )) "$@" \
            > "$work/$name.$i.json" 2> "$work/$name.$i.err" || true
        sleep 1
    done
}

# ------------------------------------------------------------------ set-up --
. scripts/contained-host.sh
contained_host "$router" "$host"
ip netns add "$guest"
ip -n "$host" addr add 203.0.113.1/32 dev lo       # echo target on the host, routed via pasta
for ns in "$host" "$guest"; do ip netns exec "$ns" sysctl -qw net.ipv4.ping_group_range="0 2147483647"; done
# The uplink's IPv6 link-local address appears a moment after the link comes up; a pasta started
# before that (ours starts in about a millisecond) finds no IPv6 template and disables IPv6.
for _ in $(seq 100); do
    [ -n "$(ip -n "$host" -6 -o addr show dev eth0 scope link 2>/dev/null)" ] && break; sleep 0.05
done

# Ports: 5201/5202 iperf3 TCP / UDP on the host's loopback (namespace -> gateway), 5401/5402 churn
# TCP / UDP echo servers there; in the namespace: 5301 iperf3 (tap), 5302 iperf3 (spliced),
# 5303 churn TCP server, 5311 UDP echo, 5312 iperf3 UDP (its control connection is TCP).
ip netns exec "$host" "$binary" --config-net -f --runas 0 -t 5301,5302,5303,5312 -u 5311,5312 \
    -P "$work/pasta.pid" --netns "/run/netns/$guest" > "$work/pasta.log" 2>&1 &
pasta_pid=$!
for _ in $(seq 150); do
    [ -n "$(ip -n "$guest" -4 -o addr show scope global 2>/dev/null)" ] && break
    ours "$pasta_pid" || break; sleep 0.1
done
if [ -z "$(ip -n "$guest" -4 -o addr show scope global 2>/dev/null)" ]; then
    echo "soak: pasta did not configure the namespace:" >&2; cat "$work/pasta.log" >&2; exit 2
fi
listening "$host" tcp 5301 || exit 2
[ "$(cat "$work/pasta.pid" 2>/dev/null)" = "$pasta_pid" ] ||
    echo "soak: note: PID file says $(cat "$work/pasta.pid" 2>/dev/null || echo nothing), sampling $pasta_pid" >&2
# IPv6: wait for the namespace's address to leave tentative state (DAD, ~2 s).
for _ in $(seq 50); do
    [ -n "$(ip -n "$guest" -6 -o addr show scope global -tentative 2>/dev/null)" ] && break; sleep 0.1
done
if [ -z "$(ip -n "$guest" -6 route show default 2>/dev/null)" ]; then
    echo "soak: pasta gave the namespace no IPv6 default route:" >&2; cat "$work/pasta.log" >&2; exit 2
fi

bg "$host" srv-iperf-tcp iperf3 -s -B 127.0.0.1 -p 5201
bg "$host" srv-iperf-udp-host iperf3 -s -B 127.0.0.1 -p 5202
bg "$host" srv-tcp4 python3 "$work/peer.py" tcp-server 127.0.0.1 5401
bg "$host" srv-tcp6 python3 "$work/peer.py" tcp-server ::1 5401
bg "$host" srv-udp4 python3 "$work/peer.py" udp-server 127.0.0.1 5402
bg "$host" srv-udp6 python3 "$work/peer.py" udp-server ::1 5402
bg "$guest" srv-iperf-tap iperf3 -s -p 5301
bg "$guest" srv-iperf-splice iperf3 -s -p 5302
bg "$guest" srv-iperf-udp iperf3 -s -p 5312
bg "$guest" srv-tcp python3 "$work/peer.py" tcp-server 0.0.0.0 5303
bg "$guest" srv-udp python3 "$work/peer.py" udp-server 0.0.0.0 5311
for spec in "$host tcp 5201" "$host tcp 5202" "$host tcp 5401" "$host udp 5402" \
            "$guest tcp 5301" "$guest tcp 5302" "$guest tcp 5312" "$guest tcp 5303" "$guest udp 5311"; do
    # shellcheck disable=SC2086
    listening $spec || exit 2
done

# ------------------------------------------------------------------ sampling --
sample() { # elapsed-seconds phase: one line "t phase alive rss hwm fds"
    local rss=- hwm=- fds=- alive=1
    if ours "$pasta_pid" && [ "$(awk '{print $3}' "/proc/$pasta_pid/stat" 2>/dev/null)" != Z ]; then
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pasta_pid/status" 2>/dev/null || echo -)
        hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pasta_pid/status" 2>/dev/null || echo -)
        fds=$(ls "/proc/$pasta_pid/fd" 2>/dev/null | wc -l)
    else
        alive=0
    fi
    echo "$1 $2 $alive $rss $hwm $fds" | tee -a "$work/samples" >&2
}
echo "soak: pasta PID $pasta_pid ($binary), $minutes min, sample every $interval s; work dir $work" >&2
echo "t_s phase alive rss_kb hwm_kb fds" >&2
sleep 1
sample 0 idle-before

n_servers=${#pids[@]}
start_time=$(date +%s)
end_time=$(( start_time + duration ))
# Namespace -> host: through the tap to the gateway (pasta maps it to the host's loopback).
iperf_loop n2h-tcp "$guest" -c 192.0.2.1 -p 5201 -b 40M & pids+=($!)
iperf_loop n2h-udp "$guest" -c 192.0.2.1 -p 5202 -u -b 10M -l 1400 & pids+=($!)
bg "$guest" cli-n2h-tcp4.log python3 "$work/peer.py" tcp-client 192.0.2.1 5401 "$duration" "$work/cli-n2h-tcp4.json"
bg "$guest" cli-n2h-tcp6.log python3 "$work/peer.py" tcp-client fd00::1 5401 "$duration" "$work/cli-n2h-tcp6.json"
bg "$guest" cli-n2h-udp4.log python3 "$work/peer.py" udp-client 192.0.2.1 5402 "$duration" "$work/cli-n2h-udp4.json"
bg "$guest" cli-n2h-udp6.log python3 "$work/peer.py" udp-client fd00::1 5402 "$duration" "$work/cli-n2h-udp6.json"
bg "$guest" ping-gw4.log ping -n -i 0.2 -W 2 -w "$duration" 192.0.2.1
bg "$guest" ping-gw6.log ping -6 -n -i 0.2 -W 2 -w "$duration" fd00::1
bg "$guest" ping-host.log ping -n -i 0.2 -W 2 -w "$duration" 203.0.113.1
# Host -> namespace: through the tap (to the host's own address) and spliced (to loopback).
iperf_loop h2n-tcp-tap "$host" -c 192.0.2.2 -p 5301 -b 40M & pids+=($!)
iperf_loop h2n-tcp-splice "$host" -c 127.0.0.1 -p 5302 -b 40M & pids+=($!)
iperf_loop h2n-udp-tap "$host" -c 192.0.2.2 -p 5312 -u -b 10M -l 1400 & pids+=($!)
bg "$host" cli-h2n-tcp-tap.log python3 "$work/peer.py" tcp-client 192.0.2.2 5303 "$duration" "$work/cli-h2n-tcp-tap.json"
bg "$host" cli-h2n-tcp-splice.log python3 "$work/peer.py" tcp-client 127.0.0.1 5303 "$duration" "$work/cli-h2n-tcp-splice.json"
bg "$host" cli-h2n-udp-tap.log python3 "$work/peer.py" udp-client 192.0.2.2 5311 "$duration" "$work/cli-h2n-udp-tap.json"
bg "$host" cli-h2n-udp-splice.log python3 "$work/peer.py" udp-client 127.0.0.1 5311 "$duration" "$work/cli-h2n-udp-splice.json"
clients=("${pids[@]:$n_servers}")

next=$(( start_time + interval ))
while [ "$(date +%s)" -lt "$end_time" ]; do
    # In the background and waited for, so that a signal ends the run at once (bash runs traps
    # only between foreground commands).
    sleep $(( next > $(date +%s) ? next - $(date +%s) : 0 )) & wait $!
    next=$(( next + interval ))
    sample $(( $(date +%s) - start_time )) traffic
    [ "$(tail -n1 "$work/samples" | cut -d' ' -f3)" = 1 ] || break
done
# Let the clients finish their last transfers (bounded), then watch pasta go idle.
for _ in $(seq 60); do
    running=0; for p in "${clients[@]}"; do [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null || echo Z)" != Z ] && running=1; done
    [ $running = 0 ] && break; sleep 1
done
stop "${clients[@]}"
traffic_end=$(( $(date +%s) - start_time ))
sample "$traffic_end" idle-after
# Idle UDP flows keep their sockets for 180 s: watch past that.
for t in $(seq 20 20 200); do sleep 20 & wait $!; sample $(( traffic_end + t )) idle-after; done

# ------------------------------------------------------------------ report --
pasta_status=alive
if ! ours "$pasta_pid" || [ "$(awk '{print $3}' "/proc/$pasta_pid/stat" 2>/dev/null)" = Z ]; then
    st=0; wait "$pasta_pid" || st=$?; pasta_status="exited with wait status $st"; pasta_pid=''
fi
report=$(python3 - "$work" "$minutes" "$rss_bound" "$fd_slack" "$pasta_status" "$binary" << 'PY'
import glob, json, os, re, sys
work, minutes, rss_bound, fd_slack, pasta_status, binary = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
failures, notes = [], []
S = []
for line in open(os.path.join(work, "samples")):
    t, phase, alive, rss, hwm, fds = line.split()
    S.append(dict(t=int(t), phase=phase, alive=alive == "1", rss=None if rss == "-" else int(rss),
                  hwm=None if hwm == "-" else int(hwm), fds=None if fds == "-" else int(fds)))
print(f"## pasta soak: {binary}, {minutes:g} min\n")
print("| t (s) | phase | RSS kB | HWM kB | fds |\n|---|---|---|---|---|")
for s in S:
    print(f"| {s['t']} | {s['phase']} | {s['rss'] if s['rss'] is not None else 'dead'} | {s['hwm'] or '-'} | {s['fds'] if s['fds'] is not None else '-'} |")
if not all(s["alive"] for s in S) or pasta_status != "alive":
    failures.append(f"pasta died: {pasta_status}; first dead sample at t={next((s['t'] for s in S if not s['alive']), '?')} s")
live = [s for s in S if s["alive"]]
traffic = [s for s in live if s["phase"] == "traffic"]
print()
if traffic:
    rss = [s["rss"] for s in traffic]; fds = [s["fds"] for s in traffic]
    print("| during traffic | first | min | max | last |\n|---|---|---|---|---|")
    print(f"| RSS kB | {rss[0]} | {min(rss)} | {max(rss)} | {rss[-1]} |")
    print(f"| fds | {fds[0]} | {min(fds)} | {max(fds)} | {fds[-1]} |")
    print(f"| peak RSS (VmHWM) kB | {traffic[0]['hwm']} | | | {live[-1]['hwm']} |")
    warm = min(60, minutes * 60 / 3)
    ref = next((s for s in traffic if s["t"] >= warm), traffic[-1])
    later = [s for s in traffic if s["t"] > ref["t"]] + [s for s in live if s["phase"] == "idle-after"]
    growth = max((s["rss"] for s in later), default=ref["rss"]) - ref["rss"]
    print(f"\nRSS at t={ref['t']} s (end of warm-up): {ref['rss']} kB; highest later: {ref['rss'] + growth} kB "
          f"(+{growth} kB; bound {rss_bound} kB)")
    if growth > rss_bound:
        failures.append(f"RSS grew by {growth} kB after t={ref['t']} s (bound {rss_bound} kB)")
    n = len(fds)
    if n >= 3:
        first, last = fds[: max(1, n // 3)], fds[n - max(1, n // 3):]
        print(f"fds: highest in the first third of the traffic samples {max(first)}, lowest in the last third {min(last)} (slack {fd_slack})")
        if min(last) > max(first) + fd_slack:
            failures.append(f"fd count grew steadily: {max(first)} early, never below {min(last)} late")
    before = [s for s in live if s["phase"] == "idle-before"]
    after = [s for s in live if s["phase"] == "idle-after"]
    if before and after:
        print(f"fds idle: {before[0]['fds']} before the traffic, {' / '.join(str(s['fds']) for s in after)} every 20 s after it")
        if after[-1]["fds"] > before[0]["fds"] + fd_slack:
            failures.append(f"fds did not return to idle: {before[0]['fds']} before, {after[-1]['fds']} 200 s after the traffic")
        print(f"RSS idle: {before[0]['rss']} kB before the traffic, {after[-1]['rss']} kB 200 s after it")

# Traffic totals.
print("\n| traffic | runs / connections / datagrams | bytes | errors |\n|---|---|---|---|")
for name in sorted({re.sub(r"\.\d+\.json$", "", os.path.basename(p)) for p in glob.glob(os.path.join(work, "[nh]2[nh]-*.json"))}):
    runs = sorted(glob.glob(os.path.join(work, f"{name}.*.json")), key=lambda p: int(p.split(".")[-2]))
    total, errs = 0, []
    for p in runs:
        try:
            j = json.load(open(p))
        except Exception:
            errs.append(f"{os.path.basename(p)}: no JSON ({open(p[:-4] + 'err').read().strip()[:120]})"); continue
        if j.get("error"):
            errs.append(f"{os.path.basename(p)}: {j['error']}"); continue
        e = j.get("end", {})
        r = e.get("sum_received") or e.get("sum") or {}
        total += r.get("bytes", 0)
        lost = r.get("lost_percent")
        if lost is not None and lost > 20:
            notes.append(f"{os.path.basename(p)}: iperf3 UDP loss {lost:.1f} %")
    print(f"| iperf3 {name} | {len(runs)} runs | {total} | {len(errs)} |")
    if errs:
        failures.append(f"iperf3 {name}: {len(errs)} failed run(s): " + "; ".join(errs[:3]))
    if not runs or total == 0:
        failures.append(f"iperf3 {name}: no data moved")
for p in sorted(glob.glob(os.path.join(work, "cli-*.json"))):
    name = os.path.basename(p)[4:-5]
    j = json.load(open(p))
    if j["kind"] == "tcp-churn":
        print(f"| churn {name} ({j['target']}) | {j['connections']} connections, {j['verified']} verified by SHA-256 | "
              f"{j['bytes_up']} up, {j['bytes_down']} down | {j['errors']} |")
        if j["errors"] or not j["verified"]:
            failures.append(f"churn {name}: {j['errors']} errors, {j['verified']} verified: " + "; ".join(j["error_samples"][:3]))
    else:
        sent, got = j["sent"], j["received"]
        loss = 100 * (sent - got) / sent if sent else 100
        print(f"| UDP echo {name} ({j['target']}) | {sent} sent, {got} echoed intact ({loss:.2f} % lost), "
              f"{j['corrupted']} corrupted, {j['duplicates']} duplicates | {j['bytes_sent']} sent | {j['errors']} |")
        if j["corrupted"] or loss > 2 or j["errors"]:
            failures.append(f"UDP echo {name}: {loss:.2f} % lost, {j['corrupted']} corrupted, {j['errors']} errors: " + "; ".join(j["error_samples"][:3]))
expected = {"n2h-tcp4", "n2h-tcp6", "n2h-udp4", "n2h-udp6", "h2n-tcp-tap", "h2n-tcp-splice", "h2n-udp-tap", "h2n-udp-splice"}
for name in sorted(expected - {os.path.basename(p)[4:-5] for p in glob.glob(os.path.join(work, "cli-*.json"))}):
    failures.append(f"client {name} left no statistics (see {name}.log)")
for name in ("ping-gw4", "ping-gw6", "ping-host"):
    txt = open(os.path.join(work, name + ".log")).read()
    m = re.search(r"(\d+) packets transmitted, (\d+) received", txt)
    if not m:
        failures.append(f"{name}: no summary: {txt.strip()[-200:]}"); continue
    tx, rx = int(m.group(1)), int(m.group(2))
    loss = 100 * (tx - rx) / tx if tx else 100
    print(f"| ICMP echo {name} | {tx} sent, {rx} answered ({loss:.2f} % lost) | | |")
    if loss > 2:
        failures.append(f"{name}: {loss:.2f} % of echo requests unanswered")
log = open(os.path.join(work, "pasta.log"), errors="replace").read().strip()
if log:
    print("\npasta's output (last 15 lines):\n```\n" + "\n".join(log.splitlines()[-15:]) + "\n```")
for n in notes:
    print(f"- note: {n}")
print("\n" + ("RESULT: FAIL\n" + "\n".join(f"- {f}" for f in failures) if failures else "RESULT: PASS"))
sys.exit(1 if failures else 0)
PY
) && status=0 || status=$?
echo "$report"
[ -z "$out" ] || printf '%s\n' "$report" > "$out"
exit "$status"
