#!/usr/bin/env bash
# Regenerates models/detectors/blazeface/blazeface-short-128.onnx and blazeface-full-192.onnx
# from MediaPipe's BlazeFace TFLite models (Apache-2.0) in the PyPI wheel mediapipe==0.10.21,
# with our own converter (models/detectors/blazeface/convert.py), which also checks the ONNX
# models against the TFLite interpreter and fails if they drift. Nothing else is downloaded:
# the wheel is pinned by sha256 and only read as a zip (mediapipe is never installed).
#
# Needs python3 with venv and pip (Debian: apt-get install python3 python3-venv python3-pip).
# Safe to rerun: the wheel and the venv are kept in $BLAZEFACE_CACHE (.cache/blazeface).
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
cache="${BLAZEFACE_CACHE:-.cache/blazeface}"
version="0.10.21"
# The face detection files are the same in every platform's wheel; we pin this one.
wheel="mediapipe-$version-cp311-cp311-manylinux_2_28_x86_64.whl"
wheel_sha256="05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
# Versions the converter was run with (the output bytes were checked with these).
pins=(numpy==2.4.6 onnx==1.23.2 onnxruntime==1.32.0 tflite==2.18.0 flatbuffers==25.12.19
      ai-edge-litert==2.3.0 pillow==13.0.0)

. scripts/wheel-venv.sh
make_venv "$python" "$cache" "${pins[@]}"
venv="$cache/venv"
# --platform etc. fetch the pinned wheel whatever this machine's Python and OS are
fetch_wheel "$cache" "$wheel" "$wheel_sha256" "mediapipe==$version" \
  --python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64

# The two .tflite files, unpacked next to the wheel for reference (convert.py reads the wheel
# itself, as it also needs the graph options compiled into the wheel's library).
"$venv/bin/python" - "$cache/$wheel" "$cache/tflite" <<'PY'
import os, sys, zipfile
zf = zipfile.ZipFile(sys.argv[1])
os.makedirs(sys.argv[2], exist_ok=True)
for name in ("face_detection_short_range.tflite", "face_detection_full_range_sparse.tflite"):
    with open(os.path.join(sys.argv[2], name), "wb") as f:
        f.write(zf.read("mediapipe/modules/face_detection/" + name))
PY
sha256sum "$cache/$wheel" "$cache"/tflite/*.tflite

"$venv/bin/python" models/detectors/blazeface/convert.py --wheel "$cache/$wheel" \
  --out-dir models/detectors/blazeface --image models/demo/astronaut.png
