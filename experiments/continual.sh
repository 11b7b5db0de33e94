#!/usr/bin/env bash
# Continual pseudo-labelling over a stream (docs/results/runtime.md). The unlabeled CK+ frames of
# adapt.md's footage halves are streamed through `sitfer run` with continual admission on (the
# default bundle and its calibrated threshold); the device buffer is saved after N frames and
# scored with `sitfer eval --buffer` on the split's unseen subjects: p_sem, p_ins and p̂ as the
# buffer grows. Needs experiments/adapt.sh first (its split folders).
#
#   SPLITS="0 1 2 3 4" STEPS="0 100 200 300 400 all" experiments/continual.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SITFER:-target/release/sitfer}
ADAPT=${ADAPT:-runs/adapt}
OUT=${OUT:-runs/continual}
SPLITS=${SPLITS:-"0 1 2 3 4"}
STEPS=${STEPS:-"0 100 200 300 400 all"}
# shellcheck source=experiments/lib.sh
source experiments/lib.sh
mkdir -p "$OUT"
summary=$OUT/summary.tsv
printf 'split\tframes\tqueued\tp_sem\tp_ins\tp_hat\n' > "$summary"
for seed in $SPLITS; do
  d=$ADAPT/split-$seed
  [ -d "$d/footage" ] || { echo "no $d/footage: run experiments/adapt.sh first" >&2; exit 1; }
  for n in $STEPS; do
    buf=$OUT/split-$seed-buffer-$n.safetensors
    rm -f "$buf"
    args=()
    if [ "$n" != 0 ]; then
      lim=(); [ "$n" != all ] && lim=(--max-frames "$n")
      "$BIN" run --faces whole-frame --source "$d/footage" "${lim[@]}" --buffer "$buf" --json /dev/null \
        2> "$OUT/split-$seed-run-$n.log"
      args=(--buffer "$buf")
    fi
    m=$OUT/split-$seed-eval-$n.md
    "$BIN" eval --data "$d/score" --faces whole-frame "${args[@]}" > "$m" 2> "$OUT/split-$seed-eval-$n.log"
    queued=$(awk -F'[][]' '/queued per class/ {n = split($2, a, ","); for (i = 1; i <= n; i++) s += a[i]} END {print s + 0}' \
      "$OUT/split-$seed-eval-$n.log")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$seed" "$n" "${queued:-0}" \
      "$(acc "$m" 'p_sem (classifier)')" "$(acc "$m" 'p_ins (seed buffer)')" "$(acc "$m" 'p̂ (fused)')" >> "$summary"
    tail -1 "$summary"
  done
done
column -t "$summary"
