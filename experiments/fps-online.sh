#!/usr/bin/env bash
# Frame budget while the device learns (issue 21; docs/results/runtime.md): `sitfer run` with
# BlazeFace every 5th frame on 640x480 frames with one 200-px face (experiments/fps.sh's frames,
# each shown REPEAT times), fp32, every frame processed as fast as possible, three ways, REPS
# times interleaved:
#   frozen     --no-continual (fps.sh's setting)
#   continual  admission into the buffer on, no refit
#   learning   admission on and --online-refit on its background thread (nice 19), made to refit
#              as often as it can: the run starts from a head file whose pool already passes the
#              collapse guard (POOL, e.g. a CK+ stream's from experiments/online.sh), a refit
#              after every admission, no least interval, a 8-face watch
# Run it through /work/pause-matrix.sh on a shared machine; FRAMES=DIR reuses generated frames.
#   POOL=runs/online-prereg/split-20/online.head.safetensors experiments/fps-online.sh
#   (BUNDLE=DIR runs every command with that bundle)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${SITFER:-target/release/sitfer}
DATA=${SITFER_DATA:-../shared/data}
OUT=${OUT:-runs/fps-online}
FRAMES=${FRAMES:-}
REPS=${REPS:-2}
REPEAT=${REPEAT:-6}
POOL=${POOL:?a head file with a pool (experiments/online.sh writes them)}
mkdir -p "$OUT"
if [ -z "$FRAMES" ]; then
  FRAMES=$OUT/one
  rm -rf "$OUT/all" "$FRAMES" && mkdir -p "$FRAMES"
  "$B" bench-detect --data "$DATA/ckplus48" --sizes 200 --frames 600 --max-faces 4 --save-frames "$OUT/all" >/dev/null 2>&1
  for f in "$OUT"/all/*.png; do
    i=$(basename "$f" .png); i=$((10#${i#s*-}))
    [ $((i % 4)) = 0 ] && cp "$f" "$FRAMES/"
  done
fi
summary() { python3 -c "import json,sys
l = json.loads([l for l in sys.stdin if 'summary' in l][-1]); d = l['summary']
print('fps %.1f | frames %d | faces %d | added %d | refit %s | ms %s' % (d['fps'], d['processed'], d['faces'],
      l.get('added_to_buffer', 0), l.get('online_refit', '-'), {k: round(v, 2) for k, v in d['mean_ms'].items()}))"; }
# Each frame shown REPEAT times in a row: a face that stays a few frames, so that tracks become
# stable and faces are admitted (fps.sh's frames change face every frame: nothing is admitted
# and nothing would be learnt).
if [ "$REPEAT" -gt 1 ]; then
  rm -rf "$OUT/repeated" && mkdir -p "$OUT/repeated"
  for f in "$FRAMES"/*.png; do
    for k in $(seq "$REPEAT"); do ln -s "$(realpath "$f")" "$OUT/repeated/$(basename "$f" .png)-$k.png"; done
  done
  FRAMES=$OUT/repeated
fi
common=(run --source "$FRAMES" --detector blazeface --detect-every 5 --precision fp32 --json /dev/null)
# BUNDLE: a bundle directory (e.g. one with anchor faces, whose refits also replay them).
[ -n "${BUNDLE:-}" ] && common+=(--bundle "$BUNDLE")
for r in $(seq "$REPS"); do
  echo "rep $r frozen:    $("$B" "${common[@]}" --no-continual 2>&1 | summary)"
  rm -f "$OUT/c.safetensors"
  echo "rep $r continual: $("$B" "${common[@]}" --buffer "$OUT/c.safetensors" 2>&1 | summary)"
  rm -f "$OUT/l.safetensors"; cp "$POOL" "$OUT/l.head.safetensors"
  echo "rep $r learning:  $("$B" "${common[@]}" --buffer "$OUT/l.safetensors" --online-refit --refit-every 1 \
    --refit-min-interval 0 --refit-watch-faces 8 2>&1 | summary)"
done
