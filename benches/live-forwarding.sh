#!/usr/bin/env bash
# Live forwarding benchmark: a blast of the generated traffic mix (untagged, 802.1Q, QinQ,
# 0x9100; TCP, UDP, ICMP, IPv6, ARP) from one veth into another, forwarded to a third, counted on
# the far side. Forwarders, measured on the same rig in the same run, in alternating rounds:
#   - a bare XDP program that redirects every frame (benches/live/xdp_redirect.c): the baseline,
#     in native and in generic mode;
#   - vxspan run --datapath xdp (a rule that forwards everything: the kernel tier, counting on),
#     native and generic;
#   - vxspan run --datapath afxdp (every group in userspace, fed by an AF_XDP socket), native,
#     sending through an AF_XDP TX ring (copy mode on veth) and, with --transmit afpacket,
#     through AF_PACKET batches;
#   - vxspan run --datapath afpacket, with one userspace worker and with two (the input shared
#     by a fanout group; on this 2-vCPU rig the second worker shares a CPU with the sender);
#   - the same rule with `truncate = 128` on the output: in the kernel tier (native), and forced
#     into the userspace tier (--datapath afxdp), what the transform costs in each.
# The sender is `vxspan blast` (BPF_PROG_TEST_RUN with live frames, pinned to CPU 0), far faster
# than tcpreplay. A veth only takes XDP frames if it runs XDP natively or has GRO on: in the
# generic and AF_PACKET rounds GRO is switched on on the input for that reason (each run of the
# generator repeats one frame 64 times, so GRO has nothing to merge). The far end (sink0) runs an
# XDP_PASS program so native redirects into out0 are delivered and counted frame by frame.
# Prints, per forwarder, the median over the rounds of Mpps delivered and the ratio to the bare
# redirect of the same mode. Never fails on speed. Needs root. Not in CI.
# usage: benches/live-forwarding.sh [FRAMES_PER_ROUND] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000000}
rounds=${2:-3}
bash scripts/install-deps
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

"$bin" gen -w "$tmp/mix.pcap" --count 4096 --seed 9 --max-vlan 20 2>/dev/null
target=$(ip -n "$ns" -o link show out0 | cut -d: -f1)
clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -DTARGET_IFINDEX="$target" \
  -c benches/live/xdp_redirect.c -o "$tmp/redirect.o"
clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c tests/xdp/pass.c -o "$tmp/pass.o"
ip -n "$ns" link set dev sink0 xdpdrv obj "$tmp/pass.o" sec xdp.frags
printf '[inputs.in]\ninterface = "in0"\n[outputs.out]\ninterface = "out0"\n[[rules]]\nfrom = "in"\nvlan = "any"\nto = "out"\n' > "$tmp/all.toml"
printf '[inputs.in]\ninterface = "in0"\n[outputs.out]\ninterface = "out0"\ntruncate = 128\n[[rules]]\nfrom = "in"\nvlan = "any"\nto = "out"\n' > "$tmp/truncate.toml"
cfg=all

counter() { ip -n "$ns" -s -j link show "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['stats64']['$2']['packets'])"; }

# One blast from gen0: prints "sent delivered seconds" (seconds: the generator's own).
blast() {
  local d0 d1 prev out
  d0=$(counter sink0 rx)
  out=$(nsx "$bin" blast gen0 "$tmp/mix.pcap" --count "$n" --cpu 0 --json)
  prev=-1
  for _ in $(seq 1 50); do
    d1=$(counter sink0 rx)
    [ "$d1" = "$prev" ] && break
    prev=$d1; sleep 0.1
  done
  python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(r['tx_packets'], $d1 - $d0, r['seconds'])" "$out"
}

start_vxspan() {
  # Not through nsx: $! must be vxspan itself (ip netns exec execs it), not a subshell.
  ip netns exec "$ns" "$bin" run "$tmp/$cfg.toml" --control "$tmp/ctl.sock" --log-level warn "$@" > "$tmp/vx.out" 2> "$tmp/vx.err" &
  vx=$!
  for _ in $(seq 1 100); do [ -S "$tmp/ctl.sock" ] && break; sleep 0.05; done
  [ -S "$tmp/ctl.sock" ] || { echo "vxspan run did not start:" >&2; cat "$tmp/vx.err" >&2; exit 1; }
}

stop_vxspan() {
  "$bin" stats --json --control "$tmp/ctl.sock" > "$tmp/stats.json"
  kill "$vx"; wait "$vx" 2>/dev/null || true; vx=""
}

