#!/usr/bin/env bash
# Measures a clean `cargo build --release`: wall time, CPU time (user+sys, the figure to compare
# on a shared machine) and peak RSS, plus how many crates were compiled and how many packages
# the build graph holds. It builds in its own target dir (BUILD_TIME_TARGET, default
# target/build-time, emptied first) so the usual target/ stays warm; the registry is used as
# it is (`cargo fetch` first, so downloads are not timed).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BUILD_TIME_TARGET:-$PWD/target/build-time}
case "$dir" in /*) ;; *) dir=$PWD/$dir ;; esac
[ -x /usr/bin/time ] || apt-get install -y -qq time >/dev/null
rm -rf "$dir"
cargo fetch --locked >/dev/null 2>&1
log=$(mktemp)
trap 'rm -f "$log" "$log.time"' EXIT
if ! /usr/bin/time -f '%e %U %S %M' -o "$log.time" \
    env CARGO_TARGET_DIR="$dir" cargo build --release --locked 2>"$log"; then
    tail -n 30 "$log" >&2
    exit 1
fi
read -r wall user sys rss_kb <"$log.time"
compiled=$(grep -c '^ *Compiling ' "$log" || true)
packages=$(cargo tree --locked -e normal,build --prefix none 2>/dev/null \
    | sed 's/ (\*)//; s/ (proc-macro)//' | sort -u | wc -l)
aws_lc=$(grep -c '^ *Compiling aws-lc' "$log" || true)
printf 'commit        %s\n' "$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
printf 'rustc         %s, %s cores\n' "$(rustc --version | cut -d' ' -f2)" "$(nproc)"
printf 'wall          %.0f s\n' "$wall"
printf 'cpu           %.0f s (user %.0f + sys %.0f)\n' "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" "$user" "$sys"
printf 'peak rss      %d MB\n' "$((rss_kb / 1024))"
printf 'compiled      %s crates (%s of them aws-lc)\n' "$compiled" "$aws_lc"
printf 'build graph   %s packages (cargo tree -e normal,build)\n' "$packages"
printf 'binary        %s bytes\n' "$(stat -c %s "$dir/release/berth")"
