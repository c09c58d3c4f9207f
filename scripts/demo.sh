#!/usr/bin/env bash
# Self-contained pasta demo: builds a contained "host" network namespace whose uplink is a veth
# pair to a "router" namespace (192.0.2.0/24, fd00::/64, a private resolv.conf), runs our pasta
# inside it: pasta discovers the host's addresses, routes and name servers, gives them to a new
# namespace (--config-net) and answers ARP, NDP and ICMP echo for it. Nothing leaves the machine.
# Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-.build/release}
tag=demo$$
router=$tag-router host=$tag-host

cleanup() {
    ip netns del "$host" 2>/dev/null || true
    ip netns del "$router" 2>/dev/null || true
    rm -rf "/etc/netns/$host"
}
trap cleanup EXIT

ip netns add "$router"
ip netns add "$host"
ip link add name eth0 netns "$host" type veth peer name uplink netns "$router"
ip -n "$router" addr add 192.0.2.1/24 dev uplink
ip -n "$router" addr add fd00::1/64 dev uplink nodad
ip -n "$host" addr add 192.0.2.2/24 dev eth0
ip -n "$host" addr add fd00::2/64 dev eth0 nodad
for ns in "$router" "$host"; do ip -n "$ns" link set lo up; done
ip -n "$router" link set uplink up
ip -n "$host" link set eth0 up
ip -n "$host" route add default via 192.0.2.1
ip -n "$host" -6 route add default via fd00::1
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
echo "== inside pasta's namespace (pasta --config-net -- sh -c ...)"
status=0
ip netns exec "$host" "$bin/pasta" --runas 0 --config-net -- sh -c '
    ip -br addr; ip route; ip -6 route show default
    ping -c1 -W2 192.0.2.1 | grep -E "bytes from|transmitted"
    ping -6 -c3 -i0.2 -W2 fd00::1 | grep -E "bytes from|transmitted"
    exit 7' || status=$?
echo "pasta exited with $status (the status of its command, here 7)"
