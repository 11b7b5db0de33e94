#!/usr/bin/env bash
# Regenerates models/detectors/mtcnn/{pnet,rnet,onet}.onnx and LICENSE from the MTCNN weights
# (pnet.pt, rnet.pt, onet.pt; MIT) in the PyPI wheel facenet-pytorch==2.6.0, with our own
# converter (models/detectors/mtcnn/convert.py), which also checks the ONNX models against
# facenet-pytorch's own PyTorch classes and its detect_face, and fails if they drift. The wheel
# is pinned by sha256 and only read as a zip (facenet-pytorch is never installed).
#
# Needs python3 (3.11: the pinned torch has wheels for it) with venv and pip (Debian: apt-get
# install python3 python3-venv python3-pip). PyPI's torch wheel for Linux x86_64 pulls in the
# CUDA libraries (a few GB in the venv) though only the CPU is used.
# Safe to rerun: the wheel and the venv are kept in $MTCNN_CACHE (.cache/mtcnn).
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
cache="${MTCNN_CACHE:-.cache/mtcnn}"
version="2.6.0"
wheel="facenet_pytorch-$version-py3-none-any.whl"
wheel_sha256="ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"
# Versions the converter was run with (the output bytes were checked with these). torch 2.5.1
# is the last line whose torch.onnx.export defaults to the TorchScript exporter.
pins=(torch==2.5.1 numpy==2.4.6 onnx==1.23.2 onnxruntime==1.32.0 pillow==13.0.0)

. scripts/wheel-venv.sh
make_venv "$python" "$cache" "${pins[@]}"
venv="$cache/venv"
# --no-deps: facenet-pytorch pins old torch / numpy / torchvision we do not want
fetch_wheel "$cache" "$wheel" "$wheel_sha256" "facenet-pytorch==$version"
sha256sum "$cache/$wheel"

"$venv/bin/python" models/detectors/mtcnn/convert.py --wheel "$cache/$wheel" \
  --out-dir models/detectors/mtcnn --image models/demo/astronaut.png
