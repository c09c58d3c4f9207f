#!/usr/bin/env python3
"""Seeds for the fuzz targets, made from the golden frames of the unit tests.

Usage: Fuzz/seeds.py OUTDIR   (writes OUTDIR/<target>/<fixture>-<entry>, replacing what was there)

Each fixture (Tests/*/Fixtures/**/*.hex: hex digits, whitespace ignored) becomes inputs in the
format of each target (see the header of Fuzz/targets/<Target>.swift): `wire` gets the whole frame
and each layer at its own entry, `control` the DHCP, DHCPv6 and NDP messages and search lists,
`services` the frame under configurations A and B with full capacity, `ingress` the frame
length-prefixed (and all frames in one input). Python 3 standard library only.
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


def main():
    out = pathlib.Path(sys.argv[1])
    seeds = {t: {} for t in ("wire", "control", "services", "ingress")}
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
    for target, files in seeds.items():
        directory = out / target
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for name, data in files.items():
            (directory / name).write_bytes(data)


if __name__ == "__main__":
    main()
