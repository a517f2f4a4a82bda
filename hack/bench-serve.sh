#!/usr/bin/env bash
# `berth serve` benchmark: deploy latency, webhook throughput, memory and idle CPU, against a local
# bare git repository (file://) and the local Docker Engine. Loopback only, no registry.
#
#   1. push-to-container-started latency, BENCH_RUNS times each (default 5), alternating the one
#      service's image between berth-test/app:1 and :2:
#        webhook: serve with --poll-interval 1h and a webhook secret; commit, push, then
#                 t0 = just before the signed `POST /hooks/github`;
#        poll:    serve with --poll-interval 1s, no webhook; t0 = just before `git push`;
#      latency = the new container's `.State.StartedAt` (Engine clock = host clock) - t0, found by
#      polling `docker inspect` for the new image. min / median / max ms.
#   2. webhook throughput: wrk (Debian package; installed via apt-get if missing), 2 threads,
#      50 connections, BENCH_WRK_SECONDS (default 10) s of signed push deliveries for the tracked
#      branch at the current head, each with a unique X-GitHub-Delivery (a Lua counter per
#      thread). Requests/s, p50/p99 latency, non-2xx count, and berth's own count of enqueued /
#      duplicate / refused deliveries. The pushes name the head, so the loop treats them as idle
#      checks (one ref look-up, coalesced by the queue).
#   3. RSS (VmRSS of the serve process): idle after startup with the 1-service repo, after the
#      wrk run, and after applying BENCH_SERVICES services (default 500: 10 stacks of 50,
#      berth-test/busybox:1 `sleep 86400`) from a fresh state dir (startup apply, sequential).
#   4. idle CPU: utime+stime from /proc/PID/stat over BENCH_CPU_SECONDS (default 60) s with the
#      big repo applied, --poll-interval 60s, --resync-interval 5m; then (BENCH_RESYNC=1) the CPU
#      and duration of the first periodic resync, a no-op re-check of every container.
#   5. cleanup (also on failure or Ctrl-C): stops serve, removes containers, networks and volumes
#      labelled io.berth.instance=$BENCH_INSTANCE, and the temp dir.
# Then prints a summary table. Takes about 5 min with 500 services (mostly the apply).
#
# Environment:
#   BENCH_RUNS=5            latency runs per mode
#   BENCH_SERVICES=500      services in the big repo (a multiple of 10: 10 stacks)
#   BENCH_WRK_SECONDS=10    wrk duration
#   BENCH_CPU_SECONDS=60    idle CPU window
#   BENCH_RESYNC=1          then wait for the first periodic resync (5 min after the serve started,
#                           ~1-2 min more) and report its CPU and duration; 0 skips it
#   BENCH_APPLY_TIMEOUT=1500  seconds to wait for the big apply
#   BENCH_PORT=N            listen port (default: first free one from 19471)
#   BENCH_INSTANCE=NAME     BERTH_INSTANCE (default bench-serve-<pid>: a network the Engine failed to
#                           remove in an earlier run cannot break this one); removed at the end
#   BENCH_KEEP_LOGS=DIR     copy the serve logs there
#   BERTH_BIN=PATH          benchmark this binary instead of building target/release/berth
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${BENCH_RUNS:-5}
SERVICES=${BENCH_SERVICES:-500}
WRK_SECONDS=${BENCH_WRK_SECONDS:-10}
CPU_SECONDS=${BENCH_CPU_SECONDS:-60}
APPLY_TIMEOUT=${BENCH_APPLY_TIMEOUT:-1500}
INSTANCE=${BENCH_INSTANCE:-bench-serve-$$}
STACKS=10
SECRET="bench-serve-secret-$$"
STACK=bsrv        # the 1-service stack; the big repo has ${STACK}00 .. ${STACK}09
BRANCH=main

die() { echo "bench-serve: error: $*" >&2; exit 1; }
log() { echo "bench-serve: [$(date +%T)] $*" >&2; }

