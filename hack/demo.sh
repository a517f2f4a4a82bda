#!/usr/bin/env bash
# The README's first command: berth's main job on the bundled example, no registry, no GitHub.
#
# Builds the local test images and berth, turns examples/demo into a local git repository
# (target/demo/origin.git, with a work clone in target/demo/work) and runs `berth serve` on it.
# Change the server the GitOps way, from another terminal:
#     cd target/demo/work && sed -i 's/app:1/app:2/' web/compose.yaml && git commit -am v2 && git push
# berth picks the push up within the poll interval (2s here) and replaces only what changed.
# Ctrl-C stops berth (the containers keep running). DEMO_SECONDS=N stops it after N seconds.
# Remove the demo's containers afterwards with:
#     BERTH_INSTANCE=demo target/release/berth apply --allow-empty "$(mktemp -d)"
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/test-images.sh
cargo build --release --quiet
berth=$PWD/target/release/berth
demo=$PWD/target/demo

if [ ! -d "$demo/origin.git" ]; then
    mkdir -p "$demo"
    git init -q --bare -b main "$demo/origin.git"
    git clone -q "$demo/origin.git" "$demo/work" 2>/dev/null
    cp -r examples/demo/. "$demo/work/"
    git -C "$demo/work" add -A
    git -C "$demo/work" -c user.name=demo -c user.email=demo@berth.invalid commit -qm "the demo server"
    git -C "$demo/work" push -q origin HEAD:main
    echo "created the demo repository $demo/origin.git (work clone: $demo/work)"
fi

echo "berth serve: following file://$demo/origin.git (main); webhooks, /readyz and /metrics on 127.0.0.1:9470"
echo "the demo app answers on http://127.0.0.1:18080/ once applied; Ctrl-C to stop"
args=(serve --repo "file://$demo/origin.git" --state-dir "$demo/state" --name demo
      --poll-interval 2s --insecure-no-webhook-secret)
export BERTH_INSTANCE=demo
if [ -n "${DEMO_SECONDS:-}" ]; then
    timeout --signal=TERM "$DEMO_SECONDS" "$berth" "${args[@]}" || [ $? -eq 124 ]
else
    exec "$berth" "${args[@]}"
fi
