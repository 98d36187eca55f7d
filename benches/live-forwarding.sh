#!/usr/bin/env bash
# Live forwarding benchmark: a blast of the generated traffic mix (untagged, 802.1Q, QinQ,
# 0x9100; TCP, UDP, ICMP, IPv6, ARP) from one veth into another, forwarded to a third, measured
# on the far side. Two forwarders on the same rig, in the same run, alternating:
#   - a bare XDP program that redirects every frame (benches/live/xdp_redirect.c): the baseline;
#   - vxspan run on AF_PACKET with a rule that forwards everything.
# Prints frames sent, delivered and Mpps for each; never fails on speed. Needs root.
# Not in CI. usage: benches/live-forwarding.sh [FRAMES_PER_ROUND] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200000}
rounds=${2:-3}
bash scripts/install-deps
need=()
for p in clang libbpf-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release -q -p vxspan
bin=$PWD/target/release/vxspan
ns=vxbench-$$
tmp=$(mktemp -d)
vx=""
cleanup() {
  [ -n "$vx" ] && kill "$vx" 2>/dev/null && wait "$vx" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
nsx() { ip netns exec "$ns" "$@"; }

ip netns add "$ns"
nsx sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n "$ns" link add gen0 type veth peer name in0
ip -n "$ns" link add out0 type veth peer name sink0
for i in gen0 in0 out0 sink0; do ip -n "$ns" link set "$i" up; done
# A redirect into a veth is only delivered when its peer has GRO on (or an XDP program).
nsx ethtool -K sink0 gro on >/dev/null

"$bin" gen -w "$tmp/mix.pcap" --count "$n" --seed 9 --max-vlan 20 2>/dev/null
target=$(ip -n "$ns" -o link show out0 | cut -d: -f1)
clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -DTARGET_IFINDEX="$target" \
  -c benches/live/xdp_redirect.c -o "$tmp/redirect.o"
printf '[inputs.in]\ninterface = "in0"\n[outputs.out]\ninterface = "out0"\n[[rules]]\nfrom = "in"\nvlan = "any"\nto = "out"\n' > "$tmp/all.toml"

counter() { ip -n "$ns" -s -j link show "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['stats64']['$2']['packets'])"; }

# One blast: sends the capture at top speed, waits for the far side to settle, prints
# "sent delivered seconds".
blast() {
  local s0 d0 t0 t1 s1 d1 prev
  s0=$(counter gen0 tx); d0=$(counter sink0 rx)
  t0=$(date +%s.%N)
  nsx tcpreplay -q -K -t -i gen0 "$tmp/mix.pcap" >/dev/null 2>&1
  t1=$(date +%s.%N)
  prev=-1
  for _ in $(seq 1 50); do
    d1=$(counter sink0 rx)
    [ "$d1" = "$prev" ] && break
    prev=$d1; sleep 0.1
  done
  s1=$(counter gen0 tx)
  echo "$((s1 - s0)) $((d1 - d0)) $(echo "$t1 - $t0" | bc -l)"
}

declare -A sent delivered secs
for k in xdp vxspan; do sent[$k]=0; delivered[$k]=0; secs[$k]=0; done
for r in $(seq 1 "$rounds"); do
  # Bare XDP redirect (driver mode on veth).
  ip -n "$ns" link set dev in0 xdpdrv obj "$tmp/redirect.o" sec xdp
  read -r s d t < <(blast)
  ip -n "$ns" link set dev in0 xdpdrv off
  sent[xdp]=$((sent[xdp] + s)); delivered[xdp]=$((delivered[xdp] + d)); secs[xdp]=$(echo "${secs[xdp]} + $t" | bc -l)
  # vxspan on AF_PACKET.
  ip netns exec "$ns" "$bin" run "$tmp/all.toml" --control "$tmp/ctl.sock" --log-level warn > "$tmp/vx.out" 2> "$tmp/vx.err" &
  vx=$!
  for _ in $(seq 1 100); do [ -S "$tmp/ctl.sock" ] && break; sleep 0.05; done
  read -r s d t < <(blast)
  "$bin" stats --json --control "$tmp/ctl.sock" > "$tmp/stats.json"
  if ! kill "$vx" 2>/dev/null; then echo "vxspan run stopped early:" >&2; cat "$tmp/vx.err" >&2; exit 1; fi
  wait "$vx" 2>/dev/null || true; vx=""
  sent[vxspan]=$((sent[vxspan] + s)); delivered[vxspan]=$((delivered[vxspan] + d)); secs[vxspan]=$(echo "${secs[vxspan]} + $t" | bc -l)
done

overruns=$(python3 -c "import json; print(json.load(open('$tmp/stats.json'))['interfaces']['in']['drop_reasons'].get('ring_overrun', 0))")
echo "live forwarding, veth -> forwarder -> veth, $rounds rounds of $n generated frames (tcpreplay --topspeed, preloaded), same rig, same run"
for k in xdp vxspan; do
  awk -v k="$k" -v s="${sent[$k]}" -v d="${delivered[$k]}" -v t="${secs[$k]}" 'BEGIN {
    name = (k == "xdp") ? "bare XDP redirect (baseline)" : "vxspan run, AF_PACKET"
    printf "%-30s sent %9d  delivered %9d (%5.1f%%)  %6.3f s  %5.2f Mpps delivered\n", name, s, d, 100 * d / s, t, d / t / 1e6
  }'
done
echo "vxspan ring overruns in the last round: $overruns (counted as ring_overrun; rx = forwarded + dropped holds)"
echo "The sender (tcpreplay) shares the 2 CPUs with the forwarder: both figures are bounded by it."
