#!/usr/bin/env python3
"""Golden L2-L4 frames for PasstWire's tests (Ethernet, ARP, IPv4, IPv6, TCP, UDP, ICMP, pcap).

Writes one hex file per frame into Tests/PasstWireTests/Fixtures/l2l4/ (16 bytes per line). The
frames are built by scapy, independently of our Swift builders, so the tests can check both the
views (every field against the values below) and the builders (byte-for-byte round trip).
The values below are restated in Tests/PasstWireTests/L2L4Golden.swift: change both together.

Usage: python3 scripts/golden/gen_l2l4.py   (needs scapy: pip install scapy)
"""
import io
import os
import sys

from scapy.all import (ARP, ICMP, IP, TCP, UDP, Ether, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6,
                       IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
                       IPOption_EOL, IPOption_NOP, IPOption_Router_Alert, Padding, PadN, RouterAlert,
                       Raw, raw)
from scapy.utils import RawPcapWriter

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                   "Tests", "PasstWireTests", "Fixtures", "l2l4")

GUEST_MAC = "52:54:00:12:34:56"
OUR_MAC = "9a:55:9a:55:9a:55"
GUEST4 = "192.0.2.15"
GATEWAY4 = "192.0.2.1"
REMOTE4 = "198.51.100.7"
GUEST6 = "2001:db8::15"
REMOTE6 = "2001:db8:1::7"
ROUTER6 = "2001:db8:ff::1"


