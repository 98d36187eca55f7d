#!/usr/bin/env python3
"""Generates the inputs and the expected counters of the vxspan-example golden test.

Writes, next to this script:
  eth0.pcap, eth1.pcap     the frames received on the two inputs of examples/vxspan.json
  expected/counters.json   what vxspan's counters must read after replaying them

The expected *output* captures (expected/eth2.pcap, expected/eth3.pcap) are not made here:
make.sh derives them from the inputs with tcpdump and mergecap, so that the two halves of
the fixture are produced independently and can be checked against each other.

Everything is deterministic: a fixed seed, a fixed base time and no dependence on the host
(every address scapy might otherwise look up is given explicitly). The captures are written
by hand (nanosecond pcap, linktype Ethernet) rather than with scapy's writer so that
timestamps are exact integers of nanoseconds.

With --probe DIR the script instead writes DIR/probe.pcap, a systematic set of short and
edge-case frames, and DIR/probe_expected.json, how many of them each make.sh filter must
accept. make.sh uses it to check its tcpdump filters against the semantics below.

Semantics of the example config (fixed):
  * a frame's selector is the VID of its outer tag (first tag after the MACs; TPID 0x8100,
    0x88a8 or 0x9100; PCP and DEI ignored); untagged and priority-tagged (VID 0) frames
    select "none";
  * frames shorter than 14 bytes, or with a TPID at offset 12 but shorter than 18 bytes,
    are dropped as "malformed" and do not appear in the VLAN counters;
  * frames whose selector has no rule on their input are dropped as "no_rule";
  * forwarded frames are sent unchanged.
"""

import argparse
import json
import random
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

HERE = Path(__file__).resolve().parent

SEED = 0x5EED_0001
# 1700000000 s plus 999.8 ms: the capture crosses a second boundary about 200 frames in,
# so a writer that mishandles the nanosecond carry into ts_sec shows up.
BASE_NS = 1_700_000_000 * 1_000_000_000 + 999_800_000
STEP_NS = 1_000  # one frame (of either input) per microsecond, plus an odd ns offset

PCAP_MAGIC_NSEC = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
SNAPLEN = 262_144

TPIDS = (0x8100, 0x88A8, 0x9100)
ETH_HEADER = 14  # dst, src, EtherType
TAGGED_HEADER = 18  # dst, src, TPID, TCI, EtherType
MIN_FRAME = 60  # minimum Ethernet frame, FCS excluded
JUMBO = 9_000
ETHERTYPE_IPV4, ETHERTYPE_ARP, ETHERTYPE_IPV6 = 0x0800, 0x0806, 0x86DD
ETHERTYPE_EXPERIMENTAL = 0x88B5  # IEEE 802 local experimental EtherType 1

# examples/vxspan.json, as {input: {selector: output}}. Kept here so the fixture states the
# config it was made for; main() checks it still matches the example file.
REDIRECTS = {
    "eth0": {"none": "eth2"},
    "eth1": {"10": "eth3", "11": "eth3", "12": "eth2"},
}
INPUTS = ("eth0", "eth1")
OUTPUTS = ("eth2", "eth3")
CONFIG = HERE.parent.parent.parent / "examples" / "vxspan.json"


def tci(vid, pcp=0, dei=0):
    """A VLAN tag's TCI from its fields."""
    return (pcp << 13) | (dei << 12) | vid


def outer_selector(data: bytes) -> str:
    """The selector of a frame under the fixed semantics: "malformed", "none" or the VID."""
    if len(data) < ETH_HEADER:
        return "malformed"
    if int.from_bytes(data[12:14], "big") not in TPIDS:
        return "none"
    if len(data) < TAGGED_HEADER:
        return "malformed"
    vid = int.from_bytes(data[14:16], "big") & 0x0FFF
    return "none" if vid == 0 else str(vid)


def tag_stack_complete(data: bytes) -> bool:
    """True when every tag of the stack (not only the outer one) has its TCI and the
    following EtherType. The semantics only look at the outer tag; the generated frames keep
    whole stacks so that a stricter parser agrees with them on every well-formed frame."""
    off = 12
    while len(data) >= off + 2 and int.from_bytes(data[off:off + 2], "big") in TPIDS:
        off += 4
    return len(data) >= off + 2


@dataclass
class Frame:
    data: bytes
    sel: str  # "malformed", "none" or the outer VID, from how the frame was built
    what: str  # what the frame is meant to exercise (see --list)
    ts_ns: int = 0


