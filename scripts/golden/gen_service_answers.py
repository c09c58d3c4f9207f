#!/usr/bin/env python3
"""Golden request/reply frames for PasstServices (ARP, DHCP, NDP, DHCPv6), built with scapy.

Every case is a guest request frame and the reply frame upstream passt (snapshot 2c174f1,
2025-01-09) sends for it, or no reply. Both are built here with scapy, independently of the
Swift code, from the configurations below, and written as hex (16 bytes per line) into
Tests/PasstServicesTests/Fixtures/:

    <case>.request.hex    the guest's frame
    <case>.reply.hex      the expected reply (absent: no reply expected)
    cases.txt             one line per case: "<case> <config> reply|none"
    unsolicited_ra.reply.hex   the periodic RA of configuration A (no request)

The values below are restated in Tests/PasstServicesTests/ServiceGolden.swift: change both.

Bytes that are derived rather than what upstream sends on the wire:
  * IPv4 UDP checksum of DHCP replies (frame bytes 40-41): upstream sends 0 (legal for IPv4);
    we fill in the real checksum, as scapy computes it here.
  * DHCPv6 server DUID time (4 bytes inside every Server ID): upstream takes the wall clock at
    start; the fixtures use the fixed DUID_TIME (and the UDP checksum follows from it).
  * unsolicited_ra: upstream sends it 200-600 s after the guest connects; it is the solicited
    RA addressed to ff02::1 instead (IPv6 destination and ICMPv6 checksum differ).
  * Cases marked DEVIATION are where we deliberately answer differently (see the case).

--check-upstream PASST replays every case against a real upstream passt binary (needs root,
or run under `unshare -r`): per configuration it creates a private network namespace with a
veth pair carrying the template addresses and routes, starts passt there on a private UNIX
socket, sends each request over passt's qemu socket protocol and compares what comes back with
the fixture after normalising the derived bytes above. Nothing leaves the namespace.

Usage:  python3 scripts/golden/gen_service_answers.py [--check-upstream PATH/TO/passt]
"""
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time

from scapy.all import (ARP, BOOTP, DHCP, IP, UDP, Ether, IPv6, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA,
                       ICMPv6ND_RS, ICMPv6NDOptDNSSL, ICMPv6NDOptDstLLAddr, ICMPv6NDOptMTU,
                       ICMPv6NDOptPrefixInfo, ICMPv6NDOptRDNSS, ICMPv6NDOptSrcLLAddr, raw)
from scapy.layers.dhcp6 import (DHCP6_Advertise, DHCP6_Confirm, DHCP6_Decline, DHCP6_InfoRequest,
                                DHCP6_Rebind, DHCP6_Release, DHCP6_Renew, DHCP6_Reply, DHCP6_Request,
                                DHCP6_Solicit, DHCP6OptClientId, DHCP6OptDNSDomains, DHCP6OptDNSServers,
                                DHCP6OptElapsedTime, DHCP6OptIA_NA, DHCP6OptIAAddress, DHCP6OptOptReq,
                                DHCP6OptServerId, DHCP6OptStatusCode, DUID_LL, DUID_LLT)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                   "Tests", "PasstServicesTests", "Fixtures")

OUR_MAC = "9a:55:9a:55:9a:55"
GUEST_MAC = "52:54:00:12:34:56"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
GUEST4 = "192.0.2.2"
GUEST6 = "fd00::2"
GUEST_LL = "fe80::2"
OUR_LL = "fe80::1"
DUID_TIME = 0x2F116C00          # 2025-01-09 00:00:00 UTC in seconds since 2000-01-01
INFINITE = 0xFFFFFFFF
NOT_ON_LINK = "Prefix not appropriate for link."

