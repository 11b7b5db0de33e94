#!/usr/bin/env bash
# Semi-supervised matrix on FER2013 (docs/results/sitfer.md):
# {supervised, fixmatch, sitfer} x {100, 400 labels per class} x seeds, at equal budget (same
# student at 48x48, same steps, labeled batch 16 + unlabeled 16), plus the SIT-FER ablation at
# 100/class. Every cell starts from the same supervised warm-up of its (labels, seed) split, so the
# short CPU budget is spent on the semi-supervised phase rather than on learning from scratch
# (warm-up: batch 64, WARM_STEPS; semi-supervised phase: labeled batch 16 + unlabeled 16, STEPS).
#
# Usage: experiments/sitfer.sh [runs-dir]       (then: cargo run --release -p sitfer-trainer
#        --example sitfer_report -- runs/sitfer docs/results sitfer1 --primary best)
# Defaults take about 2 hours on 2 idle CPU cores (one SSL run: ~6 minutes). On a GPU (build with --features cuda, DEVICE=cuda):
#   WARM_STEPS=2000 STEPS=20000 EVAL_EVERY=1000 SEEDS="0 1 2" DEVICE=cuda experiments/sitfer.sh
set -euo pipefail
RUNS=${1:-runs/sitfer}
DATA=${SITFER_DATA:-../shared/data}/fer2013
WARM_STEPS=${WARM_STEPS:-200}
WARM_BATCH=${WARM_BATCH:-64}
STEPS=${STEPS:-300}
EVAL_EVERY=${EVAL_EVERY:-100}
SEEDS=${SEEDS:-"0 1"}
LABELS=${LABELS:-"100 400"}
ABLATION_SEEDS=${ABLATION_SEEDS:-"0"}
DEVICE=${DEVICE:-cpu}
ONLY=${ONLY:-}  # e.g. ONLY="matrix" or ONLY="ablation"
mkdir -p "$RUNS/bin"
if [ -z "${BIN:-}" ]; then
  cargo build --release -p sitfer-trainer --bin sitfer-train
  # A frozen copy: rebuilding the workspace during the matrix must not change its runs.
  cp target/release/sitfer-train "$RUNS/bin/sitfer-train"
  BIN="$RUNS/bin/sitfer-train"
fi
common=(--data "$DATA" --arch student --input-size 48 --eval-every "$EVAL_EVERY" --device "$DEVICE")

run() {
  local name=$1; shift
  echo "== $name: $BIN train $*"
  /usr/bin/time -v "$BIN" train "${common[@]}" --out "$RUNS/$name" --resume "$@" \
    2> >(tee "$RUNS/$name.log" >&2) | tee "$RUNS/$name.json"
}

# The supervised warm-up of one (labels, seed) split; prints its last weights.
warm() {
  local labels=$1 seed=$2 name="warm-$1-s$2"
  run "$name" --method supervised --labels-per-class "$labels" --seed "$seed" --steps "$WARM_STEPS" \
    --batch-size "$WARM_BATCH" --warmup-steps 40 >&2
  local last
  last=$(ls -d "$RUNS/$name"/checkpoints/step-* | sort | tail -1)
  echo "$last/weights.safetensors"
}

cell() {  # labels seed method name [extra args]
  local labels=$1 seed=$2 method=$3 name=$4; shift 4
  local init
  init=$(warm "$labels" "$seed")
  run "$name" --method "$method" --labels-per-class "$labels" --seed "$seed" \
    --split "$RUNS/warm-$labels-s$seed/split.json" --pretrained "$init" --steps "$STEPS" --batch-size 16 --warmup-steps 20 "$@"
}

matrix() {  # labels
  for seed in $SEEDS; do
    for method in supervised fixmatch sitfer; do
      cell "$1" "$seed" "$method" "$method-$1-s$seed"
    done
  done
}
ablation() {
  for seed in $ABLATION_SEEDS; do
    cell 100 "$seed" sitfer "ablation-no-lt-100-s$seed" --lambda-t 0
    cell 100 "$seed" sitfer "ablation-no-text-100-s$seed" --w-text 0
    cell 100 "$seed" sitfer "ablation-no-ins-100-s$seed" --w-ins 0
    cell 100 "$seed" sitfer "ablation-no-sem-100-s$seed" --w-sem 0
    cell 100 "$seed" sitfer "ablation-reference-100-s$seed" --preset reference
  done
}
# Most informative first (100 labels/class and its ablation), so a cut-short run still says most.
for labels in $LABELS; do
  if [ -z "$ONLY" ] || [ "$ONLY" = matrix ]; then matrix "$labels"; fi
  if [ "$labels" = 100 ] && { [ -z "$ONLY" ] || [ "$ONLY" = ablation ]; }; then ablation; fi
done
