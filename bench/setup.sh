#!/usr/bin/env bash
# Creates bench/.venv with PyTorch from PyPI for the side-by-side trainer benchmark.
# PyPI's Linux torch wheel pulls the CUDA runtime packages too (several GB); the benchmark uses
# only its CPU path.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==${TORCH_VERSION:-2.15.0}" numpy
.venv/bin/python -c "import torch; print('torch', torch.__version__, 'threads', torch.get_num_threads())"