# Configuration A: the common case. Configuration B: gateway off the guest's subnet (option
# 121), -m 0 (no MTU options), two name servers per family, three search domains.
CONFIGS = {
    "A": dict(gateway4="192.0.2.1", dns4=["192.0.2.1"], dns6=["fd00::1"], search=["example.test"], mtu=65520,
              args=["-D", "192.0.2.1", "-D", "fd00::1", "-S", "example.test"]),
    "B": dict(gateway4="203.0.113.1", dns4=["192.0.2.53", "198.51.100.53"], dns6=["2001:db8::53", "fd00::53"],
              search=["example.test", "corp.example.test", "lab.test"], mtu=0,
              args=["-g", "203.0.113.1", "-m", "0", "-D", "192.0.2.53", "-D", "198.51.100.53",
                    "-D", "2001:db8::53", "-D", "fd00::53",
                    "-S", "example.test", "-S", "corp.example.test", "-S", "lab.test"]),
}


def mac_bytes(mac):
    """The six bytes of a colon-separated MAC address."""
    return bytes(int(part, 16) for part in mac.split(":"))


def write_hex(name, data):
    """Writes `data` as hex, 16 bytes per line, to Fixtures/<name>.hex."""
    with open(os.path.join(OUT, name + ".hex"), "w") as f:
        f.write("\n".join(data[i:i + 16].hex() for i in range(0, len(data), 16)) + "\n")


# ---------------------------------------------------------------------------------------------
# ARP

def arp_request(sender_ip, target_ip, op=1):
    """An unpadded (42-byte) ARP frame from the guest, as a tap device carries it."""
    return raw(Ether(dst=BROADCAST_MAC, src=GUEST_MAC) /
               ARP(op=op, hwsrc=GUEST_MAC, psrc=sender_ip, hwdst="00:00:00:00:00:00", pdst=target_ip))


def arp_reply(sender_ip, target_ip):
    """Upstream's reply: opcode 2, sender = our MAC + the asked-for IP, target = requester; 42 bytes."""
    return raw(Ether(dst=GUEST_MAC, src=OUR_MAC) /
               ARP(op=2, hwsrc=OUR_MAC, psrc=target_ip, hwdst=GUEST_MAC, pdst=sender_ip))


# ---------------------------------------------------------------------------------------------
# DHCP

def dhcp_request(options, xid=0x3903F326, flags=0, ciaddr="0.0.0.0", src="0.0.0.0", dst="255.255.255.255",
                 op=1, cookie=True):
    """A DHCP/BOOTP request frame; options end with END and are padded to a 300-byte message."""
    bootp = BOOTP(op=op, htype=1, hlen=6, xid=xid, flags=flags, ciaddr=ciaddr, chaddr=mac_bytes(GUEST_MAC) + bytes(10),
                  options=b"c\x82Sc" if cookie else b"")
    message = raw(bootp / DHCP(options=options + ["end"])) if cookie else raw(bootp)
    message += bytes(max(0, 300 - len(message)))
    return raw(Ether(dst=BROADCAST_MAC, src=GUEST_MAC) / IP(src=src, dst=dst, ttl=64, id=0) /
               UDP(sport=68, dport=67) / message)


def search_119(names):
    """Option 119 as upstream encodes it: a name's tail equal to a whole earlier name becomes a pointer."""
    data, whole = b"", {}
    for name in names:
        labels = name.rstrip(".").split(".")
        pointer, kept = None, len(labels)
        for tail in range(1, len(labels)):
            if ".".join(labels[tail:]) in whole:
                pointer, kept = whole[".".join(labels[tail:])], tail
                break
        start = len(data)
        data += b"".join(bytes([len(l)]) + l.encode() for l in labels[:kept])
        if pointer is None:
            data += b"\x00"
            whole.setdefault(name.rstrip("."), start)
        else:
            data += bytes([0xC0 | pointer >> 8, pointer & 0xFF])
    return data


