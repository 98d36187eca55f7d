#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each (default 120) with cargo-fuzz.
# cargo-fuzz needs nightly rustc flags: a nightly toolchain is used if rustup has one,
# otherwise stable with RUSTC_BOOTSTRAP=1. Findings land in fuzz/artifacts/TARGET/.
# usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-120}; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(wire bpf pcap config engine tunnel_wire decap agentx reasm)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then tc=(+nightly); else tc=(); export RUSTC_BOOTSTRAP=1; fi
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== fuzzing $t for ${secs}s"
  mkdir -p "corpus-live/$t"
  # New inputs go to corpus-live/ (not committed); corpus/ holds the committed seeds.
  status=0
  cargo "${tc[@]}" fuzz run "$t" "corpus-live/$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 > "/tmp/vxspan-fuzz-$t.log" 2>&1 || status=$?
  grep -aE '^(#[0-9]+\s+DONE|==[0-9]+==|SUMMARY|artifact)' "/tmp/vxspan-fuzz-$t.log" || true
  if [ -n "$(find "artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \) 2>/dev/null)" ]; then
    echo "!! $t: findings in fuzz/artifacts/$t"; exit 1
  fi
  if [ "$status" -ne 0 ]; then
    echo "!! $t: cargo fuzz failed (exit $status), see /tmp/vxspan-fuzz-$t.log"; tail -20 "/tmp/vxspan-fuzz-$t.log"; exit 1
  fi
done
echo "no findings"
