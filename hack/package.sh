#!/usr/bin/env bash
# Build berth's release artifacts into target/dist/:
#
#   berth_<version>-1_amd64.deb            cargo-deb ([package.metadata.deb] in Cargo.toml):
#                                          /usr/bin/berth, /usr/lib/systemd/system/berth.service
#                                          (installed, not enabled or started), and in
#                                          /usr/share/doc/berth/ berth.env.example and README.md.
#   berth-<version>-x86_64-linux.tar.gz    berth-<version>-x86_64-linux/{berth, berth.service,
#                                          berth.env.example, README.md}; reproducible (sorted,
#                                          root-owned, mtime of the last commit).
#   SHA256SUMS                             of both.
#
# README.md ("Install on a server") says how to install either. A release build: minutes on
# two cores. Installs cargo-deb (`cargo install cargo-deb --locked`) when it is missing.
#
# Usage: hack/package.sh
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "package: error: $*" >&2; exit 1; }
log() { echo "package: $*" >&2; }

case "${1:-}" in
  "") ;;
  -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
  *) die "unknown argument: $1 (usage: $0)" ;;
esac

start=$(date +%s)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[[ -n $version ]] || die "no version in Cargo.toml"
arch=$(uname -m)
[[ $arch == x86_64 ]] || log "warning: building on $arch; the tarball is named for it"
out=target/dist
mkdir -p "$out"

if ! cargo deb --version >/dev/null 2>&1; then
  log "installing cargo-deb (cargo install cargo-deb --locked)"
  cargo install cargo-deb --locked || die "cargo install cargo-deb failed"
fi

log "cargo build --release --locked"
cargo build --release --locked || die "release build failed"
bin=target/release/berth
[[ -x $bin ]] || die "$bin is missing after the build"

# --- .deb --------------------------------------------------------------------------------------
# --no-build: the binary just built; --no-strip: keep the release profile's line tables
# (backtraces name file:line).
deb=$(cargo deb --no-build --no-strip --output "$out" 2>&1 | tail -n 1) || die "cargo deb failed: $deb"
[[ -f $deb ]] || die "cargo deb did not report a package path (got: $deb)"
if command -v dpkg-deb >/dev/null 2>&1; then
  listing=$(dpkg-deb -c "$deb")
  for f in ./usr/bin/berth ./usr/lib/systemd/system/berth.service \
           ./usr/share/doc/berth/berth.env.example ./usr/share/doc/berth/README.md; do
    grep -q " $f\$" <<<"$listing" || die "$deb lacks $f"
  done
  (( $(grep -c '/berth.service$' <<<"$listing") == 1 )) || die "$deb ships the unit more than once"
fi

# --- tarball -----------------------------------------------------------------------------------
name=berth-$version-$arch-linux
stage=$(mktemp -d "${TMPDIR:-/tmp}/berth-package.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/$name"
install -m 0755 "$bin" "$stage/$name/berth"
install -m 0644 dist/berth.service dist/berth.env.example README.md "$stage/$name/"
mtime=$(git log -1 --format=%ct 2>/dev/null || date +%s)
tarball=$out/$name.tar.gz
tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" -c "$name" \
  | gzip -n -9 >"$tarball"

(cd "$out" && sha256sum "$(basename "$deb")" "$(basename "$tarball")" >SHA256SUMS)
echo "package: built in $(( $(date +%s) - start ))s: $deb ($(du -h "$deb" | cut -f1)), $tarball ($(du -h "$tarball" | cut -f1)), $out/SHA256SUMS"
