#!/usr/bin/env bash
# The README's first command: berth's main job on the bundled example, no registry, no GitHub.
# README.md ("Try it") says what to edit, how to stop and how to clean up; in short:
#
#   bash hack/demo.sh          builds the local test images and berth (cargo's progress shows;
#                              the first release build takes minutes), turns examples/demo into a
#                              local git repository (target/demo/origin.git, work clone in
#                              target/demo/work) and runs `berth serve` on it in the foreground.
#                              Ctrl-C stops berth (the containers keep running);
#                              DEMO_SECONDS=N stops it after N seconds.
#   bash hack/demo.sh clean    removes the demo's containers, networks and volumes (everything
#                              labelled io.berth.instance=demo) and target/demo.
#
# Change the server the GitOps way, from another terminal:
#     cd target/demo/work && sed -i 's/app:1/app:2/' web/compose.yaml && git commit -am v2 && git push
# berth picks the push up within the poll interval (2s here) and replaces only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=$PWD/target/demo
instance=demo

if [ "${1:-}" = clean ]; then
    label=label=io.berth.instance=$instance
    containers=$(docker ps -aq --filter "$label")
    # shellcheck disable=SC2086 # one id per word
    [ -z "$containers" ] || docker rm -f -v $containers >/dev/null
    for kind in network volume; do
        names=$(docker "$kind" ls -q --filter "$label")
        # shellcheck disable=SC2086
        [ -z "$names" ] || docker "$kind" rm $names >/dev/null
    done
    rm -rf "$demo"
    echo "removed the demo's containers, networks and volumes (instance $instance) and $demo"
    exit 0
elif [ -n "${1:-}" ]; then
    echo "usage: bash hack/demo.sh [clean]" >&2
    exit 64
fi

bash hack/test-images.sh
echo "building berth (release; the first build takes a few minutes)..."
cargo build --release
berth=$PWD/target/release/berth

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
echo "the demo app answers on http://127.0.0.1:18080/ once applied"
echo "edit: cd $demo/work && sed -i 's/app:1/app:2/' web/compose.yaml && git commit -am v2 && git push"
echo "stop: Ctrl-C (containers keep running); clean up: bash hack/demo.sh clean"
args=(serve --repo "file://$demo/origin.git" --state-dir "$demo/state" --name demo
      --poll-interval 2s --insecure-no-webhook-secret)
export BERTH_INSTANCE=$instance
if [ -n "${DEMO_SECONDS:-}" ]; then
    timeout --signal=TERM "$DEMO_SECONDS" "$berth" "${args[@]}" || [ $? -eq 124 ]
else
    exec "$berth" "${args[@]}"
fi
