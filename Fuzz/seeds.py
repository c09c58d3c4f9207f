#!/usr/bin/env python3
"""Seeds for the fuzz targets, made from the golden frames of the unit tests.

Usage: Fuzz/seeds.py OUTDIR   (writes OUTDIR/<target>/<fixture>-<entry>, replacing what was there)

Each fixture (Tests/*/Fixtures/**/*.hex: hex digits, whitespace ignored) becomes inputs in the
format of each target (see the header of Fuzz/targets/<Target>.swift): `wire` gets the whole frame
and each layer at its own entry, `control` the DHCP, DHCPv6 and NDP messages and search lists,
`services` the frame under configurations A and B with full capacity, `ingress` the frame
length-prefixed (and all frames in one input). `flow` gets conversations built here (TCP
handshakes, data both ways, FIN and RST, a refused connect, UDP to every server port, ICMP and
ICMPv6 echo, timeouts, connections and datagrams to forwarded ports), as records of
Fuzz/targets/Flow.swift. Python 3 standard library only.
"""
import pathlib
import shutil
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = [ROOT / "Tests/PasstWireTests/Fixtures", ROOT / "Tests/PasstServicesTests/Fixtures"]


def layers(frame):
    """Yields (kind, bytes) for every layer of an Ethernet frame that a target has an entry for."""
    if len(frame) < 14:
        return
    ethertype = struct.unpack(">H", frame[12:14])[0]
    l3 = frame[14:]
    if ethertype == 0x0806:
        yield "arp", l3
        return
    if ethertype == 0x0800 and len(l3) >= 20:
        yield "ipv4", l3
        proto, l4 = l3[9], l3[(l3[0] & 0xF) * 4:]
    elif ethertype == 0x86DD and len(l3) >= 40:
        yield "ipv6", l3
        proto, offset = l3[6], 40
        while proto in (0, 43, 60, 44) and offset + 8 <= len(l3):
            proto, offset = l3[offset], offset + (8 if proto == 44 else (l3[offset + 1] + 1) * 8)
        l4 = l3[offset:]
    else:
        return
    if proto == 6:
        yield "tcp", l4
    elif proto == 17 and len(l4) >= 8:
        yield "udp", l4
        ports = struct.unpack(">HH", l4[0:4])
        if 67 in ports or 68 in ports:
            yield "dhcp", l4[8:]
        if 546 in ports or 547 in ports:
            yield "dhcpv6", l4[8:]
    elif proto in (1, 58):
        yield "icmp", l4
        if proto == 58 and l4 and 133 <= l4[0] <= 136:
            yield "ndp", l4


def dhcp_search_list(message):
    """The data of DHCP option 119 in `message`, or None."""
    i = 240
    while i + 2 <= len(message) and message[i] != 255:
        if message[i] == 0:
            i += 1
            continue
        if message[i] == 119:
            return message[i + 2:i + 2 + message[i + 1]]
        i += 2 + message[i + 1]
    return None


GUEST_MAC = bytes.fromhex("020000000001")
OUR_MAC = bytes.fromhex("9a559a559a55")
GUEST4, GATEWAY4 = bytes([192, 0, 2, 2]), bytes([192, 0, 2, 1])
GUEST6 = bytes.fromhex("20010db8000000000000000000000002")
GATEWAY6 = bytes.fromhex("20010db8000000000000000000000001")
SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08


