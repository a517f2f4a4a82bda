#!/usr/bin/env bash
# Build the systemd "test server" image berth's host tests boot (tests/it/host.rs), without
# any registry: a Debian bookworm root made with mmdebstrap, then `docker import`.
#
#   berth-test/host:2   Debian bookworm, --variant=minbase, no recommends, no docs/man/locales;
#                       systemd (PID 1: CMD ["/lib/systemd/systemd"], ENV container=docker),
#                       dbus, nftables, iproute2, procps, ca-certificates, netbase, curl,
#                       socat, busybox, firewalld, openssh-server, caddy, restic, fail2ban,
#                       python3-systemd, pebble, git (file:// remotes for berth serve),
#                       docker.io + iptables (an inner Engine for published-port tests).
#                       Off at boot: firewalld, fail2ban, caddy, ssh, docker (tests start them).
#                       Masked: apt-daily*, e2scrub*, fstrim.timer, getty@tty1.
#                       fail2ban defaults: backend = systemd, banaction = nftables-multiport.
#                       Labels: io.berth.test=1, io.berth.test.recipe=<hash of this script>.
#
# How to boot it (flags measured in ../shared/design/test-host.md; TestHost does this):
#   docker run -d --cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined \
#     --security-opt systempaths=unconfined -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
#     --tmpfs /run --tmpfs /run/lock --stop-signal SIGRTMIN+3 berth-test/host:2
#   (--privileged does not work on these machines: "unable to apply caps".)
#
# The mirror is the machine's own: the bookworm* entries of /etc/apt/sources.list,
# /etc/apt/sources.list.d/*.list and deb822 /etc/apt/sources.list.d/*.sources
# (BERTH_TEST_HOST_MIRROR="deb URI SUITE COMPONENTS[|deb ...]" overrides). Needs root
# (mmdebstrap --mode=root); installs mmdebstrap with apt-get when it is missing. Downloaded
# .debs are kept in the cache folder, so a rebuild does not download them again.
#
# Usage: hack/test-host.sh [--force]
#   Idempotent: exits at once when the image exists with the current recipe.
#   --force (or BERTH_TEST_HOST_FORCE=1) rebuilds anyway.
#   Cache: ${XDG_CACHE_HOME:-~/.cache}/berth/test-host (BERTH_TEST_HOST_CACHE overrides).
set -euo pipefail

IMAGE=berth-test/host:2
SUITE=bookworm
# git: berth's file:// remotes run git-upload-pack (README, runtime dependencies).
PACKAGES=(systemd systemd-sysv dbus nftables iproute2 procps ca-certificates netbase curl socat
  busybox firewalld openssh-server caddy restic fail2ban python3-systemd pebble git
  docker.io iptables)
# Started by tests that need them, not at boot.
DISABLE=(firewalld.service fail2ban.service caddy.service ssh.service docker.service
  docker.socket containerd.service)
# Nothing a test host should do on its own: package updates, fs scrubs, a console login.
MASK=(apt-daily.timer apt-daily.service apt-daily-upgrade.timer apt-daily-upgrade.service
  e2scrub_all.timer e2scrub_all.service e2scrub_reap.service fstrim.timer fstrim.service
  getty@tty1.service)

die() { echo "test-host: error: $*" >&2; exit 1; }
log() { echo "test-host: $*" >&2; }

force=${BERTH_TEST_HOST_FORCE:-0}
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
  *) die "unknown argument: $1 (usage: $0 [--force])" ;;
esac

# The recipe is this script: any edit rebuilds the image.
RECIPE=$(sha256sum "$0" | cut -c1-16)

command -v docker >/dev/null 2>&1 || die "docker CLI not found in PATH"
if ! server=$(timeout 20 docker version --format '{{.Server.Version}}' 2>&1); then
  die "Docker daemon unreachable (DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}): ${server##*$'\n'}"
fi

recipe_of() { docker image inspect --format '{{index .Config.Labels "io.berth.test.recipe"}}' "$IMAGE" 2>/dev/null || true; }
short_id() { docker image inspect --format '{{.Id}}' "$IMAGE" | cut -c8-19; }

# --- fast path: the image exists with the current recipe ---------------------------------
if [[ $force != 1 && $(recipe_of) == "$RECIPE" ]]; then
  echo "test-host: up to date (recipe $RECIPE): $IMAGE=$(short_id)"
  exit 0
fi

[[ $(id -u) == 0 ]] || die "must run as root (mmdebstrap --mode=root, chroot)"

cache=${BERTH_TEST_HOST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/test-host}
mkdir -p "$cache/debs"
# One build at a time (two test runs may start together); the winner's image serves both.
exec 9>"$cache/lock"
flock 9
if [[ $force != 1 && $(recipe_of) == "$RECIPE" ]]; then
  echo "test-host: up to date (recipe $RECIPE, built by another run): $IMAGE=$(short_id)"
  exit 0
fi

start=$(date +%s)
old_id=$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null) || old_id=

# --- mmdebstrap ------------------------------------------------------------------------------
if ! command -v mmdebstrap >/dev/null 2>&1; then
  log "installing mmdebstrap via apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq mmdebstrap >/dev/null || die "apt-get install mmdebstrap failed"
fi

