#!/usr/bin/env bash
# Builds the `sitfer` binary for one board profile: `boards/build.sh jetson-orin-nano`.
# Reads the profile's target and glibc floor; aarch64 goes through scripts/cross-build.sh (with
# cargo zigbuild when the floor is below this machine's cross glibc and cargo-zigbuild is
# installed), x86_64 is a plain release build.
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: boards/build.sh NAME (one of: $(ls boards/*.toml | xargs -n1 basename | sed 's/.toml$//' | tr '\n' ' '))}"
profile="boards/$name.toml"
[ -f "$profile" ] || { echo "no profile $profile" >&2; exit 1; }
key() { sed -n "s/^$1 *= *\"\\(.*\\)\".*/\\1/p" "$profile" | head -1; }
target=$(key target)
glibc=$(key min_glibc)
case "$target" in
  x86_64-unknown-linux-gnu)
    cargo build --release -p sitfer-runtime --bin sitfer
    echo "built target/release/sitfer for $name (needs glibc >= $glibc on the board)" ;;
  aarch64-unknown-linux-gnu)
    # A plain cross build from Debian 12 needs glibc >= 2.35 (measured, boards/README.md): older
    # boards need zigbuild to link against their own glibc.
    if [ -n "$glibc" ] && [ "$(printf '%s\n' "$glibc" 2.35 | sort -V | head -1)" != 2.35 ]; then
      if command -v cargo-zigbuild >/dev/null 2>&1; then
        exec scripts/cross-build.sh --glibc "$glibc"
      fi
      echo "warning: $name has glibc $glibc; without cargo-zigbuild the binary needs this machine's cross glibc" >&2
    fi
    exec scripts/cross-build.sh ;;
  *) echo "$profile: no build recipe for target $target" >&2; exit 1 ;;
esac