def dhcp_reply(config, msg_type, prl, xid=0x3903F326, flags=0, ciaddr="0.0.0.0", rapid=False):
    """The reply upstream builds: header echoed (op 2, secs 0, yiaddr set), options in passt
    order (53 first unless in 55, then 55's order, then ascending), END, 0, pad to 60 bytes."""
    c = CONFIGS[config]
    gw = c["gateway4"]
    server = {1: ("subnet_mask", "255.255.255.0"), 3: ("router", gw), 51: ("lease_time", INFINITE),
              53: ("message-type", msg_type), 54: ("server_id", gw)}
    if c["mtu"]:
        server[26] = ("interface-mtu", c["mtu"])
    if c["dns4"]:
        server[6] = tuple(["name_server"] + c["dns4"])
    if c["search"]:
        server[119] = (119, search_119(c["search"]))
    if rapid:
        server[80] = (80, b"")
    gw_net = [int(x) for x in gw.split(".")][:3]
    if gw_net != [192, 0, 2]:                                   # gateway outside 192.0.2.0/24
        server[121] = (121, bytes([32]) + socket.inet_aton(gw) + bytes(4) + bytes([0]) + socket.inet_aton(gw))
    order = []
    if prl is not None and len(prl) > 0 and 53 not in prl:
        order.append(53)
    for code in prl or []:
        if code in server and code not in order:
            order.append(code)
    order += sorted(code for code in server if code not in order)
    options = [server[code] for code in order] + ["end", "pad"]
    message = raw(BOOTP(op=2, htype=1, hlen=6, xid=xid, flags=flags, ciaddr=ciaddr, yiaddr=GUEST4,
                        chaddr=mac_bytes(GUEST_MAC) + bytes(10), options=b"c\x82Sc") / DHCP(options=options))
    message += bytes(max(0, 240 + 60 - len(message)))
    dst = "255.255.255.255" if flags & 0x8000 else GUEST4
    return raw(Ether(dst=GUEST_MAC, src=OUR_MAC) / IP(src=gw, dst=dst, ttl=255, id=0, flags=0, tos=0) /
               UDP(sport=67, dport=68) / message)


# ---------------------------------------------------------------------------------------------
# NDP

def solicited_node(address):
    """The solicited-node multicast address of an IPv6 address."""
    last = socket.inet_pton(socket.AF_INET6, address)[13:]
    return socket.inet_ntop(socket.AF_INET6, bytes.fromhex("ff02" "0000" "0000" "0000" "0000" "0001" "ff") + last)


def multicast_mac(address):
    """The Ethernet multicast MAC of an IPv6 multicast address (33:33 + low 32 bits)."""
    return "33:33:" + ":".join("%02x" % b for b in socket.inet_pton(socket.AF_INET6, address)[12:])


def ipv6_frame(src, dst, payload, hlim=255, dst_mac=None):
    """A guest IPv6 frame."""
    return raw(Ether(dst=dst_mac or multicast_mac(dst), src=GUEST_MAC) / IPv6(src=src, dst=dst, hlim=hlim) / payload)


def ndp_reply(dst, payload):
    """An NDP message from our link-local address, hop limit 255, to the guest's MAC."""
    return raw(Ether(dst=GUEST_MAC, src=OUR_MAC) / IPv6(src=OUR_LL, dst=dst, hlim=255, fl=0, tc=0) / payload)


def neighbor_advertisement(dst, target):
    """Upstream's NA: R, S and O set, target link-layer address = our MAC."""
    return ndp_reply(dst, ICMPv6ND_NA(R=1, S=1, O=1, tgt=target) / ICMPv6NDOptDstLLAddr(lladdr=OUR_MAC))


def router_advertisement(config, dst):
    """Upstream's RA: hop limit 255, M, lifetime 65535; prefix (full address), SLLA, MTU, RDNSS, DNSSL."""
    c = CONFIGS[config]
    ra = (ICMPv6ND_RA(chlim=255, M=1, O=0, H=0, prf=0, routerlifetime=65535, reachabletime=0, retranstimer=0) /
          ICMPv6NDOptPrefixInfo(prefixlen=64, L=1, A=1, validlifetime=INFINITE, preferredlifetime=INFINITE,
                                prefix=GUEST6) /
          ICMPv6NDOptSrcLLAddr(lladdr=OUR_MAC))
    if c["mtu"]:
        ra = ra / ICMPv6NDOptMTU(mtu=c["mtu"])
    if c["dns6"]:
        ra = ra / ICMPv6NDOptRDNSS(lifetime=INFINITE, dns=c["dns6"])
        if c["search"]:
            ra = ra / ICMPv6NDOptDNSSL(lifetime=INFINITE, searchlist=c["search"])
    return ndp_reply(dst, ra)


