#!/usr/bin/env bash
# CUDA smoke test of the trainer, for a machine with one NVIDIA GPU (CI has none):
#   1. builds sitfer-train with the `cuda` feature (or uses $SITFER_TRAIN_CUDA, a binary built
#      elsewhere, e.g. by `scripts/check-cuda.sh build` on a machine with PyPI access);
#   2. runs the same short SIT-FER training (generated faces, fixed seed) on CPU and on CUDA and
#      checks that the first steps' losses agree within a tolerance;
#   3. prints training img/s on the GPU for the student (48x48) and ResNet-18 (64x64) beside the
#      CPU figures (`sitfer-train bench --device`).
# Runs in well under 8 minutes on one GPU once built. Exits 3 with a message where there is no GPU.
#
#   scripts/gpu-smoke.sh            # TOL (default 0.02, relative) and STEPS (default 20) overridable
#   SMOKE_DEVICE=cpu scripts/gpu-smoke.sh   # the script's own check, without a GPU: "cuda" is the CPU
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
say() { echo "gpu-smoke: $*" >&2; }

GPU=${SMOKE_DEVICE:-cuda}
if [ "$GPU" = cuda ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    say "no NVIDIA GPU on this machine (nvidia-smi lists none): nothing to test. Run this on a GPU machine."
    exit 3
  fi
  nvidia-smi -L >&2
fi

BIN=${SITFER_TRAIN_CUDA:-}
if [ -z "$BIN" ] && [ "$GPU" != cuda ]; then
  cargo build --release -p sitfer-trainer --bin sitfer-train
  BIN=target/release/sitfer-train
elif [ -z "$BIN" ]; then
  command -v nvcc >/dev/null 2>&1 || { say "no nvcc on PATH: install a CUDA toolkit or set SITFER_TRAIN_CUDA to a cuda build"; exit 1; }
  export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)}
  say "building sitfer-train with --features cuda (compute cap $CUDA_COMPUTE_CAP)"
  cargo build --release -p sitfer-trainer --features cuda --bin sitfer-train
  BIN=target/release/sitfer-train
fi

STEPS=${STEPS:-20}
TOL=${TOL:-0.02}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# A small generated data set in FER2013's folder layout (standard-library Python only).
python3 scripts/fixture-faces.py "$WORK/data" 24

# Every step is logged (--eval-every 1): its training loss is the step's own.
for run in cpu:cpu other:"$GPU"; do
  name=${run%%:*} dev=${run#*:}
  say "SIT-FER, $STEPS steps on $dev"
  "$BIN" train --data "$WORK/data" --out "$WORK/run-$name" --arch student --method sitfer \
    --labels-per-class 8 --steps "$STEPS" --eval-every 1 --batch-size 16 --seed 0 \
    --device "$dev" >/dev/null 2>"$WORK/run-$name.log" || { cat "$WORK/run-$name.log" >&2; exit 1; }
done

python3 - "$WORK/run-cpu/metrics.jsonl" "$WORK/run-other/metrics.jsonl" "$TOL" <<'EOF'
import json, sys
def losses(p):
    out = []
    for line in open(p):
        r = json.loads(line)
        out.append((r["step"], r["train_loss"]))
    return out
cpu, gpu, tol = losses(sys.argv[1]), losses(sys.argv[2]), float(sys.argv[3])
n = min(5, len(cpu), len(gpu))
if n == 0:
    sys.exit("gpu-smoke: no losses logged")
worst = 0.0
for (s1, a), (s2, b) in zip(cpu[:n], gpu[:n]):
    rel = abs(a - b) / max(abs(a), 1e-6)
    worst = max(worst, rel)
    print(f"step {s1}: cpu {a:.5f} other device {b:.5f} (rel {rel:.2e})")
if worst > tol:
    sys.exit(f"gpu-smoke: first {n} losses differ by up to {worst:.2e} > {tol}")
print(f"gpu-smoke: first {n} losses agree within {worst:.2e} (tolerance {tol})")
EOF

say "training throughput, CPU vs CUDA"
for dev in cpu "$GPU"; do
  "$BIN" bench --archs student --sizes 48 --conv fast --device "$dev" --steps 4
  "$BIN" bench --archs resnet18 --sizes 64 --conv fast --device "$dev" --steps 4
done
