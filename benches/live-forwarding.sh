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
#     into the userspace tier (--datapath afxdp), what the transform costs in each;
#   - a bare devmap redirect (benches/live/xdp_devmap.c: bpf_redirect_map, which bulks), the
#     baseline of the rows below, and tc mirred (an ingress filter matching all, redirect to out0);
#   - `any -> erspan (v3)`: vxspan's kernel tier originating ERSPAN III to a collector routed via
#     out0, the same config forced into the userspace tier, and a minimal hand-written ERSPAN III
#     encapsulation (benches/live/xdp_erspan.c) without and with one atomic add per frame for the
#     sequence number (what the transform itself costs here);
#   - `sample = 10`: vxspan's kernel tier (one count shared by CPUs and tiers), forced into the
#     userspace tier, and a minimal hand-written exact 1-in-10 sampler (benches/live/xdp_sample.c);
#     delivered is a tenth of the input, so these rows also print the input rate;
#   - `sample = { one_in = 10, mode = "flow" }`: vxspan's kernel tier (SipHash-1-3 of the flow
#     key per frame, bpf/flowhash.h) and forced into the userspace tier;
#   - `any -> vxlan`: vxspan's kernel tier (the UDP source port from the flow hash per frame) and
#     forced into the userspace tier, beside tc mirred into the kernel's own vxlan device (Linux's
#     way);
#   - `balance over 3 outputs`: vxspan's kernel tier (flow hash and weighted rendezvous per frame,
#     bpf/balance.h) and forced into the userspace tier; the three tools are outputs on out0, so
#     that every copy is counted at one sink (the choice is made per frame all the same).
# The sender is `vxspan blast` (BPF_PROG_TEST_RUN with live frames, pinned to CPU 0), far faster
# than tcpreplay. A veth only takes XDP frames if it runs XDP natively or has GRO on: in the
# generic and AF_PACKET rounds GRO is switched on on the input for that reason (each run of the
# generator repeats one frame 64 times, so GRO has nothing to merge). The far end (sink0) runs an
# XDP program that drops every frame once the veth counted it (benches/live/sink_drop.c): native
# redirects into out0 are delivered and counted frame by frame, and no row pays for a stack
# above the sink.
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
  umount "$bpffs" 2>/dev/null || true
  rmdir "$bpffs" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
# libbpf turns dots in pin paths into underscores: a path without any (mktemp has one).
bpffs=/tmp/vxbench-bpffs-$$
nsx() { ip netns exec "$ns" "$@"; }

ip netns add "$ns"
nsx sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n "$ns" link add gen0 type veth peer name in0
ip -n "$ns" link add out0 type veth peer name sink0
for i in gen0 in0 out0 sink0; do ip -n "$ns" link set "$i" up; done
# Tunnel copies are up to 54 bytes longer than the frame: out0 takes them whole.
ip -n "$ns" link set out0 mtu 9000
ip -n "$ns" link set sink0 mtu 9000
# The collector 198.18.0.2 is sink0, reached via out0 without ARP.
ip -n "$ns" addr add 198.18.0.1/24 dev out0
sink_mac=$(ip -n "$ns" -j link show sink0 | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['address'])")
ip -n "$ns" neigh replace 198.18.0.2 lladdr "$sink_mac" dev out0 nud permanent
ip -n "$ns" link add vxl0 type vxlan id 5 remote 198.18.0.2 dstport 4789 dev out0
ip -n "$ns" link set vxl0 mtu 8900 up

"$bin" gen -w "$tmp/mix.pcap" --count 4096 --seed 9 --max-vlan 20 2>/dev/null
target=$(ip -n "$ns" -o link show out0 | cut -d: -f1)
clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -DTARGET_IFINDEX="$target" \
  -c benches/live/xdp_redirect.c -o "$tmp/redirect.o"
clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c benches/live/sink_drop.c -o "$tmp/sink.o"
ip -n "$ns" link set dev sink0 xdpdrv obj "$tmp/sink.o" sec xdp.frags
command -v bpftool >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends bpftool >/dev/null; }
mkdir -p "$bpffs" && mount -t bpf bpf "$bpffs"
le32() { printf '%02x %02x %02x %02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255)); }
# Loads OBJ pinned as NAME in the private bpffs, its devmap pointing at out0.
load_pinned() {
  mkdir -p "$bpffs/${2}_maps"
  bpftool prog load "$1" "$bpffs/$2" type xdp pinmaps "$bpffs/${2}_maps"
  # shellcheck disable=SC2046
  # The devmap resolves the ifindex in the namespace of the process writing it.
  nsx bpftool map update pinned "$bpffs/${2}_maps/ports" key hex 00 00 00 00 value hex $(le32 "$target")
}
for v in devmap erspan erspan_seq sample; do
  src=benches/live/xdp_${v%_seq}.c
  flag=""; [ "$v" = erspan_seq ] && flag=-DWITH_SEQ
  clang -O2 -g -target bpf -mcpu=v3 -I/usr/include/x86_64-linux-gnu $flag -DDST_MAC="0x${sink_mac//:/,0x}" -c "$src" -o "$tmp/$v.o"
  load_pinned "$tmp/$v.o" "$v"
done
printf '[inputs.in]\ninterface = "in0"\n[outputs.out]\ninterface = "out0"\n[[rules]]\nfrom = "in"\nvlan = "any"\nto = "out"\n' > "$tmp/all.toml"
printf '[inputs.in]\ninterface = "in0"\n[outputs.out]\ninterface = "out0"\ntruncate = 128\n[[rules]]\nfrom = "in"\nvlan = "any"\nto = "out"\n' > "$tmp/truncate.toml"
printf '[inputs.in]\ninterface = "in0"\n[outputs.col]\nerspan = { remote = "198.18.0.2", version = 3, session = 7 }\n[[rules]]\nfrom = "in"\nvlan = "any"\nto = "col"\n' > "$tmp/erspan.toml"
printf '[inputs.in]\ninterface = "in0"\n[outputs.out]\ninterface = "out0"\n[[rules]]\nfrom = "in"\nvlan = "any"\nsample = 10\nto = "out"\n' > "$tmp/sample.toml"
printf '[inputs.in]\ninterface = "in0"\n[outputs.out]\ninterface = "out0"\n[[rules]]\nfrom = "in"\nvlan = "any"\nsample = { one_in = 10, mode = "flow" }\nto = "out"\n' > "$tmp/flowsample.toml"
printf '[inputs.in]\ninterface = "in0"\n[outputs.ids1]\ninterface = "out0"\n[outputs.ids2]\ninterface = "out0"\n[outputs.ids3]\ninterface = "out0"\n[[rules]]\nfrom = "in"\nvlan = "any"\nto = { balance = ["ids1", "ids2", "ids3"], weights = [1, 1, 2] }\n' > "$tmp/balance.toml"
printf '[inputs.in]\ninterface = "in0"\n[outputs.col]\nvxlan = { remote = "198.18.0.2", vni = 5 }\n[[rules]]\nfrom = "in"\nvlan = "any"\nto = "col"\n' > "$tmp/vxlan.toml"
cfg=all
mirred() {
  nsx tc qdisc add dev in0 clsact
  # u32 matching everything (this kernel has no matchall classifier).
  nsx tc filter add dev in0 ingress protocol all u32 match u32 0 0 action mirred egress redirect dev "$1"
}

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
read -r -a forwarders <<< "${VX_FORWARDERS:-xdp-native vxspan-native xdp-generic vxspan-generic vxspan-afxdp vxspan-afxdp-tx vxspan-afpacket vxspan-afpacket2 vxspan-truncate vxspan-truncate-user devmap tc-mirred erspan-min erspan-min-seq vxspan-erspan vxspan-erspan-user sample-min vxspan-sample vxspan-sample-user vxspan-flowsample vxspan-flowsample-user vxspan-vxlan vxspan-vxlan-user tc-mirred-vxlan vxspan-balance vxspan-balance-user}"
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
      devmap) gro off; ip -n "$ns" link set dev in0 xdpdrv pinned "$bpffs/devmap" ;;
      erspan-min) gro off; ip -n "$ns" link set dev in0 xdpdrv pinned "$bpffs/erspan" ;;
      erspan-min-seq) gro off; ip -n "$ns" link set dev in0 xdpdrv pinned "$bpffs/erspan_seq" ;;
      tc-mirred) gro on; mirred out0 ;;
      tc-mirred-vxlan) gro on; mirred vxl0 ;;
      vxspan-erspan) gro off; cfg=erspan start_vxspan --datapath xdp --xdp-mode native ;;
      vxspan-erspan-user) gro off; cfg=erspan start_vxspan --datapath afxdp --xdp-mode native --transmit afpacket ;;
      sample-min) gro off; ip -n "$ns" link set dev in0 xdpdrv pinned "$bpffs/sample" ;;
      vxspan-sample) gro off; cfg=sample start_vxspan --datapath xdp --xdp-mode native ;;
      vxspan-sample-user) gro off; cfg=sample start_vxspan --datapath afxdp --xdp-mode native --transmit afpacket ;;
      vxspan-flowsample) gro off; cfg=flowsample start_vxspan --datapath xdp --xdp-mode native ;;
      vxspan-flowsample-user) gro off; cfg=flowsample start_vxspan --datapath afxdp --xdp-mode native --transmit afpacket ;;
      vxspan-vxlan) gro off; cfg=vxlan start_vxspan --datapath xdp --xdp-mode native ;;
      vxspan-vxlan-user) gro off; cfg=vxlan start_vxspan --datapath afxdp --xdp-mode native --transmit afpacket ;;
      vxspan-balance) gro off; cfg=balance start_vxspan --datapath xdp --xdp-mode native ;;
      vxspan-balance-user) gro off; cfg=balance start_vxspan --datapath afxdp --xdp-mode native --transmit afpacket ;;
    esac
    read -r s d t < <(blast)
    case $f in
      xdp-native | devmap | erspan-min | erspan-min-seq | sample-min) ip -n "$ns" link set dev in0 xdpdrv off ;;
      tc-mirred | tc-mirred-vxlan) nsx tc qdisc del dev in0 clsact ;;
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
def inrate(runs): return statistics.median(s / t / 1e6 for s, d, t in runs)
label = {
    "xdp-native": ("bare XDP redirect, native (baseline)", None),
    "vxspan-native": ("vxspan --datapath xdp, native", "xdp-native"),
    "xdp-generic": ("bare XDP redirect, generic (baseline)", None),
    "vxspan-generic": ("vxspan --datapath xdp, generic", "xdp-generic"),
    "vxspan-afxdp": ("vxspan --datapath afxdp, AF_PACKET tx", "xdp-native"),
    "vxspan-afxdp-tx": ("vxspan --datapath afxdp, AF_XDP tx", "xdp-native"),
    "vxspan-afpacket": ("vxspan --datapath afpacket, 1 worker", "xdp-generic"),
    "vxspan-afpacket2": ("vxspan --datapath afpacket, 2 workers", "xdp-generic"),
    "vxspan-truncate": ("truncate = 128, kernel tier, native", "xdp-native"),
    "vxspan-truncate-user": ("truncate = 128, userspace tier (afxdp)", "xdp-native"),
    "devmap": ("bare devmap redirect, native (baseline)", None),
    "tc-mirred": ("tc mirred redirect", "devmap"),
    "erspan-min": ("minimal ERSPAN III XDP, no sequence", "devmap"),
    "erspan-min-seq": ("minimal ERSPAN III XDP, atomic sequence", "devmap"),
    "vxspan-erspan": ("any -> erspan (v3), kernel tier, native", "devmap"),
    "vxspan-erspan-user": ("any -> erspan (v3), userspace (afxdp)", "devmap"),
    "sample-min": ("minimal exact 1-in-10 sampler XDP", "devmap"),
    "vxspan-sample": ("sample = 10, kernel tier, native", "devmap"),
    "vxspan-sample-user": ("sample = 10, userspace (afxdp)", "devmap"),
    "vxspan-flowsample": ("sample = 10 by flow, kernel tier, native", "devmap"),
    "vxspan-flowsample-user": ("sample = 10 by flow, userspace (afxdp)", "devmap"),
    "vxspan-vxlan": ("any -> vxlan, kernel tier, native", "devmap"),
    "vxspan-vxlan-user": ("any -> vxlan, userspace (afxdp)", "devmap"),
    "tc-mirred-vxlan": ("tc mirred into the kernel vxlan device", "devmap"),
    "vxspan-balance": ("balance over 3 outputs, kernel tier, native", "devmap"),
    "vxspan-balance-user": ("balance over 3 outputs, userspace (afxdp)", "devmap"),
}
for k in [k for k in label if k in res]:
    m = mpps(res[k])
    name, base = label[k]
    if base is None:
        ratio = ""
    elif base in res:
        ratio = f"{m / mpps(res[base]):.2f} of the {label[base][0].split(',')[0]}"
    else:
        ratio = "(no baseline in this run)"
    if "sample" in k:
        # A tenth is delivered: compare input rates (each sampler keeps up or loses input).
        m = inrate(res[k])
        ratio = f"{m / inrate(res[base]):.2f} of the {label[base][0].split(',')[0]}'s input rate" if base in res else ratio
        print(f"{name:<42} median {m:6.2f} Mpps input, {mpps(res[k]):5.2f} delivered ({pct(res[k]):5.1f}% of sent)  {ratio}")
        continue
    print(f"{name:<42} median {m:6.2f} Mpps delivered ({pct(res[k]):5.1f}% of sent)  {ratio}")
EOF
