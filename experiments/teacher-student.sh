#!/usr/bin/env bash
# Issue 22's default model, in three resumable stages (rerun the script to continue; each stage
# skips itself when its run has finished):
#   1. teacher: EfficientNet-Lite0 from ImageNet at 96 px on all FER2013 train labels (25 epochs);
#   2. student: the 1.23 M-parameter student at 48 px, distilled from the teacher's best
#      checkpoint (selected on val; KL to the teacher's p̂ plus CE on the label, and L_t), 30 epochs,
#      holding out 7 % of each class's train faces (~2,000; RUNS/student-kd/calibration.json) that
#      it never trains on, for `sitfer calibrate` to fit the bundle's fusion on (issue 21);
#   3. the bundle and its figures: experiments/default-bundle.sh on the student (OUT defaults to
#      runs/teacher/bundle, so models/default only changes when OUT=models/default is asked for).
# FER2013's test split is never read. Binaries are frozen in runs/teacher/bin at the first call.
#   nice -n 10 experiments/teacher-student.sh   (SITFER_DATA, SITFER_WEIGHTS; RUNS default runs/teacher)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SITFER_DATA:-../shared/data}/fer2013
WEIGHTS=${SITFER_WEIGHTS:-../shared/weights}/efficientnet-lite0-imagenet/efficientnet-lite0.safetensors
RUNS=${RUNS:-runs/teacher}
export RUST_LOG=${RUST_LOG:-info}
mkdir -p "$RUNS/bin"
if [ ! -x "$RUNS/bin/sitfer-train" ]; then
  cargo build --release -p sitfer-trainer --bin sitfer-train
  cp target/release/sitfer-train "$RUNS/bin/" && git rev-parse HEAD > "$RUNS/bin/commit"
fi
BIN=$RUNS/bin/sitfer-train
# A run is done when its latest checkpoint is at the total its log announced ("for N steps").
done_run() {
  local total
  total=$(grep -o 'for [0-9]* steps' "$1.log" 2>/dev/null | tail -1 | tr -dc 0-9)
  [ -n "$total" ] && [ -f "$1/latest.json" ] && grep -q "\"step\":$total\b" "$1/latest.json"
}

# 446 steps of batch 64 per epoch on the 28,558 training faces.
if ! done_run "$RUNS/effl0-96"; then
  "$BIN" train --data "$DATA" --arch efficientnet-lite0 --input-size 96 --normalization tf-lite \
    --pretrained "$WEIGHTS" --method supervised --batch-size 64 --epochs 25 --lr 2e-3 --weight-decay 5e-4 \
    --warmup-steps 300 --eval-every 446 --device cpu --out "$RUNS/effl0-96" --resume >> "$RUNS/effl0-96.log" 2>&1
fi
if ! done_run "$RUNS/student-kd"; then
  "$BIN" distill --teacher "$RUNS/effl0-96" --data "$DATA" --arch student --method sitfer \
    --labels-per-class all --calibration-fraction 0.07 --epochs 30 --eval-every 446 --out "$RUNS/student-kd" --resume >> "$RUNS/student-kd.log" 2>&1
fi
RUN=$RUNS/student-kd OUT=${OUT:-$RUNS/bundle} WORK=$RUNS/bundle-work experiments/default-bundle.sh
