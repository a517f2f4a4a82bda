#!/usr/bin/env bash
# The test command (README, .ci/run): builds the local test images and the systemd test host
# image (hack/test-host.sh: root, and Debian's mirrors on the first run) and the Debian tools
# tests run directly (hack/test-tools.sh), then runs every test.
# Needs a reachable Docker Engine (DOCKER_HOST or /var/run/docker.sock).
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/test-images.sh
bash hack/test-host.sh
bash hack/test-tools.sh
cargo test --locked "$@"
