#!/usr/bin/env bash
# The test command (README, .ci/run): builds the local test images, then runs every test.
# Needs a reachable Docker Engine (DOCKER_HOST or /var/run/docker.sock).
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/test-images.sh
cargo test --locked "$@"