class Builder:
    """Makes the frames of one input. Hosts of input i live in 198.18.i.0/24 and talk to
    198.19.i.0/24 (IPv6: 2001:db8:i::/64 and 2001:db8:100+i::/64); MACs are locally
    administered unicast, 02:76:78:0i:00:hh ("vx")."""

    def __init__(self, index: int, rng: random.Random):
        self.index = index
        self.rng = rng

    # -- addresses ------------------------------------------------------------------------

    def mac(self, host: int) -> str:
        return f"02:76:78:{self.index:02x}:00:{host:02x}"

    def ip_pair(self):
        r = self.rng
        return f"198.18.{self.index}.{r.randrange(1, 255)}", f"198.19.{self.index}.{r.randrange(1, 255)}"

    def ip6_pair(self):
        r = self.rng
        return (f"2001:db8:{self.index:x}::{r.randrange(1, 0xFFFF):x}",
                f"2001:db8:{0x100 + self.index:x}::{r.randrange(1, 0xFFFF):x}")

    # -- layer 3 and above (each returns the packet without application payload) --------

    def tcp(self):
        r = self.rng
        src, dst = self.ip_pair()
        return IP(src=src, dst=dst, id=r.randrange(65536), ttl=64) / TCP(
            sport=r.randrange(49152, 65536), dport=r.choice((22, 80, 443, 5201)),
            seq=r.getrandbits(32), ack=r.getrandbits(32), flags="PA", window=r.randrange(1024, 65536))

    # Ports are ephemeral sources and destinations with no heavyweight dissector in
    # Wireshark (discard, iperf, unassigned), so that inspecting the random payloads with
    # tshark does not report spurious DNS/NTP/VXLAN decoding errors.

    def udp(self):
        r = self.rng
        src, dst = self.ip_pair()
        return IP(src=src, dst=dst, id=r.randrange(65536), ttl=64) / UDP(
            sport=r.randrange(49152, 65536), dport=r.choice((9, 5001, 40000)))

    def icmp(self):
        r = self.rng
        src, dst = self.ip_pair()
        return IP(src=src, dst=dst, id=r.randrange(65536), ttl=64) / ICMP(
            type=8, code=0, id=r.randrange(65536), seq=r.randrange(65536))

    def udp6(self):
        r = self.rng
        src, dst = self.ip6_pair()
        return IPv6(src=src, dst=dst, hlim=64) / UDP(
            sport=r.randrange(49152, 65536), dport=r.choice((9, 5001, 40000)))

    def arp(self):
        # Unicast requests and replies: every MAC in the fixture is locally administered.
        r = self.rng
        spa, tpa = self.ip_pair()
        return ARP(op=r.choice((1, 2)), hwsrc=self.mac(1), psrc=spa, hwdst=self.mac(2), pdst=tpa)

    L3 = {"tcp": tcp, "udp": udp, "icmp": icmp, "udp6": udp6, "arp": arp}

    # -- frames ---------------------------------------------------------------------------

    def payload_len(self):
        """A random application payload length: mostly small, some MTU-sized."""
        r = self.rng
        return r.choice((r.randrange(0, 64), r.randrange(64, 600), r.randrange(1000, 1400)))

    def frame(self, what, tags=(), kind="udp", size=None, pad=True):
        """One frame. tags: [(tpid, tci), ...], outer first. kind: a key of L3, or "bare" for
        a frame that ends right after its (last) EtherType. size: exact length, else random.
        pad: pad to the 60-byte Ethernet minimum."""
        if kind == "bare":
            l3, ethertype = None, ETHERTYPE_EXPERIMENTAL
        else:
            l3 = self.L3[kind](self)
            ethertype = {"arp": ETHERTYPE_ARP, "udp6": ETHERTYPE_IPV6}.get(kind, ETHERTYPE_IPV4)
        # Every EtherType/TPID field is set explicitly: scapy's layer bindings would pick
        # 0x8100 for any Dot1Q, whatever tag it is meant to be.
        types = [tpid for tpid, _ in tags] + [ethertype]
        pkt = Ether(dst=self.mac(2), src=self.mac(1), type=types[0])
        for (_, t), nxt in zip(tags, types[1:]):
            pkt = pkt / Dot1Q(prio=t >> 13, id=(t >> 12) & 1, vlan=t & 0x0FFF, type=nxt)
        if l3 is not None:
            pkt = pkt / l3
            n = self.payload_len() if size is None else size - len(pkt)
            if kind != "arp" and n > 0:
                pkt = pkt / Raw(self.rng.randbytes(n))
        data = bytes(pkt)
        if pad and len(data) < MIN_FRAME:
            data += bytes(MIN_FRAME - len(data))
        assert size is None or len(data) == size, (what, len(data), size)

        sel = "none" if not tags or tags[0][1] & 0x0FFF == 0 else str(tags[0][1] & 0x0FFF)
        assert outer_selector(data) == sel and tag_stack_complete(data), what
        return Frame(data, sel, what)

    def runt(self, what, length, after_macs=b""):
        """A malformed frame: the first `length` bytes of dst, src and `after_macs`."""
        data = (bytes.fromhex(self.mac(2).replace(":", "") + self.mac(1).replace(":", "")) + after_macs)[:length]
        assert len(data) == length and outer_selector(data) == "malformed", what
        return Frame(data, "malformed", what)


