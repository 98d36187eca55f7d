#!/usr/bin/env bash
# Replay benchmark: vxspan replay against `tcpdump -r IN -w OUT 'vlan 10'` on the same generated
# capture (default 1,000,000 frames), both measured in this run, best of 3 each, alternating.
# Also checks that both wrote the same number of frames. Prints the figures; never fails on speed.
# usage: benches/replay-vs-tcpdump.sh [FRAMES]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
bash scripts/install-deps
cargo build --release -q -p vxspan
bin=target/release/vxspan
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$bin" gen -w "$tmp/in.pcap" --count "$n" --seed 1 --max-vlan 20 2>/dev/null
size=$(stat -c %s "$tmp/in.pcap")
# Warm the page cache so both read from memory.
cat "$tmp/in.pcap" > /dev/null

now() { date +%s.%N; }
best_v=999999; best_t=999999
for i in 1 2 3; do
  t0=$(now); "$bin" replay examples/vlan10.json -i "in0=$tmp/in.pcap" -o "out0=$tmp/v.pcap" > /dev/null; t1=$(now)
  best_v=$(echo "$t1 - $t0" | bc -l | awk -v b="$best_v" '{print ($1 < b) ? $1 : b}')
  t0=$(now); tcpdump --time-stamp-precision=nano -r "$tmp/in.pcap" -w - 'vlan 10' 2>/dev/null > "$tmp/t.pcap"; t1=$(now)
  best_t=$(echo "$t1 - $t0" | bc -l | awk -v b="$best_t" '{print ($1 < b) ? $1 : b}')
done
fv=$(capinfos -c -M "$tmp/v.pcap" | awk '/Number of packets/ {print $NF}')
ft=$(capinfos -c -M "$tmp/t.pcap" | awk '/Number of packets/ {print $NF}')
awk -v n="$n" -v sz="$size" -v v="$best_v" -v t="$best_t" -v fv="$fv" -v ft="$ft" 'BEGIN {
  printf "input: %d frames, %.1f MB (generated mix, VLAN 1-20, QinQ, 0x9100)\n", n, sz / 1e6
  printf "%-34s %8.3f s  %6.2f Mfps  %8.1f ns/frame  (%d frames written)\n", "vxspan replay (VLAN selector 10)", v, n / v / 1e6, v * 1e9 / n, fv
  printf "%-34s %8.3f s  %6.2f Mfps  %8.1f ns/frame  (%d frames written)\n", "tcpdump -r -w '\''vlan 10'\''", t, n / t / 1e6, t * 1e9 / n, ft
  printf "vxspan / tcpdump throughput: %.2fx\n", t / v
}'
[ "$fv" = "$ft" ] || { echo "frame counts differ: vxspan $fv, tcpdump $ft" >&2; exit 1; }
