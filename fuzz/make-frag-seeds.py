#!/usr/bin/python3
"""Seeds for the decap and engine fuzz targets: every outer fragment shape and tunnel type
(issue #15), built with scapy. Deterministic. Usage: make-frag-seeds.py CORPUS_DIR

decap seeds are frames with a two-byte little-endian prefix each (the decap target's framing,
`vxspan::fuzzing::FRAME_TO_END`): the low 14 bits are the length, the top two an edit of the outer
tag stack (0: none; the seeds use none). The last frame's length is 0x3fff (it runs to the end of
the input, so a mutation that grows it needs no prefix change)."""
import os
import struct
import sys

from scapy.all import (ARP, Dot1AD, Dot1Q, Ether, GRE, IP, IPv6, IPv6ExtHdrFragment, UDP, Raw,
                       fragment, conf)
from scapy.contrib.mpls import MPLS
from scapy.layers.vxlan import VXLAN

conf.verb = 0
out = sys.argv[1]
MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def seed(target, name, frames):
    os.makedirs(f"{out}/{target}", exist_ok=True)
    blob = b""
    for i, f in enumerate(frames):
        b = bytes(f)
        assert len(b) < 0x3FFF
        n = 0x3FFF if i == len(frames) - 1 else len(b)
        blob += struct.pack("<H", n) + b
    with open(f"{out}/{target}/{name}", "wb") as fh:
        fh.write(blob)


def identifications():
    """Identification values spread over the 16-bit space (a Weyl sequence): real senders use
    every value, and the reassembler's output depends on the header bytes around it."""
    x = 0x4242
    while True:
        yield x
        x = (x + 0x9E37) & 0xFFFF


IDS = identifications()


def v4(payload, l2=None, proto_layer=None, ident=None):
    ident = next(IDS) if ident is None else ident
    l2 = l2 if l2 is not None else Ether(**MAC)
    inner = proto_layer if proto_layer is not None else UDP(sport=1000, dport=9999)
    return l2 / IP(src="198.18.0.1", dst="198.18.0.2", id=ident) / inner / Raw(payload)


def frags4(pkt, size):
    return [Ether(**MAC) / f[IP] if Ether not in f else f for f in fragment(pkt, fragsize=size)]


def frags6(payload, size, l2=None):
    l2 = l2 if l2 is not None else Ether(**MAC)
    ident = next(IDS)
    body = bytes(UDP(sport=1000, dport=9999) / Raw(payload))
    # UDP checksum over the whole body is not needed for reassembly: leave what scapy wrote.
    out = []
    for off in range(0, len(body), size):
        chunk = body[off:off + size]
        m = 1 if off + size < len(body) else 0
        out.append(l2 / IPv6(src="2001:db8::1", dst="2001:db8::2", nh=44) /
                   IPv6ExtHdrFragment(nh=17, offset=off // 8, m=m, id=ident) / Raw(chunk))
    return out


def tag(f, vid=0, tpid=0x8100):
    """The same frame with one more (outer) tag."""
    b = bytes(f)
    return Raw(b[:12] + struct.pack(">HH", tpid, vid) + b[12:])


pay = bytes(range(256)) * 4
g = frags4(v4(pay), 512)
seed("decap", "frag-v4-udp", g)
seed("decap", "frag-v4-udp-reversed", g[::-1])
seed("decap", "frag-v4-udp-twice", [f for f in g for _ in (0, 1)])
seed("decap", "frag-v4-tagged", [tag(f, 10) for f in g])
seed("decap", "frag-v4-priority-tagged", [tag(f, 0) for f in g])
seed("decap", "frag-v4-qinq", [tag(tag(f, 20), 30, 0x88a8) for f in g])
seed("decap", "frag-v4-tiny", frags4(v4(pay[:64]), 8))
seed("decap", "frag-v4-overlap", [g[0], frags4(v4(pay, ident=g[0][IP].id), 520)[1], g[1]])
# The smallest fragmented datagrams: 8 bytes of UDP header and 8 of payload, cut in two (the
# reassembled frame is shorter than an IPv4 header with options, an IPv6 header and a tag).
for i in range(4):
    seed("decap", f"frag-v4-minimal-{i}", frags4(v4(pay[:8]), 8))
seed("decap", "frag-v6-minimal", frags6(pay[:8], 8))
gre_in = Ether(**MAC) / IP(src="198.18.0.1", dst="198.18.0.2", id=7) / GRE(proto=0x6558) / \
    Ether(**MAC) / IP(src="198.18.9.1", dst="198.18.9.2") / UDP() / Raw(pay)
seed("decap", "frag-v4-gre-teb", frags4(gre_in, 600))
h = frags6(pay, 504)
seed("decap", "frag-v6-udp", h)
seed("decap", "frag-v6-reversed", h[::-1])
seed("decap", "frag-v6-tagged", [tag(f, 10) for f in h])
seed("decap", "frag-v6-twice", [f for f in h for _ in (0, 1)])

inner = Ether(src="00:1b:21:00:00:01", dst="02:00:00:00:00:09") / IP(src="198.18.5.1", dst="198.18.5.2") / UDP() / Raw(b"x" * 40)
outer = lambda: Ether(**MAC) / IP(src="198.18.0.1", dst="198.18.0.2")
seed("decap", "vxlan-4789", [outer() / UDP(sport=5000, dport=4789) / VXLAN(vni=7000) / inner])
seed("decap", "vxlan-nested", [outer() / UDP(dport=4789) / VXLAN(vni=1) / outer() / UDP(dport=4789) / VXLAN(vni=2) / inner])
seed("decap", "vxlan-gpe", [outer() / UDP(dport=4790) / Raw(bytes([0x0c, 0, 0, 3, 0, 0, 0x64, 0])) / inner])
geneve = bytes([0x02, 0, 0x65, 0x58, 0, 0, 0x64, 0]) + bytes([0x01, 0x02, 0x80, 0x01, 1, 2, 3, 4])
seed("decap", "geneve-option", [outer() / UDP(dport=6081) / Raw(geneve) / inner])
seed("decap", "geneve-ip", [outer() / UDP(dport=6081) / Raw(bytes([0, 0, 0x08, 0, 0, 0, 5, 0])) / inner[IP]])
seed("decap", "gre-key-seq", [outer() / GRE(proto=0x6558, key_present=1, key=5, seqnum_present=1, seqence_number=9) / inner])
seed("decap", "gre-ipv4", [outer() / GRE(proto=0x0800) / inner[IP]])
seed("decap", "erspan-i", [outer() / GRE(proto=0x88be) / inner])
e3 = struct.pack(">IIHH", 0x20000000 | (7 << 16) | 42, 1234, 0, 0x0001) + struct.pack(">II", 0x08000000, 5)
seed("decap", "erspan-iii-platform", [outer() / GRE(proto=0x22eb, seqnum_present=1, seqence_number=1) / Raw(e3) / inner])
seed("decap", "mpls-ip", [Ether(type=0x8847, **MAC) / MPLS(label=16, s=1) / inner[IP]])
seed("decap", "mpls-ethernet-pw", [Ether(type=0x8847, **MAC) / MPLS(label=16, s=1) / Raw(b"\0\0\0\0") / inner])
seed("decap", "mpls-udp", [outer() / UDP(dport=6635) / MPLS(label=21, s=1) / inner[IP]])
seed("decap", "arp-in-geneve", [outer() / UDP(dport=6081) / Raw(bytes([0, 0, 0x08, 0x06, 0, 0, 5, 0])) / ARP()])
print("fragment and tunnel seeds written under", out)
