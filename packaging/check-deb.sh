#!/usr/bin/env bash
# Checks a built sitfer .deb: architecture, the binary, every board profile, the systemd unit
# and its ExecStart, the defaults file.   packaging/check-deb.sh target/.../sitfer_*.deb [ARCH]
set -euo pipefail
deb="${1:?usage: packaging/check-deb.sh FILE.deb [arm64|amd64]}"
arch="${2:-arm64}"
cd "$(dirname "$0")/.."
fail() { echo "check-deb: $deb: $*" >&2; exit 1; }
got=$(dpkg-deb -f "$deb" Architecture)
[ "$got" = "$arch" ] || fail "Architecture is $got, expected $arch"
dpkg-deb -f "$deb" Package | grep -qx sitfer || fail "Package is not sitfer"
contents=$(dpkg-deb -c "$deb")
echo "$contents"
has() { grep -qE " \./$1\$" <<<"$contents" || fail "missing $1"; }
has "usr/bin/sitfer"
for profile in boards/*.toml; do has "usr/share/sitfer/boards/$(basename "$profile")"; done
has "lib/systemd/system/sitfer@.service"
has "etc/default/sitfer"
grep -qE '^-rwxr-xr-x .* \./usr/bin/sitfer$' <<<"$contents" || fail "usr/bin/sitfer is not executable"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
grep -qx 'ExecStart=/usr/bin/sitfer run --board %i $SITFER_ARGS' "$tmp/lib/systemd/system/sitfer@.service" \
  || fail "the unit does not run sitfer run --board %i"
grep -qx 'Restart=on-failure' "$tmp/lib/systemd/system/sitfer@.service" || fail "the unit does not restart on failure"
case "$arch" in arm64) machine="aarch64|ARM aarch64" ;; amd64) machine="x86-64" ;; *) machine="." ;; esac
if command -v file >/dev/null 2>&1; then
  file "$tmp/usr/bin/sitfer" | grep -qE "$machine" || fail "usr/bin/sitfer is not an $arch binary: $(file "$tmp/usr/bin/sitfer")"
fi
dpkg-deb -e "$deb" "$tmp/DEBIAN"
[ -x "$tmp/DEBIAN/postinst" ] || fail "no postinst (systemctl daemon-reload)"
echo "check-deb: $deb OK ($arch, $(dpkg-deb -f "$deb" Version), $(du -h "$deb" | cut -f1))"