for v in RUNS SERVICES WRK_SECONDS CPU_SECONDS APPLY_TIMEOUT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
(( SERVICES % STACKS == 0 )) || die "BENCH_SERVICES must be a multiple of $STACKS"
PER_STACK=$(( SERVICES / STACKS ))
[[ $INSTANCE =~ ^[a-z0-9][a-z0-9_.-]*$ ]] || die "BENCH_INSTANCE '$INSTANCE' is not a plain name"

# --- tools ------------------------------------------------------------------------------------
for t in docker git curl openssl awk; do
  command -v "$t" >/dev/null 2>&1 || die "$t not found in PATH"
done
if ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk via apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq wrk >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1; } ||
    die "could not install wrk"
fi
if [[ -n ${BERTH_BIN:-} ]]; then
  berth=$BERTH_BIN
else
  log "building berth (cargo build --release)"
  cargo build --release --quiet
  berth=$(pwd)/${CARGO_TARGET_DIR:-target}/release/berth
fi
[[ -x $berth ]] || die "$berth not found"
bash hack/test-images.sh >&2
CLK_TCK=$(getconf CLK_TCK)

# --- cleanup (also on failure / Ctrl-C) ---------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-serve.XXXXXX")
serve_pid=
serve_log=

rm_owned() { # [INSTANCE] everything labelled with it: containers, then networks and volumes
  local label=io.berth.instance=${1:-$INSTANCE} ids
  ids=$(docker ps -aq --filter "label=$label") || true
  # A few at a time: `docker rm -f` of hundreds at once (the CLI runs them in parallel) has left
  # networks with phantom "active endpoints" on Engine 20.10 that only a daemon restart clears.
  [[ -z $ids ]] || xargs -n 5 docker rm -f -v <<<"$ids" >/dev/null 2>&1 || true
  ids=$(docker network ls -q --filter "label=$label") || true
  [[ -z $ids ]] || xargs docker network rm <<<"$ids" >/dev/null 2>&1 || true
  ids=$(docker network ls -q --filter "label=$label") || true
  [[ -z $ids ]] || log "WARNING: the Engine refuses to remove network(s) $(xargs <<<"$ids") of $label (stale endpoints?)"
  ids=$(docker volume ls -q --filter "label=$label") || true
  [[ -z $ids ]] || xargs docker volume rm -f <<<"$ids" >/dev/null 2>&1 || true
}

