#!/usr/bin/env bash
# One lane of a SIT-FER protocol: the methods of one split seed in order, each run through
# experiments/sitfer2.sh on one thread (two single-threaded lanes use 2 cores better than one
# 2-thread run), each finished run's metrics copied into docs/results/<runs-name>-runs/ (runs/
# does not always survive a session; the tables are read from those copies).
#   PHASE=p5 experiments/sitfer-lane.sh runs/sitfer5 6 "sitfer-ema fixmatch supervised fixmatch-ema"
# Rerunning it continues the lane (finished runs are skipped, the running one resumes).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:?runs dir}; SEED=${2:?seed}; METHODS=${3:?methods}
KEEP=docs/results/$(basename "$RUNS")-runs
mkdir -p "$RUNS"
export RUST_LOG=${RUST_LOG:-info} RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1
keep() {
  for j in "$RUNS"/*.json; do
    n=$(basename "$j" .json); grep -q '"steps"' "$j" || continue
    mkdir -p "$KEEP/$n"; cp "$j" "$KEEP/$n.json"
    [ -f "$RUNS/$n/metrics.jsonl" ] && cp "$RUNS/$n/metrics.jsonl" "$KEEP/$n/"
  done
}
for m in $METHODS; do
  SEEDS=$SEED METHODS=$m nice -n 10 experiments/sitfer2.sh "$RUNS" >> "$RUNS/lane-s$SEED.log" 2>&1
  keep
done
echo "lane $SEED done $(date -u)" >> "$RUNS/lane-s$SEED.log"