def port_frames(index: int, rng: random.Random):
    """The frames of one input, in a random but seeded order."""
    b = Builder(index, rng)
    Q, AD, T91 = 0x8100, 0x88A8, 0x9100
    mixes = ("tcp", "udp", "udp6", "icmp", "arp")
    frames = []

    def add(count, what, tags=(), kinds=("udp",), **kw):
        for i in range(count):
            frames.append(b.frame(what, tags, kinds[i % len(kinds)], **kw))

    # Untagged: selector "none".
    add(24, "untagged IPv4 TCP", kinds=("tcp",))
    add(20, "untagged IPv4 UDP", kinds=("udp",))
    add(8, "untagged IPv4 ICMP echo", kinds=("icmp",))
    add(12, "untagged IPv6 UDP", kinds=("udp6",))
    add(6, "untagged ARP (60 bytes)", kinds=("arp",))
    add(4, "untagged IPv4 UDP, minimum size", kinds=("udp",), size=MIN_FRAME)
    add(2, "untagged header only (14 bytes)", kinds=("bare",), size=ETH_HEADER, pad=False)
    add(2, "untagged jumbo", kinds=("tcp", "udp"), size=JUMBO)
    # Priority-tagged (outer VID 0): selector "none", whatever the PCP, DEI, TPID or inner tags.
    add(10, "priority 0x8100 VID 0 PCP 5", [(Q, tci(0, pcp=5))], kinds=("udp", "udp", "udp", "udp", "tcp"))
    add(2, "priority 0x8100 VID 0 PCP 5 DEI", [(Q, tci(0, pcp=5, dei=1))])
    add(2, "priority 0x88a8 VID 0 PCP 5", [(AD, tci(0, pcp=5))])
    add(2, "priority 0x8100 VID 0 over 0x8100 VID 10", [(Q, tci(0, pcp=5)), (Q, tci(10))])
    add(1, "priority 0x8100 VID 0, header only (18 bytes)", [(Q, tci(0, pcp=5))], kinds=("bare",),
        size=TAGGED_HEADER, pad=False)
    # VLAN 10.
    add(12, "0x8100 VID 10", [(Q, tci(10))], kinds=mixes)
    add(4, "0x8100 VID 10 PCP 5 DEI (TCI 0xb00a)", [(Q, tci(10, pcp=5, dei=1))], kinds=mixes)
    add(2, "0x88a8 VID 10, single tag", [(AD, tci(10))])
    add(1, "0x9100 VID 10, single tag", [(T91, tci(10))])
    add(2, "0x8100 VID 10 jumbo", [(Q, tci(10))], kinds=("udp", "tcp"), size=JUMBO)
    add(1, "0x8100 VID 10, header only (18 bytes)", [(Q, tci(10))], kinds=("bare",),
        size=TAGGED_HEADER, pad=False)
    # VLAN 11.
    add(10, "0x8100 VID 11", [(Q, tci(11))], kinds=mixes)
    add(4, "0x8100 VID 11 PCP 5 DEI (TCI 0xb00b)", [(Q, tci(11, pcp=5, dei=1))], kinds=mixes)
    add(2, "0x8100 VID 11 PCP 7 (TCI 0xe00b), minimum size", [(Q, tci(11, pcp=7))], size=MIN_FRAME)
    # VLAN 12.
    add(10, "0x8100 VID 12", [(Q, tci(12))], kinds=mixes)
    add(3, "0x8100 VID 12 PCP 1 DEI (TCI 0x300c)", [(Q, tci(12, pcp=1, dei=1))], kinds=mixes)
    add(1, "0x8100 VID 12 jumbo", [(Q, tci(12))], size=JUMBO)
    # Other VLANs: selected by no rule of either input.
    for vid in (1, 13, 100, 4094):
        add(3, f"0x8100 VID {vid}", [(Q, tci(vid))], kinds=("udp", "tcp", "udp6"))
    # Stacks: only the outer tag selects.
    add(4, "QinQ 0x88a8 VID 10 / 0x8100 VID 20", [(AD, tci(10)), (Q, tci(20))], kinds=("udp", "tcp"))
    add(4, "QinQ 0x88a8 VID 99 / 0x8100 VID 10", [(AD, tci(99)), (Q, tci(10))], kinds=("udp", "tcp"))
    add(4, "0x9100 VID 12 / 0x8100 VID 30", [(T91, tci(12)), (Q, tci(30))], kinds=("udp", "udp6"))
    add(3, "triple 0x88a8 VID 11 / 0x8100 VID 5 / 0x8100 VID 6",
        [(AD, tci(11)), (Q, tci(5)), (Q, tci(6))], kinds=("udp", "tcp", "icmp"))

    if index == 1:
        # Malformed runts, eth1 only. The 16- and 17-byte ones carry a VID that a rule
        # selects (12 -> eth2, 10 -> eth3): a filter that loads the TCI without checking
        # that the EtherType after it is present would forward them.
        frames += [
            b.runt("runt, 10 bytes", 10),
            b.runt("runt, 13 bytes", 13, bytes.fromhex("0800")),
            b.runt("runt, 14 bytes: 0x88a8 and nothing after", 14, bytes.fromhex("88a8")),
            b.runt("runt, 15 bytes: 0x8100 and half a TCI", 15, bytes.fromhex("8100000c")),
            b.runt("runt, 16 bytes: 0x8100 VID 12, no EtherType", 16, bytes.fromhex("8100000c0800")),
            b.runt("runt, 17 bytes: 0x9100 VID 10, half an EtherType", 17, bytes.fromhex("9100000a0800")),
        ]
    rng.shuffle(frames)
    return frames


