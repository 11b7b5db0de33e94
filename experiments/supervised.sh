#!/usr/bin/env bash
# Supervised baselines on FER2013 (docs/results/supervised.md).
# Usage: experiments/supervised.sh [runs-dir]
# Budgets are sized for a 2-core CPU; raise STUDENT_EPOCHS / RESNET_*_STEPS|EPOCHS on bigger machines.
set -euo pipefail
RUNS=${1:-runs/supervised}
DATA=${SITFER_DATA:-../shared/data}/fer2013
BIN=${BIN:-target/release/sitfer-train}
STUDENT_EPOCHS=${STUDENT_EPOCHS:-2}
STUDENT_100_STEPS=${STUDENT_100_STEPS:-400}
RESNET_100_STEPS=${RESNET_100_STEPS:-100}
RESNET_ALL_EPOCHS=${RESNET_ALL_EPOCHS:-1}
ONLY=${ONLY:-}  # e.g. ONLY="resnet18-100 resnet18-all"
cargo build --release -p sitfer-trainer --bin sitfer-train
mkdir -p "$RUNS"
run() {
  local name=$1; shift
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  echo "== $name: $BIN train $*"; /usr/bin/time -v "$BIN" train --data "$DATA" --out "$RUNS/$name" --resume "$@" 2> >(tee "$RUNS/$name.log" >&2) | tee "$RUNS/$name.json"
}
run student-100 --arch student --labels-per-class 100 --steps "$STUDENT_100_STEPS" --eval-every 50 --warmup-steps 40
run student-all --arch student --labels-per-class all --epochs "$STUDENT_EPOCHS"
run resnet18-100 --arch resnet18 --labels-per-class 100 --steps "$RESNET_100_STEPS" --eval-every 50 --warmup-steps 20
if [ "$RESNET_ALL_EPOCHS" -gt 0 ]; then
  run resnet18-all --arch resnet18 --labels-per-class all --epochs "$RESNET_ALL_EPOCHS" --eval-every 150
fi
