#!/usr/bin/env bash
# `berth serve` under slow clients: /healthz latency with no other client, then with STALLED
# (default 1,100) connections that each sent half a request head and stall, berth started at
# systemd's usual soft open-file limit (`ulimit -Sn 1024`). Loopback only, no Docker work (the
# repository has no stacks), bounded: every curl has --max-time, the whole run takes seconds.
#
# Prints min / median / max of BENCH_N (default 50) sequential `curl /healthz` (fresh connection
# each), both phases, the ratio of the medians, and how many requests failed or timed out.
#
# Environment:
#   BENCH_N=50            /healthz requests per phase
#   STALLED=1100          stalled connections (each one fd in this shell, opened with /dev/tcp)
#   BERTH_BIN=PATH        benchmark this binary instead of building target/release/berth (e.g. an
#                         older build, to compare)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_N:-50}
STALLED=${STALLED:-1100}
if [ -n "${BERTH_BIN:-}" ]; then
    berth=$BERTH_BIN
else
    cargo build --release # cargo's progress on stderr: the first build takes minutes
    berth=$PWD/target/release/berth
fi

tmp=$(mktemp -d)
pid=
holder=
cleanup() {
    if [ -n "$holder" ]; then kill "$holder" 2>/dev/null || true; fi
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

git init -q --bare -b main "$tmp/origin.git"
git clone -q "$tmp/origin.git" "$tmp/work" 2>/dev/null
echo "no stacks" >"$tmp/work/README.md"
git -C "$tmp/work" add -A
git -C "$tmp/work" -c user.name=bench -c user.email=bench@berth.invalid commit -qm empty
git -C "$tmp/work" push -q origin HEAD:main

# The header timeout is longer than the run, so the stalled connections stay open throughout
# (an older build ignores these variables).
export BERTH_HTTP_HEADER_TIMEOUT=60s BERTH_LOG=info BERTH_INSTANCE=bench-slow-$$
(
    ulimit -Sn 1024
    exec "$berth" serve --repo "file://$tmp/origin.git" --state-dir "$tmp/state" \
        --listen 127.0.0.1:0 --insecure-no-webhook-secret --allow-empty --poll-interval 1h
) 2>"$tmp/serve.log" &
pid=$!

addr=
for _ in $(seq 300); do
    addr=$(grep -o 'addr=127\.0\.0\.1:[0-9]*' "$tmp/serve.log" | head -1 | cut -d= -f2 || true)
    if [ -n "$addr" ] && curl -sf --max-time 2 -o /dev/null "http://$addr/healthz"; then
        break
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/serve.log"; exit 1; }
    sleep 0.1
done
[ -n "$addr" ] || { echo "berth serve did not start" >&2; cat "$tmp/serve.log" >&2; exit 1; }
host=${addr%:*}
port=${addr##*:}

# N sequential requests: "min median max failed" in ms. Gives up after 3 failures in a row
# (each costs up to 5 s) and counts the requests not sent as failed.
measure() {
    local i t failed=0 streak=0 times=()
    for i in $(seq "$N"); do
        if [ "$streak" -ge 3 ]; then
            failed=$((failed + N - i + 1))
            break
        fi
        if t=$(curl -s -o /dev/null --max-time 5 -w '%{http_code} %{time_total}' "http://$addr/healthz") &&
            [ "${t%% *}" = 200 ]; then
            times+=("${t#* }")
            streak=0
        else
            failed=$((failed + 1))
            streak=$((streak + 1))
        fi
    done
    if [ ${#times[@]} -eq 0 ]; then
        echo "- - - $failed"
        return
    fi
    printf '%s\n' "${times[@]}" | sort -n | awk -v failed="$failed" '
        { v[NR] = $1 * 1000 }
        END { printf "%.2f %.2f %.2f %d\n", v[1], v[int((NR + 1) / 2)], v[NR], failed }'
}

read -r b_min b_med b_max b_fail < <(measure)

# The stalled connections live in a holder process: curl, forked from this shell, must not
# inherit (and close) 1,100 sockets per request.
mkfifo "$tmp/release"
(
    ulimit -Sn $((STALLED + 256))
    for _ in $(seq "$STALLED"); do
        exec {fd}<>"/dev/tcp/$host/$port"
        printf 'GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Half: ' >&"$fd"
    done
    echo ready >"$tmp/ready"
    read -r _ <"$tmp/release"
) &
holder=$!
for _ in $(seq 600); do
    [ -s "$tmp/ready" ] && break
    kill -0 "$holder" 2>/dev/null || { echo "cannot open $STALLED connections" >&2; exit 1; }
    sleep 0.05
done
[ -s "$tmp/ready" ] || { echo "opening $STALLED connections took over 30 s" >&2; exit 1; }
read -r l_min l_med l_max l_fail < <(measure)
open_fds=$(ls "/proc/$pid/fd" | wc -l)
echo done >"$tmp/release"
wait "$holder"

ratio=$(awk -v a="$l_med" -v b="$b_med" 'BEGIN { if (a == "-" || b == 0) print "-"; else printf "%.2f", a / b }')
echo
echo "berth serve at ulimit -Sn 1024 ($("$berth" --version)), $N x GET /healthz, fresh connection each"
echo "| phase | min ms | median ms | max ms | failed or > 5 s |"
echo "| --- | --- | --- | --- | --- |"
echo "| no other client | $b_min | $b_med | $b_max | $b_fail |"
echo "| $STALLED stalled half-requests | $l_min | $l_med | $l_max | $l_fail |"
echo "median ratio loaded / idle: $ratio; berth's open fds while loaded: $open_fds"
