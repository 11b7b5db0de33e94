#!/usr/bin/env bash
# Fuzzes every parser of outside input with cargo-fuzz (libFuzzer) for SECONDS each (default
# 60) and prints, per target, the executions and the crashes found (inputs in
# fuzz/artifacts/<target>/). Seeds come from fuzz/seeds/<target>/; the growing corpus stays in
# fuzz/corpus/ (ignored by git). CI runs the same targets on stable without cargo-fuzz:
# tests/tests/fuzz_smoke.rs.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# The toolchain is stable: RUSTC_BOOTSTRAP lets it take cargo-fuzz's nightly flags. No sanitizer:
# the parsers are safe Rust, so what is sought is panics, overflows (debug assertions are on),
# aborts and allocations over the RSS limit, and ASan would halve the executions on two cores.
# SITFER_FUZZ_TRAINER=0 skips the dataset readers (their build adds candle).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
runtime_targets=(bundle_manifest bundle_open bundle_tensors onnx_model y4m instance_buffer board_profile)
trainer_targets=(fer2013_csv ferplus rafdb affectnet)
if [ $# -gt 0 ]; then
  targets=("$@")
elif [ "${SITFER_FUZZ_TRAINER:-1}" = 0 ]; then
  targets=("${runtime_targets[@]}")
else
  targets=("${runtime_targets[@]}" "${trainer_targets[@]}")
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
flags=(--sanitizer none)
[ "${SITFER_FUZZ_TRAINER:-1}" = 0 ] || flags+=(--features trainer)

nice -n 10 cargo fuzz build "${flags[@]}"
mkdir -p fuzz/logs
printf '%-16s %12s %8s %8s\n' target executions exec/s crashes
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  cp -n "fuzz/seeds/$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
  before=$(find "fuzz/artifacts/$t" -type f | wc -l)
  # Fork mode: a crash is saved and fuzzing goes on, so one known crash does not end the run.
  nice -n 10 cargo fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -rss_limit_mb=2048 -timeout=10 -max_len=65536 >"fuzz/logs/$t.log" 2>&1 || true
  # Fork mode's progress lines: `#EXECS: cov: … exec/s: R oom/timeout/crash: O/T/C time: …`.
  line=$(grep -E '^#[0-9]+: cov:' "fuzz/logs/$t.log" | tail -1 || true)
  execs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$line")
  rate=$(sed -E 's/.*exec\/s: ([0-9]+).*/\1/' <<<"$line")
  after=$(find "fuzz/artifacts/$t" -type f | wc -l)
  printf '%-16s %12s %8s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "$((after - before))"
done
echo "logs: fuzz/logs/; crash inputs: fuzz/artifacts/<target>/ (replay: cargo fuzz run <target> <file>)"
