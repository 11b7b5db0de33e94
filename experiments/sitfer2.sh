#!/usr/bin/env bash
# Protocol 2 of docs/results/sitfer.md (pre-registered there before any of these runs):
# EfficientNet-Lite0 from its ImageNet weights at 64x64; per (labels, seed) a supervised warm-up
# of 200 steps on the labeled training faces, then 3,000 steps of each method from it.
#   supervised     all N labeled faces           (warm-up on all N)
#   supervised-9   the 9N/10 SIT-FER trains on    (warm-up on 9N/10)
#   fixmatch       all N, threshold 0.95, 32 unlabeled per step
#   sitfer         9N/10; temperatures and threshold fitted on the N/10 hold-out every 250 steps
# Every run resumes with --resume, so killing and rerunning this script continues where it was.
#
# Protocol 3 (PHASE=p3, pre-registered in sitfer.md before its runs; its own runs directory and
# frozen binary, e.g. runs/sitfer3): the sitfer arm with the threshold fixed at 0.5 on the
# calibrated p̂ (sitfer-cal), against the same baselines, on the fresh split seeds 2 and 3.
#
# Protocol 4 (PHASE=p4-dev, then p4 with P4=<the chosen variant>; pre-registered in sitfer.md;
# runs/sitfer4): two changes of sitfer-cal's L_u target (soft p̂; confidence-weighted argmax on
# every face), developed on seed 2 (P3's warm-ups, linked in), confirmed on fresh seeds 4 and 5.
#
# Protocol 5 (PHASE=p5; pre-registered in sitfer.md; runs/sitfer5): sitfer-cal with its
# pseudo-labels from a mean teacher (--ema-teacher 0.99), and FixMatch with the same teacher as
# the ablation, against FixMatch and supervised on the fresh seeds 6 and 7.
#
# Protocol 6 (PHASE=p6-dev on seed 6 with P5's warm-ups linked in, then p6 on the fresh seeds 8
# and 9; pre-registered in sitfer.md; runs/sitfer6): sitfer-ema with the instance consistency
# L_in (--lambda-in 1), against FixMatch, supervised and sitfer-ema (its ablation).
#
# Usage: nice -n 10 experiments/sitfer2.sh [runs-dir]
#   PHASE=matrix (default) | confirm | ablation | p3 | p3-ablation | p4-dev | p4 | p4-ablation | p5 |
#   p6-dev | p6 | p6-ablation | p6-400;
#   LABELS, SEEDS, METHODS override.
#   Report: cargo run --release -p sitfer-trainer --example sitfer_report -- runs/sitfer2 docs/results
set -euo pipefail
RUNS=${1:-runs/sitfer2}
DATA=${SITFER_DATA:-../shared/data}/fer2013
WEIGHTS=${WEIGHTS:-${SITFER_WEIGHTS:-../shared/weights}/efficientnet-lite0-imagenet/efficientnet-lite0.safetensors}
PHASE=${PHASE:-matrix}
case "$PHASE" in
  matrix) LABELS=${LABELS:-"100 400"}; SEEDS=${SEEDS:-"0 1"}; METHODS=${METHODS:-"supervised supervised-9 fixmatch sitfer"} ;;
  confirm) LABELS=${LABELS:-"100"}; SEEDS=${SEEDS:-"2 3"}; METHODS=${METHODS:-"supervised supervised-9 fixmatch sitfer"} ;;
  ablation) LABELS=${LABELS:-"100"}; SEEDS=${SEEDS:-"0"}; METHODS=${METHODS:-"no-sem no-text no-ins no-lt"} ;;
  # The new arm first in each cell, so a cut-short phase still pairs it with FixMatch.
  p3) LABELS=${LABELS:-"100"}; SEEDS=${SEEDS:-"2 3"}; METHODS=${METHODS:-"sitfer-cal fixmatch supervised supervised-9"} ;;
  p3-ablation) LABELS=${LABELS:-"100"}; SEEDS=${SEEDS:-"2"}; METHODS=${METHODS:-"cal-no-sem cal-no-text cal-no-ins cal-no-lt"} ;;
  p4-dev) LABELS=${LABELS:-"100"}; SEEDS=${SEEDS:-"2"}; METHODS=${METHODS:-"sitfer-soft sitfer-wt"} ;;
  p4) LABELS=${LABELS:-"100"}; SEEDS=${SEEDS:-"4 5"}; METHODS=${METHODS:-"${P4:?P4=sitfer-soft or sitfer-wt} fixmatch supervised supervised-9"} ;;
  p4-ablation) LABELS=${LABELS:-"100"}; SEEDS=${SEEDS:-"4"}; METHODS=${METHODS:-"${P4:?}:no-sem ${P4}:no-text ${P4}:no-ins ${P4}:no-lt"} ;;
  p5) LABELS=${LABELS:-"100"}; SEEDS=${SEEDS:-"6 7"}; METHODS=${METHODS:-"sitfer-ema fixmatch supervised fixmatch-ema"} ;;
  p6-dev) LABELS=${LABELS:-"100"}; SEEDS=${SEEDS:-"6"}; METHODS=${METHODS:-"sitfer-ema-in"} ;;
  p6) LABELS=${LABELS:-"100"}; SEEDS=${SEEDS:-"8 9"}; METHODS=${METHODS:-"sitfer-ema-in fixmatch supervised sitfer-ema"} ;;
  p6-ablation) LABELS=${LABELS:-"100"}; SEEDS=${SEEDS:-"8"}; METHODS=${METHODS:-"sitfer-ema-in:no-sem sitfer-ema-in:no-text sitfer-ema-in:no-ins sitfer-ema-in:no-lt"} ;;
  p6-400) LABELS=${LABELS:-"400"}; SEEDS=${SEEDS:-"8 9"}; METHODS=${METHODS:-"sitfer-ema-in fixmatch supervised"} ;;
  *) echo "PHASE must be matrix, confirm, ablation, p3, p3-ablation, p4-dev, p4, p4-ablation, p5, p6-dev, p6, p6-ablation or p6-400" >&2; exit 2 ;;
