#!/usr/bin/env bash
# End-to-end throughput of `sitfer run` on 640x480 frames with one and with four faces
# (docs/results/runtime.md): frames made by `sitfer bench-detect` from CK+ crops pasted at SIZE px
# (default 96); as fast as possible (every frame processed) with int8 and fp32, detection every 1,
# 5 or 15 frames (tracks carried between), then paced at 30 fps with drop-oldest (the drop rate);
# first plain `sitfer run` with no options but the source (its defaults).
#   experiments/fps.sh            (SITFER_DATA, default ../shared/data; OUT, default runs/fps)
#   SIZE=200 DETECTOR=blazeface experiments/fps.sh     (a face at webcam distance, BlazeFace)
#   SKIP_PACED=1 ...                                     (no 30-fps paced runs)
#   EXTRA="--no-align" ...                               (more `sitfer run` options)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${SITFER:-target/release/sitfer}
DATA=${SITFER_DATA:-../shared/data}
OUT=${OUT:-runs/fps}
SIZE=${SIZE:-96}
DETECTOR=${DETECTOR:-yunet}
EXTRA=${EXTRA:-}
[ -x "$B" ] || cargo build --release -p sitfer-runtime --bin sitfer
rm -rf "$OUT" && mkdir -p "$OUT/one" "$OUT/four"
"$B" bench-detect --data "$DATA/ckplus48" --sizes "$SIZE" --frames 600 --max-faces 4 --save-frames "$OUT/all" >/dev/null 2>&1
for f in "$OUT"/all/*.png; do
  i=$(basename "$f" .png); i=$((10#${i#s*-}))
  case $((i % 4)) in 0) cp "$f" "$OUT/one/" ;; 3) cp "$f" "$OUT/four/" ;; esac
done
summary() { python3 -c "import json,sys
d = json.loads([l for l in sys.stdin if 'summary' in l][-1])['summary']
print('fps %.1f | frames %d | dropped %d (%.0f%%) | faces %d | ms %s' % (d['fps'], d['processed'], d['dropped'],
      100 * d['dropped'] / max(d['captured'], 1), d['faces'], {k: round(v, 1) for k, v in d['mean_ms'].items()}))"; }
# plain `sitfer run`: no detector, interval or precision flags (the defaults the README states)
for set in one four; do
  echo "$set faces, plain sitfer run (defaults): $("$B" run --source "$OUT/$set" --json /dev/null 2>&1 | summary)"
done
for set in one four; do
  for p in int8 fp32; do
    for de in 1 5 15; do
      echo "$set faces, $p, detect every $de: $("$B" run --source "$OUT/$set" --detector "$DETECTOR" --detect-every $de --precision $p \
        --no-continual $EXTRA --json /dev/null 2>&1 | summary)"
    done
  done
done
[ -n "${SKIP_PACED:-}" ] && exit 0
for de in 1 5 15; do
  echo "one face, paced 30 fps, int8, detect every $de: $("$B" run --source "$OUT/one" --fps 30 --realtime \
    --detector "$DETECTOR" --detect-every $de --no-continual $EXTRA --json /dev/null 2>&1 | summary)"
done