stop_serve() { # SIGTERM (it finishes a running reconcile first), SIGKILL after 20 s
  [[ -n $serve_pid ]] || return 0
  local pid=$serve_pid i
  serve_pid=
  kill -TERM "$pid" 2>/dev/null || return 0
  for (( i = 0; i < 200; i++ )); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "serve (pid $pid) did not stop in 20 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_serve
  if [[ $rc != 0 && -n $serve_log && -f $serve_log ]]; then
    echo "bench-serve: last lines of $serve_log:" >&2
    tail -n 20 "$serve_log" >&2 || true
  fi
  if [[ -n ${BENCH_KEEP_LOGS:-} ]]; then
    { mkdir -p "$BENCH_KEEP_LOGS" && cp "$tmp"/*.log "$BENCH_KEEP_LOGS"/; } 2>/dev/null || true
  fi
  log "cleaning up (instance $INSTANCE)"
  rm_owned
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rm_owned # leftovers of an interrupted earlier run with the same instance
# ... and of earlier default-named runs whose process is gone.
for old in $(docker ps -a --filter label=io.berth.instance --format '{{index .Labels "io.berth.instance"}}' 2>/dev/null |
             { grep -E '^bench-serve-[0-9]+$' || true; } | sort -u); do
  if [[ $old != "$INSTANCE" ]] && ! kill -0 "${old##*-}" 2>/dev/null; then rm_owned "$old"; fi
done

# --- port -------------------------------------------------------------------------------------
port_busy() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [[ -n ${BENCH_PORT:-} ]]; then
  PORT=$BENCH_PORT
  port_busy "$PORT" && die "port $PORT is in use"
else
  PORT=19471
  while port_busy "$PORT"; do PORT=$(( PORT + 1 )); done
fi
URL=http://127.0.0.1:$PORT

# --- helpers ------------------------------------------------------------------------------------
now_ns() { date +%s%N; }

metric() { # NAME{LABELS} exactly as printed -> value (0 when absent)
  curl -fsS --max-time 5 "$URL/metrics" | awk -v k="$1" '$1 == k { v = $2 } END { print (v == "" ? 0 : v) }'
}

# The serve-side count of finished reconciles, whatever their result/cause.
reconciles_sum() {
  curl -fsS --max-time 5 "$URL/metrics" |
    awk '$1 ~ /^berth_reconciles_total\{/ { s += $2 } END { print s + 0 }'
}

rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '$1 == "VmHWM:" { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
cpu_ticks() { # utime + stime; fields after the ")" that closes comm
  local stat
  stat=$(<"/proc/$1/stat")
  stat=${stat##*) }
  # shellcheck disable=SC2086 # split on purpose
  set -- $stat
  echo $(( ${12} + ${13} ))
}

start_serve() { # TAG POLL-INTERVAL STATE-DIR [extra serve args...]
  local tag=$1 poll=$2 state=$3 i
  shift 3
  serve_log=$tmp/serve-$tag.log
  BERTH_INSTANCE=$INSTANCE BERTH_WEBHOOK_SECRET=$SECRET BERTH_LOG=berth=info \
    "$berth" serve --repo "file://$tmp/origin.git" --branch "$BRANCH" --state-dir "$state" \
    --listen "127.0.0.1:$PORT" --poll-interval "$poll" --resync-interval 5m --name bench "$@" \
    >"$serve_log" 2>&1 &
  serve_pid=$!
  for (( i = 0; i < 300; i++ )); do
    curl -fsS --max-time 1 -o /dev/null "$URL/healthz" 2>/dev/null && return 0
    kill -0 "$serve_pid" 2>/dev/null || die "berth serve exited at startup (see $serve_log)"
    sleep 0.1
  done
  die "berth serve did not answer /healthz within 30 s"
}

wait_metric_at_least() { # NAME{LABELS} MIN TIMEOUT-S
  local deadline=$(( SECONDS + $3 ))
  while (( SECONDS < deadline )); do
    [[ $(metric "$1") -ge $2 ]] && return 0
    if [[ $(metric 'berth_reconciles_total{result="failure_permanent",cause="startup"}') -gt 0 ]]; then
      die "the startup reconcile failed permanently"
    fi
    kill -0 "$serve_pid" 2>/dev/null || die "berth serve died"
    sleep 0.2
  done
  die "timed out waiting for $1 >= $2"
}

wait_started() { # CONTAINER IMAGE TIMEOUT-S -> prints the container's StartedAt
  local deadline=$(( SECONDS + $3 )) out
  while (( SECONDS < deadline )); do
    if out=$(docker inspect -f '{{.Config.Image}}|{{.State.Running}}|{{.State.StartedAt}}' "$1" 2>/dev/null) &&
       [[ $out == "$2|true|"* ]]; then
      echo "${out##*|}"
      return 0
    fi
    sleep 0.01
  done
  die "$1 did not start with $2 within $3 s"
}

ms_since() { # RFC3339 T0_NS -> whole ms from T0 to the timestamp
  local t
  t=$(date -d "$1" +%s%N)
  echo $(( (t - $2) / 1000000 ))
}

reconcile_ms_since() { # DURATION-SUM-BEFORE -> ms berth spent reconciling since (histogram sum)
  awk -v a="$1" -v b="$(metric 'berth_reconcile_duration_seconds_sum')" 'BEGIN { printf "%.0f", (b - a) * 1000 }'
}

stats() { # VALUES... -> "min median max" (median of an even count: the lower middle)
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[1], v[int((NR + 1) / 2)], v[NR] }'
}

git_w() { git -C "$tmp/work" -c user.name=bench -c user.email=bench@localhost "$@"; }

push_body() { printf '{"ref":"refs/heads/%s","after":"%s","deleted":false}' "$BRANCH" "$1"; }
sign() { printf '%s' "$1" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1; }

write_app_stack() { # IMAGE
  mkdir -p "$tmp/work/$STACK"
  cat >"$tmp/work/$STACK/compose.yaml" <<EOF
name: $STACK
services:
  web:
    image: $1
EOF
}

# --- the repository -----------------------------------------------------------------------------
git init -q --bare -b "$BRANCH" "$tmp/origin.git"
git init -q -b "$BRANCH" "$tmp/work"
git_w remote add origin "$tmp/origin.git"
write_app_stack berth-test/app:1
git_w add -A
git_w commit -qm "bench: $STACK on app:1"
git_w push -q origin "HEAD:$BRANCH"
IMG1="berth-test/app:1"
IMG2="berth-test/app:2"
cur_image=$IMG1

next_commit() { # flip the image, commit; sets cur_image
  if [[ $cur_image == "$IMG1" ]]; then cur_image=$IMG2; else cur_image=$IMG1; fi
  write_app_stack "$cur_image"
  git_w commit -qam "bench: $STACK on ${cur_image##*/}"
}

