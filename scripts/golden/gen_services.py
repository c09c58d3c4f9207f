#!/usr/bin/env python3
"""Golden frames for the service message formats (NDP, DHCP, DHCPv6) of PasstWire.

Writes full Ethernet frames, as hex (16 bytes per line), to
Tests/PasstWireTests/Fixtures/services/<name>.hex. The Swift tests slice the message out at fixed
offsets (no IP options or extension headers are used):

    NDP:     ICMPv6 message at 14 + 40 = 54         (IPv6 source at 22, destination at 38)
    DHCP:    BOOTP message (UDP payload) at 14 + 20 + 8 = 42
    DHCPv6:  DHCPv6 message (UDP payload) at 14 + 40 + 8 = 62

Replies are built the way upstream passt builds them (see spec/passt-behavior.md section 4 and
upstream dhcp.c, ndp.c, dhcpv6.c): option order, lifetimes, padding. Every value used here is
repeated as a constant in the Swift tests, which check each parsed field against it and rebuild
each reply with the PasstWire builders byte for byte.

Scapy (PyPI "scapy", 2.5 or later) encodes everything it knows; DHCP option 119 (which scapy does
not know) is written by hand below from RFC 1035 section 4.1.4, so it is an independent reference
for the Swift compressing encoder.

Usage: python3 scripts/golden/gen_services.py   (from anywhere; paths are relative to this file)
"""

import os

from scapy.all import Ether, IP, IPv6, UDP, Raw
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dhcp6 import (DHCP6_Solicit, DHCP6_Advertise, DHCP6_Request, DHCP6_Confirm,
                                DHCP6_Reply, DHCP6OptClientId, DHCP6OptServerId, DHCP6OptIA_NA,
                                DHCP6OptIAAddress, DHCP6OptOptReq, DHCP6OptElapsedTime,
                                DHCP6OptDNSServers, DHCP6OptDNSDomains, DHCP6OptStatusCode, DUID_LLT)
from scapy.layers.inet6 import (ICMPv6ND_RS, ICMPv6ND_RA, ICMPv6ND_NS, ICMPv6ND_NA, ICMPv6NDOptSrcLLAddr,
                                ICMPv6NDOptDstLLAddr, ICMPv6NDOptPrefixInfo, ICMPv6NDOptMTU,
                                ICMPv6NDOptRDNSS, ICMPv6NDOptDNSSL)
from scapy.utils import mac2str

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                   "Tests", "PasstWireTests", "Fixtures", "services")

# --- Addresses and parameters (mirrored in the Swift tests) -----------------------------------
OUR_MAC = "9a:55:9a:55:9a:55"            # passt's default MAC
GUEST_MAC = "52:54:00:12:34:56"
OUR_LL = "fe80::9855:9aff:fe55:9a55"     # EUI-64 link-local of OUR_MAC
GUEST_LL = "fe80::5054:ff:fe12:3456"
GUEST_ADDR6 = "2001:db8:1::5"            # assigned address, also the RA prefix field (not masked)
GW6 = "2001:db8:1::1"
DNS6 = ["2001:db8::53", "2001:db8::54"]
SEARCH = ["example.com", "sub.example.com"]
MTU = 65520
INF = 0xFFFFFFFF

GUEST_ADDR4 = "192.0.2.2"
GW4 = "192.0.2.1"                        # gateway, also our tap address / server identifier
DNS4 = ["192.0.2.53", "198.51.100.53"]
PRL = [1, 3, 6, 12, 15, 26, 28, 119, 121]
DHCP_XID = 0x3903F326
DHCP_REQ_XID = 0x5E2A1C07
CLIENT_ID4 = b"\x01" + mac2str(GUEST_MAC)   # option 61: hardware type 1 + MAC

