#!/usr/bin/env bash
# Regenerates the hostile-traffic corpus (hostile.pcap, cases.txt, expected/required.pcap,
# expected/allowed.pcap) with make.py, then checks the oracle half of it: every frame of
# expected/*.pcap (what a correct decapsulator may deliver) dissects in tshark without a
# malformed-packet or error-level expert item, so that crates/vxspan/tests/hostile.rs may
# trust them. Needs python3 with scapy and tshark. `make.sh DIR` writes into DIR instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

die() { echo "make.sh: error: $*" >&2; exit 1; }

# A python3 that has scapy: $PYTHON, else the first of python3 and Debian's own python3
# (a pyenv or venv python3 earlier on PATH usually lacks python3-scapy).
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3 /usr/bin/python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import scapy' 2>/dev/null; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || die "no python3 with scapy found (install python3-scapy or set PYTHON)"
command -v tshark >/dev/null || die "tshark not found"

out=${1:-.}
"$PY" make.py --out "$out"

for f in "$out"/expected/required.pcap "$out"/expected/allowed.pcap; do
  bad=$(tshark -n -r "$f" -o ip.defragment:FALSE -o ipv6.defragment:FALSE \
    -Y '_ws.malformed || _ws.expert.severity >= error' -T fields -e frame.number 2>/dev/null)
  [ -z "$bad" ] || die "$f: tshark finds errors in frames $(echo $bad | tr ' ' ,)"
done
echo "make.sh: corpus regenerated; expected/*.pcap dissect cleanly"