# --- the mirror: the machine's own apt sources ---------------------------------------------
# One-line entries: "deb [options] URI SUITE COMPONENTS...", only bookworm* suites, no deb-src.
one_line_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    awk -v suite="$SUITE" '
      { sub(/#.*/, "") }
      $1 == "deb" {
        i = 2
        if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) ~ "^" suite "([-/]|$)") print
      }' "$f"
  done
}
# deb822 paragraphs (*.sources): Types/URIs/Suites/Components/Signed-By/Enabled, as one-line
# entries. An inline Signed-By key block is left out (apt's keyrings then decide).
deb822_sources() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk -v suite="$SUITE" '
      function flush(   n, u, s, nu, ns, us, ss, opt) {
        if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no" && uris != "" && suites != "") {
          opt = (signed ~ /^\//) ? "[signed-by=" signed "] " : ""
          nu = split(uris, us, " "); ns = split(suites, ss, " ")
          for (u = 1; u <= nu; u++) for (s = 1; s <= ns; s++)
            if (ss[s] ~ "^" suite "([-/]|$)") print "deb " opt us[u] " " ss[s] " " comps
        }
        types = uris = suites = comps = signed = enabled = ""; key = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ { next }   # continuation lines (an inline key)
      {
        key = tolower($0); sub(/:.*/, "", key)
        val = $0; sub(/^[^:]*:[ \t]*/, "", val); gsub(/[ \t]+/, " ", val); sub(/ $/, "", val)
        if (key == "types") types = val
        else if (key == "uris") uris = val
        else if (key == "suites") suites = val
        else if (key == "components") comps = val
        else if (key == "signed-by") signed = val
        else if (key == "enabled") enabled = val
      }
      END { flush() }' "$f"
  done
}
mirrors=()
if [[ -n ${BERTH_TEST_HOST_MIRROR:-} ]]; then
  IFS='|' read -r -a mirrors <<<"$BERTH_TEST_HOST_MIRROR"
else
  while IFS= read -r line; do mirrors+=("$line"); done < <(one_line_sources; deb822_sources)
fi
((${#mirrors[@]} > 0)) || die "no $SUITE entries in /etc/apt/sources.list{,.d/*.list,.d/*.sources}; set BERTH_TEST_HOST_MIRROR=\"deb URI $SUITE main\""
log "mirrors: $(printf '%s; ' "${mirrors[@]}")"

# --- build the root ------------------------------------------------------------------------
build=$(mktemp -d "$cache/build.XXXXXX")
# Also when interrupted: no half-built root is left in the cache.
trap 'rm -rf --one-file-system "$build"' EXIT
root=$build/root

fail2ban_conf='[DEFAULT]
# No auth.log in a container: read the journal (needs python3-systemd).
backend = systemd
# Debian defaults to iptables; the test hosts use nftables.
banaction = nftables-multiport
banaction_allports = nftables-allports
'

t0=$(date +%s)
include=$(IFS=,; echo "${PACKAGES[*]}")
mmdebstrap --mode=root --variant=minbase --format=directory --quiet \
  --include="$include" \
  --aptopt='APT::Install-Recommends "false"' \
  --aptopt='APT::Install-Suggests "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --skip=essential/unlink \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
  --setup-hook="sync-in $cache/debs /var/cache/apt/archives/" \
  --customize-hook="sync-out /var/cache/apt/archives $cache/debs" \
  --customize-hook="chroot \"\$1\" systemctl disable --quiet ${DISABLE[*]}" \
  --customize-hook="chroot \"\$1\" systemctl mask --quiet ${MASK[*]}" \
  --customize-hook="mkdir -p \"\$1\"/etc/fail2ban/jail.d && printf %s '$fail2ban_conf' >\"\$1\"/etc/fail2ban/jail.d/00-test-host.local" \
  "$SUITE" "$root" "${mirrors[@]}" \
  || die "mmdebstrap failed"
t1=$(date +%s)

# Sanity: what the tests rely on is there and off.
for f in lib/systemd/systemd usr/sbin/nft usr/sbin/firewalld usr/bin/caddy usr/bin/restic \
         usr/bin/fail2ban-server usr/bin/pebble usr/bin/curl etc/protocols; do
  [[ -e $root/$f ]] || die "the root lacks /$f"
done
for u in "${MASK[@]}"; do
  [[ $(readlink "$root/etc/systemd/system/$u") == /dev/null ]] || die "$u is not masked"
done
[[ ! -e $root/etc/systemd/system/multi-user.target.wants/firewalld.service ]] || die "firewalld is still enabled"
size=$(du -sm --one-file-system "$root" | cut -f1)

# --- import ----------------------------------------------------------------------------------
tar -C "$root" --numeric-owner -c . \
  | docker import \
      --change 'CMD ["/lib/systemd/systemd"]' \
      --change 'ENV container=docker' \
      --change "LABEL io.berth.test=1 io.berth.test.recipe=$RECIPE" \
      - "$IMAGE" >/dev/null \
  || die "docker import failed"
t2=$(date +%s)
[[ $(recipe_of) == "$RECIPE" ]] || die "$IMAGE lacks the recipe label after the import"

# Drop the image of an older recipe when nothing uses it any more.
if [[ -n $old_id && -z $(docker image inspect --format '{{join .RepoTags ","}}' "$old_id" 2>/dev/null) ]]; then
  docker rmi "$old_id" >/dev/null 2>&1 || true
fi

echo "test-host: built in $((t2 - start))s (mmdebstrap $((t1 - t0))s, root ${size} MB, import $((t2 - t1))s; recipe $RECIPE, docker $server): $IMAGE=$(short_id)"