# ---------------------------------------------------------------------------------------------
# DHCPv6

CLIENT_DUID = DUID_LL(lladdr=GUEST_MAC)
IAID = 0x0C0D0E0F


def server_duid(time_value=DUID_TIME):
    """Our server DUID: DUID-LLT, Ethernet, `time_value`, our MAC."""
    return DUID_LLT(lladdr=OUR_MAC, timeval=time_value)


def dhcpv6_request(message, dst="ff02::1:2", src=GUEST_LL):
    """A DHCPv6 frame from the guest's link-local address:546 to `dst`:547."""
    return ipv6_frame(src, dst, UDP(sport=546, dport=547) / message, hlim=1,
                      dst_mac=multicast_mac(dst) if dst.startswith("ff") else OUR_MAC)


def upstream_flow_label(xid):
    """Upstream's flow label: the transaction id's bytes read little-endian (bitfield), low 20 bits."""
    t0, t1, t2 = xid >> 16 & 0xFF, xid >> 8 & 0xFF, xid & 0xFF
    return (t2 & 0xF) << 16 | t1 << 8 | t0


def dhcpv6_reply(config, cls, xid, iaid, dst=GUEST_LL):
    """Upstream's normal reply: Server ID, IA_NA(IAADDR), Client ID, DNS servers, domain list."""
    c = CONFIGS[config]
    message = (cls(trid=xid) / DHCP6OptServerId(duid=server_duid()) /
               DHCP6OptIA_NA(iaid=iaid, T1=INFINITE, T2=INFINITE,
                             ianaopts=[DHCP6OptIAAddress(addr=GUEST6, preflft=INFINITE, validlft=INFINITE)]) /
               DHCP6OptClientId(duid=CLIENT_DUID))
    if c["dns6"]:
        message = message / DHCP6OptDNSServers(dnsservers=c["dns6"])
    if c["search"]:
        message = message / DHCP6OptDNSDomains(dnsdomains=c["search"])
    return dhcpv6_frame_out(message, xid, dst)


def dhcpv6_not_on_link(xid, iaid):
    """Upstream's NotOnLink reply: Server ID, the client's IA_NA with status 4, Client ID."""
    message = (DHCP6_Reply(trid=xid) / DHCP6OptServerId(duid=server_duid()) /
               DHCP6OptIA_NA(iaid=iaid, T1=0, T2=0, ianaopts=[DHCP6OptStatusCode(statuscode=4, statusmsg=NOT_ON_LINK)]) /
               DHCP6OptClientId(duid=CLIENT_DUID))
    return dhcpv6_frame_out(message, xid, GUEST_LL)


def dhcpv6_frame_out(message, xid, dst):
    """A DHCPv6 reply frame from our link-local address:547 to `dst`:546."""
    return raw(Ether(dst=GUEST_MAC, src=OUR_MAC) / IPv6(src=OUR_LL, dst=dst, hlim=255, tc=0, fl=upstream_flow_label(xid)) /
               UDP(sport=547, dport=546) / message)


def ia_na(address):
    """A client IA_NA (IAID, T1 = T2 = 0) holding `address` with zero lifetimes."""
    return DHCP6OptIA_NA(iaid=IAID, T1=0, T2=0, ianaopts=[DHCP6OptIAAddress(addr=address, preflft=0, validlft=0)])


ORO = DHCP6OptOptReq(reqopts=[23, 24])
ELAPSED = DHCP6OptElapsedTime(elapsedtime=0)


