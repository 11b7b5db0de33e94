#!/usr/bin/env bash
# Accuracy of a model precision against fp32 on the whole FER2013 val, face by face
# (docs/results/boards.md, "Accuracy"): `sitfer eval --faces whole-frame --predictions` for fp32
# and for PRECISION (default fp16) over the same faces, then the four sources' accuracies and the
# faces whose prediction changed.
#
# On x86 tract runs f16 through its generic kernel (~1 s of CPU per face), so the val is split
# into PARTS folders (every PARTS-th face of each class, linked, not copied) evaluated in
# parallel, one thread each. Each part runs in its own session (`setsid`): with the kernel's
# autogroup scheduling, a job's nice value only counts inside its session.
#
#   experiments/precision-accuracy.sh                 # fp16 vs fp32, 4 parts
#   PRECISION=int8 PARTS=2 experiments/precision-accuracy.sh
#   COMPARE_ONLY=1 experiments/precision-accuracy.sh  # the tables again, from the CSVs
# Environment: SITFER (default target/release/sitfer: `cargo build --release -p sitfer-runtime
# --bin sitfer`), SITFER_DATA (default ../shared/data), OUT (default runs/precision-accuracy).
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SITFER:-target/release/sitfer}
DATA=${SITFER_DATA:-../shared/data}
OUT=${OUT:-runs/precision-accuracy}
P=${PRECISION:-fp16}
PARTS=${PARTS:-4}

if [ -z "${COMPARE_ONLY:-}" ]; then
  [ -x "$S" ] || { echo "no sitfer at $S" >&2; exit 1; }
  for c in "$DATA"/fer2013/val/*/; do
    c=$(basename "$c"); i=0
    for k in $(seq 0 $((PARTS - 1))); do mkdir -p "$OUT/q$k/$c"; done
    for f in $(find "$(realpath "$DATA/fer2013/val/$c")" -maxdepth 1 -name '*.png' | sort); do
      ln -sf "$f" "$OUT/q$((i % PARTS))/$c/"; i=$((i + 1))
    done
  done
  for p in fp32 "$P"; do
    pids=()
    for k in $(seq 0 $((PARTS - 1))); do
      RAYON_NUM_THREADS=1 setsid "$S" eval --data "$OUT/q$k" --faces whole-frame --precision "$p" \
        --predictions "$OUT/$p-q$k.csv" > "$OUT/$p-q$k.txt" 2> "$OUT/$p-q$k.err" &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
  done
fi

# Rows are `file,truth,p_sem,p_text,p_ins,p_hat`; a face is matched across precisions by its file
# name (FER2013's are unique), so runs over differently split folders compare too.
awk -F, -v p="$P" '
  FNR == 1 { run = (FILENAME ~ "/fp32-q[0-9]+[.]csv$") ? "fp32" : p; next }
  {
    f = $1; sub(/.*\//, "", f); n[run]++; seen[run, f] = 1
    for (s = 3; s <= 6; s++) { ok[run, s] += ($s == $2); pred[run, f, s] = $s }
    files[f] = 1
  }
  END {
    split("p_sem p_text p_ins p_hat", name, " ")
    printf "| source | fp32 | %s | delta (points) | faces whose prediction differs |\n|---|---|---|---|---|\n", p
    for (s = 3; s <= 6; s++) {
      d = 0; for (f in files) d += ((("fp32", f) in seen) && ((p, f) in seen) && pred["fp32", f, s] != pred[p, f, s])
      a = 100 * ok["fp32", s] / n["fp32"]; b = 100 * ok[p, s] / n[p]
      printf "| %s | %.2f %% (%d/%d) | %.2f %% (%d/%d) | %+.2f | %d |\n", name[s - 2], a, ok["fp32", s], n["fp32"], b, ok[p, s], n[p], b - a, d
    }
    if (n["fp32"] != n[p]) printf "\nnot the same faces (%d and %d): the accuracies do not compare; differences over the faces in both\n", n["fp32"], n[p]
  }' "$OUT"/fp32-q*.csv "$OUT/$P"-q*.csv | tee "$OUT/compare-$P.md"
