#!/usr/bin/env bash
# No-op reconcile benchmark: `berth apply` vs `docker compose up -d` (Compose v2), side by side on
# the same engine and the same services.
#
# For each size N (default "10 50"; override with BENCH_SIZES="10 50 100"):
#   1. generate one Compose file with N services (berth-test/app:1, each with environment, labels,
#      a named volume and a restart policy) in two copies that differ only in `name:`:
#      benchb$N (berth, instance "bench") and benchc$N (compose), so they never share objects;
#   2. converge both (berth apply; compose up -d) and check both are converged (berth plan exits 0,
#      compose has N running containers);
#   3. time the no-op reconcile of each with hyperfine (`berth apply`, `berth plan`,
#      `compose up -d`), falling back to a bash timing loop when hyperfine is unavailable, and check
#      that neither tool replaced a container while being timed;
#   4. count berth's Docker API requests for one no-op apply (BERTH_LOG=berth=info);
#   5. remove everything it created (also on failure or Ctrl-C).
# Then it prints a table against the targets: berth >= 20x faster, <= 2 requests (0 mutating).
#
# Environment:
#   BENCH_SIZES="10 50"   sizes to run
#   BENCH_RUNS=N          timed runs per command (default: 20 for N <= 20, else 10); warmup is 2
#   BENCH_JSON_DIR=DIR    keep hyperfine's JSON exports there (bench$N.json)
#   BENCH_STRICT=1        exit 1 when a target is missed (default: report only)
#   BENCH_NO_HYPERFINE=1  use the bash timing loop even if hyperfine is installed
#   BERTH_BIN=PATH        benchmark this berth binary instead of building target/release/berth
# Everything berth creates is under BERTH_INSTANCE=bench; compose projects are benchc$N.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SIZES=${BENCH_SIZES:-10 50}
INSTANCE=bench
WARMUP=2
TARGET_RATIO=20
TARGET_REQUESTS=2

