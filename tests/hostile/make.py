#!/usr/bin/env python3
"""Generates the hostile-traffic corpus (GitHub issue #15, item 6).

Writes, next to this script (or into --out):
  hostile.pcap            the corpus: every case below, one after the other
  cases.txt               which frames (1-based, as tshark numbers them) belong to which case
  expected/required.pcap  frames a correct decapsulator MUST deliver (inner frames of valid
                          tunnels, whole reassembled datagrams), each at least once
  expected/allowed.pcap   frames it MAY deliver (inner frames of tunnels whose headers are odd
                          but decodable, e.g. VXLAN with the I flag clear)

Any frame vxspan writes to a plain output must be an input frame unchanged, or a member of
required.pcap or allowed.pcap (crates/vxspan/tests/hostile.rs). Inner frames carried as IP
without Ethernet are listed with vxspan's synthetic Ethernet header (docs/config.md,
"Tunnel termination on inputs"); reassembled datagrams are listed with the layer 2 header of
their offset-0 fragment, MF and offset cleared, lengths and IPv4 checksum fixed.

Everything is deterministic: no random numbers at all (payloads are derived from a counter),
fixed timestamps (BASE_NS + 1 ms per frame, nanosecond pcap written by hand), and every field
scapy might otherwise look up on the host (MACs, addresses, ports) is given explicitly.
"""

import argparse
import struct
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, Jumbo
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

HERE = Path(__file__).resolve().parent

BASE_NS = 1_700_000_000 * 1_000_000_000
STEP_NS = 1_000_000  # 1 ms per frame
PCAP_MAGIC_NSEC = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
SNAPLEN = 262_144

# Outer (tunnel) and inner MACs: locally administered, "vx" + "h" (hostile).
OUTER_DST, OUTER_SRC = "02:76:78:68:00:02", "02:76:78:68:00:01"
INNER_DST, INNER_SRC = "02:76:78:68:01:02", "02:76:78:68:01:01"
# vxspan's synthetic Ethernet header for IP / ARP payloads without Ethernet.
SYN = bytes.fromhex("027678737000" "027678737001")

ETH_IPV4, ETH_IPV6, ETH_ARP, ETH_TEB = 0x0800, 0x86DD, 0x0806, 0x6558
ETH_MPLS, ETH_8021Q, ETH_8021AD = 0x8847, 0x8100, 0x88A8
# A UDP port no tunnel uses and Wireshark has no heavy dissector for.
PLAIN_PORT = 9999


