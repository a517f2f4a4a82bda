#!/usr/bin/env bash
# Debian packages the tests run on the test machine itself (not in an image): promtool (from
# `prometheus`) checks and unit-tests the shipped alert rules. Installed once; later runs only
# look.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ ${#need[@]} -eq 0 ] && exit 0
echo "test-tools: installing ${need[*]} via apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
# The package's own Prometheus server is not wanted running on a test machine.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