esac
WARM_STEPS=${WARM_STEPS:-200}
STEPS=${STEPS:-3000}
EVAL_EVERY=${EVAL_EVERY:-50}
DEVICE=${DEVICE:-cpu}
mkdir -p "$RUNS/bin"
if [ -z "${BIN:-}" ]; then
  if [ ! -x "$RUNS/bin/sitfer-train" ]; then
    cargo build --release -p sitfer-trainer --bin sitfer-train
    # A frozen copy: rebuilding the workspace while the matrix runs must not change its runs.
    cp target/release/sitfer-train "$RUNS/bin/sitfer-train"
    git rev-parse HEAD > "$RUNS/bin/commit"
  fi
  BIN="$RUNS/bin/sitfer-train"
fi
common=(--data "$DATA" --arch efficientnet-lite0 --input-size 64 --normalization tf-lite
  --eval-every "$EVAL_EVERY" --device "$DEVICE")

run() {  # name args...
  local name=$1; shift
  if [ -f "$RUNS/$name.json" ] && grep -q '"steps"' "$RUNS/$name.json"; then
    echo "== $name: done" >&2; return
  fi
  echo "== $name: $BIN train $*" >&2
  "$BIN" train "${common[@]}" --out "$RUNS/$name" --resume "$@" \
    2> >(tee -a "$RUNS/$name.log" >&2) > "$RUNS/$name.json.tmp"
  mv "$RUNS/$name.json.tmp" "$RUNS/$name.json"
}

# The warm-up of one (labels, seed, training set): all N labeled faces (hold=0) or the 9N/10
# SIT-FER trains on (hold=0.1). Both read the same split.json, so the 9N/10 are a subset of the N.
warm() {  # labels seed hold -> prints the warm-up's last weights
  local labels=$1 seed=$2 hold=$3 name
  name="warm-$1-s$2$([ "$hold" = 0 ] || echo -9)"
  local split=()
  [ "$hold" = 0 ] || { warm "$labels" "$seed" 0 >/dev/null; split=(--split "$RUNS/warm-$labels-s$seed/split.json"); }
  run "$name" --method supervised --labels-per-class "$labels" --seed "$seed" "${split[@]}" \
    --calibration-fraction "$hold" --pretrained "$WEIGHTS" --steps "$WARM_STEPS" --batch-size 64 \
    --lr 2e-3 --warmup-steps 40
  echo "$RUNS/$name/checkpoints/step-$(printf %08d "$WARM_STEPS")/weights.safetensors"
}

stage2=(--steps "$STEPS" --batch-size 16 --lr 3e-4 --weight-decay 5e-4 --warmup-steps 50)
sitfer=(--method sitfer --calibration-fraction 0.1 --calibrate-every 250 --target-precision 0.9
  --unlabeled-ratio 2 --ins-warmup 0)
# Protocol 3: the same, with the threshold fixed at 0.5 on the calibrated p̂.
sitfer_cal=(--method sitfer --calibration-fraction 0.1 --calibrate-every 250 --calibrated-threshold 0.5
  --unlabeled-ratio 2 --ins-warmup 0)

# Protocol 4: sitfer-cal with one change of L_u's target.
sitfer_soft=("${sitfer_cal[@]}" --pseudo-target soft)
sitfer_wt=(--method sitfer --calibration-fraction 0.1 --calibrate-every 250 --calibrated-threshold 0
  --queue-threshold 0.5 --pseudo-target weighted --unlabeled-ratio 2 --ins-warmup 0)

# Protocol 5: the pseudo-labeler is an exponential moving average of the weights (decay 0.99).
ema=(--ema-teacher 0.99)

