#!/usr/bin/env bash
# How much a bundle's pooled features know about CK+ when labels are free: an "oracle" linear
# probe. For each split of an experiments/online.sh run (OUT/split-*/footage, a flat stream whose
# files link into CK+'s class folders, and OUT/split-*/score), the footage faces' pooled features
# with their true labels train a logistic regression that is scored on the other subjects
# (experiments/probe.py). A bundle that adapts less than another with an equal probe loses in
# its pseudo-labels; with a lower probe, in its features (issue 22's diagnosis, bundle.md).
#
#   BUNDLE=runs/teacher/bundle-mix (default models/default) experiments/probe-ckplus.sh runs/i22/online-mix-130 > probe.tsv
#   (SITFER, the binary, default target/release/sitfer; PYTHON with numpy and safetensors)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:?an experiments/online.sh OUT directory}
BIN=${SITFER:-target/release/sitfer}
PY=${PYTHON:-python3}
B=(--bundle "${BUNDLE:-models/default}")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
printf 'split\tfootage\tscored\tprobe\tknn5\tprobe_train\n'
for d in "$RUN"/split-*; do
  s=${d##*-}
  rm -rf "$work"/*; mkdir -p "$work/footage"
  for f in "$d"/footage/*.png; do
    cls=$(basename "$(dirname "$(readlink -f "$f")")")
    [ "$cls" = contempt ] && continue
    mkdir -p "$work/footage/$cls"; ln -s "$(readlink -f "$f")" "$work/footage/$cls/"
  done
  mkdir -p "$work/score"
  for c in "$d"/score/*/; do
    [ "$(basename "$c")" = contempt ] && continue; ln -s "$(readlink -f "$c")" "$work/score/"
  done
  for part in footage score; do
    "$BIN" anchors "${B[@]}" --faces whole-frame --data "$work/$part" --count 100000 \
      --out "$work/b-$part" > /dev/null 2> "$work/anchors-$part.log" \
      || { cat "$work/anchors-$part.log" >&2; exit 1; }
  done
  printf '%s\t' "$s"
  "$PY" experiments/probe.py "$work/b-footage/anchors.safetensors" "$work/b-score/anchors.safetensors"
done
