#!/usr/bin/env bash
# Plain `sitfer run` (no flags but the source: the README's defaults) on 640x480 frames with one
# face, side by side for several binaries, interleaved REPS times so that a machine's drift hits
# every binary alike (docs/results/runtime.md, bundle.md). Frames as experiments/fps.sh makes them
# (CK+ crops pasted at SIZE px, every 4th frame has one face).
#   BINS="runs/old/sitfer target/release/sitfer" SIZES="96 200" REPS=3 experiments/fps-plain.sh
#   (SITFER_DATA, default ../shared/data; OUT, default runs/fps-plain)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SITFER_DATA:-../shared/data}
OUT=${OUT:-runs/fps-plain}
BINS=${BINS:-target/release/sitfer}
SIZES=${SIZES:-"96 200"}
REPS=${REPS:-3}
first=${BINS%% *}
for size in $SIZES; do
  d=$OUT/frames-$size
  if [ ! -d "$d/one" ]; then
    rm -rf "$d" && mkdir -p "$d/one"
    "$first" bench-detect --data "$DATA/ckplus48" --sizes "$size" --frames 600 --max-faces 4 --save-frames "$d/all" >/dev/null 2>&1
    for f in "$d"/all/*.png; do
      i=$(basename "$f" .png); i=$((10#${i#s*-}))
      [ $((i % 4)) = 0 ] && cp "$f" "$d/one/"
    done
  fi
done
fps() { python3 -c "import json,sys
d = json.loads([l for l in sys.stdin if 'summary' in l][-1])['summary']
print('%.1f' % d['fps'])"; }
printf 'rep\tsize\tbinary\tfps\n' | tee "$OUT/fps.tsv"
for rep in $(seq "$REPS"); do
  for size in $SIZES; do
    for b in $BINS; do
      printf '%s\t%s\t%s\t%s\n' "$rep" "$size" "$b" "$("$b" run --source "$OUT/frames-$size/one" --json /dev/null 2>&1 | fps)" \
        | tee -a "$OUT/fps.tsv"
    done
  done
done
