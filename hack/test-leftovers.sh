#!/usr/bin/env bash
# What a test run left behind: containers, networks and volumes on the Engine, and temporary
# folders. hack/test.sh removes an earlier run's leftovers before the tests (`clean`) and fails
# the run when the tests left any (`check`).
#
# What counts as a test's:
#   - a network or volume labelled io.berth.test=1, a container labelled io.berth.test.pid or
#     io.berth.test.host (tests/it/support.rs: test_labels, docker_run, Networks; the test hosts
#     of tests/it/host.rs). Not every container labelled io.berth.test=1: a container inherits
#     its image's labels, and the test images have it — the demo's containers too. Images are
#     never looked at: the ones with that label are the test images (hack/test-images.sh,
#     test-backup-images.sh, test-host.sh) and stay;
#   - a container, network or volume berth created for a test: labelled
#     io.berth.instance=it-<test>-<pid> (every test's instance starts with `it-`); a container
#     of another instance (the demo's, `demo`) never is;
#   - ${TMPDIR:-/tmp}/berth-state-it-<test>-<pid> (a test's CLI state dir, support.rs World) and
#     ${TMPDIR:-/tmp}/berth-test-images.<pid>.* (hack/test-images.sh's build folder; older
#     versions made them without the pid), and a test host's shared folder,
#     host-<test>-<pid>-<random> in target/tmp or, for a checkout under /tmp, /var/lib/berth-it
#     (tests/it/host.rs).
# Each belongs to a process: the label io.berth.test.pid, else the number at the end of its
# instance label or of its name. While that process runs, the object belongs to a test run in
# progress (another terminal, another checkout) and is left alone; else it is a leftover.
#
# Usage: hack/test-leftovers.sh check   list the leftovers, exit 1 when there are any
#        hack/test-leftovers.sh clean   remove them
set -euo pipefail

mode=${1:-}
case "$mode" in
  check | clean) ;;
  -h | --help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
  *) echo "usage: $0 check|clean" >&2; exit 64 ;;
esac
tmp=${TMPDIR:-/tmp}

alive() { [[ -n $1 && -d /proc/$1 ]]; }

# The process an object belongs to: PID_LABEL INSTANCE NAME → pid, or nothing.
owner() {
  if [[ -n $1 ]]; then
    echo "$1"
  elif [[ $2 =~ -([0-9]+)$ || $3 =~ -([0-9]+)$ ]]; then
    echo "${BASH_REMATCH[1]}"
  fi
  return 0
}

# A kind's test objects, one per line: ID|NAME|INSTANCE|PID_LABEL.
objects() {
  local kind=$1 fmt list
  case "$kind" in
    container) list=(docker ps -a); fmt='{{.ID}}|{{.Names}}' ;;
    network) list=(docker network ls); fmt='{{.ID}}|{{.Name}}' ;;
    volume) list=(docker volume ls); fmt='{{.Name}}|{{.Name}}' ;;
  esac
  fmt+='|{{.Label "io.berth.instance"}}|{{.Label "io.berth.test.pid"}}'
  local filters=(io.berth.test=1) out all=
  [[ $kind == container ]] && filters=(io.berth.test.pid io.berth.test.host)
  for f in "${filters[@]}" io.berth.instance; do
    out=$("${list[@]}" --filter "label=$f" --format "$fmt")
    all+=$out$'\n'
  done
  # Of another instance (or, for io.berth.instance itself, of none that is a test's): not ours.
  awk -F'|' 'NF && ($3 == "" || $3 ~ /^it-/)' <<<"$all" | sort -u
}

left=()       # "kind name" of every leftover, for the report
failed=0
remove() { # KIND ID NAME
  local kind=$1 id=$2 name=$3 out
  case "$kind" in
    container) out=$(docker rm -f -v "$id" 2>&1) ;;
    network)
      # Whatever is still attached (a container of a run in progress) is let go first.
      for c in $(docker network inspect --format '{{range $id, $_ := .Containers}}{{$id}} {{end}}' "$id" 2>/dev/null); do
        docker network disconnect --force "$id" "$c" >/dev/null 2>&1 || true
      done
      out=$(docker network rm "$id" 2>&1) ;;
    volume) out=$(docker volume rm -f "$id" 2>&1) ;;
    folder) out=$(rm -rf --one-file-system "$id" 2>&1) ;;
  esac && { echo "test-leftovers: removed $kind $name" >&2; return 0; }
  echo "test-leftovers: could not remove $kind $name: ${out##*$'\n'}" >&2
  failed=1
}

found() { # KIND ID NAME
  if [[ $mode == clean ]]; then remove "$@"; else left+=("$1 $3"); fi
}

if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  echo "test-leftovers: error: the Docker Engine does not answer (DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock})" >&2
  exit 1
fi
# Containers first: a network or volume in use cannot go before them.
for kind in container network volume; do
  lines=$(objects "$kind")
  while IFS='|' read -r id name instance pid; do
    [[ -n $id ]] || continue
    pid=$(owner "$pid" "$instance" "$name")
    alive "$pid" && continue
    found "$kind" "$id" "$name${instance:+ (instance $instance)}"
  done <<<"$lines"
done
target=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}
for dir in "$tmp"/berth-state-it-* "$tmp"/berth-test-images.* \
           "$target"/tmp/host-* /var/lib/berth-it/host-*; do
  [[ -e $dir ]] || continue
  pid=
  [[ ${dir##*/} =~ ^berth-state-it-.*-([0-9]+)$ || ${dir##*/} =~ ^berth-test-images\.([0-9]+)\. \
     || ${dir##*/} =~ ^host-.*-([0-9]+)-[^-]+$ ]] \
    && pid=${BASH_REMATCH[1]}
  alive "$pid" && continue
  found folder "$dir" "$dir"
done

# The test hosts' folder for a checkout under /tmp, once empty.
rmdir /var/lib/berth-it 2>/dev/null || true
if [[ $mode == clean ]]; then
  exit "$failed"
fi
if ((${#left[@]} > 0)); then
  echo "test-leftovers: error: the tests left ${#left[@]} thing(s) behind (every test must remove what it creates, also when it fails):" >&2
  printf '  %s\n' "${left[@]}" >&2
  echo "test-leftovers: remove them with: bash hack/test-leftovers.sh clean" >&2
  exit 1
fi
echo "test-leftovers: none (no container, network or volume of a test, no temporary folder)" >&2
