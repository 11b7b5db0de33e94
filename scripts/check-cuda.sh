#!/usr/bin/env bash
# Type-check (default) or build the trainer with candle's CUDA backend on a
# machine with no GPU and no CUDA toolkit, taking the toolkit from PyPI only.
#
#   scripts/check-cuda.sh          # cargo check -p sitfer-trainer --features cuda
#   scripts/check-cuda.sh build    # cargo build ... --bin sitfer-train (debug)
#
# Overridable: CUDA_COMPUTE_CAP (default 90 = H100/H200), CUDA_WHEELS (the
# cuda-toolkit meta-wheel version, default 13.0.*), CARGO_TARGET_DIR.
#
# Why CUDA 13 wheels and not nvidia-cuda-nvcc-cu12: every -cu12 nvcc wheel
# ships only ptxas (no nvcc/cicc/cudafe++), so candle-kernels cannot compile.
# NVIDIA's CUDA 13 wheels (nvidia-cuda-nvcc, -crt, -nvvm, -runtime, -cccl,
# pulled in through the `cuda-toolkit` meta-wheel) install a complete
# toolkit tree under site-packages/nvidia/cu13 (bin/nvcc, include/, lib/).
# 13.0 is the oldest CUDA 13: its PTX (ISA 9.0) needs an NVIDIA driver >= 580
# on the GPU machine that runs the binary.
#
# Build-time needs, from the crates' build scripts:
# - candle-kernels (cudaforge): nvcc from NVCC or PATH, include dir = nvcc/..;
#   CUDA_COMPUTE_CAP when there is no nvidia-smi. It also compiles the MoE/GGUF
#   kernels to SASS (libmoe.a) even for `cargo check`: slow on 2 cores.
# - cudarc 0.19 (cuda-version-from-build-system, dynamic-linking): runs
#   `nvcc --version`; link search under $CUDA_ROOT/{lib,lib/stubs}; links
#   -lcuda -lnvrtc -lcurand -lcublas -lcublasLt (+ -lcudart from candle-kernels).
# Wheels ship only versioned sonames (libcublas.so.13), so the link step gets
# unversioned symlinks, and libcuda (the driver, in no wheel) gets a stub
# generated here from the wheel's cuda.h, with soname libcuda.so.1 so
# the real driver is loaded at run time. The stub is never put on a run path.
set -euo pipefail

MODE=${1:-check}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=$ROOT/.cuda/venv
CUDA_WHEELS=${CUDA_WHEELS:-13.0.*}
EXTRAS=nvcc,cccl                                   # nvcc + headers: enough to check
if [ "$MODE" = build ]; then EXTRAS=$EXTRAS,cublas,curand,nvrtc; fi  # shared libs to link

say() { echo "check-cuda: $*" >&2; }

# 1. Virtualenv with the toolkit wheels (reused; pip is a no-op when satisfied).
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  python3 -m venv "$VENV"
fi
say "pip install cuda-toolkit[$EXTRAS]==$CUDA_WHEELS"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "cuda-toolkit[$EXTRAS]==$CUDA_WHEELS"

SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export CUDA_ROOT=$SITE/nvidia/cu13
[ -x "$CUDA_ROOT/bin/nvcc" ] || { say "no nvcc in $CUDA_ROOT/bin"; exit 1; }

# 2. For linking: unversioned .so links and a libcuda stub, laid out like a
#    real toolkit (lib/, lib/stubs/) so cudarc's own search finds them. Done in
#    both modes: cudarc's build script keeps only search dirs that exist when it
#    first runs, and `check` and `build` share that build-script run.
for so in "$CUDA_ROOT"/lib/lib*.so.[0-9]*; do
  ln -sfn "$(basename "$so")" "${so%.so.*}.so"
done
STUB=$CUDA_ROOT/lib/stubs/libcuda.so
if [ ! "$STUB" -nt "$CUDA_ROOT/include/cuda.h" ]; then
  say "generating libcuda stub from cuda.h ($STUB)"
  mkdir -p "$(dirname "$STUB")"
  # Preprocessing resolves cuda.h's _v2/_v3 renames to the real symbol names.
  cc -E -P -I"$CUDA_ROOT/include" "$CUDA_ROOT/include/cuda.h" \
    | grep -oE '\bcu[A-Za-z0-9_]+ *\(' | tr -d ' (' | sort -u \
    | awk '{print "int " $1 "(void) { return 999; /* CUDA_ERROR_UNKNOWN */ }"}' > "$STUB.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$STUB" "$STUB.c"
fi

# 3. Environment for the build scripts.
export PATH=$CUDA_ROOT/bin:$PATH                  # nvcc for cudaforge and cudarc
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}   # no nvidia-smi here
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-cuda}  # keep target/ intact
say "$(nvcc --version | tail -2 | head -1); CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP; CARGO_TARGET_DIR=$CARGO_TARGET_DIR"

cd "$ROOT"
case "$MODE" in
  check) CMD=(cargo check -p sitfer-trainer --features cuda) ;;
  build) CMD=(cargo build -p sitfer-trainer --features cuda --bin sitfer-train) ;;
  *) say "usage: $0 [check|build]"; exit 2 ;;
esac
say "nice -n 10 ${CMD[*]}"
status=0
nice -n 10 "${CMD[@]}" || status=$?
say "${CMD[*]} exited with $status"
exit "$status"
