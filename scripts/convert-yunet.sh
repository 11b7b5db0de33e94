#!/usr/bin/env bash
# Regenerates models/detectors/yunet/yunet.onnx and LICENSE from the YuNet face detector of
# libfacedetection (Shiqi Yu et al., 3-clause BSD), whose float weights are compiled into the PyPI
# wheel yuface==2023.5.1 (libfacedetection's own Python package). Our converter
# (models/detectors/yunet/convert.py) reads the weight table from the wheel's libfacedetection.so,
# rebuilds libfacedetection's network as ONNX, and checks it against the wheel's C++ detector
# (facedetect_cnn) on a few images, failing if faces, boxes, scores or landmarks drift. Nothing
# else is downloaded: the wheel is pinned by sha256 and unpacked into the cache (yuface is never
# pip-installed).
#
# Needs python3.11 (the wheel's C++ extension, used for the parity check, is built for CPython
# 3.11) with venv and pip (Debian: apt-get install python3 python3-venv python3-pip).
# Safe to rerun: the wheel and the venv are kept in $YUNET_CACHE (.cache/yunet).
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
cache="${YUNET_CACHE:-.cache/yunet}"
version="2023.5.1"
wheel="yuface-$version-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
wheel_sha256="fd03270a672da75b89809a2c999d5728ef19c6e701408a4d0bc9c00480c864a0"
# Versions the converter was run with (the output bytes were checked with these).
pins=(numpy==2.4.6 onnx==1.23.2 onnxruntime==1.32.0 pillow==13.0.0)

. scripts/wheel-venv.sh
make_venv "$python" "$cache" "${pins[@]}"
venv="$cache/venv"
fetch_wheel "$cache" "$wheel" "$wheel_sha256" "yuface==$version" \
  --python-version 3.11 --implementation cp --abi cp311 --platform manylinux2014_x86_64
sha256sum "$cache/$wheel"

"$venv/bin/python" - "$cache/$wheel" models/detectors/yunet/LICENSE <<'PY'
import sys, zipfile
with open(sys.argv[2], "wb") as f:
    f.write(zipfile.ZipFile(sys.argv[1]).read("yuface-2023.5.1.dist-info/LICENSE"))
PY

rm -rf "$cache/unpacked"
"$venv/bin/python" models/detectors/yunet/convert.py --wheel "$cache/$wheel" --work "$cache/unpacked" \
  --out models/detectors/yunet/yunet.onnx --image models/demo/astronaut.png
sha256sum models/detectors/yunet/yunet.onnx