class Corpus:
    def __init__(self, skip=()):
        self.skip = skip  # substrings: cases whose name contains one are left out
        self.frames = []  # bytes
        self.cases = []  # (first, last, name), 1-based inclusive
        self.required = []  # (index of the case's last frame, bytes)
        self.allowed = []
        self.serial = 0  # makes every inner frame distinct
        self.frag_id = 0x100  # every fragmented datagram has its own IP id

    # -- bookkeeping ------------------------------------------------------------------------

    def case(self, name, frames, required=(), allowed=()):
        assert frames, name
        if any(s in name for s in self.skip):
            return
        first = len(self.frames) + 1
        self.frames.extend(bytes(f) for f in frames)
        self.cases.append((first, len(self.frames), name))
        # An expected frame has the timestamp of its case's last frame (see write_pcap).
        self.required.extend((len(self.frames) - 1, bytes(f)) for f in required)
        self.allowed.extend((len(self.frames) - 1, bytes(f)) for f in allowed)

    def next_id(self):
        self.frag_id += 1
        return self.frag_id

    # -- inner frames -----------------------------------------------------------------------

    def payload(self, n=18):
        """n bytes of text that names the frame: distinct across the corpus."""
        self.serial += 1
        s = f"hostile {self.serial:06d} ".encode()
        return (s * (n // len(s) + 1))[:n]

    def inner_ip(self, n=18):
        """An IPv4 UDP packet (to the discard port), no Ethernet."""
        return bytes(IP(src="198.18.200.1", dst="198.18.200.2", id=1, ttl=64)
                     / UDP(sport=40000, dport=9) / Raw(self.payload(n)))

    def inner_ip6(self, n=18):
        return bytes(IPv6(src="2001:db8:200::1", dst="2001:db8:200::2", hlim=64)
                     / UDP(sport=40000, dport=9) / Raw(self.payload(n)))

    def inner_eth(self, n=18, dst=INNER_DST):
        """An Ethernet / IPv4 / UDP frame of 14 + 28 + n bytes."""
        return eth(dst, INNER_SRC, ETH_IPV4) + self.inner_ip(n)


def eth(dst, src, etype, tags=()):
    """Ethernet header bytes; tags: [(tpid, tci), ...], outer first."""
    h = bytes.fromhex(dst.replace(":", "") + src.replace(":", ""))
    for tpid, tci in tags:
        h += struct.pack(">HH", tpid, tci)
    return h + struct.pack(">H", etype)


def outer_eth(etype, tags=()):
    return eth(OUTER_DST, OUTER_SRC, etype, tags)


def ip4(proto, payload, src="198.18.0.1", dst="198.18.0.2", **kw):
    """IPv4 header + payload (scapy fills in length and checksum unless given)."""
    return bytes(IP(src=src, dst=dst, proto=proto, ttl=64, id=kw.pop("id", 0), **kw) / Raw(payload))


def udp4(dport, payload, sport=50000, src="198.18.0.1", dst="198.18.0.2", id=0, ttl=64, **udpkw):
    return bytes(IP(src=src, dst=dst, id=id, ttl=ttl) / UDP(sport=sport, dport=dport, **udpkw) / Raw(payload))


def udp_frame(dport, payload, **kw):
    return outer_eth(ETH_IPV4) + udp4(dport, payload, **kw)


def gre_frame(gre_bytes, **kw):
    return outer_eth(ETH_IPV4) + ip4(47, gre_bytes, **kw)


# -- tunnel headers ------------------------------------------------------------------------

def vxlan(inner, vni, flags=0x08, rsvd=b"\0\0\0", rsvd2=0):
    return struct.pack(">B3s", flags, rsvd) + struct.pack(">I", (vni << 8) | rsvd2) + inner


def vxlan_frame(inner, vni=100, **kw):
    return udp_frame(4789, vxlan(inner, vni, **kw))


def gpe(inner, next_proto, vni=200):
    # flags: I (0x08) and P (0x04), version 0
    return struct.pack(">BHB", 0x0C, 0, next_proto) + struct.pack(">I", vni << 8) + inner


def geneve(inner, proto, vni=300, options=b"", opt_len=None):
    if opt_len is None:
        assert len(options) % 4 == 0
        opt_len = len(options) // 4
    return struct.pack(">BBH", opt_len & 0x3F, 0, proto) + struct.pack(">I", vni << 8) + options + inner


def gre(proto, payload, c=False, k=False, s=False, r=False, key=0, seq=0, version=0,
        recur=0, ssr=False, flags=0, csum=None, offset=0, routing=b""):
    """A GRE header (RFC 1701 layout: C R K S s Recur Flags Ver) and payload."""
    w = (c << 15) | (r << 14) | (k << 13) | (s << 12) | (ssr << 11) | (recur << 8) | (flags << 3) | version
    h = struct.pack(">HH", w, proto)
    if c or r:
        h += struct.pack(">HH", 0 if csum is None else csum, offset)
    if k:
        h += struct.pack(">I", key)
    if s:
        h += struct.pack(">I", seq)
    if r:
        h += routing
    out = bytearray(h + payload)
    if c and csum is None:
        out[4:6] = struct.pack(">H", inet_checksum(bytes(out)))
    return bytes(out)


def inet_checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f">{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def erspan2_hdr(session, vlan=0, cos=0, en=0, t=0, index=0, ver=1):
    return struct.pack(">HHI", (ver << 12) | vlan, (cos << 13) | (en << 11) | (t << 10) | session, index)


def erspan3_hdr(session, vlan=0, ft=0, o=False, ts=0, hwid=0, gra=1):
    w = (ft << 10) | (hwid << 4) | (gra << 1) | int(o)
    return struct.pack(">HHIHH", (2 << 12) | vlan, session, ts, 0, w)


def erspan2_frame(inner, session, seq=0, **kw):
    return gre_frame(gre(0x88BE, erspan2_hdr(session, **kw) + inner, s=True, seq=seq))


def mpls(labels, payload, bos=True):
    """A label stack (label values), bottom-of-stack on the last one if bos."""
    out = b""
    for i, lab in enumerate(labels):
        out += struct.pack(">I", (lab << 12) | ((1 if bos and i == len(labels) - 1 else 0) << 8) | 64)
    return out + payload


def tci(vid, pcp=0):
    return (pcp << 13) | vid


# -- fragments -----------------------------------------------------------------------------

def frag4(l2, datagram_ip, sizes, order=None):
    """Fragments of an IPv4 packet (header + payload bytes) with payload chunks of `sizes`
    (a list, summing to the payload length), each a frame with its own l2 header (l2 is a
    list, one per fragment, or one header for all). Returns the frames in `order`."""
    hdr, payload = datagram_ip[:20], datagram_ip[20:]
    assert sum(sizes) == len(payload)
    ident = struct.unpack(">H", hdr[4:6])[0]
    ttl, proto, src, dst = hdr[8], hdr[9], hdr[12:16], hdr[16:20]
    frames, off = [], 0
    for i, n in enumerate(sizes):
        more = off + n < len(payload)
        p = IP(src=".".join(map(str, src)), dst=".".join(map(str, dst)), id=ident, proto=proto,
               ttl=ttl, flags="MF" if more else 0, frag=off // 8) / Raw(payload[off:off + n])
        frames.append((l2[i] if isinstance(l2, list) else l2) + bytes(p))
        off += n
    return [frames[i] for i in (order or range(len(frames)))]


def frag6(l2, datagram_ip6, sizes, order=None, ident=1):
    """Fragments of an IPv6 packet without extension headers (Fragment header added)."""
    hdr, payload = datagram_ip6[:40], datagram_ip6[40:]
    assert sum(sizes) == len(payload)
    nh = hdr[6]
    frames, off = [], 0
    for i, n in enumerate(sizes):
        more = off + n < len(payload)
        fh = struct.pack(">BBHI", nh, 0, (off // 8) << 3 | int(more), ident)
        h = bytearray(hdr)
        h[4:6] = struct.pack(">H", 8 + n)
        h[6] = 44
        frames.append((l2[i] if isinstance(l2, list) else l2) + bytes(h) + fh + payload[off:off + n])
        off += n
    return [frames[i] for i in (order or range(len(frames)))]


# -- the cases -----------------------------------------------------------------------------

def build(skip=()):
    c = Corpus(skip)
    UNTAGGED = outer_eth(ETH_IPV4)
    PRIO = outer_eth(ETH_IPV4, [(ETH_8021Q, tci(0, pcp=3))])
    QINQ = outer_eth(ETH_IPV4, [(ETH_8021AD, tci(100)), (ETH_8021Q, tci(0))])
    UNTAGGED6 = outer_eth(ETH_IPV6)
    PRIO6 = outer_eth(ETH_IPV6, [(ETH_8021Q, tci(0))])

    def dgram_udp(dport=PLAIN_PORT, n=64):
        return udp4(dport, c.payload(n), id=c.next_id(), src="198.18.1.1", dst="198.18.1.2")

    def dgram_crash():
        # As small as a fragmented datagram gets (8 + 8 bytes), with identification 0xffxx and
        # TTL 255: a reassembler that rewrites the header at the completing fragment's layer 3
        # offset (4 or 8 bytes too far) reads an IHL of 60 from the id or TTL byte and runs
        # past the end of the 50-byte frame.
        return udp4(PLAIN_PORT, c.payload(8), id=0xFF00 | (c.next_id() & 0xFF), ttl=255,
                    src="198.18.1.1", dst="198.18.1.2")

    def dgram_udp6(n=64):
        return bytes(IPv6(src="2001:db8:1::1", dst="2001:db8:1::2", hlim=64)
                     / UDP(sport=50000, dport=PLAIN_PORT) / Raw(c.payload(n)))

    def dgram_gre():
        inner = c.inner_eth(40)
        return ip4(47, gre(ETH_TEB, inner), id=0xFF00 | (c.next_id() & 0xFF), src="198.18.1.3",
                   dst="198.18.1.4"), inner

    # == 1. The two-frame crash: same datagram, first fragment and last fragment with layer 2
    # headers of different lengths (untagged / priority-tagged / QinQ). Whether such fragments
    # belong together is a policy choice (vxspan now keys reassembly on the tag stack too, so
    # they never meet); if they are reassembled, the datagram must be exact, with the layer 2
    # header of the offset-0 fragment. So the datagrams are allowed, not required.
    for rev in (False, True):
        tag = " reversed" if rev else ""
        order = [1, 0] if rev else None
        d = dgram_crash()  # 16 bytes of payload: 8 + 8
        c.case(f"crash: IPv4 UDP/{PLAIN_PORT} untagged first fragment, priority-tagged last{tag}",
               frag4([UNTAGGED, PRIO], d, [8, 8], order), allowed=[UNTAGGED + d])
        d = dgram_crash()
        c.case(f"crash: IPv4 UDP/{PLAIN_PORT} priority-tagged first fragment, untagged last{tag}",
               frag4([PRIO, UNTAGGED], d, [8, 8], order), allowed=[PRIO + d])
        d, inner = dgram_gre()  # GRE TEB: 4 + 14 + 28 + 40 = 86 bytes: 48 + 38
        c.case(f"crash: IPv4 GRE (TEB) untagged first fragment, priority-tagged last{tag}",
               frag4([UNTAGGED, PRIO], d, [48, 38], order), allowed=[inner])
        d = dgram_udp6()
        c.case(f"crash: IPv6 UDP/{PLAIN_PORT} untagged first fragment, priority-tagged last{tag}",
               frag6([UNTAGGED6, PRIO6], d, [40, 32], order, ident=c.next_id()), allowed=[UNTAGGED6 + d])
        d = dgram_udp6()
        c.case(f"crash: IPv6 UDP/{PLAIN_PORT} priority-tagged first fragment, untagged last{tag}",
               frag6([PRIO6, UNTAGGED6], d, [40, 32], order, ident=c.next_id()), allowed=[PRIO6 + d])
        d = dgram_crash()
        c.case(f"crash: IPv4 UDP/{PLAIN_PORT} untagged first fragment, QinQ last{tag}",
               frag4([UNTAGGED, QINQ], d, [8, 8], order), allowed=[UNTAGGED + d])
        d = dgram_crash()
        c.case(f"crash: IPv4 UDP/{PLAIN_PORT} QinQ first fragment, untagged last{tag}",
               frag4([QINQ, UNTAGGED], d, [8, 8], order), allowed=[QINQ + d])

    # == 2. Other fragment attacks.
    d = dgram_udp(n=48)  # 56 bytes: [0,24) [16,40) [40,56)
    a, _, last = frag4(UNTAGGED, d, [24, 16, 16])
    overlap = UNTAGGED + bytes(IP(src="198.18.1.1", dst="198.18.1.2", id=struct.unpack(">H", d[4:6])[0],
                                  proto=17, ttl=64, flags="MF", frag=2) / Raw(b"\xee" * 24))
    c.case("fragments: overlapping, disagreeing bytes (must not reassemble)", [a, overlap, last])
    d = dgram_udp(n=56)  # 64 bytes in 8-byte fragments
    c.case("fragments: tiny 8-byte fragments, UDP", frag4(UNTAGGED, d, [8] * 8), required=[UNTAGGED + d])
    d, inner = dgram_gre()  # 86 bytes: GRE header split from its payload, 8-byte pieces
    c.case("fragments: tiny 8-byte fragments, GRE TEB", frag4(UNTAGGED, d, [8] * 10 + [6]), required=[inner])
    d = dgram_udp(n=152)  # 160 bytes, 5 fragments of 32, out of order
    c.case("fragments: out of order (3 0 4 2 1)", frag4(UNTAGGED, d, [32] * 5, [3, 0, 4, 2, 1]),
           required=[UNTAGGED + d])
    d = dgram_udp(n=88)  # 96 bytes, 3 fragments, each sent twice in a row
    fr = frag4(UNTAGGED, d, [32] * 3)
    c.case("fragments: every fragment duplicated (a a b b c c), must reassemble",
           [f for f in fr for _ in (0, 1)], required=[UNTAGGED + d])
    ident = c.next_id()
    near = [UNTAGGED + bytes(IP(src="198.18.1.1", dst="198.18.1.2", id=ident, proto=17, ttl=64,
                                flags="MF", frag=0) / UDP(sport=50000, dport=PLAIN_PORT, len=65535)
                             / Raw(bytes(8))),
            UNTAGGED + bytes(IP(src="198.18.1.1", dst="198.18.1.2", id=ident, proto=17, ttl=64,
                                frag=8191) / Raw(c.payload(16)))]
    c.case("fragments: offset 65528 + 16 bytes (end past 65535)", near)
    # The largest legal datagram, 65535 bytes of IP: the plain output gets a 65549-byte frame,
    # too big for any tunnel output (their outer IP would pass 65535).
    d = udp4(PLAIN_PORT, c.payload(65535 - 28), id=c.next_id(), src="198.18.1.1", dst="198.18.1.2")
    c.case("fragments: 65535-byte datagram in 8 fragments (largest legal)",
           frag4(UNTAGGED, d, [8192] * 7 + [65515 - 7 * 8192]), required=[UNTAGGED + d])
    ident = c.next_id()
    zero = [UNTAGGED + bytes(IP(src="198.18.1.1", dst="198.18.1.2", id=ident, proto=17, ttl=64,
                                flags="MF", frag=0) / UDP(sport=50000, dport=PLAIN_PORT, len=24) / Raw(bytes(8))),
            UNTAGGED + bytes(IP(src="198.18.1.1", dst="198.18.1.2", id=ident, proto=17, ttl=64,
                                flags="MF", frag=2)),
            UNTAGGED + bytes(IP(src="198.18.1.1", dst="198.18.1.2", id=ident, proto=17, ttl=64, frag=2)),
            UNTAGGED + bytes(IP(src="198.18.1.1", dst="198.18.1.2", id=ident, proto=17, ttl=64,
                                frag=2) / Raw(bytes(8)))]
    c.case("fragments: zero-length fragments (MF and last)", zero)
    atomic_inner = c.inner_eth()
    atomic = bytes(IPv6(src="2001:db8:1::1", dst="2001:db8:1::2", hlim=64)
                   / IPv6ExtHdrFragment(nh=17, offset=0, m=0, id=c.next_id())
                   / UDP(sport=50000, dport=4789) / Raw(vxlan(atomic_inner, 5)))
    plain_atomic = bytes(IPv6(src="2001:db8:1::1", dst="2001:db8:1::2", hlim=64)
                         / IPv6ExtHdrFragment(nh=17, offset=0, m=0, id=c.next_id())
                         / UDP(sport=50000, dport=PLAIN_PORT) / Raw(c.payload(32)))
    c.case("fragments: IPv6 atomic fragments (RFC 6946), VXLAN and plain UDP",
           [UNTAGGED6 + atomic, UNTAGGED6 + plain_atomic], allowed=[atomic_inner])
    ident = c.next_id()
    odd = [UNTAGGED + bytes(IP(src="198.18.1.1", dst="198.18.1.2", id=ident, proto=17, ttl=64,
                               flags="MF", frag=0) / UDP(sport=50000, dport=PLAIN_PORT, len=60) / Raw(bytes(13))),
           UNTAGGED + bytes(IP(src="198.18.1.1", dst="198.18.1.2", id=ident, proto=17, ttl=64,
                               frag=4) / Raw(bytes(31)))]
    c.case("fragments: MF set and a 21-byte (not a multiple of 8) payload", odd)
    flood = []
    for i in range(100):
        ident = c.next_id()
        flood.append(UNTAGGED + bytes(IP(src="198.18.1.5", dst="198.18.1.6", id=ident, proto=17, ttl=64,
                                         flags="MF") / UDP(sport=50000, dport=PLAIN_PORT, len=1008)
                                      / Raw(bytes(992))))
    c.case("fragments: 100 first fragments never completed (max_datagrams eviction)", flood)

    # == 3. VLAN tag stacks.
    body = bytes(IP(src="198.18.2.1", dst="198.18.2.2", id=0, ttl=64) / UDP(sport=50000, dport=PLAIN_PORT)
                 / Raw(bytes(18)))
    c.case("vlan: 1,000 stacked 0x8100 tags", [outer_eth(ETH_IPV4, [(ETH_8021Q, tci(7))] * 1000) + body])
    c.case("vlan: 17 stacked 0x8100 tags", [outer_eth(ETH_IPV4, [(ETH_8021Q, tci(7))] * 17) + body])
    c.case("vlan: 8 stacked tags (the limit)", [outer_eth(ETH_IPV4, [(ETH_8021Q, tci(7))] * 8) + body])
    full = outer_eth(ETH_IPV4, [(ETH_8021Q, tci(7)), (ETH_8021Q, tci(8))])
    c.case("vlan: truncated tags (frame ends inside the 2nd tag's TCI / EtherType)",
           [full[:19], full[:20], full[:21]])

    # == 4. GRE header flags.
    combos = []
    req = []
    for cb in (0, 1):
        for kb in (0, 1):
            for sb in (0, 1):
                inner = c.inner_eth()
                combos.append(gre_frame(gre(ETH_TEB, inner, c=cb, k=kb, s=sb, key=0x1234, seq=7)))
                req.append(inner)
    c.case("gre: TEB with every C/K/S combination (version 0)", combos, required=req)
    odd, allow = [], []
    for kw in (dict(r=True, routing=struct.pack(">HBB", 0x0800, 0, 4) + bytes(4) + bytes(4)),
               dict(r=True, c=True, k=True, routing=bytes(4)),
               dict(version=1, k=True), dict(version=7), dict(recur=7), dict(ssr=True),
               dict(flags=0x1F), dict(version=1, k=True, s=True, flags=0x1F, recur=7)):
        inner = c.inner_eth()
        odd.append(gre_frame(gre(ETH_TEB, inner, key=0xABCD, **kw)))
        if not kw.get("r") and kw.get("version", 0) == 0:
            allow.append(inner)  # reserved bits only: header length still known
    c.case("gre: routing bit R, version 1 and 7, recursion / strict source route / reserved flags",
           odd, allowed=allow)
    inner = c.inner_eth()
    whole = gre(ETH_TEB, inner, c=True, k=True)
    c.case("gre: checksum (and key) announced, header truncated",
           [gre_frame(whole[:2]), gre_frame(whole[:4]), gre_frame(whole[:6]), gre_frame(whole[:10])])
    inner = c.inner_eth()
    c.case("gre: TEB inner frame shorter than an Ethernet header", [gre_frame(gre(ETH_TEB, inner[:13]))])
    inner4, inner6 = c.inner_ip(), c.inner_ip6()
    c.case("gre: IPv4 and IPv6 payloads (synthetic Ethernet)",
           [gre_frame(gre(ETH_IPV4, inner4)), gre_frame(gre(ETH_IPV6, inner6))],
           required=[SYN + struct.pack(">H", ETH_IPV4) + inner4, SYN + struct.pack(">H", ETH_IPV6) + inner6])

    # == 5. ERSPAN.
    inner = c.inner_eth()
    whole = gre(0x88BE, erspan2_hdr(5) + inner, s=True)
    c.case("erspan II: header truncated after 0, 4 and 7 of its 8 bytes, and version 2 in a type II header",
           [gre_frame(whole[:8]), gre_frame(whole[:12]), gre_frame(whole[:15]),
            gre_frame(gre(0x88BE, erspan2_hdr(5, ver=2) + c.inner_eth(), s=True))])
    inner = c.inner_eth()
    c.case("erspan II: valid, VLAN 10 COS 5 En 3", [erspan2_frame(inner, 6, vlan=10, cos=5, en=3)], required=[inner])
    short = []
    for o in (False, True):
        hdr = erspan3_hdr(9, o=o)
        for n in (0, 4, 11):
            short.append(gre_frame(gre(0x22EB, hdr[:n], s=True)))
        # A complete 12-byte header whose O flag promises an 8-byte subheader that is not there.
        if o:
            short.append(gre_frame(gre(0x22EB, hdr + bytes(4), s=True)))
    c.case("erspan III: shorter than 12 bytes with O clear and set; O set with the subheader cut", short)
    inner_a, inner_b = c.inner_eth(), c.inner_eth()
    c.case("erspan III: valid, without and with the platform subheader (O)",
           [gre_frame(gre(0x22EB, erspan3_hdr(10) + inner_a, s=True)),
            gre_frame(gre(0x22EB, erspan3_hdr(11, o=True) + struct.pack(">II", 3 << 26, 0) + inner_b, s=True))],
           required=[inner_a, inner_b])
    c.case("erspan III: frame type 2 (IPv4) and 31 (not Ethernet: not stripped)",
           [gre_frame(gre(0x22EB, erspan3_hdr(12, ft=2) + c.inner_ip(), s=True)),
            gre_frame(gre(0x22EB, erspan3_hdr(12, ft=31) + c.inner_eth(), s=True))])
    inner = c.inner_eth()
    c.case("erspan I: GRE 0x88BE without the S bit", [gre_frame(gre(0x88BE, inner))], required=[inner])

    # == 6. Geneve.
    inner = c.inner_eth()
    c.case("geneve: option length past the end of the packet (opt_len 10, 8 bytes there; opt_len 63, none)",
           [udp_frame(6081, geneve(b"", ETH_TEB, options=bytes(8), opt_len=10)),
            udp_frame(6081, geneve(inner[:20], ETH_TEB, opt_len=63))])
    opts = struct.pack(">HBB", 0x0103, 1, 31) + bytes(124) + struct.pack(">HBB", 0x0103, 2, 30) + bytes(120)
    inner = c.inner_eth()
    c.case("geneve: opt_len 63 (252 bytes of options), complete",
           [udp_frame(6081, geneve(inner, ETH_TEB, options=opts))], required=[inner])
    e, i4, i6 = c.inner_eth(), c.inner_ip(), c.inner_ip6()
    arp = bytes(ARP(op=1, hwsrc=INNER_SRC, psrc="198.18.200.1", hwdst="00:00:00:00:00:00", pdst="198.18.200.2"))
    c.case("geneve: protocol types 0x6558, 0x0800, 0x86dd, 0x0806 and unknown 0x88b5",
           [udp_frame(6081, geneve(e, ETH_TEB)), udp_frame(6081, geneve(i4, ETH_IPV4)),
            udp_frame(6081, geneve(i6, ETH_IPV6)), udp_frame(6081, geneve(arp, ETH_ARP)),
            udp_frame(6081, geneve(c.inner_eth(), 0x88B5))],
           required=[e, SYN + b"\x08\x00" + i4, SYN + b"\x86\xdd" + i6, SYN + b"\x08\x06" + arp])

    # == 7. VXLAN and VXLAN-GPE.
    def nest(inner, depth, vni0):
        layers = [inner]
        for d in range(depth):
            layers.append(vxlan_frame(layers[-1], vni=vni0 + d))
        return layers  # layers[k] = inner wrapped k times

    lay = nest(c.inner_eth(), 30, 1000)
    c.case("vxlan: nested 30 deep (decap_depth all = 8 layers stripped)", [lay[30]], required=[lay[22]])
    lay8 = nest(c.inner_eth(), 8, 2000)
    lay9 = nest(c.inner_eth(), 9, 3000)
    c.case("vxlan: nested exactly 8 and 9 deep", [lay8[8], lay9[9]], required=[lay8[0], lay9[1]])
    a, b = c.inner_eth(), c.inner_eth()
    c.case("vxlan: I flag clear; every flag and reserved bit set",
           [vxlan_frame(a, flags=0x00), vxlan_frame(b, flags=0xFF, rsvd=b"\xff\xff\xff", rsvd2=0xFF)],
           allowed=[a, b])
    c.case("vxlan: header truncated (4 of 8 bytes), inner shorter than Ethernet",
           [udp_frame(4789, vxlan(b"", 1)[:4]), udp_frame(4789, vxlan(c.inner_eth()[:10], 1))])
    i4, i6, e = c.inner_ip(), c.inner_ip6(), c.inner_eth()
    m = c.inner_ip()
    c.case("vxlan-gpe: next protocol IPv4, IPv6, Ethernet, NSH (kept), MPLS, unknown 0x99",
           [udp_frame(4790, gpe(i4, 1)), udp_frame(4790, gpe(i6, 2)), udp_frame(4790, gpe(e, 3)),
            udp_frame(4790, gpe(bytes(8) + c.inner_eth(), 4)), udp_frame(4790, gpe(mpls([77], m), 5)),
            udp_frame(4790, gpe(c.inner_eth(), 0x99))],
           required=[SYN + b"\x08\x00" + i4, SYN + b"\x86\xdd" + i6, e, SYN + b"\x08\x00" + m])

    # == 8. MPLS.
    c.case("mpls: no bottom-of-stack bit anywhere",
           [outer_eth(ETH_MPLS) + mpls([16, 17], c.inner_ip(), bos=False)])
    i4 = c.inner_ip()
    c.case("mpls: 17 labels, IPv4 below", [outer_eth(ETH_MPLS) + mpls(list(range(100, 117)), i4)],
           allowed=[SYN + b"\x08\x00" + i4])
    # decap-all.toml leaves `mpls` at its default, payload "ip" (docs/config.md): an Ethernet
    # pseudowire is not IP, so it must pass unchanged (or be dropped), never come out as a
    # synthetic-Ethernet "IP" frame made of its MAC addresses. Nothing is expected of these.
    e0, e4, e6 = (c.inner_eth(dst=d) for d in ("02:00:5e:10:00:01", "40:00:5e:10:00:01", "60:00:5e:10:00:01"))
    c.case("mpls: Ethernet pseudowire without control word, inner dst MAC 02:.., 40:.., 60:..",
           [outer_eth(ETH_MPLS) + mpls([200], e) for e in (e0, e4, e6)])
    cw_a, cw_b = c.inner_eth(dst="40:00:5e:10:00:02"), c.inner_eth()
    c.case("mpls: Ethernet pseudowire with control word (inner dst 40:.. and 02:..)",
           [outer_eth(ETH_MPLS) + mpls([201], bytes(4) + e) for e in (cw_a, cw_b)])
    i4, i6 = c.inner_ip(), c.inner_ip6()
    c.case("mpls: IPv4 and IPv6 payloads, 2 labels",
           [outer_eth(ETH_MPLS) + mpls([300, 301], i4), outer_eth(ETH_MPLS) + mpls([302, 303], i6)],
           required=[SYN + b"\x08\x00" + i4, SYN + b"\x86\xdd" + i6])
    i4, e = c.inner_ip(), c.inner_eth()
    c.case("mpls: in UDP (6635), IPv4 and Ethernet (dst 02:.., not IP: unchanged) payloads",
           [udp_frame(6635, mpls([400], i4)), udp_frame(6635, mpls([401], e))],
           required=[SYN + b"\x08\x00" + i4])
    i4, i6 = c.inner_ip(), c.inner_ip6()
    c.case("mpls: in GRE (0x8847), IPv4 and IPv6 payloads",
           [gre_frame(gre(ETH_MPLS, mpls([500], i4))), gre_frame(gre(ETH_MPLS, mpls([501, 502], i6)))],
           required=[SYN + b"\x08\x00" + i4, SYN + b"\x86\xdd" + i6])

    # == 9. Absurd lengths: each on a plain UDP packet and on a VXLAN packet.
    def ipv4_bytes(dport, payload, **over):
        raw = bytearray(udp4(dport, payload))
        for k, v in over.items():
            if k == "len":
                raw[2:4] = struct.pack(">H", v)
            elif k == "ihl":
                raw[0] = 0x40 | v
            elif k == "udplen":
                raw[24:26] = struct.pack(">H", v)
        raw[10:12] = b"\0\0"
        ihl = (raw[0] & 0x0F) * 4
        raw[10:12] = struct.pack(">H", inet_checksum(bytes(raw[:max(ihl, 20)])))
        return bytes(raw)

    for what, over, inner_ok in (("IPv4 total length 65535 > frame", dict(len=65535), True),
                                 ("IPv4 total length 12 < IHL", dict(len=12), False),
                                 ("IPv4 IHL 3 < 5", dict(ihl=3), False),
                                 ("IPv4 IHL 15, frame shorter than 60 bytes of header", dict(ihl=15), False),
                                 ("UDP length 0", dict(udplen=0), True),
                                 ("UDP length 1", dict(udplen=1), True),
                                 ("UDP length 7", dict(udplen=7), True),
                                 ("UDP length 65535", dict(udplen=65535), True)):
        inner = c.inner_eth(4)
        frames = [outer_eth(ETH_IPV4) + ipv4_bytes(PLAIN_PORT, c.payload(20), **over),
                  outer_eth(ETH_IPV4) + ipv4_bytes(4789, vxlan(inner, 42), **over)]
        if over.get("ihl") == 15:
            frames = [f[:14 + 40] for f in frames]
        c.case(f"lengths: {what}", frames, allowed=[inner] if inner_ok else [])

    def ipv6_plen(dport, payload, plen):
        raw = bytearray(bytes(IPv6(src="2001:db8:3::1", dst="2001:db8:3::2", hlim=64)
                              / UDP(sport=50000, dport=dport) / Raw(payload)))
        raw[4:6] = struct.pack(">H", plen)
        return bytes(raw)

    for plen in (0, 65535):
        inner = c.inner_eth(4)
        c.case(f"lengths: IPv6 payload length {plen}",
               [outer_eth(ETH_IPV6) + ipv6_plen(PLAIN_PORT, c.payload(20), plen),
                outer_eth(ETH_IPV6) + ipv6_plen(4789, vxlan(inner, 43), plen)], allowed=[inner])
    inner = c.inner_eth(4)
    jumbo = []
    for dport, pl in ((PLAIN_PORT, c.payload(20)), (4789, vxlan(inner, 44))):
        p = bytearray(bytes(IPv6(src="2001:db8:3::1", dst="2001:db8:3::2", hlim=64, plen=0)
                            / IPv6ExtHdrHopByHop(options=[Jumbo(jumboplen=70000)])
                            / UDP(sport=50000, dport=dport, len=0) / Raw(pl)))
        p[4:6] = b"\0\0"
        jumbo.append(outer_eth(ETH_IPV6) + bytes(p))
    c.case("lengths: IPv6 jumbogram declared (Hop-by-Hop jumbo 70000, payload length 0, UDP length 0)",
           jumbo, allowed=[inner])
    c.case("lengths: frames of 0 to 14 bytes",
           [(bytes.fromhex("0276786800020276786800010800"))[:n] for n in range(15)])

    # == 10. Key floods.
    flood, req = [], []
    for vni in range(2000):
        inner = c.inner_eth(4)
        flood.append(vxlan_frame(inner, vni=0x10000 + vni))
        req.append(inner)
    c.case("flood: 2,000 distinct VXLAN VNIs", flood, required=req)
    flood, req = [], []
    for key in range(2000):
        inner = c.inner_eth(4)
        flood.append(gre_frame(gre(ETH_TEB, inner, k=True, key=0x20000 + key)))
        req.append(inner)
    c.case("flood: 2,000 distinct GRE keys (TEB)", flood, required=req)
    flood, req = [], []
    for session in range(1024):
        inner = c.inner_eth(4)
        flood.append(erspan2_frame(inner, session, seq=session))
        req.append(inner)
    c.case("flood: 1,024 ERSPAN II sessions (0 to 1023)", flood, required=req)
    body = bytes(IP(src="198.18.4.1", dst="198.18.4.2", id=0, ttl=64) / UDP(sport=50000, dport=PLAIN_PORT)
                 / Raw(bytes(18)))
    c.case("flood: one frame on each of the 4,096 VLAN IDs (0 to 4095)",
           [outer_eth(ETH_IPV4, [(ETH_8021Q, tci(v))]) + body for v in range(4096)])
    return c


def write_pcap(path: Path, frames):
    """A little-endian nanosecond pcap (magic 0xa1b23c4d, linktype 1). frames: (k, bytes),
    written with timestamp BASE_NS + k * STEP_NS: the k-th frame of hostile.pcap has k, an
    expected frame the k of its case's last frame, so the test can name the case."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", PCAP_MAGIC_NSEC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        for k, data in frames:
            sec, nsec = divmod(BASE_NS + k * STEP_NS, 1_000_000_000)
            f.write(struct.pack("<IIII", sec, nsec, len(data), len(data)))
            f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="directory to write to (default: the script's)")
    ap.add_argument("--skip", action="append", default=[], metavar="TEXT",
                    help="leave out the cases whose name contains TEXT (repeatable; for bisecting)")
    args = ap.parse_args()
    c = build(args.skip)
    (args.out / "expected").mkdir(parents=True, exist_ok=True)
    write_pcap(args.out / "hostile.pcap", enumerate(c.frames))
    write_pcap(args.out / "expected" / "required.pcap", c.required)
    write_pcap(args.out / "expected" / "allowed.pcap", c.allowed)
    lines = ["# first last case   (frame numbers of hostile.pcap, 1-based as tshark counts, inclusive)"]
    lines += [f"{a} {b} {name}" for a, b, name in c.cases]
    (args.out / "cases.txt").write_text("\n".join(lines) + "\n")
    size = (args.out / "hostile.pcap").stat().st_size
    print(f"hostile.pcap: {len(c.frames)} frames, {size} bytes, {len(c.cases)} cases; "
          f"{len(c.required)} required and {len(c.allowed)} allowed inner frames")


if __name__ == "__main__":
    main()