def assign_timestamps(ports, rng: random.Random):
    """Interleaves the inputs on one clock: the k-th frame overall (whichever input it is
    on) gets BASE_NS + k * STEP_NS + an odd offset below 500 ns. Every timestamp is thus
    distinct, so merging the inputs by time has one answer, and none is a whole
    microsecond, so rounding to microseconds anywhere shows up."""
    order = [name for name in ports for _ in ports[name]]
    rng.shuffle(order)
    nxt = {name: iter(frames) for name, frames in ports.items()}
    for k, name in enumerate(order):
        next(nxt[name]).ts_ns = BASE_NS + k * STEP_NS + rng.randrange(1, 500, 2)


def write_pcap(path: Path, frames):
    """Writes a little-endian nanosecond pcap (magic 0xa1b23c4d, linktype 1)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", PCAP_MAGIC_NSEC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        for fr in frames:
            sec, nsec = divmod(fr.ts_ns, 1_000_000_000)
            f.write(struct.pack("<IIII", sec, nsec, len(fr.data), len(fr.data)))
            f.write(fr.data)


def vlan_sort_key(key: str):
    return (-1, 0) if key == "none" else (0, int(key))


def expected_counters(ports):
    """vxspan's counters after replaying `ports`, from the generator's own knowledge of
    each frame (its `sel`) and the rules in REDIRECTS."""
    interfaces, vlans = {}, {}
    tx = {out: {"tx_packets": 0, "tx_bytes": 0} for out in OUTPUTS}
    for name in INPUTS:
        port = {"rx_packets": 0, "rx_bytes": 0, "dropped_packets": 0, "dropped_bytes": 0,
                "drop_reasons": {"no_rule": 0, "malformed": 0}}
        per_vlan = {}
        for fr in ports[name]:
            n = len(fr.data)
            port["rx_packets"] += 1
            port["rx_bytes"] += n
            if fr.sel == "malformed":  # not counted under any VLAN
                port["dropped_packets"] += 1
                port["dropped_bytes"] += n
                port["drop_reasons"]["malformed"] += 1
                continue
            vc = per_vlan.setdefault(fr.sel, {"packets": 0, "bytes": 0, "dropped_packets": 0, "dropped_bytes": 0})
            vc["packets"] += 1
            vc["bytes"] += n
            out = REDIRECTS[name].get(fr.sel)
            if out is None:
                port["dropped_packets"] += 1
                port["dropped_bytes"] += n
                port["drop_reasons"]["no_rule"] += 1
                vc["dropped_packets"] += 1
                vc["dropped_bytes"] += n
            else:
                tx[out]["tx_packets"] += 1
                tx[out]["tx_bytes"] += n
        interfaces[name] = port
        vlans[name] = {k: per_vlan[k] for k in sorted(per_vlan, key=vlan_sort_key)}
    interfaces.update(tx)
    return {"interfaces": interfaces, "vlans": vlans}


# -- filter probe ---------------------------------------------------------------------------

# What each tcpdump filter of make.sh must accept, as a predicate on the selector.
PROBE_FILTERS = {
    "untagged_or_priority": lambda sel: sel == "none",
    "vid_12": lambda sel: sel == "12",
    "vid_10_or_11": lambda sel: sel in ("10", "11"),
}


def probe_frames():
    """Every length from 1 to 20 bytes (and 60) of headers with various TPIDs/EtherTypes and
    TCIs, plus a few stacks: the cases where a BPF filter can get the semantics wrong."""
    macs = bytes.fromhex("02767800ff02" "02767800ff01")
    seen, frames = set(), []

    def add(data):
        if data not in seen:
            seen.add(data)
            frames.append(Frame(data, outer_selector(data), "probe"))

    for tpid in (*TPIDS, ETHERTYPE_IPV4, ETHERTYPE_IPV6):
        for t in (0x0000, tci(0, pcp=5), tci(10), tci(10, pcp=5, dei=1), tci(11), tci(12), tci(12, pcp=7, dei=1)):
            full = macs + struct.pack(">HHH", tpid, t, ETHERTYPE_IPV4)
            full += bytes(MIN_FRAME - len(full))
            for length in (*range(1, 21), MIN_FRAME):
                add(full[:length])
    for outer, inner in (((0x88A8, 10), (0x8100, 20)), ((0x88A8, 99), (0x8100, 10)),
                         ((0x8100, 0), (0x8100, 12)), ((0x9100, 12), (0x8100, 30)),
                         ((0x88A8, 13), (0x8100, 11))):
        full = macs + struct.pack(">HHHHH", outer[0], outer[1], inner[0], inner[1], ETHERTYPE_IPV4)
        add(full + bytes(MIN_FRAME - len(full)))
    for k, fr in enumerate(frames):
        fr.ts_ns = BASE_NS + k * STEP_NS + 1
    return frames


def write_probe(out_dir: Path):
    frames = probe_frames()
    write_pcap(out_dir / "probe.pcap", frames)
    expected = {name: sum(1 for fr in frames if accept(fr.sel)) for name, accept in PROBE_FILTERS.items()}
    (out_dir / "probe_expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(f"probe: {len(frames)} frames, expected accepts {expected}")


# -- main -----------------------------------------------------------------------------------

def check_config():
    """Fails if examples/vxspan.json no longer says what REDIRECTS says."""
    if not CONFIG.exists():
        print(f"note: {CONFIG} not found, using the built-in copy of its rules", file=sys.stderr)
        return
    cfg = json.loads(CONFIG.read_text())
    actual = {name: iface["redirect_map"] for name, iface in cfg["interfaces"].items()}
    if actual != REDIRECTS:
        sys.exit(f"error: {CONFIG} has rules {actual}, this fixture was made for {REDIRECTS}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="directory to write to (default: the script's)")
    ap.add_argument("--probe", type=Path, metavar="DIR", help="write the filter probe to DIR instead")
    ap.add_argument("--list", action="store_true",
                    help="also print every frame (time, input, length, selector, description)")
    args = ap.parse_args()
    if args.probe:
        write_probe(args.probe)
        return

    check_config()
    ports = {name: port_frames(i, random.Random(SEED + i)) for i, name in enumerate(INPUTS)}
    assign_timestamps(ports, random.Random(SEED + 100))
    (args.out / "expected").mkdir(parents=True, exist_ok=True)
    for name, frames in ports.items():
        write_pcap(args.out / f"{name}.pcap", frames)
    counters = expected_counters(ports)
    (args.out / "expected" / "counters.json").write_text(json.dumps(counters, indent=2) + "\n")

    if args.list:
        for name, fr in sorted(((n, fr) for n, frs in ports.items() for fr in frs), key=lambda x: x[1].ts_ns):
            sec, nsec = divmod(fr.ts_ns, 1_000_000_000)
            print(f"{sec}.{nsec:09d} {name} {len(fr.data):5d} {fr.sel:>9} {fr.what}")
    for name, frames in ports.items():
        c = counters["interfaces"][name]
        print(f"{name}.pcap: {c['rx_packets']} frames, {c['rx_bytes']} bytes, "
              f"{c['drop_reasons']['no_rule']} no_rule, {c['drop_reasons']['malformed']} malformed")
    for name in OUTPUTS:
        c = counters["interfaces"][name]
        print(f"expected {name}: {c['tx_packets']} frames, {c['tx_bytes']} bytes")


if __name__ == "__main__":
    main()
