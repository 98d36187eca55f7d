#!/usr/bin/env bash
# Writes the seed corpus of every fuzz target from vxspan's own generator and examples
# (nothing copied from elsewhere). Run from the repository root after `cargo build`.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/debug/vxspan
c=fuzz/corpus
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$bin" gen -w "$tmp/g.pcap" --count 40 --seed 5 2>/dev/null
"$bin" gen -w "$tmp/g.pcapng" --count 5 --seed 6 2>/dev/null
cp "$tmp/g.pcapng" "$c/pcap/gen5.pcapng"
head -c 2000 "$tmp/g.pcap" > "$c/pcap/gen40-head.pcap"
python3 - "$tmp/g.pcap" "$c" <<'PY'
import struct, sys
path, c = sys.argv[1], sys.argv[2]
data = open(path, 'rb').read()
off, frames = 24, []
while off + 16 <= len(data):
    caplen = struct.unpack_from('<I', data, off + 8)[0]
    frames.append(data[off + 16: off + 16 + caplen]); off += 16 + caplen
for i, f in enumerate(frames[:16]):
    open(f'{c}/wire/gen{i}', 'wb').write(f)
# engine: length-prefixed frames (prefix is one byte, so keep frames under 256 bytes)
blob = b''.join(bytes([len(f)]) + f for f in frames if len(f) < 256)
open(f'{c}/engine/gen-mix', 'wb').write(blob)
# bpf: "ret #65535" and "ldh [12]; jeq #0x8100 jt 0 jf 1; ret #1; ret #0", then a frame
def insn(code, jt, jf, k): return struct.pack('<HBBI', code, jt, jf, k)
open(f'{c}/bpf/ret', 'wb').write(bytes([0]) + insn(6, 0, 0, 65535) + frames[0])
prog = insn(0x28, 0, 0, 12) + insn(0x15, 0, 1, 0x8100) + insn(6, 0, 0, 1) + insn(6, 0, 0, 0)
open(f'{c}/bpf/vlan', 'wb').write(bytes([3]) + prog + frames[1])
PY
cp examples/*.json examples/*.toml "$c/config/" 2>/dev/null || true
# Tunnel seeds: vxspan's own encapsulated copies of generated frames.
cat > "$tmp/enc.toml" <<'TOML'
[inputs.in]
interface = "e1"
[outputs.erspan2]
erspan = { version = 2, remote = "198.18.1.10", session = 42 }
[outputs.erspan3]
erspan = { version = 3, remote = "2001:db8::10", session = 7 }
[outputs.vxlan]
vxlan = { remote = "198.18.1.11", vni = 7000 }
[outputs.gre]
gre = { remote = "198.18.1.12", key = 5 }
[[rules]]
from = "in"
to = ["erspan2", "erspan3", "vxlan", "gre"]
TOML
"$bin" replay "$tmp/enc.toml" -i "in=$tmp/g.pcap" --out-dir "$tmp/enc" > /dev/null
python3 - "$tmp/enc" "$c" <<'PY'
import struct, sys, os
d, c = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(d)):
    data = open(os.path.join(d, name), 'rb').read()
    off, frames = 24, []
    while off + 16 <= len(data):
        caplen = struct.unpack_from('<I', data, off + 8)[0]
        frames.append(data[off + 16: off + 16 + caplen]); off += 16 + caplen
    stem = name.split('.')[0]
    # decap: two-byte little-endian prefix per frame (length below 0x3fff, no tag edit)
    open(f'{c}/decap/{stem}', 'wb').write(b''.join(struct.pack('<H', len(f)) + f for f in frames[:8]))
    # tunnel_wire: the bytes after the outer IP header (GRE or UDP), for the first frame
    ip = 14 + (20 if frames[0][12:14] == b'\x08\x00' else 40)
    start = ip + (8 if stem == 'vxlan' else 0)
    open(f'{c}/tunnel_wire/{stem}', 'wb').write(frames[0][start:])
PY
# Every outer fragment shape and tunnel type, built with scapy (issue #15).
/usr/bin/python3 fuzz/make-frag-seeds.py "$c"
echo "seeds written under $c"
