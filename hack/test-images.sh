#!/usr/bin/env bash
# Build the local test images the berth test-suite needs, without any registry.
#
#   berth-test/busybox:1    FROM scratch + static busybox (+ applet symlinks),
#                           /etc/passwd+group (root, nobody), /tmp (1777), /www.
#                           CMD ["sleep","3600"]
#   berth-test/app:1        busybox:1 + /www/index.html "app v1";
#   berth-test/app:latest   CMD httpd -f -v -p 8080 -h /www  (port 8080)
#   berth-test/app:2        same, index.html "app v2" (different image ID)
#
# No HEALTHCHECK in the images: tests declare them in Compose files, e.g.
#   test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
# ENTRYPOINT is /bin/berth-init, a tiny sh shim that forwards SIGTERM to the
# command, so `docker stop` takes ms instead of 10s (PID 1 ignores SIGTERM).
# Every image carries the label io.berth.test=1 (and io.berth.test.recipe=N).
#
# Then hack/test-backup-images.sh: berth-test/restic:0.14 and berth-test/postgres:15 for the
# backup tests (and restic + rclone on this machine); its own recipe and fast path.
#
# Usage: hack/test-images.sh [--force] [--no-backup-images]
#   Idempotent: exits at once when all images exist with the current recipe.
#   --force (or BERTH_TEST_IMAGES_FORCE=1) rebuilds anyway.
#   --no-backup-images (or BERTH_TEST_BACKUP_IMAGES=0) skips hack/test-backup-images.sh: only
#   the four images above, nothing installed but busybox-static (hack/demo.sh uses this).
set -euo pipefail

# Bump when the image contents below change, so old images get rebuilt.
RECIPE=2
IMAGES=(berth-test/busybox:1 berth-test/app:1 berth-test/app:2 berth-test/app:latest)
BUSYBOX=/bin/busybox

die() { echo "test-images: error: $*" >&2; exit 1; }
log() { echo "test-images: $*" >&2; }

force=${BERTH_TEST_IMAGES_FORCE:-0}
backup=${BERTH_TEST_BACKUP_IMAGES:-1}
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --no-backup-images) backup=0 ;;
    -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
    *) die "unknown argument: $arg (usage: $0 [--force] [--no-backup-images])" ;;
  esac
done

# The backup tests' images, after ours. Not `exec`: the EXIT trap below must still remove the
# build folder once this script ends.
backup_images() {
  [[ $backup == 1 ]] || return 0
  local args=()
  [[ $force == 1 ]] && args+=(--force)
  bash "$(dirname "$0")/test-backup-images.sh" ${args[@]+"${args[@]}"}
}

command -v docker >/dev/null 2>&1 || die "docker CLI not found in PATH"
if ! server=$(timeout 20 docker version --format '{{.Server.Version}}' 2>&1); then
  die "Docker daemon unreachable (DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}): ${server##*$'\n'}"
fi

# --- fast path: everything present with the current recipe -------------------
if [[ $force != 1 ]]; then
  all_ok=1
  for img in "${IMAGES[@]}"; do
    r=$(docker image inspect --format '{{index .Config.Labels "io.berth.test.recipe"}}' "$img" 2>/dev/null) || r=
    [[ $r == "$RECIPE" ]] || { all_ok=0; break; }
  done
  if [[ $all_ok == 1 ]]; then
    echo "test-images: up to date (recipe $RECIPE): $(for i in "${IMAGES[@]}"; do
      printf '%s=%s ' "$i" "$(docker image inspect --format '{{.Id}}' "$i" | cut -c8-19)"; done)"
    backup_images
    exit 0
  fi
fi

start=$(date +%s)
# IDs the tags point at now, to remove them if a rebuild leaves them untagged.
old_ids=()
for img in "${IMAGES[@]}"; do
  id=$(docker image inspect --format '{{.Id}}' "$img" 2>/dev/null) && old_ids+=("$id")
done

# --- static busybox -----------------------------------------------------------
is_static() {
  # Robust without `file`: ldd prints "not a dynamic executable" (or fails) for
  # static binaries; also make sure there is no ELF interpreter (PT_INTERP).
  [[ -x $1 ]] || return 1
  if command -v file >/dev/null 2>&1; then
    file -L "$1" | grep -q 'statically linked' && return 0
  fi
  if command -v ldd >/dev/null 2>&1; then
    if out=$(ldd "$1" 2>&1); then
      grep -qE 'not a dynamic executable|statically linked' <<<"$out" && return 0
      return 1
    fi
    grep -qE 'not a dynamic executable|statically linked' <<<"$out" && return 0
  fi
  # Last resort: no "/lib*/ld-linux" interpreter string in the binary.
  ! grep -qa 'ld-linux' "$1"
}

