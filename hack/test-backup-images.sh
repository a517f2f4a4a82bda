#!/usr/bin/env bash
# Build the local images the backup tests need (tests/it/backup.rs), without any registry.
# Called by hack/test-images.sh; can be run alone.
#
#   berth-test/restic:0.14   FROM scratch: Debian's /usr/bin/restic (0.14, a Go binary linked
#                            against libc only) + the libc it loads, CA certificates,
#                            /etc/passwd+group (root, nobody), /tmp (1777).
#                            ENTRYPOINT ["restic"]. About 25 MB.
#   berth-test/postgres:15   Debian bookworm's postgresql-15 in an mmdebstrap root
#                            (--variant=essential, no recommends, no docs, no LLVM: no JIT), `docker import`ed.
#                            Its entrypoint initdb's PGDATA (/var/lib/postgresql/data, trust
#                            auth, also over TCP) when empty and runs postgres as `postgres`;
#                            PATH has /usr/lib/postgresql/15/bin first (pg_dumpall, psql,
#                            pg_isready). SIGTERM: postgres' smart shutdown.
#
# Also installs on this machine, via apt-get when missing: restic and rclone (the tests serve a
# `rest:` repository with `rclone serve restic`), mmdebstrap.
#
# Labels: io.berth.test=1, io.berth.test.recipe=<hash of this script>; exits at once when both
# images have the current recipe. Cold: about 1 min (mmdebstrap; needs root). Downloaded .debs
# are kept in ${XDG_CACHE_HOME:-~/.cache}/berth/test-backup/debs.
#
# Usage: hack/test-backup-images.sh [--force]
set -euo pipefail

SUITE=bookworm
RESTIC_IMAGE=berth-test/restic:0.14
PG_IMAGE=berth-test/postgres:15
IMAGES=("$RESTIC_IMAGE" "$PG_IMAGE")

die() { echo "test-backup-images: error: $*" >&2; exit 1; }
log() { echo "test-backup-images: $*" >&2; }

force=${BERTH_TEST_IMAGES_FORCE:-0}
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
  *) die "unknown argument: $1 (usage: $0 [--force])" ;;
esac

RECIPE=$(sha256sum "$0" | cut -c1-16)

