#!/usr/bin/env bash
# Cross-compiles the `sitfer` runtime for aarch64 Linux (release) on an x86_64 Debian/Ubuntu
# machine, then runs it under qemu as a smoke test: `sitfer --help`, `sitfer labels`, and
# `sitfer info models/default` when that bundle exists.
#
#   scripts/cross-build.sh                 # aarch64-unknown-linux-gnu, linked against this
#                                          # machine's cross glibc (Debian 12: 2.36)
#   scripts/cross-build.sh --glibc 2.31    # cargo zigbuild: runs on glibc >= 2.31 (JetPack 5)
#   scripts/cross-build.sh --install       # apt-get/rustup what is missing first
#
# qemu timings mean nothing; only "it links, it starts, it reads a bundle" is checked here.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
GLIBC=""
INSTALL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --target) TARGET="$2"; shift 2 ;;
    --glibc) GLIBC="$2"; shift 2 ;;
    --install) INSTALL=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$TARGET" in
  aarch64-unknown-linux-gnu) ;;
  *) echo "this script builds aarch64-unknown-linux-gnu only (asked: $TARGET)" >&2; exit 2 ;;
esac

missing=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/include/stdio.h ] || missing+=(libc6-dev-arm64-cross)
command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$INSTALL" = 1 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
  else
    echo "missing: ${missing[*]}; run: apt-get install -y ${missing[*]} (or pass --install)" >&2
    exit 1
  fi
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
  if [ "$INSTALL" = 1 ]; then rustup target add "$TARGET"; else
    echo "run: rustup target add $TARGET (or pass --install)" >&2; exit 1
  fi
fi

# No bindgen/libclang: the V4L2 bindings for aarch64 are committed
# (runtime/vendor/v4l2-sys-mit/bindings/aarch64-linux-gnu.rs).
# The C/assembly parts (tract-linalg kernels) use the cross gcc.
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc

start=$(date +%s)
if [ -n "$GLIBC" ]; then
  command -v cargo-zigbuild >/dev/null 2>&1 || {
    echo "--glibc needs cargo-zigbuild (cargo install cargo-zigbuild) and zig (pip install ziglang)" >&2; exit 1; }
  cargo zigbuild --release -p sitfer-runtime --bin sitfer --target "$TARGET.$GLIBC"
else
  cargo build --release -p sitfer-runtime --bin sitfer --target "$TARGET"
fi
secs=$(( $(date +%s) - start ))
bin="target/$TARGET/release/sitfer"
size=$(stat -c %s "$bin")
tmp=$(mktemp)
aarch64-linux-gnu-strip -o "$tmp" "$bin" && stripped=$(stat -c %s "$tmp") || stripped="?"
rm -f "$tmp"
echo "== built $bin in ${secs} s: $size bytes ($(( size / 1024 / 1024 )) MiB; $stripped bytes stripped)"
file "$bin" 2>/dev/null || true
# The newest glibc symbol version the binary needs is its real glibc floor.
if command -v aarch64-linux-gnu-objdump >/dev/null 2>&1; then
  floor=$(aarch64-linux-gnu-objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
  echo "== needs glibc >= ${floor#GLIBC_}"
fi

run() { echo "== qemu: sitfer $*"; qemu-aarch64-static -L /usr/aarch64-linux-gnu "$bin" "$@"; }
run --help
run labels
if [ -f models/default/manifest.json ]; then
  run info models/default
else
  echo "== models/default absent: skipped sitfer info"
fi
echo "== cross build OK"