def checksum(data):
    """The Internet checksum of `data`."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(">%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip_frame(v6, proto, l4):
    """An Ethernet frame from the guest to the gateway carrying `l4` (checksums of L4 left as given)."""
    if v6:
        header = struct.pack(">IHBB", 0x60000000, len(l4), proto, 64) + GUEST6 + GATEWAY6
        return OUR_MAC + GUEST_MAC + b"\x86\xdd" + header + l4
    header = struct.pack(">BBHHHBBH", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0) + GUEST4 + GATEWAY4
    header = header[:10] + struct.pack(">H", checksum(header)) + header[12:]
    return OUR_MAC + GUEST_MAC + b"\x08\x00" + header + l4


def tcp(v6, sport, seq, ack, flags, payload=b"", window=65535, syn_options=False):
    """A TCP segment frame (to the server port the record's choice picks)."""
    options = b"\x02\x04\x05\xb4\x01\x03\x03\x07" if syn_options else b""
    header = struct.pack(">HHIIBBHHH", sport, 80, seq, ack, (20 + len(options)) // 4 << 4, flags, window, 0, 0)
    return ip_frame(v6, 6, header + options + payload)


def udp(v6, sport, payload):
    """A UDP datagram frame."""
    return ip_frame(v6, 17, struct.pack(">HHHH", sport, 7, 8 + len(payload), 0) + payload)


def echo(v6, identifier, sequence, data=b"ping"):
    """An ICMP or ICMPv6 echo request frame (the kernel's ping socket fills in the checksum)."""
    message = struct.pack(">BBHHH", 128 if v6 else 8, 0, 0, identifier, sequence) + data
    if not v6:
        message = message[:2] + struct.pack(">H", checksum(message)) + message[4:]
    return ip_frame(v6, 58 if v6 else 1, message)


def frame(data, choice=0, end=True, relative=False):
    """A frame record: destination choice, end of the read pass, relative acknowledgment."""
    return bytes([choice << 2 | end << 4 | relative << 5]) + struct.pack(">H", len(data)) + data


def clock(index):
    """A clock record (index into Flow.swift's clockSteps)."""
    return bytes([1 | index << 2])


def server(action, connection=0):
    """A server action record."""
    return bytes([2 | connection << 2 | action << 5])


def tcp_conversation(v6, sport=40000, choice=0):
    """Handshake, data both ways, the host's FIN then the guest's, acknowledged."""
    isn = 1000
    return (frame(tcp(v6, sport, isn, 0, SYN, syn_options=True), choice)
            + frame(tcp(v6, sport, isn + 1, 0, ACK), choice, relative=True)
            + frame(tcp(v6, sport, isn + 1, 0, ACK | PSH, b"hello"), choice, relative=True)
            + server(0) + frame(tcp(v6, sport, isn + 6, 0, ACK), choice, relative=True)
            + server(5) + server(2) + frame(tcp(v6, sport, isn + 6, 0, ACK), choice, relative=True)
            + frame(tcp(v6, sport, isn + 6, 0, FIN | ACK), choice, relative=True) + clock(6))


def flow_seeds():
    """Inputs of the flow target: name -> bytes."""
    seeds = {}
    for v6 in (False, True):
        family = "ipv6" if v6 else "ipv4"
        seeds[f"tcp-{family}-conversation"] = b"\x03" + tcp_conversation(v6)
        seeds[f"tcp-{family}-dns"] = b"\x03" + tcp_conversation(v6, 40001, choice=3)
        seeds[f"tcp-{family}-refused"] = b"\x03" + frame(tcp(v6, 40002, 5, 0, SYN, syn_options=True), 1) + clock(6)
        bulk = (frame(tcp(v6, 40003, 7, 0, SYN, window=8192, syn_options=True))
                + frame(tcp(v6, 40003, 8, 0, ACK, window=8192), relative=True) + server(1)
                + b"".join(frame(tcp(v6, 40003, 8, 0, ACK, window=8192), relative=True) for _ in range(4))
                + frame(tcp(v6, 40003, 8, 0xFFFFFFFF - 2000, ACK, window=8192), relative=True)
                + clock(7) + clock(8) + server(3) + clock(6))
        seeds[f"tcp-{family}-bulk-rst"] = b"\x03" + bulk
        pass_data = (frame(tcp(v6, 40004, 1, 0, SYN, syn_options=True))
                     + frame(tcp(v6, 40004, 2, 0, ACK), relative=True)
                     + b"".join(frame(tcp(v6, 40004, 2 + 100 * i, 0, ACK, bytes(100)), end=False, relative=True)
                                for i in (0, 1, 3, 2))
                     + bytes([3]) + server(5) + frame(tcp(v6, 40004, 402, 0, RST)) + clock(3))
        seeds[f"tcp-{family}-pass-gap-rst"] = b"\x03" + pass_data
        seeds[f"tcp-{family}-handshake-timeout"] = (
            b"\x03" + frame(tcp(v6, 40005, 9, 0, SYN, syn_options=True)) + frame(tcp(v6, 40005, 9, 0, SYN))
            + clock(7) + clock(10) + clock(12))
        seeds[f"udp-{family}"] = (
            b"\x03" + b"".join(frame(udp(v6, 50000 + c, b"datagram %d" % c), c) for c in range(4))
            + frame(udp(v6, 50000, b"again"), 0) + server(7 if v6 else 6) + clock(14) + clock(15))
        seeds[f"icmp-{family}"] = (
            b"\x03" + frame(echo(v6, 0x1234, 1)) + frame(echo(v6, 0x1234, 2)) + frame(echo(v6, 0x4321, 1))
            + clock(12) + clock(13))
        inbound = (bytes([3 | (2 if v6 else 1) << 2])
                   + frame(tcp(v6, 22, 5000, 0, SYN | ACK, syn_options=True), 2, relative=True)
                   + server(0) + frame(tcp(v6, 22, 5001, 0, ACK), 2, relative=True)
                   + frame(tcp(v6, 22, 5001, 0, ACK | PSH, b"hi"), 2, relative=True) + server(5)
                   + server(2) + frame(tcp(v6, 22, 5003, 0, FIN | ACK), 2, relative=True)
                   + frame(tcp(v6, 22, 5004, 0, ACK), 2, relative=True) + clock(6))
        seeds[f"tcp-{family}-forwarded"] = b"\x03" + inbound
        seeds[f"udp-{family}-forwarded"] = (
            b"\x03" + bytes([3 | (4 if v6 else 3) << 2 | 1 << 5])
            + frame(udp(v6, 5353, b"reply"), 0, relative=True) + clock(14) + clock(15))
    seeds["mixed-mtu65520"] = (b"\x07" + tcp_conversation(False, 40010)
                               + frame(udp(True, 50010, b"x")) + frame(echo(False, 7, 7)) + tcp_conversation(True, 40011))
    seeds["small-table"] = (b"\x50" + frame(tcp(False, 40020, 1, 0, SYN, syn_options=True))
                            + frame(tcp(False, 40021, 1, 0, SYN, syn_options=True))
                            + frame(udp(False, 50020, b"a")) + frame(udp(True, 50021, b"b"))
                            + frame(echo(True, 1, 1)) + frame(echo(True, 2, 1)) + clock(10))
    return seeds


def main():
    out = pathlib.Path(sys.argv[1])
    seeds = {t: {} for t in ("wire", "control", "services", "ingress", "flow")}
    configs = {}
    cases = ROOT / "Tests/PasstServicesTests/Fixtures/cases.txt"
    for line in cases.read_text().splitlines():
        if line.strip():
            name, config, _ = line.split()
            configs[name] = 1 if config == "B" else 0
    frames = []
    for directory in FIXTURES:
        for path in sorted(directory.rglob("*.hex")):
            data = bytes.fromhex("".join(path.read_text().split()))
            name = path.name[:-4]
            if name == "pcap_file":
                seeds["wire"][name + "-pcap"] = b"\x07" + data
                continue
            frames.append(data)
            seeds["wire"][name + "-frame"] = b"\x00" + data
            seeds["wire"][name + "-checksum"] = b"\x07" + data
            entry = {"arp": 1, "ipv4": 2, "ipv6": 3, "tcp": 4, "udp": 5, "icmp": 6}
            for kind, payload in layers(data):
                if kind in entry:
                    seeds["wire"][f"{name}-{kind}"] = bytes([entry[kind]]) + payload
                elif kind == "dhcp":
                    seeds["control"][name + "-dhcp"] = b"\x00" + payload
                    search = dhcp_search_list(payload)
                    if search:
                        seeds["control"][name + "-names"] = b"\x06" + search
                elif kind == "dhcpv6":
                    seeds["control"][name + "-dhcpv6"] = b"\x01" + payload
                elif kind == "ndp":
                    seeds["control"][name + "-ndp"] = bytes([2 + payload[0] - 133]) + payload
            base = name.removesuffix(".request").removesuffix(".reply")
            seeds["services"][name + "-A"] = bytes([0, 255]) + data
            seeds["services"][name + "-B"] = bytes([1, 255]) + data
            if base in configs:
                seeds["services"][name + "-small"] = bytes([configs[base], 44]) + data
            seeds["ingress"][name] = b"\x03" + struct.pack(">H", len(data)) + data
    seeds["control"]["names-plain"] = b"\x07example.test\x00corp.example.test\x00lab.test"
    seeds["ingress"]["all-frames"] = b"\x01" + b"".join(struct.pack(">H", len(f)) + f for f in frames)
    seeds["flow"] = flow_seeds()
    for target, files in seeds.items():
        directory = out / target
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for name, data in files.items():
            (directory / name).write_bytes(data)


if __name__ == "__main__":
    main()