# Option 119 for SEARCH, RFC 1035 compression written out by hand:
#   offset 0:  07 "example" 03 "com" 00        example.com
#   offset 13: 03 "sub" C0 00                  sub.example.com -> "sub" + pointer to offset 0
SEARCH_119 = b"\x07example\x03com\x00" + b"\x03sub\xc0\x00"

DHCP6_SOLICIT_XID = 0x0A2B3C              # < 2^20, so the IPv6 flow label can carry it whole
DHCP6_REQUEST_XID = 0x04D5E6
DHCP6_CONFIRM_XID = 0x077777
IAID = 0x0C0FFEE0
CLIENT_DUID_TIME = 700000000
SERVER_DUID_TIME = 0x2F0A1B2C            # seconds since 2000-01-01 at passt start
ALL_DHCP6 = "ff02::1:2"
NOT_ON_LINK_ADDR = "2001:db8:ffff::9"


def write(name, frame):
    data = bytes(frame)
    lines = [data[i:i + 16].hex() for i in range(0, len(data), 16)]
    with open(os.path.join(OUT, name + ".hex"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{name}: {len(data)} bytes")


def multicast_mac(addr6):
    import ipaddress
    b = ipaddress.IPv6Address(addr6).packed
    return "33:33:" + ":".join(f"{x:02x}" for x in b[12:])


# --- NDP ---------------------------------------------------------------------------------------

def ndp():
    # RS from the guest to all-routers, with its source link-layer address.
    write("ndp_rs", Ether(src=GUEST_MAC, dst=multicast_mac("ff02::2")) /
          IPv6(src=GUEST_LL, dst="ff02::2", hlim=255) /
          ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=GUEST_MAC))

    # RA as passt sends it in reply (ndp.c): hop limit 255, M set, O clear, router lifetime
    # 65535, reachable/retrans 0; prefix info (/64, L+A, infinite, full address), source LL,
    # MTU, RDNSS, DNSSL (uncompressed, zero-padded to 8 bytes).
    write("ndp_ra", Ether(src=OUR_MAC, dst=GUEST_MAC) /
          IPv6(src=OUR_LL, dst=GUEST_LL, hlim=255) /
          ICMPv6ND_RA(chlim=255, M=1, O=0, H=0, prf=0, routerlifetime=65535,
                      reachabletime=0, retranstimer=0) /
          ICMPv6NDOptPrefixInfo(prefixlen=64, L=1, A=1, validlifetime=INF,
                                preferredlifetime=INF, prefix=GUEST_ADDR6) /
          ICMPv6NDOptSrcLLAddr(lladdr=OUR_MAC) /
          ICMPv6NDOptMTU(mtu=MTU) /
          ICMPv6NDOptRDNSS(lifetime=INF, dns=DNS6) /
          ICMPv6NDOptDNSSL(lifetime=INF, searchlist=SEARCH))

    # NS from the guest for the gateway, to its solicited-node group, with source LL.
    snm = "ff02::1:ff00:1"
    write("ndp_ns", Ether(src=GUEST_MAC, dst=multicast_mac(snm)) /
          IPv6(src=GUEST_LL, dst=snm, hlim=255) /
          ICMPv6ND_NS(tgt=GW6) / ICMPv6NDOptSrcLLAddr(lladdr=GUEST_MAC))

    # DAD probe: unspecified source, no source LL option (passt ignores these).
    snm_guest = "ff02::1:ff00:5"
    write("ndp_ns_dad", Ether(src=GUEST_MAC, dst=multicast_mac(snm_guest)) /
          IPv6(src="::", dst=snm_guest, hlim=255) / ICMPv6ND_NS(tgt=GUEST_ADDR6))

    # NA as passt answers the NS: R+S+O, target as asked, target LL = our MAC.
    write("ndp_na", Ether(src=OUR_MAC, dst=GUEST_MAC) /
          IPv6(src=OUR_LL, dst=GUEST_LL, hlim=255) /
          ICMPv6ND_NA(R=1, S=1, O=1, tgt=GW6) / ICMPv6NDOptDstLLAddr(lladdr=OUR_MAC))


# --- DHCP --------------------------------------------------------------------------------------

def chaddr():
    return mac2str(GUEST_MAC) + b"\x00" * 10


def client_frame(bootp_and_options, pad_to=300):
    """A client message from 0.0.0.0:68 to broadcast:67, padded with zeros to `pad_to` bytes."""
    msg = bytes(bootp_and_options)
    msg += b"\x00" * max(0, pad_to - len(msg))
    return (Ether(src=GUEST_MAC, dst="ff:ff:ff:ff:ff:ff") /
            IP(src="0.0.0.0", dst="255.255.255.255", ttl=64, id=0) /
            UDP(sport=68, dport=67) / Raw(msg))


def server_frame(msg, dst):
    """A reply as passt sends it: from our tap address:67, TTL 255, ID 0, no DF."""
    return (Ether(src=OUR_MAC, dst=GUEST_MAC) /
            IP(src=GW4, dst=dst, ttl=255, id=0, flags=0) /
            UDP(sport=67, dport=68) / Raw(msg))


def reply(xid, flags, options, yiaddr=GUEST_ADDR4):
    """BOOTREPLY with `options` (scapy names or (code, bytes)), END, options area >= 60 bytes."""
    msg = BOOTP(op=2, htype=1, hlen=6, hops=0, xid=xid, secs=0, flags=flags, ciaddr="0.0.0.0",
                yiaddr=yiaddr, siaddr="0.0.0.0", giaddr="0.0.0.0", chaddr=chaddr()) / \
        DHCP(options=options + ["end"])
    data = bytes(msg)
    options_length = len(data) - 240
    return data + b"\x00" * max(0, 60 - options_length)


def dhcp():
    # DISCOVER with message type, client id, parameter request list and rapid commit; broadcast.
    write("dhcp_discover", client_frame(
        BOOTP(op=1, htype=1, hlen=6, hops=0, xid=DHCP_XID, secs=3, flags=0x8000, chaddr=chaddr()) /
        DHCP(options=[("message-type", "discover"), ("client_id", CLIENT_ID4),
                      ("param_req_list", PRL), ("rapid_commit", b""), "end"])))

    # REQUEST with requested address and server id; unicast reply wanted (flags 0).
    write("dhcp_request", client_frame(
        BOOTP(op=1, htype=1, hlen=6, hops=0, xid=DHCP_REQ_XID, secs=0, flags=0, chaddr=chaddr()) /
        DHCP(options=[("message-type", "request"), ("client_id", CLIENT_ID4),
                      ("requested_addr", GUEST_ADDR4), ("server_id", GW4),
                      ("param_req_list", PRL), "end"])))

    common = [("subnet_mask", "255.255.255.0"), ("router", GW4), ("name_server", *DNS4),
              ("interface-mtu", MTU), (119, SEARCH_119)]
    tail = [("lease_time", INF), ("server_id", GW4)]

    # OFFER for a DISCOVER without rapid commit, order 53,1,3,6,26,119,51,54; broadcast.
    write("dhcp_offer", server_frame(
        reply(DHCP_XID, 0x8000, [("message-type", "offer")] + common + tail), "255.255.255.255"))

    # ACK for the DISCOVER above (rapid commit): 53=ACK, empty option 80 last (ascending order).
    write("dhcp_ack_rapid", server_frame(
        reply(DHCP_XID, 0x8000, [("message-type", "ack")] + common + tail + [("rapid_commit", b"")]),
        "255.255.255.255"))

    # ACK for the REQUEST with a /32 address: the gateway is off-subnet, so option 121 carries
    # gw/32 -> 0.0.0.0 and 0/0 -> gw; unicast to the assigned address.
    routes = [("subnet_mask", "255.255.255.255"), ("router", GW4), ("name_server", *DNS4),
              ("interface-mtu", MTU), (119, SEARCH_119),
              ("classless_static_routes", [f"{GW4}/32:0.0.0.0", f"0.0.0.0/0:{GW4}"])]
    write("dhcp_ack_routes", server_frame(
        reply(DHCP_REQ_XID, 0, [("message-type", "ack")] + routes + tail), GUEST_ADDR4))


# --- DHCPv6 ------------------------------------------------------------------------------------

def client6(msg):
    return (Ether(src=GUEST_MAC, dst=multicast_mac(ALL_DHCP6)) /
            IPv6(src=GUEST_LL, dst=ALL_DHCP6, hlim=1) / UDP(sport=546, dport=547) / msg)


def server6(msg, xid):
    """A reply as passt sends it: our LL:547 -> guest LL:546, flow label = transaction id."""
    return (Ether(src=OUR_MAC, dst=GUEST_MAC) /
            IPv6(src=OUR_LL, dst=GUEST_LL, hlim=255, fl=xid & 0xFFFFF) / UDP(sport=547, dport=546) / msg)


def dhcpv6():
    client_id = DHCP6OptClientId(duid=DUID_LLT(hwtype=1, timeval=CLIENT_DUID_TIME, lladdr=GUEST_MAC))
    server_id = DHCP6OptServerId(duid=DUID_LLT(hwtype=1, timeval=SERVER_DUID_TIME, lladdr=OUR_MAC))
    oro = DHCP6OptOptReq(reqopts=[23, 24])

    write("dhcpv6_solicit", client6(
        DHCP6_Solicit(trid=DHCP6_SOLICIT_XID) / client_id /
        DHCP6OptIA_NA(iaid=IAID, T1=0, T2=0) / oro / DHCP6OptElapsedTime(elapsedtime=0)))

    def normal(cls, xid):
        # passt's order: server id, IA_NA(IAADDR), client id, DNS servers, domain list.
        return server6(
            cls(trid=xid) / server_id /
            DHCP6OptIA_NA(iaid=IAID, T1=INF, T2=INF, ianaopts=[
                DHCP6OptIAAddress(addr=GUEST_ADDR6, preflft=INF, validlft=INF)]) /
            client_id / DHCP6OptDNSServers(dnsservers=DNS6) / DHCP6OptDNSDomains(dnsdomains=SEARCH), xid)

    write("dhcpv6_advertise", normal(DHCP6_Advertise, DHCP6_SOLICIT_XID))

    write("dhcpv6_request", client6(
        DHCP6_Request(trid=DHCP6_REQUEST_XID) / client_id / server_id /
        DHCP6OptIA_NA(iaid=IAID, T1=0, T2=0, ianaopts=[
            DHCP6OptIAAddress(addr=GUEST_ADDR6, preflft=0, validlft=0)]) /
        oro / DHCP6OptElapsedTime(elapsedtime=100)))

    write("dhcpv6_reply", normal(DHCP6_Reply, DHCP6_REQUEST_XID))

    write("dhcpv6_confirm", client6(
        DHCP6_Confirm(trid=DHCP6_CONFIRM_XID) / client_id /
        DHCP6OptIA_NA(iaid=IAID, T1=0, T2=0, ianaopts=[
            DHCP6OptIAAddress(addr=NOT_ON_LINK_ADDR, preflft=0, validlft=0)]) /
        DHCP6OptElapsedTime(elapsedtime=0)))

    # NotOnLink: server id, the client's IA_NA header (IAID, T1, T2 as sent) holding only the
    # status code, then the client id.
    write("dhcpv6_reply_notonlink", server6(
        DHCP6_Reply(trid=DHCP6_CONFIRM_XID) / server_id /
        DHCP6OptIA_NA(iaid=IAID, T1=0, T2=0, ianaopts=[
            DHCP6OptStatusCode(statuscode=4, statusmsg="Prefix not appropriate for link.")]) /
        client_id, DHCP6_CONFIRM_XID))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    ndp()
    dhcp()
    dhcpv6()