cell() {  # labels seed method
  local labels=$1 seed=$2 m=$3 split init
  split="$RUNS/warm-$labels-s$seed/split.json"
  case "$m" in
    supervised)
      init=$(warm "$labels" "$seed" 0)
      run "$m-$labels-s$seed" --method supervised --labels-per-class "$labels" --seed "$seed" --split "$split" \
        --pretrained "$init" "${stage2[@]}" ;;
    supervised-9)
      init=$(warm "$labels" "$seed" 0.1)
      run "$m-$labels-s$seed" --method supervised --calibration-fraction 0.1 --labels-per-class "$labels" \
        --seed "$seed" --split "$split" --pretrained "$init" "${stage2[@]}" ;;
    fixmatch)
      init=$(warm "$labels" "$seed" 0)
      run "$m-$labels-s$seed" --method fixmatch --threshold 0.95 --unlabeled-ratio 2 --labels-per-class "$labels" \
        --seed "$seed" --split "$split" --pretrained "$init" "${stage2[@]}" ;;
    sitfer)
      init=$(warm "$labels" "$seed" 0.1)
      run "$m-$labels-s$seed" "${sitfer[@]}" --labels-per-class "$labels" --seed "$seed" --split "$split" \
        --pretrained "$init" "${stage2[@]}" ;;
    no-sem|no-text|no-ins|no-lt)
      local off
      case "$m" in no-sem) off=(--w-sem 0) ;; no-text) off=(--w-text 0) ;; no-ins) off=(--w-ins 0) ;; no-lt) off=(--lambda-t 0) ;; esac
      init=$(warm "$labels" "$seed" 0.1)
      run "ablation-$m-$labels-s$seed" "${sitfer[@]}" "${off[@]}" --labels-per-class "$labels" --seed "$seed" \
        --split "$split" --pretrained "$init" "${stage2[@]}" ;;
    sitfer-cal)
      init=$(warm "$labels" "$seed" 0.1)
      run "$m-$labels-s$seed" "${sitfer_cal[@]}" --labels-per-class "$labels" --seed "$seed" --split "$split" \
        --pretrained "$init" "${stage2[@]}" ;;
    cal-no-sem|cal-no-text|cal-no-ins|cal-no-lt)
      local off
      case "$m" in cal-no-sem) off=(--w-sem 0) ;; cal-no-text) off=(--w-text 0) ;; cal-no-ins) off=(--w-ins 0) ;; cal-no-lt) off=(--lambda-t 0) ;; esac
      init=$(warm "$labels" "$seed" 0.1)
      run "ablation-$m-$labels-s$seed" "${sitfer_cal[@]}" "${off[@]}" --labels-per-class "$labels" --seed "$seed" \
        --split "$split" --pretrained "$init" "${stage2[@]}" ;;
    sitfer-soft|sitfer-wt|sitfer-soft:no-*|sitfer-wt:no-*)
      local base=${m%%:*} off=() name=$m-$labels-s$seed args
      case "$m" in
        *:no-sem) off=(--w-sem 0) ;; *:no-text) off=(--w-text 0) ;; *:no-ins) off=(--w-ins 0) ;; *:no-lt) off=(--lambda-t 0) ;;
      esac
      [[ "$m" == *:* ]] && name="ablation-${m/:/-}-$labels-s$seed"
      if [ "$base" = sitfer-soft ]; then args=("${sitfer_soft[@]}"); else args=("${sitfer_wt[@]}"); fi
      init=$(warm "$labels" "$seed" 0.1)
      run "$name" "${args[@]}" "${off[@]}" --labels-per-class "$labels" --seed "$seed" --split "$split" \
        --pretrained "$init" "${stage2[@]}" ;;
    sitfer-ema|sitfer-ema-in|sitfer-ema-in:no-*)
      local extra=() off=() name=$m-$labels-s$seed
      # Protocol 6: SimMatch's instance term at its published weight and temperature.
      [ "$m" != sitfer-ema ] && extra=(--lambda-in 1 --tau-in 0.1)
      case "$m" in
        *:no-sem) off=(--w-sem 0) ;; *:no-text) off=(--w-text 0) ;; *:no-ins) off=(--w-ins 0) ;; *:no-lt) off=(--lambda-t 0) ;;
      esac
      [[ "$m" == *:* ]] && name="ablation-${m/:/-}-$labels-s$seed"
      init=$(warm "$labels" "$seed" 0.1)
      run "$name" "${sitfer_cal[@]}" "${ema[@]}" "${extra[@]}" "${off[@]}" --labels-per-class "$labels" \
        --seed "$seed" --split "$split" --pretrained "$init" "${stage2[@]}" ;;
    fixmatch-ema)
      init=$(warm "$labels" "$seed" 0)
      run "$m-$labels-s$seed" --method fixmatch --threshold 0.95 --unlabeled-ratio 2 "${ema[@]}" \
        --labels-per-class "$labels" --seed "$seed" --split "$split" --pretrained "$init" "${stage2[@]}" ;;
    *) echo "unknown method $m" >&2; exit 2 ;;
  esac
}

# 100 labels first (the issue's headline), seed by seed, so a cut-short matrix still pairs them.
for labels in $LABELS; do
  for seed in $SEEDS; do
    for m in $METHODS; do cell "$labels" "$seed" "$m"; done
  done
done
