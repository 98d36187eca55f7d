#!/usr/bin/env bash
# Regenerates the vxspan-example golden fixture:
#   eth0.pcap, eth1.pcap, expected/counters.json   by make_input.py (its own bookkeeping)
#   expected/eth2.pcap, expected/eth3.pcap          by tcpdump filters and mergecap, not vxspan
# then checks the two halves against each other. Needs python3 with scapy, tcpdump (libpcap
# >= 1.5 for nanosecond reads), mergecap and capinfos (wireshark-common).
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
for tool in tcpdump mergecap capinfos; do
  command -v "$tool" >/dev/null || die "$tool not found"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- The filters ------------------------------------------------------------------------
#
# Byte offsets, not libpcap's `vlan` keyword: `vlan` only knows 0x8100/0x88a8/0x9100 in
# some versions, and it moves the offsets of everything after it, which is not what is
# wanted here; only the outer tag selects.
#
# `len` is the frame's length on the wire (the record's orig_len); the fixture's captures
# are never truncated, so it is also the number of bytes a load may read.
#
# Length guards. cBPF ends the program with "reject" on any load past the end of the
# packet, whichever branch it is in; so frames shorter than 14 bytes are already rejected
# by the ether[12:2] loads (even under `not`), and a tagged frame of 14 or 15 bytes by the
# ether[14:2] load. But a tagged frame of 16 or 17 bytes has its TCI and lacks (part of)
# the EtherType after it: it is malformed, yet `ether[14:2] & 0x0fff = N` loads fine and
# matches. Without the `len >= 18` guards, eth1's 16-byte 0x8100 VID 12 runt would be
# forwarded to eth2 and its 17-byte 0x9100 VID 10 runt to eth3 (and a 16/17-byte
# priority-tagged runt on eth0 to eth2). The `len >= 14` guard is redundant with the
# reject-on-out-of-bounds rule but states the intent instead of relying on it.
# The probe below checks all of this on every length from 1 to 20 bytes.
TPID='(ether[12:2] = 0x8100 or ether[12:2] = 0x88a8 or ether[12:2] = 0x9100)'
OUTER_VID='(ether[14:2] & 0x0fff)'
# Untagged, or outer tag with VID 0 (priority-tagged; PCP/DEI ignored by the mask).
F_UNTAGGED_OR_PRIORITY="len >= 14 and (not $TPID or (len >= 18 and $OUTER_VID = 0))"
# Outer VID 12, whatever the outer TPID and whatever tags follow.
F_VID_12="len >= 18 and $TPID and $OUTER_VID = 12"
# Outer VID 10 or 11.
F_VID_10_OR_11="len >= 18 and $TPID and ($OUTER_VID = 10 or $OUTER_VID = 11)"

# filter IN OUT EXPR: the frames of IN that EXPR accepts, unchanged, into OUT.
# --time-stamp-precision=nano is needed: without it libpcap reads nanosecond files as
# microseconds and tcpdump writes the rounded timestamps.
# The capture goes to stdout (-w -) and the shell creates the file: run as root, Debian's
# tcpdump drops to user "tcpdump" and chowns the files it writes to that user.
filter() {
  tcpdump --time-stamp-precision=nano -r "$1" -w - "$3" >"$2" 2>"$tmp/tcpdump.log" \
    || { cat "$tmp/tcpdump.log" >&2; die "tcpdump failed on $1"; }
}

# count_bytes FILE: "<packets> <bytes>" of a capture.
count_bytes() {
  capinfos -T -r -c -d -M "$1" | awk -F'\t' '{ print $2, $3 }'
}

# is_nsec_pcap FILE: the file starts with the little- or big-endian nanosecond pcap magic.
is_nsec_pcap() {
  local magic
  magic=$(od -An -tx1 -N4 "$1" | tr -d ' \n')
  [ "$magic" = 4d3cb2a1 ] || [ "$magic" = a1b23c4d ]
}

# --- 1. Check the filters against the semantics -----------------------------------------
"$PY" make_input.py --probe "$tmp"
for name in untagged_or_priority vid_12 vid_10_or_11; do
  case $name in
    untagged_or_priority) expr=$F_UNTAGGED_OR_PRIORITY ;;
    vid_12) expr=$F_VID_12 ;;
    vid_10_or_11) expr=$F_VID_10_OR_11 ;;
  esac
  filter "$tmp/probe.pcap" "$tmp/probe_$name.pcap" "$expr"
  got=$(count_bytes "$tmp/probe_$name.pcap" | cut -d' ' -f1)
  want=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$tmp/probe_expected.json" "$name")
  [ "$got" = "$want" ] || die "filter $name accepts $got probe frames, the semantics say $want"
  echo "probe: filter $name accepts $got frames, as expected"
done

# --- 2. Inputs and expected counters ----------------------------------------------------
"$PY" make_input.py

# --- 3. Expected outputs ----------------------------------------------------------------
# eth0: "none" -> eth2.   eth1: 10 -> eth3, 11 -> eth3, 12 -> eth2.
filter eth0.pcap "$tmp/eth0_to_eth2.pcap" "$F_UNTAGGED_OR_PRIORITY"
filter eth1.pcap "$tmp/eth1_to_eth2.pcap" "$F_VID_12"
filter eth1.pcap expected/eth3.pcap "$F_VID_10_OR_11"
# eth2 gets both streams: a chronological merge (every timestamp in the inputs is distinct,
# so the order is unique). -F nsecpcap keeps the nanoseconds.
mergecap -F nsecpcap -w expected/eth2.pcap "$tmp/eth0_to_eth2.pcap" "$tmp/eth1_to_eth2.pcap"

# --- 4. Cross-check against the generator's bookkeeping ---------------------------------
json_get() { "$PY" -c 'import json, sys; d = json.load(open("expected/counters.json"))["interfaces"][sys.argv[1]]; print(d[sys.argv[2]], d[sys.argv[3]])' "$@"; }
fail=0
for port in eth0 eth1; do
  got=$(count_bytes "$port.pcap"); want=$(json_get "$port" rx_packets rx_bytes)
  [ "$got" = "$want" ] || { echo "make.sh: MISMATCH $port.pcap has $got (packets bytes), counters.json rx says $want" >&2; fail=1; }
done
for port in eth2 eth3; do
  got=$(count_bytes "expected/$port.pcap"); want=$(json_get "$port" tx_packets tx_bytes)
  [ "$got" = "$want" ] || { echo "make.sh: MISMATCH expected/$port.pcap has $got (packets bytes), counters.json tx says $want" >&2; fail=1; }
  echo "expected/$port.pcap: $got (packets bytes) = counters.json tx"
done
for f in eth0.pcap eth1.pcap expected/eth2.pcap expected/eth3.pcap; do
  is_nsec_pcap "$f" || { echo "make.sh: MISMATCH $f is not a nanosecond pcap" >&2; fail=1; }
done
[ "$fail" = 0 ] || die "the tcpdump/mergecap outputs disagree with expected/counters.json"
echo "make.sh: fixture regenerated and cross-checked"
