// PasstServices: ARP, DHCP, NDP and DHCPv6 answered locally, as pure functions (frame in, frames out).
// The services arrive with the pasta issue; this file only anchors the module.
import PasstWire