# ---------------------------------------------------------------------------------------------
# Cases

def cases(duid_time=DUID_TIME):
    """(name, config, request, expected reply or None, note) for every case, in replay order;
    `duid_time` is the server DUID time requests carrying a Server ID use."""
    ours = DHCP6OptServerId(duid=server_duid(duid_time))
    cid = DHCP6OptClientId(duid=CLIENT_DUID)
    prl = [1, 3, 6, 12, 15, 26, 28, 42, 51, 54, 58, 59, 119, 121]
    result = [
        # ARP (A)
        ("arp_request", "A", arp_request(GUEST4, "192.0.2.1"), arp_reply(GUEST4, "192.0.2.1"), ""),
        ("arp_request_remote", "A", arp_request(GUEST4, "203.0.113.7"), arp_reply(GUEST4, "203.0.113.7"), ""),
        ("arp_probe", "A", arp_request("0.0.0.0", "192.0.2.1"), arp_reply("0.0.0.0", "192.0.2.1"), ""),
        ("arp_announcement", "A", arp_request(GUEST4, GUEST4), None, ""),
        ("arp_request_own", "A", arp_request("0.0.0.0", GUEST4), None, ""),
        ("arp_reply_from_guest", "A", arp_request(GUEST4, "192.0.2.1", op=2), None, ""),
        # DHCP (A)
        ("dhcp_discover", "A",
         dhcp_request([("message-type", "discover"), ("client_id", b"\x01" + mac_bytes(GUEST_MAC)),
                       ("param_req_list", prl)]),
         dhcp_reply("A", "offer", prl), ""),
        ("dhcp_discover_reordered_broadcast", "A",
         dhcp_request([("message-type", "discover"), ("param_req_list", [119, 54, 6, 3, 1, 26])], flags=0x8000),
         dhcp_reply("A", "offer", [119, 54, 6, 3, 1, 26], flags=0x8000), ""),
        ("dhcp_discover_prl_with_53", "A",
         dhcp_request([("message-type", "discover"), ("param_req_list", [1, 53, 3, 6])]),
         dhcp_reply("A", "offer", [1, 53, 3, 6]), ""),
        ("dhcp_discover_no_prl", "A", dhcp_request([("message-type", "discover")]),
         dhcp_reply("A", "offer", None), ""),
        ("dhcp_discover_rapid_commit", "A",
         dhcp_request([("message-type", "discover"), ("param_req_list", [1, 3, 6]), (80, b"")]),
         dhcp_reply("A", "ack", [1, 3, 6], rapid=True), ""),
        ("dhcp_request", "A",
         dhcp_request([("message-type", "request"), ("requested_addr", GUEST4), ("server_id", "192.0.2.1"),
                       ("param_req_list", [1, 3, 6, 26, 119])], xid=0x5E2A1C07),
         dhcp_reply("A", "ack", [1, 3, 6, 26, 119], xid=0x5E2A1C07), ""),
        ("dhcp_request_renewing", "A",
         dhcp_request([("message-type", "request"), ("param_req_list", [1, 3, 6])], xid=0x11223344,
                      ciaddr=GUEST4, src=GUEST4, dst="192.0.2.1"),
         dhcp_reply("A", "ack", [1, 3, 6], xid=0x11223344, ciaddr=GUEST4), ""),
        ("dhcp_request_other_address", "A",
         dhcp_request([("message-type", "request"), ("requested_addr", "198.51.100.9")], xid=0x0BADCAFE),
         dhcp_reply("A", "ack", None, xid=0x0BADCAFE), ""),
        ("bootp_request", "A", dhcp_request([], xid=0x0000B007), dhcp_reply("A", "ack", None, xid=0x0000B007), ""),
        ("dhcp_inform", "A", dhcp_request([("message-type", "inform")], ciaddr=GUEST4, src=GUEST4), None, ""),
        ("dhcp_release", "A", dhcp_request([("message-type", "release"), ("server_id", "192.0.2.1")],
                                           ciaddr=GUEST4, src=GUEST4, dst="192.0.2.1"), None, ""),
        ("dhcp_decline", "A", dhcp_request([("message-type", "decline"), ("requested_addr", GUEST4)]), None, ""),
        ("dhcp_bootreply_from_guest", "A", dhcp_request([("message-type", "discover")], op=2), None, ""),
        ("dhcp_no_cookie", "A", dhcp_request([], cookie=False), None,
         "DEVIATION: upstream answers a message without the magic cookie, echoing its bytes as the cookie"),
        # DHCP (B): off-subnet gateway -> option 121, no MTU, two name servers, three search domains
        ("dhcp_discover_b", "B",
         dhcp_request([("message-type", "discover"), ("param_req_list", [1, 3, 6, 15, 119, 121])]),
         dhcp_reply("B", "offer", [1, 3, 6, 15, 119, 121]), ""),
        # NDP (A)
        ("ndp_ns", "A",
         ipv6_frame(GUEST_LL, solicited_node(OUR_LL), ICMPv6ND_NS(tgt=OUR_LL) / ICMPv6NDOptSrcLLAddr(lladdr=GUEST_MAC)),
         neighbor_advertisement(GUEST_LL, OUR_LL), ""),
        ("ndp_ns_any_target", "A",
         ipv6_frame(GUEST6, solicited_node("2001:db8::7"),
                    ICMPv6ND_NS(tgt="2001:db8::7") / ICMPv6NDOptSrcLLAddr(lladdr=GUEST_MAC)),
         neighbor_advertisement(GUEST6, "2001:db8::7"), ""),
        ("ndp_ns_unicast", "A", ipv6_frame(GUEST_LL, OUR_LL, ICMPv6ND_NS(tgt=OUR_LL), dst_mac=OUR_MAC),
         neighbor_advertisement(GUEST_LL, OUR_LL), ""),
        ("ndp_ns_dad", "A", ipv6_frame("::", solicited_node(GUEST6), ICMPv6ND_NS(tgt=GUEST6)), None, ""),
        ("ndp_rs", "A", ipv6_frame(GUEST_LL, "ff02::2", ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=GUEST_MAC)),
         router_advertisement("A", GUEST_LL), ""),
        ("ndp_rs_unspecified", "A", ipv6_frame("::", "ff02::2", ICMPv6ND_RS()), router_advertisement("A", "ff02::1"),
         "DEVIATION: upstream addresses the RA to the solicitation's source ::"),
        ("ndp_ra_from_guest", "A", ipv6_frame(GUEST_LL, "ff02::1", ICMPv6ND_RA()), None, ""),
        ("ndp_na_from_guest", "A", ipv6_frame(GUEST_LL, "ff02::1", ICMPv6ND_NA(tgt=GUEST_LL)), None, ""),
        # NDP (B): no MTU option, two RDNSS addresses, DNSSL with three names
        ("ndp_rs_b", "B", ipv6_frame(GUEST_LL, "ff02::2", ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=GUEST_MAC)),
         router_advertisement("B", GUEST_LL), ""),
        # DHCPv6 (A). INFORMATION-REQUEST first: upstream echoes the last IA_NA's IAID it saw and
        # sends 01 00 00 00 before any.
        ("dhcpv6_information_request", "A", dhcpv6_request(DHCP6_InfoRequest(trid=0x0A0B0C) / cid / ORO / ELAPSED),
         dhcpv6_reply("A", DHCP6_Reply, 0x0A0B0C, 0x01000000), ""),
        ("dhcpv6_solicit", "A", dhcpv6_request(DHCP6_Solicit(trid=0x123456) / cid / ia_na("::") / ORO / ELAPSED),
         dhcpv6_reply("A", DHCP6_Advertise, 0x123456, IAID), ""),
        ("dhcpv6_solicit_with_server_id", "A", dhcpv6_request(DHCP6_Solicit(trid=0x123457) / cid / ours), None, ""),
        ("dhcpv6_solicit_unicast", "A", dhcpv6_request(DHCP6_Solicit(trid=0x123458) / cid, dst=OUR_LL), None, ""),
        ("dhcpv6_solicit_no_client_id", "A", dhcpv6_request(DHCP6_Solicit(trid=0x123459) / ELAPSED), None, ""),
        ("dhcpv6_request", "A",
         dhcpv6_request(DHCP6_Request(trid=0x654321) / cid / ours / ia_na(GUEST6) / ORO / ELAPSED),
         dhcpv6_reply("A", DHCP6_Reply, 0x654321, IAID), ""),
        ("dhcpv6_request_wrong_server", "A",
         dhcpv6_request(DHCP6_Request(trid=0x654322) / cid / DHCP6OptServerId(duid=DUID_LLT(lladdr=OUR_MAC, timeval=7)) /
                        ia_na(GUEST6)), None, ""),
        ("dhcpv6_request_foreign", "A",
         dhcpv6_request(DHCP6_Request(trid=0x654323) / cid / ours / ia_na("2001:db8::99")),
         dhcpv6_not_on_link(0x654323, IAID), ""),
        ("dhcpv6_renew", "A", dhcpv6_request(DHCP6_Renew(trid=0x777777) / cid / ours / ia_na(GUEST6) / ELAPSED),
         dhcpv6_reply("A", DHCP6_Reply, 0x777777, IAID), ""),
        ("dhcpv6_rebind", "A", dhcpv6_request(DHCP6_Rebind(trid=0x888888) / cid / ia_na(GUEST6)), None, ""),
        ("dhcpv6_rebind_with_server_id", "A",
         dhcpv6_request(DHCP6_Rebind(trid=0x888889) / cid / ours / ia_na(GUEST6)),
         dhcpv6_reply("A", DHCP6_Reply, 0x888889, IAID), ""),
        ("dhcpv6_confirm", "A", dhcpv6_request(DHCP6_Confirm(trid=0x999999) / cid / ia_na(GUEST6)),
         dhcpv6_reply("A", DHCP6_Reply, 0x999999, IAID), ""),
        ("dhcpv6_confirm_foreign", "A", dhcpv6_request(DHCP6_Confirm(trid=0x99999A) / cid / ia_na("2001:db8::99")),
         dhcpv6_not_on_link(0x99999A, IAID), ""),
        ("dhcpv6_confirm_with_server_id", "A",
         dhcpv6_request(DHCP6_Confirm(trid=0x99999B) / cid / ours / ia_na(GUEST6)), None, ""),
        ("dhcpv6_release", "A", dhcpv6_request(DHCP6_Release(trid=0xAAAAAA) / cid / ours / ia_na(GUEST6)), None, ""),
        ("dhcpv6_decline", "A", dhcpv6_request(DHCP6_Decline(trid=0xBBBBBB) / cid / ours / ia_na(GUEST6)), None, ""),
        # DHCPv6 (B): two name servers, three search domains (uncompressed)
        ("dhcpv6_solicit_b", "B", dhcpv6_request(DHCP6_Solicit(trid=0x123456) / cid / ia_na("::") / ORO),
         dhcpv6_reply("B", DHCP6_Advertise, 0x123456, IAID), ""),
    ]
    return result