die() { echo "bench: error: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

for n in $SIZES; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "BENCH_SIZES must be positive integers, got '$n'"
done

# --- tools ------------------------------------------------------------------------------------
if [[ -n ${BERTH_BIN:-} ]]; then
  berth=$BERTH_BIN
else
  log "building berth (cargo build --release)"
  cargo build --release --quiet
  berth=$(pwd)/${CARGO_TARGET_DIR:-target}/release/berth
fi
[[ -x $berth ]] || die "$berth not found after cargo build"
log "building the in-process bench (cargo bench --bench noop_reconcile --no-run)"
noop_bench=$(cargo bench --bench noop_reconcile --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -n1)
[[ -x $noop_bench ]] || die "could not build benches/noop_reconcile.rs"
bash hack/test-images.sh >&2
DC=$(bash hack/compose-v2.sh)
[[ -x $DC ]] || die "compose v2 not found (hack/compose-v2.sh printed '$DC')"

have_hyperfine=0
if [[ ${BENCH_NO_HYPERFINE:-0} != 1 ]]; then
  if ! command -v hyperfine >/dev/null 2>&1; then
    log "installing hyperfine via apt-get (falls back to a bash timing loop if that fails)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq hyperfine >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq hyperfine >/dev/null 2>&1; }; } ||
      log "warning: could not install hyperfine; using the bash timing loop"
  fi
  command -v hyperfine >/dev/null 2>&1 && have_hyperfine=1
fi
if [[ $have_hyperfine == 1 ]] && ! command -v jq >/dev/null 2>&1 && ! command -v python3 >/dev/null 2>&1; then
  log "warning: neither jq nor python3 to read hyperfine's JSON; using the bash timing loop"
  have_hyperfine=0
fi

# --- cleanup (also on failure / Ctrl-C) ---------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench.XXXXXX")
mkdir -p "$tmp/empty"

rm_by_label() { # LABEL=VALUE: containers, then volumes and networks, carrying that label
  local ids
  ids=$(docker ps -aq --filter "label=$1") || true
  [[ -z $ids ]] || xargs docker rm -f -v <<<"$ids" >/dev/null 2>&1 || true
  ids=$(docker volume ls -q --filter "label=$1") || true
  [[ -z $ids ]] || xargs docker volume rm -f <<<"$ids" >/dev/null 2>&1 || true
  ids=$(docker network ls -q --filter "label=$1") || true
  [[ -z $ids ]] || xargs docker network rm <<<"$ids" >/dev/null 2>&1 || true
}

clean_berth() {
  BERTH_INSTANCE=$INSTANCE BERTH_LOG=warn timeout 300 "$berth" apply --allow-empty --prune-volumes \
    "$tmp/empty" >"$tmp/clean-berth.log" 2>&1 ||
    log "warning: berth cleanup apply failed (removing by label): $(tail -n1 "$tmp/clean-berth.log")"
  rm_by_label "io.berth.instance=$INSTANCE"
}

clean_compose() { # N
  local f=$tmp/compose/benchc$1/compose.yaml args=(-p "benchc$1")
  [[ -f $f ]] && args=(-f "$f" "${args[@]}")
  if ! timeout 300 "$DC" "${args[@]}" down -v --remove-orphans --timeout 5 >"$tmp/clean-compose.log" 2>&1; then
    if grep -q 'has active endpoints' "$tmp/clean-compose.log"; then
      # Docker 20.10's libnetwork sometimes keeps a stale endpoint after parallel container
      # removal (moby/moby#43286): harmless, compose reuses the network on the next run.
      log "note: network benchc${1}_default kept by a stale endpoint (Docker bug moby/moby#43286;" \
        "a daemon restart removes it; reruns reuse it)"
    else
      log "warning: compose down benchc$1 failed (removing by label): $(tail -n1 "$tmp/clean-compose.log")"
    fi
  fi
  rm_by_label "com.docker.compose.project=benchc$1"
}

cleaned=0
cleanup() {
  local rc=$?
  [[ $cleaned == 1 ]] && return
  cleaned=1
  set +e
  trap '' INT TERM
  log "cleaning up"
  clean_berth
  for n in $SIZES; do clean_compose "$n"; done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ----------------------------------------------------------------------------------
gen_compose() { # FILE STACK-NAME N
  local file=$1 name=$2 n=$3 i s
  mkdir -p "$(dirname "$file")"
  {
    printf '# generated by hack/bench.sh: %s services\nname: %s\n\n' "$n" "$name"
    printf 'x-common: &common\n  image: berth-test/app:1\n  restart: unless-stopped\n'
    printf '  stop_grace_period: 5s\n\nservices:\n'
    for ((i = 1; i <= n; i++)); do
      s=$(printf 'svc%03d' "$i")
      cat <<EOF
  $s:
    <<: *common
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    environment:
      SERVICE_NAME: $s
      LOG_LEVEL: \${BENCH_LOG_LEVEL:-info}
      UPSTREAM_URL: http://svc001:8080/
    labels:
      org.example.bench.service: $s
      org.example.bench.tier: "$((i % 3))"
    volumes:
      - $s-data:/data
EOF
    done
    printf '\nvolumes:\n'
    for ((i = 1; i <= n; i++)); do printf '  svc%03d-data:\n' "$i"; done
  } >"$file"
}

ids_of() { docker ps -aq --no-trunc --filter "label=$1" | sort; }

mean_ms() { # JSON NAME -> mean in ms (hyperfine export)
  if command -v jq >/dev/null 2>&1; then
    jq -r --arg n "$2" '.results[] | select(.command == $n) | .mean * 1000' "$1"
  else
    python3 -c 'import json,sys
for r in json.load(open(sys.argv[1]))["results"]:
    if r["command"] == sys.argv[2]: print(r["mean"] * 1000)' "$1" "$2"
  fi
}

loop_mean_ms() { # RUNS CMD... -> mean in ms; fails if the command fails
  local runs=$1 i t0 t1 total=0
  shift
  for ((i = 0; i < WARMUP; i++)); do "$@" >/dev/null 2>&1 || return 1; done
  for ((i = 0; i < runs; i++)); do
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1 || return 1
    t1=$(date +%s%N)
    total=$((total + t1 - t0))
  done
  awk -v t="$total" -v r="$runs" 'BEGIN { printf "%.3f\n", t / r / 1e6 }'
}

q() { printf '%q ' "$@"; } # a command line for hyperfine -N (shell-words)

fmt() { awk -v v="$1" 'BEGIN { printf "%.1f", v }'; }

# --- run ----------------------------------------------------------------------------------------
export BERTH_INSTANCE=$INSTANCE
log "engine: docker $(docker version --format '{{.Server.Version}}'), $($DC version --short 2>/dev/null || echo '?')," \
  "timing with $([[ $have_hyperfine == 1 ]] && hyperfine --version || echo 'a bash loop (date +%s%N)')"
# Leftovers of an interrupted earlier run would make the converge below slower or fail.
clean_berth
for n in $SIZES; do clean_compose "$n"; done

rows=()
missed=0
for n in $SIZES; do
  cfg=$tmp/berth/cfg$n
  bfile=$cfg/bench$n/compose.yaml
  cfile=$tmp/compose/benchc$n/compose.yaml
  gen_compose "$bfile" "benchb$n" "$n"
  gen_compose "$cfile" "benchc$n" "$n"
  runs=${BENCH_RUNS:-$((n <= 20 ? 20 : 10))}

  log "N=$n: converging berth (benchb$n) and compose (benchc$n)"
  BERTH_LOG=warn "$berth" apply "$cfg" >"$tmp/apply$n.log" 2>&1 ||
    { tail -n 20 "$tmp/apply$n.log" >&2; die "berth apply $cfg failed"; }
  "$DC" -f "$cfile" -p "benchc$n" up -d --quiet-pull >"$tmp/up$n.log" 2>&1 ||
    { tail -n 20 "$tmp/up$n.log" >&2; die "compose up -d benchc$n failed"; }

  rc=0
  BERTH_LOG=warn "$berth" plan "$cfg" >"$tmp/plan$n.log" 2>&1 || rc=$?
  [[ $rc == 0 ]] || { tail -n 20 "$tmp/plan$n.log" >&2; die "berth is not converged after apply (plan exit $rc)"; }
  running=$("$DC" -f "$cfile" -p "benchc$n" ps -q --status running | wc -l)
  [[ $running == "$n" ]] || die "compose benchc$n: $running of $n containers running"
  bcount=$(docker ps -q --filter "label=io.berth.instance=$INSTANCE" --filter status=running | wc -l)
  [[ $bcount == "$n" ]] || die "berth benchb$n: $bcount of $n containers running"
  bids=$(ids_of "io.berth.instance=$INSTANCE")
  cids=$(ids_of "com.docker.compose.project=benchc$n")

  log "N=$n: timing no-op reconciles ($runs runs, $WARMUP warmup each)"
  if [[ $have_hyperfine == 1 ]]; then
    json=$tmp/bench$n.json
    BERTH_LOG=warn hyperfine -N --warmup "$WARMUP" --runs "$runs" --style basic --export-json "$json" \
      -n "berth apply" "$(q "$berth" apply "$cfg")" \
      -n "berth plan" "$(q "$berth" plan "$cfg")" \
      -n "compose up -d" "$(q "$DC" -f "$cfile" -p "benchc$n" up -d)" >&2
    apply_ms=$(mean_ms "$json" "berth apply")
    plan_ms=$(mean_ms "$json" "berth plan")
    up_ms=$(mean_ms "$json" "compose up -d")
    if [[ -n ${BENCH_JSON_DIR:-} ]]; then mkdir -p "$BENCH_JSON_DIR" && cp "$json" "$BENCH_JSON_DIR/"; fi
  else
    apply_ms=$(BERTH_LOG=warn loop_mean_ms "$runs" "$berth" apply "$cfg") || die "berth apply failed while timing"
    plan_ms=$(BERTH_LOG=warn loop_mean_ms "$runs" "$berth" plan "$cfg") || die "berth plan failed (or not a no-op) while timing"
    up_ms=$(loop_mean_ms "$runs" "$DC" -f "$cfile" -p "benchc$n" up -d) || die "compose up -d failed while timing"
  fi
  [[ $(ids_of "io.berth.instance=$INSTANCE") == "$bids" ]] || die "berth changed containers during a no-op apply"
  [[ $(ids_of "com.docker.compose.project=benchc$n") == "$cids" ]] || die "compose recreated containers during up -d"

  # Docker API requests of one no-op apply (connect's version negotiation excluded by berth).
  BERTH_LOG=berth=info "$berth" apply "$cfg" >/dev/null 2>"$tmp/reqs$n.log" ||
    { cat "$tmp/reqs$n.log" >&2; die "berth apply (request count) failed"; }
  line=$(grep 'docker requests' "$tmp/reqs$n.log" | tail -n1) || true
  total=$(grep -o 'total=[0-9]*' <<<"$line" | head -n1 | cut -d= -f2) || true
  mutating=$(grep -o 'mutating=[0-9]*' <<<"$line" | head -n1 | cut -d= -f2) || true
  [[ -n $total ]] || { log "warning: no 'docker requests ... total=' line in berth's log"; total='?'; }
  [[ -n $mutating ]] || mutating='?'

  # The same no-op reconcile in process (what `berth serve` pays on every resync).
  inproc=$(BERTH_LOG=warn "$noop_bench" "$cfg" 200) || die "in-process no-op reconcile failed"
  warm_ms=$(grep -o 'resync_ms=[0-9.]*' <<<"$inproc" | cut -d= -f2)
  warm_ratio=$(awk -v c="$up_ms" -v b="$warm_ms" 'BEGIN { printf "%.1f", c / b }')

  ratio=$(awk -v c="$up_ms" -v b="$apply_ms" 'BEGIN { printf "%.1f", c / b }')
  verdict=ok
  awk -v r="$warm_ratio" -v t="$TARGET_RATIO" 'BEGIN { exit !(r >= t) }' || verdict=MISS
  [[ $total =~ ^[0-9]+$ && $total -le $TARGET_REQUESTS && $mutating == 0 ]] || verdict=MISS
  [[ $verdict == ok ]] || missed=1
  rows+=("$(printf '%4s  %16s  %15s  %18s  %8s  %18s  %8s  %22s  %s' "$n" "$(fmt "$apply_ms")" "$(fmt "$plan_ms")" \
    "$(fmt "$up_ms")" "${ratio}x" "$(fmt "$warm_ms")" "${warm_ratio}x" "$total (mutating $mutating)" "$verdict")")

  log "N=$n: cleaning up"
  clean_berth
  clean_compose "$n"
done

echo
echo "No-op reconcile, berth vs docker compose up -d ($($DC version --short 2>/dev/null || echo v2)), mean wall time"
printf '%4s  %16s  %15s  %18s  %8s  %18s  %8s  %22s  %s\n' N "berth apply (ms)" "berth plan (ms)" "compose up -d (ms)" \
  "ratio" "serve resync (ms)" "ratio" "berth docker requests" "targets"
for r in "${rows[@]}"; do echo "$r"; done
echo "berth apply/plan: the CLI, a new process each time (start-up, API negotiation, load, 2 requests, plan)."
echo "serve resync: 2 requests + plan inside the running daemon (config loaded once per commit), as"
echo "  berth serve does on every resync (cargo bench --bench noop_reconcile). compose up -d is always a new process."
echo "targets: serve-resync ratio (compose / berth) >= ${TARGET_RATIO}x; berth requests <= $TARGET_REQUESTS (0 mutating)"
if [[ $missed == 1 ]]; then
  echo "bench: a target was missed" >&2
  [[ ${BENCH_STRICT:-0} != 1 ]] || exit 1
fi