gro() { nsx ethtool -K in0 gro "$1" >/dev/null; }

# VX_FORWARDERS picks a subset (for example "xdp-native vxspan-afxdp").
read -r -a forwarders <<< "${VX_FORWARDERS:-xdp-native vxspan-native xdp-generic vxspan-generic vxspan-afxdp vxspan-afxdp-tx vxspan-afpacket vxspan-afpacket2 vxspan-truncate vxspan-truncate-user}"
declare -A results
for r in $(seq 1 "$rounds"); do
  for f in "${forwarders[@]}"; do
    case $f in
      xdp-native) gro off; ip -n "$ns" link set dev in0 xdpdrv obj "$tmp/redirect.o" sec xdp ;;
      xdp-generic) gro on; ip -n "$ns" link set dev in0 xdpgeneric obj "$tmp/redirect.o" sec xdp ;;
      vxspan-native) gro off; start_vxspan --datapath xdp --xdp-mode native ;;
      vxspan-generic) start_vxspan --datapath xdp --xdp-mode generic; gro on ;;
      vxspan-afxdp) gro off; start_vxspan --datapath afxdp --xdp-mode native --transmit afpacket ;;
      vxspan-afxdp-tx) gro off; start_vxspan --datapath afxdp --xdp-mode native ;;
      vxspan-afpacket) start_vxspan --datapath afpacket --workers 1; gro on ;;
      vxspan-afpacket2) start_vxspan --datapath afpacket --workers 2; gro on ;;
      vxspan-truncate) gro off; cfg=truncate start_vxspan --datapath xdp --xdp-mode native ;;
      vxspan-truncate-user) gro off; cfg=truncate start_vxspan --datapath afxdp --xdp-mode native --transmit afpacket ;;
    esac
    read -r s d t < <(blast)
    case $f in
      xdp-native) ip -n "$ns" link set dev in0 xdpdrv off ;;
      xdp-generic) ip -n "$ns" link set dev in0 xdpgeneric off ;;
      *)
        stop_vxspan
        rx=$(python3 -c "import json; print(json.load(open('$tmp/stats.json'))['interfaces']['in']['rx_packets'])")
        [ "$rx" -ge "$s" ] || echo "note: $f counted $rx of $s frames sent" >&2
        ;;
    esac
    results[$f]="${results[$f]:-} $s:$d:$t"
  done
done
gro off

echo "live forwarding, veth -> forwarder -> veth, $rounds alternating rounds of $n frames from vxspan blast (CPU 0), 2 vCPUs, same run"
python3 - "$rounds" "$n" <<EOF
import statistics, sys
res = {}
for line in """$(for f in "${forwarders[@]}"; do echo "$f${results[$f]}"; done)""".splitlines():
    name, *runs = line.split()
    res[name] = [tuple(float(x) for x in r.split(":")) for r in runs]
def mpps(runs): return statistics.median(d / t / 1e6 for s, d, t in runs)
def pct(runs): return 100 * sum(d for s, d, t in runs) / sum(s for s, d, t in runs)
label = {
    "xdp-native": "bare XDP redirect, native (baseline)",
    "vxspan-native": "vxspan --datapath xdp, native",
    "xdp-generic": "bare XDP redirect, generic (baseline)",
    "vxspan-generic": "vxspan --datapath xdp, generic",
    "vxspan-afxdp": "vxspan --datapath afxdp, AF_PACKET tx",
    "vxspan-afxdp-tx": "vxspan --datapath afxdp, AF_XDP tx",
    "vxspan-afpacket": "vxspan --datapath afpacket, 1 worker",
    "vxspan-afpacket2": "vxspan --datapath afpacket, 2 workers",
    "vxspan-truncate": "truncate = 128, kernel tier, native",
    "vxspan-truncate-user": "truncate = 128, userspace tier (afxdp)",
}
base = {m: mpps(res[k]) for m, k in [("native", "xdp-native"), ("generic", "xdp-generic")] if k in res}
for k in [k for k in label if k in res]:
    m = mpps(res[k])
    mode = "native" if ("native" in k or k.startswith("vxspan-afxdp") or k.startswith("vxspan-truncate")) else "generic"
    ratio = f"{m / base[mode]:.2f} of the bare {mode} redirect" if mode in base else "(no baseline in this run)"
    print(f"{label[k]:<40} median {m:6.2f} Mpps delivered ({pct(res[k]):5.1f}% of sent)  {ratio}")
EOF