# --- tools on this machine -----------------------------------------------------------------
missing=()
command -v restic >/dev/null 2>&1 || missing+=(restic)
command -v rclone >/dev/null 2>&1 || missing+=(rclone)
if ((${#missing[@]} > 0)); then
  log "installing ${missing[*]} via apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi

recipe_of() { docker image inspect --format '{{index .Config.Labels "io.berth.test.recipe"}}' "$1" 2>/dev/null || true; }
ids() { for i in "${IMAGES[@]}"; do printf '%s=%s ' "$i" "$(docker image inspect --format '{{.Id}}' "$i" | cut -c8-19)"; done; }

up_to_date() { [[ $force != 1 && $(recipe_of "$1") == "$RECIPE" ]]; }
if up_to_date "$RESTIC_IMAGE" && up_to_date "$PG_IMAGE"; then
  echo "test-backup-images: up to date (recipe $RECIPE): $(ids)"
  exit 0
fi

cache=${BERTH_TEST_BACKUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/test-backup}
mkdir -p "$cache/debs"
# One build at a time (parallel test runs); the winner's images serve all.
exec 9>"$cache/lock"
flock 9
if up_to_date "$RESTIC_IMAGE" && up_to_date "$PG_IMAGE"; then
  echo "test-backup-images: up to date (recipe $RECIPE, built by another run): $(ids)"
  exit 0
fi

start=$(date +%s)
old_ids=()
for img in "${IMAGES[@]}"; do
  id=$(docker image inspect --format '{{.Id}}' "$img" 2>/dev/null) && old_ids+=("$id")
done
build=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf --one-file-system "$build"' EXIT

# --- restic: FROM scratch around Debian's binary -------------------------------------------
if ! up_to_date "$RESTIC_IMAGE"; then
  root=$build/restic/rootfs
  mkdir -p "$root"/{usr/bin,etc/ssl/certs,tmp,root}
  cp -L /usr/bin/restic "$root/usr/bin/restic"
  # The shared objects it loads (Debian links its Go binaries against libc).
  while read -r lib; do
    [[ -n $lib ]] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done < <(ldd /usr/bin/restic | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }')
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt" \
    || die "no /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)"
  chmod 1777 "$root/tmp"
  chmod 0700 "$root/root"
  printf 'root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
  cat >"$build/restic/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV HOME=/root
LABEL io.berth.test=1 io.berth.test.recipe=$RECIPE
ENTRYPOINT ["/usr/bin/restic"]
EOF
  DOCKER_BUILDKIT=0 docker build -q -t "$RESTIC_IMAGE" "$build/restic" >"$build/restic.log" 2>&1 \
    || { cat "$build/restic.log" >&2; die "docker build $RESTIC_IMAGE failed"; }
  docker run --rm "$RESTIC_IMAGE" version >/dev/null || die "$RESTIC_IMAGE does not run"
fi

# --- postgres: an mmdebstrap root, imported --------------------------------------------------
if ! up_to_date "$PG_IMAGE"; then
  [[ $(id -u) == 0 ]] || die "must run as root to build $PG_IMAGE (mmdebstrap --mode=root)"
  if ! command -v mmdebstrap >/dev/null 2>&1; then
    log "installing mmdebstrap via apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq mmdebstrap >/dev/null || die "apt-get install mmdebstrap failed"
  fi
  # The mirror: BERTH_TEST_HOST_MIRROR ("deb URI SUITE COMPONENTS[|deb ...]", as for
  # hack/test-host.sh) when set, else mmdebstrap's default (deb.debian.org + security/updates).
  mirrors=()
  if [[ -n ${BERTH_TEST_HOST_MIRROR:-} ]]; then
    IFS='|' read -r -a mirrors <<<"$BERTH_TEST_HOST_MIRROR"
  fi
  entry=$build/entrypoint
  cat >"$entry" <<'SH'
#!/bin/sh
# berth-test/postgres: initdb when PGDATA is empty, then postgres (as the postgres user).
set -e
PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /run/postgresql
  chown postgres:postgres "$PGDATA" /run/postgresql
  chmod 0700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb -D "$PGDATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  echo "host all all all trust" >>"$PGDATA/pg_hba.conf"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/run/postgresql "$@"
SH
  chmod 0755 "$entry"
  root=$build/pg
  t0=$(date +%s)
  mmdebstrap --mode=root --variant=essential --format=directory --quiet \
    --include=postgresql-15 \
    --aptopt='APT::Install-Recommends "false"' \
    --aptopt='APT::Install-Suggests "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/libLLVM*' \
    --dpkgopt='path-exclude=/usr/lib/postgresql/15/lib/llvmjit*' \
    --dpkgopt='path-exclude=/usr/lib/postgresql/15/lib/bitcode/*' \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
    --setup-hook="sync-in $cache/debs /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives $cache/debs" \
    --customize-hook='rm -rf "$1"/var/lib/postgresql/15 "$1"/etc/postgresql/15 "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
    --customize-hook="upload $entry /usr/local/bin/berth-postgres" \
    --customize-hook='chmod 0755 "$1"/usr/local/bin/berth-postgres' \
    "$SUITE" "$root" ${mirrors[@]+"${mirrors[@]}"} \
    || die "mmdebstrap failed"
  t1=$(date +%s)
  for f in usr/lib/postgresql/15/bin/postgres usr/lib/postgresql/15/bin/initdb \
           usr/lib/postgresql/15/bin/pg_dumpall usr/lib/postgresql/15/bin/psql usr/bin/setpriv; do
    [[ -e $root/$f ]] || die "the postgres root lacks /$f"
  done
  tar -C "$root" --numeric-owner -c . \
    | docker import \
        --change 'ENTRYPOINT ["/usr/local/bin/berth-postgres"]' \
        --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV PGDATA=/var/lib/postgresql/data' \
        --change 'EXPOSE 5432' \
        --change "LABEL io.berth.test=1 io.berth.test.recipe=$RECIPE" \
        - "$PG_IMAGE" >/dev/null \
    || die "docker import $PG_IMAGE failed"
  log "postgres root: mmdebstrap $((t1 - t0))s, $(du -sm --one-file-system "$root" | cut -f1) MB"
fi

for i in "${IMAGES[@]}"; do
  [[ $(recipe_of "$i") == "$RECIPE" ]] || die "$i lacks the recipe label after the build"
done
# Images of an older recipe that are now untagged go.
for id in ${old_ids[@]+"${old_ids[@]}"}; do
  [[ -z $(docker image inspect --format '{{join .RepoTags ","}}' "$id" 2>/dev/null) ]] || continue
  docker rmi "$id" >/dev/null 2>&1 || true
done
echo "test-backup-images: built in $(( $(date +%s) - start ))s (recipe $RECIPE): $(ids)"
