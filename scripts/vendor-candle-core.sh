#!/usr/bin/env bash
# Re-creates trainer/vendor/candle-core: candle-core 0.11.1 from crates.io (fetched through a
# throwaway cargo project, so cargo's own registry client does the download) with the change in
# trainer/vendor/candle-core/backprop.diff applied. See PATCH.md there.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=$ROOT/trainer/vendor/candle-core
VERSION=0.11.1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/p/src"
printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\ncandle-core = "=%s"\n' "$VERSION" > "$TMP/p/Cargo.toml"
touch "$TMP/p/src/lib.rs"
(cd "$TMP/p" && cargo fetch -q)
SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/candle-core-$VERSION | head -1)
cp "$DEST/backprop.diff" "$DEST/PATCH.md" "$TMP/"
rm -rf "$DEST" && mkdir -p "$DEST"
cp -r "$SRC/src" "$SRC/Cargo.toml" "$SRC/LICENSE" "$SRC/README.md" "$DEST/"
cp "$TMP/backprop.diff" "$TMP/PATCH.md" "$DEST/"
(cd "$DEST" && patch -p1 --no-backup-if-mismatch < backprop.diff)
echo "vendored candle-core $VERSION with the backprop patch into $DEST"
