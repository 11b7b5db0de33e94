#!/usr/bin/env bash
# Rebuilds the default bundle (models/default/, embedded in `sitfer`) from a training run, with
# the numbers of docs/results/bundle.md: export (fp32 + int8, 300 labeled training images for
# calibration), the fusion calibrated, 1,024 anchor faces (`sitfer anchors`), candle vs tract
# parity, accuracy of p_sem / p_text / p_ins / p̂ (also with --mirror), latency and sizes.
# Fusion: when the run held out calibration faces (`--calibration-fraction`, RUN/calibration.json),
# `sitfer calibrate` fits the temperatures, buffer aggregate, p_ins weight, a 128-per-class seed
# buffer and the 90 %-precision threshold on those faces, which the model never trained on, so
# nothing is chosen on val; otherwise (older runs) only the threshold, on FER2013 val.
#
#   RUN=runs/long/sitfer-all-8ep experiments/default-bundle.sh
#   (SITFER_DATA, default ../shared/data; OUT, default models/default; WORK, default runs/default-bundle)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SITFER_DATA:-../shared/data}
RUN=${RUN:?set RUN to the training run directory}
OUT=${OUT:-models/default}
WORK=${WORK:-runs/default-bundle}

cargo build --release -p sitfer-trainer --bin sitfer-train --example bundle_check
cargo build --release -p sitfer-runtime --bin sitfer
rm -rf "$WORK" && mkdir -p "$WORK"
target/release/sitfer-train export --checkpoint "$RUN" --int8 --out "$WORK/exported" | tee "$WORK/export.txt"
if [ -f "$RUN/calibration.json" ]; then
  target/release/sitfer calibrate --bundle "$WORK/exported" --data "$DATA/fer2013" --split train \
    --calibration-list "$RUN/calibration.json" --calibration-faces 100000 --faces whole-frame \
    --seed-per-class 128 --ins-weights 0.25,0.5,0.75,1 --target-precision 0.9 \
    --out "$WORK/calibrated" | tee "$WORK/calibrate.md"
else
  target/release/sitfer eval --bundle "$WORK/exported" --data "$DATA/fer2013" --faces whole-frame \
    --calibrate-out "$WORK/calibrated" --target-precision 0.9 | tee "$WORK/eval-threshold.md"
fi
target/release/sitfer anchors --bundle "$WORK/calibrated" --data "$DATA/fer2013/train" --faces whole-frame \
  --count 1024 --out "$WORK/bundle" | tee "$WORK/anchors.md"
target/release/sitfer eval --bundle "$WORK/bundle" --data "$DATA/fer2013" --faces whole-frame \
  | tee "$WORK/eval-fp32.md"
target/release/sitfer eval --bundle "$WORK/bundle" --precision int8 --data "$DATA/fer2013" --faces whole-frame \
  | tee "$WORK/eval-int8.md"
target/release/examples/bundle_check "$RUN" "$WORK/bundle" | tee "$WORK/parity.md"
target/release/sitfer bench "$WORK/bundle" | tee "$WORK/bench.md"
# Test-time flip (`--mirror`): each face averaged with its mirror image.
for p in fp32 int8; do
  target/release/sitfer eval --bundle "$WORK/bundle" --precision $p --mirror --data "$DATA/fer2013" --faces whole-frame \
    | tee "$WORK/eval-$p-mirror.md"
done
rm -rf "$OUT.new" && cp -r "$WORK/bundle" "$OUT.new"
rm -rf "$OUT" && mv "$OUT.new" "$OUT"
# The binary embeds models/default at build time.
cargo build --release -p sitfer-runtime --bin sitfer
echo "wrote $OUT; results in $WORK"