# === 1a. webhook latency ========================================================================
log "serve (webhook mode: --poll-interval 1h) on $URL, instance $INSTANCE"
start_serve webhook 1h "$tmp/state1"
wait_started "$STACK-web-1" "$cur_image" 120 >/dev/null
wait_metric_at_least 'berth_reconciles_total{result="success",cause="startup"}' 1 60
sleep 5
rss_idle1=$(rss_kib "$serve_pid")
log "idle RSS with 1 service: $(mib "$rss_idle1") MiB"

hook_ms=()
push_ms=()
hook_rec_ms=()
for (( i = 1; i <= RUNS; i++ )); do
  next_commit
  p0=$(now_ns)
  git_w push -q origin "HEAD:$BRANCH"
  p1=$(now_ns)
  push_ms+=( $(( (p1 - p0) / 1000000 )) )
  sha=$(git_w rev-parse HEAD)
  body=$(push_body "$sha")
  sig=$(sign "$body")
  d0=$(metric 'berth_reconcile_duration_seconds_sum')
  t0=$(now_ns)
  code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -X POST "$URL/hooks/github" \
    -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
    -H "X-GitHub-Delivery: latency-$$-$i" -H "X-Hub-Signature-256: sha256=$sig" \
    --data-binary "$body")
  [[ $code == 202 ]] || die "webhook answered $code, want 202"
  started=$(wait_started "$STACK-web-1" "$cur_image" 120)
  hook_ms+=( "$(ms_since "$started" "$t0")" )
  wait_metric_at_least 'berth_reconciles_total{result="success",cause="webhook"}' "$i" 120
  hook_rec_ms+=( "$(reconcile_ms_since "$d0")" )
  log "webhook run $i: ${cur_image##*/} started ${hook_ms[-1]} ms after the POST (push took ${push_ms[-1]} ms; berth's reconcile ${hook_rec_ms[-1]} ms)"
done
read -r hook_min hook_med hook_max < <(stats "${hook_ms[@]}")
read -r push_min push_med push_max < <(stats "${push_ms[@]}")
read -r hrec_min hrec_med hrec_max < <(stats "${hook_rec_ms[@]}")

# === 2. webhook throughput ======================================================================
head_sha=$(git_w rev-parse HEAD)
body=$(push_body "$head_sha")
sig=$(sign "$body")
cat >"$tmp/hook.lua" <<'LUA'
-- Signed push deliveries with a unique X-GitHub-Delivery per request (thread id + counter).
local body = os.getenv("BENCH_BODY")
local sig = "sha256=" .. os.getenv("BENCH_SIG")
local run = os.getenv("BENCH_RUN_ID")
local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end

function init(args)
  counter = 0
  prefix = "wrk-" .. run .. "-" .. tid .. "-"
end

