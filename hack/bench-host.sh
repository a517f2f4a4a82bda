#!/usr/bin/env bash
# Host kinds, measured on a real systemd test host (hack/test-host.sh):
#   1. the no-op plan of a config with host settings (10 files, a folder, 3 sysctls, 3 units:
#      one berth writes, ssh.service and fail2ban.service it only keeps enabled and running)
#      beside the no-op plan of the same host with no host settings (Engine only) — the ratio is
#      what observing the host costs;
#   2. the revert after a failed unit: apply a unit change whose service exits at once, until
#      berth has put the previous version back and it runs again.
#
# Usage: hack/bench-host.sh [ROUNDS]   (default 20; the debug binary unless BERTH_BIN is set)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20}
bash hack/test-host.sh >/dev/null
bin=${BERTH_BIN:-}
if [[ -z $bin ]]; then
  cargo build --quiet
  bin=$PWD/target/debug/berth
fi
work=$(mktemp -d "$PWD/target/bench-host.XXXXXX")
name=berth-bench-host-$$
cleanup() { docker rm -f -v "$name" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
docker run -d --name "$name" --label io.berth.test=1 --label io.berth.test.host=bench \
  --cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined \
  --security-opt systempaths=unconfined -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
  --tmpfs /run --tmpfs /run/lock --stop-signal SIGRTMIN+3 \
  -v /var/run/docker.sock:/var/run/docker.sock -v "$bin:/usr/bin/berth:ro" \
  -v "$work:$work" berth-test/host:2 >/dev/null
for _ in $(seq 300); do
  s=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
  [[ $s == running || $s == degraded ]] && break
  sleep 0.1
done
h() { docker exec "$name" "$@"; }
h systemctl start ssh.service

cfg=$work/config
mkdir -p "$cfg/host" "$work/empty"
{
  echo "kind: Directory"; echo "path: /etc/bench"
  for i in $(seq 10); do
    printf -- '---\nkind: File\npath: /etc/bench/f%s.conf\ncontent: |\n  setting = %s\n' "$i" "$i"
  done
  for k in net.ipv4.ip_forward net.ipv4.tcp_syncookies net.ipv4.conf.all.accept_redirects; do
    v=1; [[ $k == *redirects ]] && v=0
    printf -- '---\nkind: Sysctl\nkey: %s\nvalue: "%s"\n' "$k" "$v"
  done
  printf -- '---\nkind: Unit\nname: hello.service\ncontent: |\n  [Service]\n  ExecStart=/bin/sleep infinity\n  [Install]\n  WantedBy=multi-user.target\nenabled: true\nstate: started\n'
  printf -- '---\nkind: Unit\nname: ssh.service\nenabled: true\nstate: started\n'
  printf -- '---\nkind: Unit\nname: fail2ban.service\nenabled: true\nstate: started\n'
} >"$cfg/host/berth.yaml"
h berth --instance bench apply "$cfg" >/dev/null
h berth --instance bench plan "$cfg" >/dev/null   # exit 0: converged

# Median wall time of `berth plan DIR` on the host, in ms.
median_plan() {
  local dir=$1 state=$2
  h sh -c "for i in \$(seq $rounds); do
      s=\$(date +%s%N); BERTH_STATE_DIR=$state berth --instance bench plan $dir >/dev/null; rc=\$?
      e=\$(date +%s%N); [ \$rc -eq 0 ] || { echo 'plan not a no-op' >&2; exit 1; }
      echo \$(( (e - s) / 1000 )); done" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}
with_host=$(median_plan "$cfg" /var/lib/berth)
engine_only=$(median_plan "$work/empty" /var/lib/berth-empty)
echo "host no-op plan: ${with_host} ms median over $rounds (17 host settings: 11 paths, 3 sysctls, 3 units)"
echo "Engine-only no-op plan on the same host: ${engine_only} ms"
awk -v a="$with_host" -v b="$engine_only" 'BEGIN {printf "ratio host/Engine-only: %.2fx\n", a/b}'

# The revert after a failed unit.
sed -i 's|ExecStart=/bin/sleep infinity|ExecStart=/bin/sh -c "exit 3"|' "$cfg/host/berth.yaml"
s=$(date +%s%N)
if h berth --instance bench apply "$cfg" >/dev/null 2>&1; then
  echo "error: the broken unit was applied" >&2; exit 1
fi
e=$(date +%s%N)
[[ $(h systemctl is-active hello.service) == active ]] || { echo "error: not restored" >&2; exit 1; }
awk -v ns=$((e - s)) 'BEGIN {printf "revert after a failed unit: %.2f s (the broken unit fails at once; the previous version is put back and stays active through the 2 s settle)\n", ns/1e9}'
