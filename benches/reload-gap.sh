#!/bin/bash
# The first worker's longest gap between two batches (`status` worker_max_gap_ms[0]) across
# reloads of a running kernel-tier instance: 10 rules-only reloads (ports kept) and 10 that
# change the ports (an output interface changes, one is removed), beside the idle gap measured
# first in the same run (counter publishing alone). Root; one throw-away namespace with veth
# pairs; nothing in the root namespace is touched. Usage: benches/reload-gap.sh [VXSPAN_BINARY]
# (default target/release/vxspan). Prints figures; never fails on them.
set -u
BIN=${1:-target/release/vxspan}
BIN=$(readlink -f "$BIN")
NS=vxs-gap-$$
D=$(mktemp -d)
PID=
cleanup() {
    [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    rm -rf "$D"
}
trap cleanup EXIT
ip netns add "$NS"
for i in 0 2 3; do
    ip -n "$NS" link add "eth$i" type veth peer name "p$i"
    ip -n "$NS" link set "eth$i" up
    ip -n "$NS" link set "p$i" up
done
ports='[inputs.in]
interface = "eth0"
[outputs.x]
interface = "eth2"
[outputs.y]
interface = "eth3"
'
printf '%s[[rules]]\nfrom = ["in"]\nto = ["x"]\n' "$ports" > "$D/a.toml"
printf '%s[[rules]]\nfrom = ["in"]\nto = ["y"]\n' "$ports" > "$D/b.toml"
printf '[inputs.in]\ninterface = "eth0"\n[outputs.x]\ninterface = "eth3"\n[[rules]]\nfrom = ["in"]\nto = ["x"]\n' > "$D/c.toml"
cp "$D/a.toml" "$D/run.toml"
ip netns exec "$NS" "$BIN" run "$D/run.toml" --datapath xdp --xdp-mode native --control "$D/c.sock" \
    > "$D/out" 2> "$D/err" &
PID=$!
for _ in $(seq 100); do [ -S "$D/c.sock" ] && break; sleep 0.1; done
[ -S "$D/c.sock" ] || { cat "$D/err"; exit 1; }
gap() {
    "$BIN" status --control "$D/c.sock" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["worker_max_gap_ms"][0])'
}
sleep 1
echo "idle (baseline, same run): longest gap $(gap) ms"
for kind in rules ports; do
    worst=0
    for n in $(seq 10); do
        if [ "$kind" = rules ]; then f=$([ $((n % 2)) = 0 ] && echo a || echo b); else f=$([ $((n % 2)) = 0 ] && echo a || echo c); fi
        cp "$D/$f.toml" "$D/run.toml"
        start=$(date +%s%N)
        if ! "$BIN" reload --control "$D/c.sock" > /dev/null; then
            kill -0 "$PID" 2>/dev/null || { echo "the daemon died:"; tail -3 "$D/err"; exit 1; }
            echo "$kind reload $n refused"
        fi
        ms=$((($(date +%s%N) - start) / 1000000))
        [ "$ms" -gt "$worst" ] && worst=$ms
    done
    echo "$kind-only reloads x10: slowest reply ${worst} ms, longest gap so far $(gap) ms"
done
