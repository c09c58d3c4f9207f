#!/usr/bin/env bash
# Self-contained pasta demo: builds a contained "host" network namespace whose uplink is a veth
# pair to a "router" namespace (192.0.2.0/24, fd00::/64, a private resolv.conf), runs our pasta
# inside it: pasta discovers the host's addresses, routes and name servers, gives them to a new
# namespace (--config-net) and answers ARP, NDP and ICMP echo for it. Then web traffic both ways:
# the namespace fetches a page from a server on the host's loopback through the gateway address
# (pasta maps it to 127.0.0.1) and through its own loopback (-T auto), and the host fetches a page
# from a server inside the namespace through the port pasta forwards (-t), on loopback (spliced)
# and on the host's address (through the tap). Nothing leaves the machine. Needs root and python3;
# BIN names the directory holding pasta (default .build/release), KEEP=1 keeps the temporary
# directory with the pages and the servers' logs.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-.build/release}
tag=demo$$
router=$tag-router host=$tag-host
work=$(mktemp -d /tmp/pasta-demo.XXXXXX)
host_server='' pasta_pid=''

cleanup() {
    for pid in $pasta_pid $host_server; do kill "$pid" 2>/dev/null || true; done
    ip netns del "$host" 2>/dev/null || true
    ip netns del "$router" 2>/dev/null || true
    rm -rf "/etc/netns/$host"; [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

. scripts/contained-host.sh
contained_host "$router" "$host"
# ip netns exec bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf for the command.
mkdir -p "/etc/netns/$host"
printf 'nameserver 192.0.2.1\nnameserver fd00::1\nsearch example.test\n' > "/etc/netns/$host/resolv.conf"

echo "== the contained host: addresses and routes"
ip -n "$host" -br addr show dev eth0
ip -n "$host" route; ip -n "$host" -6 route show default
# As upstream, pasta started as root switches to nobody, which cannot open this machine's 0600
# /dev/net/tun: --runas 0 keeps root (an ordinary user needs no option).
# pasta's ping sockets live in the host namespace: let every group use them there.
ip netns exec "$host" sysctl -qw net.ipv4.ping_group_range="0 2147483647"

echo "== pasta --debug in that host: what it discovered"
ip netns exec "$host" "$bin/pasta" --runas 0 --debug --config-net -- true 2>&1 | grep -v '^[0-9.]*: Received signal'
# python3 -c "$fetch" URL: print the body of an HTTP GET (5 s limit).
fetch='import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())'
# python3 -c "$serve" ADDRESS PORT DIRECTORY: serve DIRECTORY over HTTP, logging clients on stderr
# (python3 -m http.server would first look up the host name in DNS, which has no server here).
serve='import http.server, socketserver, sys
class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "demo", self.server_address[1]
handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=sys.argv[3])
Server((sys.argv[1], int(sys.argv[2])), handler).serve_forever()'
# python3 -c "$probe" ADDRESS PORT: succeed once something accepts TCP connections there.
probe='import socket, sys, time
for _ in range(100):
    try: socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close(); sys.exit(0)
    except OSError: time.sleep(0.1)
sys.exit(1)'
# wait_for FILE: wait up to 30 s for FILE to appear.
wait_for() { for _ in $(seq 300); do [ -e "$1" ] && return 0; sleep 0.1; done; echo "timed out waiting for $1" >&2; return 1; }

echo "== a web server on the host's loopback only (127.0.0.1:8080 in the contained host)"
mkdir -p "$work/host" "$work/ns"
echo "hello from the host's loopback" > "$work/host/hello.txt"
echo "hello from inside pasta's namespace" > "$work/ns/hello.txt"
ip netns exec "$host" python3 -c "$serve" 127.0.0.1 8080 "$work/host" 2> "$work/host-server.log" &
host_server=$!
ip netns exec "$host" python3 -c "$probe" 127.0.0.1 8080

echo "== inside pasta's namespace (pasta --config-net -t 8081 -- sh -c ...)"
ip netns exec "$host" "$bin/pasta" --runas 0 --config-net -t 8081 -- sh -c '
    set -e
    ip -br addr; ip route; ip -6 route show default
    ping -c1 -W2 192.0.2.1 | grep -E "bytes from|transmitted"
    ping -6 -c3 -i0.2 -W2 fd00::1 | grep -E "bytes from|transmitted"
    page=$(python3 -c "$1" http://192.0.2.1:8080/hello.txt)
    echo "GET http://192.0.2.1:8080/hello.txt (the gateway, mapped to the host loopback): $page"
    [ "$page" = "$(cat "$4/host/hello.txt")" ]
    page=$(python3 -c "$1" http://127.0.0.1:8080/hello.txt)
    echo "GET http://127.0.0.1:8080/hello.txt (own loopback, -T auto to the host loopback): $page"
    [ "$page" = "$(cat "$4/host/hello.txt")" ]
    python3 -c "$3" 0.0.0.0 8081 "$4/ns" 2> "$4/ns-server.log" &
    server=$!
    python3 -c "$2" 127.0.0.1 8081
    touch "$4/ns-ready"
    for _ in $(seq 100); do [ -e "$4/done" ] && break; sleep 0.1; done
    kill $server
    exit 7' sh "$fetch" "$probe" "$serve" "$work" &
pasta_pid=$!
wait_for "$work/ns-ready"
echo "== from the host namespace to the server in pasta's namespace (port 8081, -t 8081)"
for address in 127.0.0.1 192.0.2.2; do
    page=$(ip netns exec "$host" python3 -c "$fetch" "http://$address:8081/hello.txt")
    echo "GET http://$address:8081/hello.txt: $page"
    [ "$page" = "$(cat "$work/ns/hello.txt")" ]
done
touch "$work/done"
status=0
wait "$pasta_pid" || status=$?
pasta_pid=''
echo "pasta exited with $status (the status of its command, here 7)"
[ "$status" = 7 ]
echo "== the clients the web servers saw (spliced from the host's loopback, the namespace sees its own"
echo "   address; through the tap from the host's address, it sees the gateway)"
sed 's/ - - \[[^]]*\]//; s/^/host server (127.0.0.1:8080): /' "$work/host-server.log"
sed 's/ - - \[[^]]*\]//; s/^/namespace server (port 8081): /' "$work/ns-server.log"
echo "== every page arrived as served"
