# Sourced by demo.sh and startup-time.sh: `contained_host ROUTER HOST` creates a "host" network
# namespace whose only uplink is a veth pair to a "router" namespace (192.0.2.0/24, fd00::/64,
# default routes via the router), so pasta's discovery finds a template interface and nothing
# leaves the machine. The caller deletes both namespaces.
contained_host() {
    local router=$1 host=$2
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
}
