#!/usr/bin/python3
"""vxspan's outer reassembly against scapy's (issue #15): the two-frame crash, its IPv6, QinQ
and reversed variants, and duplicated fragments, replayed through `vxspan replay` with decap on.

Each case is two datagrams whose fragments carry different tag stacks: the first fragment of one
with the last of the other, as in the crash. vxspan keys reassembly on the tag stack too, so each
tag stack's fragments make one datagram. The reference is scapy's `defragment()` (IPv4) and
`defragment6()` (IPv6) applied to each tag stack's fragments on their own; the reassembled
frames vxspan writes must be byte-for-byte those, and the counters exact.

Usage: check.py VXSPAN_BINARY SCRATCH_DIR. Exit 0 when everything agrees; prints what differs."""
import json
import os
import subprocess
import sys
from collections import Counter

from scapy.all import (Dot1AD, Dot1Q, Ether, IP, IPv6, IPv6ExtHdrFragment, Raw, UDP, conf,
                       defragment, defragment6, fragment, fragment6, rdpcap, wrpcap)

conf.verb = 0
vxspan, scratch = sys.argv[1], sys.argv[2]
MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
CONFIG = """
[inputs.in]
interface = "eth0"
decap = ["vxlan", "gre", "erspan", "geneve"]
[outputs.out]
interface = "eth1"
[[rules]]
from = "in"
to = "out"
"""

STACKS = {
    "untagged": lambda: Ether(**MAC),
    "priority": lambda: Ether(**MAC) / Dot1Q(vlan=0),
    "vlan10": lambda: Ether(**MAC) / Dot1Q(vlan=10),
    "qinq": lambda: Ether(**MAC) / Dot1AD(vlan=20) / Dot1Q(vlan=30),
}


def frags(v6, ident, size, payload):
    """The fragments (layer 3 and up) of one UDP datagram."""
    if v6:
        p = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=ident) / \
            UDP(sport=1000, dport=9) / Raw(payload)
        return [f[IPv6] for f in fragment6(p, size)]
    p = IP(src="198.18.0.1", dst="198.18.0.2", id=ident) / UDP(sport=1000, dport=9) / \
        Raw(payload)
    return [f[IP] for f in fragment(p, fragsize=size)]


cases = []  # (name, frames in the order sent, {stack: [frames of that datagram]})
ident = 0x1000
for v6 in (False, True):
    for a, b in (("untagged", "priority"), ("priority", "untagged"), ("untagged", "qinq"),
                 ("qinq", "vlan10")):
        for reversed_ in (False, True):
            ident += 1
            # 16 bytes of UDP (the crash's smallest shape) for IPv4; IPv6 needs 8-byte multiples
            # past a 48-byte unfragmentable part, so a little more.
            payload = bytes((ident + i) & 0xFF for i in range(8 if not v6 else 64))
            l3 = frags(v6, ident, 8 if not v6 else 56, payload)
            assert len(l3) >= 2, len(l3)
            first, rest = l3[0], l3[1:]
            # Datagram A: first fragment with stack a, the rest with stack b... and datagram B
            # the other way round: each stack ends up with one whole datagram.
            group_a = [STACKS[a]() / first] + [STACKS[a]() / f for f in rest]
            group_b = [STACKS[b]() / first] + [STACKS[b]() / f for f in rest]
            crash = [group_a[0], group_b[-1]]
            others = group_a[1:-1] + [group_a[-1]] + group_b[:-1]
            order = crash + others
            if reversed_:
                order = order[::-1]
            name = f"{'v6' if v6 else 'v4'} {a} first / {b} last{' reversed' if reversed_ else ''}"
            cases.append((name, order, {a: group_a, b: group_b}))
# Every fragment twice (two SPAN points): one datagram, duplicates ignored.
for v6 in (False, True):
    ident += 1
    l3 = frags(v6, ident, 1200, bytes(range(256)) * 12)
    group = [Ether(**MAC) / f for f in l3]
    cases.append((f"{'v6' if v6 else 'v4'} every fragment twice",
                  [f for f in group for _ in (0, 1)], {"untagged": group}))


def reference(group):
    """scapy's reassembly of one datagram's fragments, as the frame vxspan should write."""
    if IPv6 in group[0]:
        return bytes(defragment6(group))  # the first fragment's layer 2 and the datagram
    out = defragment(group)
    assert len(out) == 1, f"scapy left {len(out)} packets"
    p = out[0]
    del p[IP].len, p[IP].chksum
    return bytes(p)


frames = [f for _, order, _ in cases for f in order]
os.makedirs(scratch, exist_ok=True)
wrpcap(f"{scratch}/in.pcap", frames)
with open(f"{scratch}/c.toml", "w") as fh:
    fh.write(CONFIG)
run = subprocess.run([vxspan, "replay", f"{scratch}/c.toml", "-i", f"in={scratch}/in.pcap", "-o",
                      f"out={scratch}/out.pcap", "--json"], capture_output=True, timeout=60)
if run.returncode != 0:
    sys.exit(f"vxspan replay exited {run.returncode}: {run.stderr.decode()}")
c = json.loads(run.stdout)
got = Counter(bytes(p) for p in rdpcap(f"{scratch}/out.pcap"))
want = Counter(reference(g) for _, _, groups in cases for g in groups.values())
bad = []
if got != want:
    for f in list(want - got)[:3]:
        bad.append(f"missing from vxspan's output: {f[:120].hex()}...")
    for f in list(got - want)[:3]:
        bad.append(f"not in scapy's reassembly: {f[:120].hex()}...")
p = c["interfaces"]["in"]
datagrams = sum(len(groups) for _, _, groups in cases)
# In the "twice" cases the copy of the completing fragment comes after completion: it starts a
# datagram of its own (held, as Linux would), so each such datagram has n - 1 duplicates.
duplicates = sum(len(g) - 1 for name, _, groups in cases if "twice" in name
                 for g in groups.values())
reasons = {k: v for k, v in p["drop_reasons"].items() if v}
expect = {
    "rx_packets": len(frames),
    "forwarded_packets": datagrams,
    "dropped_packets": len(frames) - datagrams,
}
for k, v in expect.items():
    if p[k] != v:
        bad.append(f"{k}: {p[k]}, expected {v}")
if reasons != {"fragment_held": len(frames) - datagrams}:
    bad.append(f"drop reasons {reasons}, expected only fragment_held = {len(frames) - datagrams}")
r = c["reassembly"]["in"]
for k, v in {"completed": datagrams, "duplicates": duplicates, "overlaps": 0, "too_big": 0,
             "evictions": 0, "timeouts": 0}.items():
    if r.get(k) != v:
        bad.append(f"reassembly {k}: {r.get(k)}, expected {v}")
if bad:
    print("\n".join(bad))
    sys.exit(1)
print(f"{len(cases)} cases, {len(frames)} frames, {datagrams} datagrams: vxspan equals scapy")