function request()
  counter = counter + 1
  return wrk.format("POST", "/hooks/github", {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = prefix .. counter,
    ["X-Hub-Signature-256"] = sig,
  }, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    "BENCH requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
LUA
k_enq='berth_webhook_deliveries_total{event="push",result="enqueued"}'
k_dup='berth_webhook_deliveries_total{event="push",result="duplicate"}'
enq0=$(metric "$k_enq")
dup0=$(metric "$k_dup")
idle0=$(metric 'berth_idle_checks_total')
all0=$(curl -fsS "$URL/metrics" | awk '$1 ~ /^berth_webhook_deliveries_total\{/ { s += $2 } END { print s + 0 }')
cpu0=$(cpu_ticks "$serve_pid")
log "wrk: ${WRK_SECONDS} s, 2 threads, 50 connections, POST /hooks/github"
BENCH_BODY=$body BENCH_SIG=$sig BENCH_RUN_ID=$$ \
  wrk -t2 -c50 -d"${WRK_SECONDS}s" --latency -s "$tmp/hook.lua" "$URL" >"$tmp/wrk.log" 2>&1 ||
  { cat "$tmp/wrk.log" >&2; die "wrk failed"; }
cpu1=$(cpu_ticks "$serve_pid")
sleep 1
enq1=$(metric "$k_enq")
dup1=$(metric "$k_dup")
idle1=$(metric 'berth_idle_checks_total')
all1=$(curl -fsS "$URL/metrics" | awk '$1 ~ /^berth_webhook_deliveries_total\{/ { s += $2 } END { print s + 0 }')
line=$(grep '^BENCH ' "$tmp/wrk.log") || { cat "$tmp/wrk.log" >&2; die "no summary from wrk"; }
declare -A W
for kv in ${line#BENCH }; do W[${kv%%=*}]=${kv#*=}; done
wrk_rps=$(awk -v n="${W[requests]}" -v us="${W[duration_us]}" 'BEGIN { printf "%.0f", n / (us / 1e6) }')
wrk_p50=$(awk -v us="${W[p50_us]}" 'BEGIN { printf "%.2f", us / 1000 }')
wrk_p99=$(awk -v us="${W[p99_us]}" 'BEGIN { printf "%.2f", us / 1000 }')
wrk_max=$(awk -v us="${W[max_us]}" 'BEGIN { printf "%.2f", us / 1000 }')
wrk_sockerr=$(( W[connect] + W[read] + W[write] + W[timeout] ))
enq=$(( enq1 - enq0 )); dup=$(( dup1 - dup0 )); other=$(( all1 - all0 - enq - dup ))
idle_checks=$(( idle1 - idle0 ))
wrk_cpu=$(awk -v t=$(( cpu1 - cpu0 )) -v hz="$CLK_TCK" -v s="$WRK_SECONDS" 'BEGIN { printf "%.0f", 100 * t / hz / s }')
rss_wrk=$(rss_kib "$serve_pid")
log "wrk: ${W[requests]} requests, $wrk_rps/s, p50 $wrk_p50 ms, p99 $wrk_p99 ms, non-2xx ${W[non2xx]}; berth counted $enq enqueued, $dup duplicate, $other other; $idle_checks idle checks"
(( W[non2xx] == 0 )) || log "WARNING: ${W[non2xx]} non-2xx responses"
(( dup == 0 && other == 0 )) || log "WARNING: berth saw $dup duplicate and $other refused/ignored deliveries"
# Every request wrk counted got an answer; berth may have answered a few more that wrk cut off.
(( enq >= W[requests] )) || log "WARNING: berth enqueued $enq < ${W[requests]} requests wrk counted"
stop_serve

# === 1b. poll latency ===========================================================================
log "serve (poll mode: --poll-interval 1s, no webhook)"
start_serve poll 1s "$tmp/state1"
wait_metric_at_least 'berth_reconciles_total{result="noop",cause="startup"}' 1 60
poll_ms=()
poll_rec_ms=()
for (( i = 1; i <= RUNS; i++ )); do
  next_commit
  d0=$(metric 'berth_reconcile_duration_seconds_sum')
  t0=$(now_ns)
  git_w push -q origin "HEAD:$BRANCH"
  started=$(wait_started "$STACK-web-1" "$cur_image" 120)
  poll_ms+=( "$(ms_since "$started" "$t0")" )
  wait_metric_at_least 'berth_reconciles_total{result="success",cause="poll"}' "$i" 120
  poll_rec_ms+=( "$(reconcile_ms_since "$d0")" )
  log "poll run $i: ${cur_image##*/} started ${poll_ms[-1]} ms after the push began (berth's reconcile ${poll_rec_ms[-1]} ms)"
  # De-phase the next push from the poll ticks a little (the runs would otherwise all land at the
  # same point of the 1 s cycle).
  sleep "0.$(( (i * 37) % 10 ))"
done
read -r poll_min poll_med poll_max < <(stats "${poll_ms[@]}")
read -r prec_min prec_med prec_max < <(stats "${poll_rec_ms[@]}")
stop_serve
rm_owned

# === 3. the big repo: apply, RSS ================================================================
log "big repo: $SERVICES services in $STACKS stacks of $PER_STACK"
git_w rm -rq "$STACK"
for (( s = 0; s < STACKS; s++ )); do
  d=$(printf '%s%02d' "$STACK" "$s")
  mkdir -p "$tmp/work/$d"
  {
    echo "name: $d"
    echo "services:"
    for (( j = 0; j < PER_STACK; j++ )); do
      printf '  s%02d:\n    image: berth-test/busybox:1\n    command: ["sleep", "86400"]\n' "$j"
    done
  } >"$tmp/work/$d/compose.yaml"
done
git_w add -A
git_w commit -qm "bench: $SERVICES services"
git_w push -q origin "HEAD:$BRANCH"

start_serve big 60s "$tmp/state2"
a0=$SECONDS
deadline=$(( SECONDS + APPLY_TIMEOUT ))
next_report=$(( SECONDS + 30 ))
while [[ $(metric 'berth_reconciles_total{result="success",cause="startup"}') -lt 1 ]]; do
  (( SECONDS < deadline )) || die "the $SERVICES-service apply did not finish within $APPLY_TIMEOUT s"
  kill -0 "$serve_pid" 2>/dev/null || die "berth serve died during the apply"
  failed=$(curl -fsS --max-time 5 "$URL/metrics" |
    awk '$1 ~ /^berth_reconciles_total\{result="failure/ { s += $2 } END { print s + 0 }')
  (( failed == 0 )) || die "the $SERVICES-service apply failed"
  if (( SECONDS >= next_report )); then
    log "  ... $(docker ps -q --filter "label=io.berth.instance=$INSTANCE" | wc -l) / $SERVICES running after $(( SECONDS - a0 )) s"
    next_report=$(( SECONDS + 30 ))
  fi
  sleep 1
done
apply_s=$(( SECONDS - a0 ))
apply_reported=$(awk -v s="$(metric 'berth_reconcile_duration_seconds_sum')" 'BEGIN { printf "%.1f", s }')
running=$(docker ps -q --filter "label=io.berth.instance=$INSTANCE" --filter status=running | wc -l)
(( running == SERVICES )) || die "$running containers running after the apply, want $SERVICES"
log "applied $SERVICES services in ${apply_s} s (berth: ${apply_reported} s)"
sleep 5
rss_big=$(rss_kib "$serve_pid")
hwm_big=$(hwm_kib "$serve_pid")
log "RSS with $SERVICES services: $(mib "$rss_big") MiB (peak $(mib "$hwm_big") MiB)"

# === 4. idle CPU ================================================================================
log "idle CPU over $CPU_SECONDS s"
r0=$(reconciles_sum)
i0=$(metric 'berth_idle_checks_total')
c0=$(cpu_ticks "$serve_pid")
w0=$(now_ns)
sleep "$CPU_SECONDS"
c1=$(cpu_ticks "$serve_pid")
w1=$(now_ns)
r1=$(reconciles_sum)
i1=$(metric 'berth_idle_checks_total')
since_start=$(( SECONDS - a0 ))
cpu_ticks_idle=$(( c1 - c0 ))
cpu_s=$(awk -v t="$cpu_ticks_idle" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
cpu_pct=$(awk -v t=$(( c1 - c0 )) -v hz="$CLK_TCK" -v ns=$(( w1 - w0 )) 'BEGIN { printf "%.3f", 100 * (t / hz) / (ns / 1e9) }')
cpu_note="$cpu_ticks_idle ticks of 1/$CLK_TCK s; $(( i1 - i0 )) idle poll check(s), $(( r1 - r0 )) reconcile(s)"
(( r1 - r0 == 0 )) || cpu_note+=" (a resync fell in the window: serve started $since_start s ago)"
log "idle CPU: $cpu_s s in $CPU_SECONDS s = $cpu_pct % of one core; $cpu_note"

resync_row="skipped (BENCH_RESYNC=0)"
if [[ ${BENCH_RESYNC:-1} != 0 ]]; then
  k_rs='berth_reconciles_total{result="noop",cause="resync"}'
  log "waiting for the first resync (serve started $(( SECONDS - a0 )) s ago, --resync-interval 5m)"
  d0=$(metric 'berth_reconcile_duration_seconds_sum')
  rs0=$(metric "$k_rs")
  r0=$(reconciles_sum)
  c0=$(cpu_ticks "$serve_pid")
  deadline=$(( SECONDS + 330 ))
  while [[ $(reconciles_sum) -le $r0 ]]; do
    (( SECONDS < deadline )) || die "no resync within 330 s"
    sleep 0.5
  done
  c1=$(cpu_ticks "$serve_pid")
  rs1=$(metric "$k_rs")
  (( rs1 > rs0 )) || log "WARNING: the resync was not a no-op (see the serve log)"
  resync_ms=$(reconcile_ms_since "$d0")
  resync_cpu=$(awk -v t=$(( c1 - c0 )) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
  resync_row="$resync_ms ms, $resync_cpu CPU s (incl. the wait before it)"
  log "resync of $SERVICES services: $resync_row"
fi
rss_end=$(rss_kib "$serve_pid")
stop_serve

# === summary ====================================================================================
ver=$("$berth" --version 2>/dev/null || echo berth)
printf '\nberth serve benchmark (%s, docker %s, %s cores, instance %s)\n\n' \
  "$ver" "$(docker version --format '{{.Server.Version}}')" "$(nproc)" "$INSTANCE"
row() { printf '| %-46s | %-62s |\n' "$1" "$2"; }
row "measure" "result"
row "----------------------------------------------" "--------------------------------------------------------------"
row "webhook POST -> container started (N=$RUNS)" "min $hook_min / median $hook_med / max $hook_max ms"
row "  (git push before it, file://)" "min $push_min / median $push_med / max $push_max ms"
row "  (berth's reconcile: fetch, plan, replace)" "min $hrec_min / median $hrec_med / max $hrec_max ms"
row "push start -> started, poll 1s (N=$RUNS)" "min $poll_min / median $poll_med / max $poll_max ms"
row "  (berth's reconcile: fetch, plan, replace)" "min $prec_min / median $prec_med / max $prec_max ms"
row "webhook throughput (wrk 2t/50c ${WRK_SECONDS}s)" "$wrk_rps req/s (${W[requests]} requests)"
row "  latency p50 / p99 / max" "$wrk_p50 / $wrk_p99 / $wrk_max ms"
row "  non-2xx / socket errors" "${W[non2xx]} / $wrk_sockerr"
row "  berth: enqueued / duplicate / other" "$enq / $dup / $other"
row "  idle checks during the run; serve CPU" "$idle_checks; ${wrk_cpu} % of one core"
row "RSS idle, 1 service" "$(mib "$rss_idle1") MiB"
row "RSS after the wrk run" "$(mib "$rss_wrk") MiB"
row "apply $SERVICES services (startup, sequential)" "${apply_s} s wall (berth: ${apply_reported} s)"
row "RSS after applying $SERVICES services" "$(mib "$rss_big") MiB (peak $(mib "$hwm_big") MiB)"
row "idle CPU over ${CPU_SECONDS}s, $SERVICES services" "$cpu_s CPU s = $cpu_pct % of one core"
row "  in that window" "$cpu_note"
row "periodic resync (no-op), $SERVICES services" "$resync_row"
row "RSS at the end" "$(mib "$rss_end") MiB"
echo
