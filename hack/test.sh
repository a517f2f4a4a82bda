#!/usr/bin/env bash
# The test command (README, .ci/run): builds the local test images and the systemd test host
# image (hack/test-host.sh: root, and Debian's mirrors on the first run) and the Debian tools
# tests run directly (hack/test-tools.sh), then runs every test (arguments go to `cargo test`:
# `bash hack/test.sh proxy::` runs some), then fails the run when the tests left anything
# behind (hack/test-leftovers.sh: a container, network or volume of a test, a temporary folder).
# Needs a reachable Docker Engine (DOCKER_HOST or /var/run/docker.sock).
set -euo pipefail
cd "$(dirname "$0")/.."
# Leftovers of an earlier run (one that was killed, or failed this check) are removed first, so
# that the check after the tests counts only this run's. Those of a test run still going (in
# another terminal or checkout) stay: hack/test-leftovers.sh knows them by their process.
bash hack/test-leftovers.sh clean
bash hack/test-images.sh
bash hack/test-host.sh
bash hack/test-tools.sh
status=0
cargo test --locked "$@" || status=$?
# After the tests, whether they passed or not (a failing test must clean up too), and also
# after a filtered run: every test that ran must have removed what it made. cargo's own failure
# keeps its exit code; a clean failing run only adds the list.
bash hack/test-leftovers.sh check || { ((status != 0)) || status=1; }
exit "$status"
