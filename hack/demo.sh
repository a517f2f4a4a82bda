#!/usr/bin/env bash
# The README's first command: berth's main job on the bundled example, no registry, no GitHub.
# README.md ("Try it") says what to edit, how to stop and how to clean up; in short:
#
#   bash hack/demo.sh          builds the images the demo runs (hack/test-images.sh
#                              --no-backup-images: berth-test/busybox:1, berth-test/app:1, :2,
#                              :latest; apt-installs busybox-static if /bin/busybox is not static)
#                              and berth (cargo's progress shows; the first release build takes
#                              minutes; BERTH_BIN=PATH runs that binary instead), turns
#                              examples/demo into a local git repository (target/demo/origin.git,
#                              work clone in target/demo/work) and runs `berth serve` on it in the
#                              foreground (instance demo, state in target/demo/state).
#                              Ctrl-C stops berth (the containers keep running);
#                              DEMO_SECONDS=N stops it after N seconds.
#   bash hack/demo.sh clean    removes the demo's containers, networks and volumes (everything
#                              labelled io.berth.instance=demo) and target/demo.
#
# Change the server the GitOps way, from another terminal (the sed changes only the app
# service's image; the cache service runs berth-test/app:1 too and stays):
#     cd target/demo/work && sed -i '/^  app:/,/image:/ s/app:1/app:2/' web/compose.yaml &&
#       git commit -qam v2 && git push -q
# berth notices the push within the poll interval (2s here) and replaces only what changed: the
# new version answers 2-6s after the push; the app publishes a port, so it goes unanswered for
# about 1.4s during the replace (README: Safety rules).
# Inspect it as serve sees it: the same instance and state dir, the work clone as the config:
#     target/release/berth plan --instance demo --state-dir target/demo/state target/demo/work
#     target/release/berth jobs --instance demo --state-dir target/demo/state
#     curl -s http://127.0.0.1:9470/metrics
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

# Only the images the demo runs: not the backup tests' (nor restic, rclone, mmdebstrap).
bash hack/test-images.sh --no-backup-images
if [ -n "${BERTH_BIN:-}" ]; then
    berth=$(realpath "$BERTH_BIN")
else
    echo "building berth (release; the first build takes a few minutes)..."
    cargo build --release
    berth=$PWD/target/release/berth
fi

if [ ! -d "$demo/origin.git" ]; then
    mkdir -p "$demo"
    git init -q --bare -b main "$demo/origin.git"
    git clone -q "$demo/origin.git" "$demo/work" 2>/dev/null
    cp -r examples/demo/. "$demo/work/"
    # An identity of its own: the README's `git commit` works without a global one.
    git -C "$demo/work" config user.name demo
    git -C "$demo/work" config user.email demo@berth.invalid
    git -C "$demo/work" add -A
    git -C "$demo/work" commit -qm "the demo server"
    git -C "$demo/work" push -q origin HEAD:main
    echo "created the demo repository $demo/origin.git (work clone: $demo/work)"
fi

echo "berth serve: following file://$demo/origin.git (main) every 2s; webhooks, /readyz and /metrics on 127.0.0.1:9470"
echo "the demo app answers on http://127.0.0.1:18080/ once applied"
echo "edit (the app service's image only): cd $demo/work && sed -i '/^  app:/,/image:/ s/app:1/app:2/' web/compose.yaml && git commit -qam v2 && git push -q"
echo "  noticed within 2s; the new version answers 2-6s after the push (about 1.4s without an answer in between)"
echo "inspect, from another terminal:"
echo "  plan:    $berth plan --instance $instance --state-dir $demo/state $demo/work"
echo "  jobs:    $berth jobs --instance $instance --state-dir $demo/state"
echo "  metrics: curl -s http://127.0.0.1:9470/metrics"
echo "stop: Ctrl-C (containers keep running); clean up: bash hack/demo.sh clean"
args=(serve --repo "file://$demo/origin.git" --state-dir "$demo/state" --name demo
      --poll-interval 2s --insecure-no-webhook-secret)
export BERTH_INSTANCE=$instance
if [ -n "${DEMO_SECONDS:-}" ]; then
    timeout --signal=TERM "$DEMO_SECONDS" "$berth" "${args[@]}" || [ $? -eq 124 ]
else
    exec "$berth" "${args[@]}"
fi