def generate():
    """Writes every fixture and the manifest."""
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        if name.endswith(".hex") or name == "cases.txt":
            os.remove(os.path.join(OUT, name))
    lines = []
    for name, config, request, reply, _ in cases():
        write_hex(name + ".request", request)
        if reply is not None:
            write_hex(name + ".reply", reply)
        lines.append("%s %s %s" % (name, config, "reply" if reply is not None else "none"))
    write_hex("unsolicited_ra.reply", router_advertisement("A", "ff02::1"))
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("%d cases written to %s" % (len(lines), os.path.normpath(OUT)))


# ---------------------------------------------------------------------------------------------
# Replay against upstream passt

NAMESPACE_SETUP = """
sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
ip link add v0 type veth peer name v1
ip link set v0 up; ip link set v1 up
ip addr add 192.0.2.2/24 dev v0
ip -6 addr add fd00::2/64 dev v0 nodad
ip route add default via 192.0.2.1 dev v0
ip -6 route add default via fe80::1 dev v0
exec "$@"
"""


def normalise(frame, upstream_duid_time):
    """`frame` (from upstream) with its DUID time replaced by DUID_TIME, the UDP checksum
    recomputed for IPv6 and zeroed for IPv4."""
    old = bytes.fromhex("00010001") + struct.pack(">I", upstream_duid_time) + mac_bytes(OUR_MAC)
    new = bytes.fromhex("00010001") + struct.pack(">I", DUID_TIME) + mac_bytes(OUR_MAC)
    if old in frame:
        packet = Ether(frame.replace(old, new))
        del packet[UDP].chksum
        frame = raw(packet)
    return zero_ipv4_udp_checksum(frame)


