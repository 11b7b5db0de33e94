#!/usr/bin/env bash
# Soak test of the runtime: `sitfer run` over a long generated stream of face crops (default
# 100,000 frames of 48x48, unpaced) with continual pseudo-labelling on, reporting the peak RSS
# (VmHWM) after 1k, 10k, 50k and all frames, the instance buffer's entries and file size, and
# the frame rate. A second, shorter run (SOAK_RESUME_FRAMES, default 10,000) resumes from the
# saved buffer, as a restarted device does.
#
#   scripts/soak.sh [FRAMES] [SIZE]
#
# The stream comes from runtime/examples/soak_stream.rs through a FIFO, so nothing is stored.
# The bundle is models/default/ with its admission threshold lowered (SOAK_THRESHOLD, default
# 0.5; the manifest is not hashed) so that faces keep entering the buffer: the worst case for
# memory and buffer growth. Results go to runs/soak/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
frames=${1:-100000}
size=${2:-48}
threshold=${SOAK_THRESHOLD:-0.5}
out=runs/soak
rm -rf "$out"
mkdir -p "$out"

nice -n 10 cargo build -q --release -p sitfer-runtime --bin sitfer --example soak_stream
bin=target/release/sitfer
gen=target/release/examples/soak_stream

cp -r models/default "$out/bundle"
python3 - "$out/bundle/manifest.json" "$threshold" <<'PY'
import json, sys
p, t = sys.argv[1], float(sys.argv[2])
m = json.load(open(p))
m["fusion"]["threshold"] = t
json.dump(m, open(p, "w"), indent=2)
PY

kb() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# One run: prints "frames=N hwm_1k=… hwm_10k=… hwm_50k=… hwm_end=… seconds=…" (kB).
soak_run() {
  local tag=$1 frames=$2 fifo="$out/stream-$1.y4m" json="$out/frames-$1.jsonl" log="$out/run-$1.log"
  rm -f "$fifo"
  mkfifo "$fifo"
  "$gen" "$frames" "$size" >"$fifo" &
  local gen_pid=$!
  local t0
  t0=$(date +%s.%N)
  "$bin" run --bundle "$out/bundle" --faces whole-frame --source "$fifo" --json "$json" \
    --buffer "$out/buffer.safetensors" --max-frames "$frames" 2>"$log" &
  local pid=$!
  local marks=(1000 10000 50000) names=(1k 10k 50k) i=0 hwm="" last=""
  declare -A at=()
  while kill -0 "$pid" 2>/dev/null; do
    hwm=$(kb "$pid" VmHWM)
    [ -n "$hwm" ] && last=$hwm
    if [ $i -lt ${#marks[@]} ]; then
      local n
      n=$( (wc -l <"$json") 2>/dev/null || echo 0)
      while [ $i -lt ${#marks[@]} ] && [ "$n" -ge "${marks[$i]}" ]; do
        at[${names[$i]}]=$last
        i=$((i + 1))
      done
    fi
    sleep 0.5
  done
  wait "$pid"
  wait "$gen_pid" 2>/dev/null || true
  local t1
  t1=$(date +%s.%N)
  rm -f "$fifo"
  local n
  n=$(wc -l <"$json")
  echo "run=$tag frames=$n hwm_1k_kB=${at[1k]:-?} hwm_10k_kB=${at[10k]:-?} hwm_50k_kB=${at[50k]:-?}" \
    "hwm_end_kB=$last seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
  echo "  summary: $(grep -o '{"added_to_buffer".*' "$log" | tail -1)"
  echo "  buffer file: $(stat -c %s "$out/buffer.safetensors") bytes"
}

echo "== soak: $frames frames of ${size}x${size}, threshold $threshold, $(nproc) cores"
soak_run first "$frames" | tee "$out/report.txt"
soak_run resumed "${SOAK_RESUME_FRAMES:-10000}" | tee -a "$out/report.txt"