def write(name, frame):
    """Writes `frame` (bytes or scapy packet) as hex, 16 bytes per line, to l2l4/<name>.hex."""
    data = raw(frame) if not isinstance(frame, bytes) else frame
    lines = [data[i:i + 16].hex() for i in range(0, len(data), 16)]
    with open(os.path.join(OUT, name + ".hex"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{name}: {len(data)} bytes")
    return data


def main():
    os.makedirs(OUT, exist_ok=True)

    # ARP request from the guest, padded to the 60-byte Ethernet minimum as guests send it.
    arp_request = write("arp_request",
        Ether(dst="ff:ff:ff:ff:ff:ff", src=GUEST_MAC) /
        ARP(op=1, hwsrc=GUEST_MAC, psrc=GUEST4, hwdst="00:00:00:00:00:00", pdst=GATEWAY4) /
        Padding(load=b"\x00" * 18))

    # ARP reply as passt sends it (no padding).
    write("arp_reply",
        Ether(dst=GUEST_MAC, src=OUR_MAC) /
        ARP(op=2, hwsrc=OUR_MAC, psrc=GATEWAY4, hwdst=GUEST_MAC, pdst=GUEST4))

    # IPv4 + UDP with a payload of odd length (checksum pads the last byte).
    write("ipv4_udp",
        Ether(dst=OUR_MAC, src=GUEST_MAC) /
        IP(src=GUEST4, dst=REMOTE4, ttl=64, id=0x1234, flags="DF", tos=0) /
        UDP(sport=40000, dport=53) / Raw(load=b"golden udp payload!"))

    # IPv4 with options (router alert + NOPs + EOL: IHL 7) + TCP with every option kind.
    write("ipv4_options_tcp",
        Ether(dst=OUR_MAC, src=GUEST_MAC) /
        IP(src=GUEST4, dst=REMOTE4, ttl=64, id=0xbeef, flags=0, tos=0xb8,
           options=[IPOption_Router_Alert(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP(),
                    IPOption_EOL()]) /
        TCP(sport=43210, dport=8080, seq=0x01020304, ack=0xa0b0c0d0, flags="PA", window=502,
            urgptr=0, options=[("MSS", 1460), ("NOP", None), ("WScale", 7), ("SAckOK", b""),
                               ("Timestamp", (123456789, 987654321)), ("SAck", (1000, 2000)),
                               (253, b"\xab\xcd\xef\x01"), ("EOL", None)]) /
        Raw(load=b"GET / HTTP/1.0\r\n\r\n"))

    # IPv4 non-first fragment (offset 185 * 8 = 1480 bytes, MF set) of a UDP datagram, padded.
    write("ipv4_fragment",
        Ether(dst=OUR_MAC, src=GUEST_MAC) /
        IP(src=GUEST4, dst=REMOTE4, ttl=64, id=0x4242, flags="MF", frag=185, proto=17) /
        Raw(load=b"0123456789abcdefghij") / Padding(load=b"\x00" * 6))

    # IPv4 TCP SYN-ACK as passt sends it (MSS, NOP, window scale; TTL 255, ID 0, no DF).
    write("ipv4_tcp_synack",
        Ether(dst=GUEST_MAC, src=OUR_MAC) /
        IP(src=REMOTE4, dst=GUEST4, ttl=255, id=0, flags=0) /
        TCP(sport=80, dport=43210, seq=0x11223344, ack=0x01020305, flags="SA", window=65535,
            options=[("MSS", 65480), ("NOP", None), ("WScale", 8)]))

    # IPv6 + TCP SYN from the guest (MSS, NOP, window scale), with a flow label.
    write("ipv6_tcp",
        Ether(dst=OUR_MAC, src=GUEST_MAC) /
        IPv6(src=GUEST6, dst=REMOTE6, fl=0x12345, tc=0, hlim=64) /
        TCP(sport=50000, dport=443, seq=0xfedcba98, ack=0, flags="S", window=64800,
            options=[("MSS", 1440), ("NOP", None), ("WScale", 7)]))

    # IPv6 + hop-by-hop + routing + destination options + (atomic) fragment -> UDP.
    write("ipv6_ext_udp",
        Ether(dst=OUR_MAC, src=GUEST_MAC) /
        IPv6(src=GUEST6, dst=REMOTE6, hlim=64) /
        IPv6ExtHdrHopByHop(options=[RouterAlert(value=0), PadN(optdata=b"")]) /
        IPv6ExtHdrRouting(type=0, segleft=0, addresses=[ROUTER6]) /
        IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00" * 12)]) /
        IPv6ExtHdrFragment(id=0xdeadbeef, offset=0, m=0) /
        UDP(sport=5353, dport=5353) / Raw(load=b"extension chain"))

    # ICMP echo request (guest -> remote) and reply (remote -> guest).
    write("icmpv4_echo_request",
        Ether(dst=OUR_MAC, src=GUEST_MAC) /
        IP(src=GUEST4, dst=REMOTE4, ttl=64, id=0x0101, flags="DF") /
        ICMP(type=8, code=0, id=0x1234, seq=1) / Raw(load=b"ping payload 0123456789"))
    write("icmpv4_echo_reply",
        Ether(dst=GUEST_MAC, src=OUR_MAC) /
        IP(src=REMOTE4, dst=GUEST4, ttl=255, id=0, flags=0) /
        ICMP(type=0, code=0, id=0x1234, seq=1) / Raw(load=b"ping payload 0123456789"))

    # ICMPv6 echo request and reply.
    write("icmpv6_echo_request",
        Ether(dst=OUR_MAC, src=GUEST_MAC) /
        IPv6(src=GUEST6, dst=REMOTE6, hlim=64) /
        ICMPv6EchoRequest(id=0xabcd, seq=7, data=b"ping6 payload"))
    write("icmpv6_echo_reply",
        Ether(dst=GUEST_MAC, src=OUR_MAC) /
        IPv6(src=REMOTE6, dst=GUEST6, hlim=255) /
        ICMPv6EchoReply(id=0xabcd, seq=7, data=b"ping6 payload"))

    # pcap file header and one record (the ARP request), host byte order, as passt writes them.
    buffer = io.BytesIO()
    writer = RawPcapWriter(buffer, linktype=1, snaplen=65535, endianness=sys.byteorder == "little" and "<" or ">")
    writer.write_header(None)
    writer._write_packet(arp_request, linktype=1, sec=1700000000, usec=123456,
                         caplen=len(arp_request), wirelen=len(arp_request))
    writer.flush()
    write("pcap_file", buffer.getvalue())


if __name__ == "__main__":
    main()