def zero_ipv4_udp_checksum(frame):
    """`frame` with bytes 40-41 zeroed if it is IPv4 (IHL 5) / UDP."""
    if frame[12:14] == b"\x08\x00" and frame[23] == 17:
        frame = frame[:40] + b"\x00\x00" + frame[42:]
    return frame


def replay(passt, config, selected):
    """Runs upstream passt with `config` in a private namespace and replays `selected` cases;
    returns the number of unexpected differences."""
    workdir = tempfile.mkdtemp(prefix="passt-golden-")
    path = os.path.join(workdir, "sock")
    process = subprocess.Popen(["unshare", "-n", "sh", "-ec", NAMESPACE_SETUP, "setup", passt, "-f", "-1",
                                "-s", path] + CONFIGS[config]["args"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + 10
        while True:
            try:
                conn.connect(path)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        pending = b""
        upstream_time = None
        failures = 0
        for name, _, request, expected, note in selected:
            if upstream_time is not None and name.startswith("dhcpv6"):
                request = dict((c[0], c[2]) for c in cases(upstream_time))[name]
            conn.sendall(struct.pack(">I", len(request)) + request)
            frames, deadline = [], time.monotonic() + 0.3
            while time.monotonic() < deadline:
                ready, _, _ = select.select([conn], [], [], max(0, deadline - time.monotonic()))
                if ready:
                    data = conn.recv(65536)
                    if not data:
                        break
                    pending += data
                while len(pending) >= 4 and len(pending) >= 4 + struct.unpack(">I", pending[:4])[0]:
                    n = struct.unpack(">I", pending[:4])[0]
                    frames.append(pending[4:4 + n])
                    pending = pending[4 + n:]
            if upstream_time is None:
                for frame in frames:
                    at = frame.find(bytes.fromhex("0002000e00010001"))       # Server ID, DUID-LLT
                    if at >= 0:
                        upstream_time = struct.unpack(">I", frame[at + 8:at + 12])[0]
            got = [normalise(f, upstream_time or DUID_TIME) for f in frames]
            want = [] if expected is None else [zero_ipv4_udp_checksum(expected)]
            if got == want:
                print("  same      %s" % name)
            elif note.startswith("DEVIATION"):
                print("  differs   %s (expected: %s)" % (name, note))
            else:
                failures += 1
                print("  MISMATCH  %s\n    upstream: %s\n    fixture:  %s" %
                      (name, [g.hex() for g in got], [w.hex() for w in want]))
        conn.close()
        return failures
    finally:
        process.terminate()
        process.wait(timeout=10)


def check_upstream(passt):
    """Replays every case against upstream passt, one instance per configuration."""
    failures = 0
    for config in CONFIGS:
        print("configuration %s:" % config)
        failures += replay(passt, config, [c for c in cases() if c[1] == config])
    print("%d unexpected difference(s)" % failures)
    return failures == 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check-upstream":
        sys.exit(0 if check_upstream(os.path.abspath(sys.argv[2])) else 1)
    generate()