if ! is_static "$BUSYBOX"; then
  if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
    log "installing busybox-static via apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq busybox-static >/dev/null || die "apt-get install busybox-static failed"
  fi
  is_static "$BUSYBOX" || die "$BUSYBOX is missing or not statically linked"
fi

# --- build context --------------------------------------------------------------
# The pid in the name: hack/test-leftovers.sh tells a build in progress from a leftover.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-test-images.$$.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

root=$tmp/base/rootfs
mkdir -p "$root"/{bin,usr/bin,etc,tmp,www,root}
cp "$BUSYBOX" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
# Applet symlinks made here (no RUN step: one layer, no container start).
while IFS= read -r applet; do
  [[ -n $applet && $applet != busybox && $applet != */* ]] || continue
  ln -s busybox "$root/bin/$applet"
done < <("$BUSYBOX" --list)
[[ -L $root/bin/sh && -L $root/bin/httpd && -L $root/bin/wget ]] || die "busybox lacks sh/httpd/wget applets"
ln -s ../../bin/busybox "$root/usr/bin/env"
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
nobody:x:65534:
EOF
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
# PID 1 gets no default signal actions, so busybox httpd/sleep as PID 1 ignore
# SIGTERM and `docker stop` waits 10s for SIGKILL. This ENTRYPOINT shim runs
# the command as a child and forwards TERM/INT/HUP: stop takes ms (exit 143).
cat >"$root/bin/berth-init" <<'SHIM'
#!/bin/sh
# Not PID 1, no command, or a TTY (interactive use): just run the command.
if [ "$$" != 1 ] || [ $# -eq 0 ] || [ -t 0 ]; then exec "$@"; fi
exec 3<&0                   # async lists get /dev/null as stdin: keep ours
"$@" <&3 3<&- &
child=$!
exec 3<&-
trap 'kill -TERM "$child" 2>/dev/null' TERM
trap 'kill -INT "$child" 2>/dev/null' INT
trap 'kill -HUP "$child" 2>/dev/null' HUP
wait "$child"; rc=$?
# wait returns early (>128) when a trapped signal arrives: wait for the child.
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
exit "$rc"
SHIM
chmod 0755 "$root/bin/berth-init"

cat >"$tmp/base/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
LABEL io.berth.test=1 io.berth.test.recipe=$RECIPE
ENTRYPOINT ["/bin/berth-init"]
CMD ["sleep", "3600"]
EOF

for v in 1 2; do
  mkdir -p "$tmp/app$v"
  printf 'app v%s\n' "$v" >"$tmp/app$v/index.html"
  cat >"$tmp/app$v/Dockerfile" <<EOF
FROM berth-test/busybox:1
COPY index.html /www/index.html
LABEL io.berth.test.app-version=$v
CMD ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"]
EOF
done

# The legacy builder is always there (buildx may not be) and is plenty here.
# Each Dockerfile step costs ~1s on this engine, so keep steps few and build
# the two app images in parallel.
build() { # LOGNAME ARGS...
  local log=$tmp/$1.log; shift
  DOCKER_BUILDKIT=0 docker build -q "$@" >"$log" 2>&1 \
    || { cat "$log" >&2; die "docker build $* failed"; }
}

build base -t berth-test/busybox:1 "$tmp/base"
build app1 -t berth-test/app:1 -t berth-test/app:latest "$tmp/app1" & p1=$!
build app2 -t berth-test/app:2 "$tmp/app2" & p2=$!
wait "$p1" || die "building berth-test/app:1 failed"
wait "$p2" || die "building berth-test/app:2 failed"

id1=$(docker image inspect --format '{{.Id}}' berth-test/app:1)
id2=$(docker image inspect --format '{{.Id}}' berth-test/app:2)
[[ $id1 != "$id2" ]] || die "berth-test/app:1 and :2 have the same image ID"

# Drop images of an older recipe that are now untagged (skip ones in use).
for id in ${old_ids[@]+"${old_ids[@]}"}; do
  [[ -z $(docker image inspect --format '{{join .RepoTags ","}}' "$id" 2>/dev/null) ]] || continue
  docker rmi "$id" >/dev/null 2>&1 || true
done

echo "test-images: built in $(( $(date +%s) - start ))s (recipe $RECIPE, docker $server): $(for i in "${IMAGES[@]}"; do
  printf '%s=%s ' "$i" "$(docker image inspect --format '{{.Id}}' "$i" | cut -c8-19)"; done)"
backup_images
