#!/usr/bin/env bash
# The README's first command: berth's main job on the bundled example, no registry, no GitHub.
# Builds the local test images, then: plan (changes pending), apply, plan again (no-op).
# Clean up afterwards with: BERTH_INSTANCE=demo berth apply --allow-empty <an empty folder>
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/test-images.sh
cargo build --release --quiet
berth=target/release/berth
export BERTH_INSTANCE=${BERTH_INSTANCE:-demo}
export BERTH_LOG=${BERTH_LOG:-berth=info}

echo "== berth validate examples/demo"
"$berth" validate examples/demo
echo
echo "== berth plan examples/demo"
"$berth" plan examples/demo || [ $? -eq 2 ]
echo
echo "== berth apply examples/demo"
"$berth" apply examples/demo
echo
echo "== berth plan examples/demo (again: nothing to do)"
"$berth" plan examples/demo
echo
echo "The demo app answers on http://127.0.0.1:18080/ :"
wget -q -O- http://127.0.0.1:18080/ 2>/dev/null || curl -fsS http://127.0.0.1:18080/
