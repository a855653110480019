#!/usr/bin/env bash
# Router benchmark: (1) retries and cooldowns over a model group of 4 deployments where one fails 20% of
# requests, next to the same group all healthy and to the same faults with retries/cooldowns off; (2) the
# router's cost with 1,000 deployments in one group vs 1, for simple-shuffle, least-busy and
# latency-based-routing, plus start-up time and idle RSS. Writes bench/out/router-latest.md.
# See bench/README.md ("Router"). Options are environment variables:
#   DURATION=10 WARMUP=2 RATE=1000 CONNECTIONS=64 RATE_CONNECTIONS=32 DEPLOYMENTS=1000 STARTUP_RUNS=5
#   STRATEGIES="simple-shuffle least-busy latency-based-routing" GATEWAY_CORE=0 LOAD_CORE=1 SKIP_BUILD=1
#   PARTS="faults scale" (run only one half with PARTS=faults or PARTS=scale)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
RATE=${RATE:-1000}
CONNECTIONS=${CONNECTIONS:-64}
RATE_CONNECTIONS=${RATE_CONNECTIONS:-32}
DEPLOYMENTS=${DEPLOYMENTS:-1000}
STARTUP_RUNS=${STARTUP_RUNS:-5}
STRATEGIES=${STRATEGIES:-simple-shuffle least-busy latency-based-routing}
GATEWAY_CORE=${GATEWAY_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
PARTS=${PARTS:-faults scale}
MASTER_KEY=sk-bench-master

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-bench/out/router-$STAMP}
mkdir -p "$OUT"
OUT_ABS=$ROOT/$OUT
case $OUT in /*) OUT_ABS=$OUT ;; esac
export RUST_BACKTRACE=0

BIN=target/release
BENCH="taskset -c $LOAD_CORE $BIN/tollgate-bench"

log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

if [ "$SKIP_BUILD" != 1 ]; then
  log "cargo build --release -p tollgate -p tollgate-mock -p tollgate-bench"
  cargo build --release -p tollgate -p tollgate-mock -p tollgate-bench
fi

# --- processes we start, and only those, are stopped on exit --------------------------------
MOCK_PID=""
GW_PID=""
cleanup() {
  for pid in $GW_PID $MOCK_PID; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# Waits for "... listening on http://HOST:PORT" in a log file and prints HOST:PORT.
wait_listening() {
  local logfile=$1 pid=$2 deadline=$((SECONDS + 30)) addr
  while [ $SECONDS -lt $deadline ]; do
    addr=$(grep -o 'listening on http://[^ /]*' "$logfile" 2>/dev/null | head -n1 | sed 's|.*http://||') || true
    if [ -n "$addr" ]; then
      echo "$addr"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      break
    fi
    sleep 0.02
  done
  log "no listening line in $logfile:"
  tail -n 20 "$logfile" >&2
  return 1
}
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
mock_chats() { curl -sf "http://$MOCK/mock/stats" | jq '.endpoints.chat_completions'; }

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo none)
if [ "$COMMIT" != none ] && ! git diff --quiet HEAD 2>/dev/null; then
  COMMIT="$COMMIT+dirty"
fi

# --- mock upstream (core LOAD_CORE) ----------------------------------------------------------
log "starting tollgate-mock on core $LOAD_CORE"
taskset -c "$LOAD_CORE" "$BIN/tollgate-mock" --host 127.0.0.1 --port 0 --workers 1 > "$OUT/mock.log" 2>&1 &
MOCK_PID=$!
MOCK=$(wait_listening "$OUT/mock.log" "$MOCK_PID")
log "mock at http://$MOCK"

# general_settings shared by every config: master key, SQLite file and spend journal in the case's directory.
general() { # general DIR
  cat <<EOF
general_settings:
  master_key: $MASTER_KEY
  tollgate_database_path: $1/tollgate.db
  tollgate_spend_journal_path: $1/spend.journal
EOF
}
deployment() { # deployment MODEL ID
  printf '  - model_name: bench-model\n    litellm_params: { model: "openai/%s", api_base: "http://%s/v1", api_key: sk-mock }\n    model_info: { id: %s }\n' \
    "$1" "$MOCK" "$2"
}

# start_gw NAME: starts tollgate with $OUT/NAME/tollgate.yaml on GATEWAY_CORE; sets GW, GW_PID, IDLE_RSS.
start_gw() {
  local dir=$OUT/$1
  taskset -c "$GATEWAY_CORE" "$BIN/tollgate" --config "$dir/tollgate.yaml" \
    --host 127.0.0.1 --port 0 --num_workers 1 > "$dir/tollgate.log" 2>&1 &
  GW_PID=$!
  GW=$(wait_listening "$dir/tollgate.log" "$GW_PID") || { GW_PID=""; return 1; }
  sleep 1
  IDLE_RSS=$(rss_mb "$GW_PID")
  echo "$IDLE_RSS" > "$dir/idle-rss-mb"
}
stop_gw() {
  if [ -n "$GW_PID" ]; then
    kill "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
  fi
  GW_PID=""
}

COMMON=(--duration "${DURATION}s" --warmup "${WARMUP}s")
# measure NAME: a fixed-rate and a saturation run through the gateway; JSON in $OUT/NAME/{rate,sat}.json and
# the mock's chat-completion count of each run (warm-up included) in $OUT/NAME/{rate,sat}.upstream.
measure() {
  local dir=$OUT/$1 before
  before=$(mock_chats)
  $BENCH load --label "$1-rate" --out "$dir/rate.json" --url "http://$GW/v1/chat/completions" \
    --api-key "$MASTER_KEY" --rate "$RATE" --connections "$RATE_CONNECTIONS" "${COMMON[@]}" > /dev/null \
    || log "$1 rate run failed"
  echo $(($(mock_chats) - before)) > "$dir/rate.upstream"
  before=$(mock_chats)
  $BENCH load --label "$1-sat" --out "$dir/sat.json" --url "http://$GW/v1/chat/completions" \
    --api-key "$MASTER_KEY" --connections "$CONNECTIONS" "${COMMON[@]}" > /dev/null \
    || log "$1 saturation run failed"
  echo $(($(mock_chats) - before)) > "$dir/sat.upstream"
}

# j NAME RUN FILTER: a field of a result, "n/a" when the run left no JSON.
j() { if [ -f "$OUT/$1/$2.json" ]; then jq -r "$3" "$OUT/$1/$2.json"; else echo n/a; fi; }
# Client-seen success rate in percent: ok / (ok + errors).
success() { j "$1" "$2" 'if (.ok + .errors.total) == 0 then "n/a" else (10000 * .ok / (.ok + .errors.total) | round / 100 | tostring) + "%" end'; }
statuses() { j "$1" "$2" '[.errors.status | to_entries[] | "\(.key)×\(.value)"] + (if .errors.transport > 0 then ["transport×\(.errors.transport)"] else [] end) + (if .errors.timeout > 0 then ["timeout×\(.errors.timeout)"] else [] end) + (if .errors.unsent > 0 then ["unsent×\(.errors.unsent)"] else [] end) | if length == 0 then "0" else join(" ") end'; }
# Upstream attempts per client request over a whole run (warm-up included).
attempts() {
  local up=$OUT/$1/$2.upstream f=$OUT/$1/$2.json
  if [ -f "$f" ] && [ -f "$up" ]; then
    jq -r --argjson up "$(cat "$up")" --argjson w "$WARMUP" \
      '((.ok + .errors.total) * (.duration_s + $w) / .duration_s) as $n | if $n == 0 then "n/a" else ($up / $n * 1000 | round / 1000 | tostring) end' "$f"
  else
    echo n/a
  fi
}
added() { # added VALUE BASE
  python3 -c "import sys
try: print('%+.3f' % (float(sys.argv[1]) - float(sys.argv[2])))
except ValueError: print('n/a')" "$1" "$2"
}

REPORT=()
add() { REPORT+=("$*"); }

add "# Router benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $COMMIT"
add ""
add "Gateway pinned to core $GATEWAY_CORE (\`--num_workers 1\`, master key, SQLite file in the run directory); mock and load"
add "generator on core $LOAD_CORE. Fixed rate $RATE req/s over $RATE_CONNECTIONS connections; saturation with $CONNECTIONS"
add "connections; ${DURATION}s each after ${WARMUP}s warm-up."

# --- (1) one failing deployment out of four ---------------------------------------------------
if [[ " $PARTS " == *" faults "* ]]; then
  FAULT="m4@fail_rate=0.2,status=503"
  declare -A FAULT_DESC=(
    [healthy]="4 healthy deployments (baseline)"
    [healthy-again]="4 healthy deployments again, run last (noise check)"
    [faulty]="m4 fails 20% (503); defaults: num_retries 2, allowed_fails 3, cooldown 5 s"
    [faulty-noretry]="m4 fails 20% (503); num_retries 0, disable_cooldowns"
  )
  for case in healthy faulty faulty-noretry healthy-again; do
    dir=$OUT/$case
    mkdir -p "$dir"
    last=m4
    [[ "$case" == faulty* ]] && last=$FAULT
    {
      echo "model_list:"
      deployment m1 m1
      deployment m2 m2
      deployment m3 m3
      deployment "$last" m4
      [ "$case" = faulty-noretry ] && echo "router_settings: { num_retries: 0, disable_cooldowns: true }"
      general "$OUT_ABS/$case"
    } > "$dir/tollgate.yaml"
    log "(1) $case: ${FAULT_DESC[$case]}"
    if start_gw "$case"; then
      measure "$case"
      stop_gw
    else
      log "WARNING: tollgate did not start for $case"
    fi
  done
  b50=$(j healthy rate .latency_ms.p50)
  b99=$(j healthy rate .latency_ms.p99)
  add ""
  add "## (1) One deployment of four failing 20% of requests"
  add ""
  add "Group \`bench-model\` = \`openai/m1\`, \`openai/m2\`, \`openai/m3\`, \`openai/m4\` on the same mock; in the faulty"
  add "cases m4 is \`openai/$FAULT\`. Success = client-seen 2xx / requests. Upstream/request = the mock's"
  add "chat-completion count over the run (warm-up included) / client requests (retries show as > 1)."
  add ""
  add "| case | p50 ms @$RATE/s | p99 ms @$RATE/s | added p50 | added p99 | success @$RATE/s | errors @$RATE/s | upstream/request @$RATE/s | saturation req/s | success @sat | errors @sat |"
  add "|---|---|---|---|---|---|---|---|---|---|---|"
  for case in healthy faulty faulty-noretry healthy-again; do
    p50=$(j "$case" rate .latency_ms.p50)
    p99=$(j "$case" rate .latency_ms.p99)
    if [ "$case" = healthy ]; then a50="—"; a99="—"; else a50=$(added "$p50" "$b50"); a99=$(added "$p99" "$b99"); fi
    add "| ${FAULT_DESC[$case]} | $p50 | $p99 | $a50 | $a99 | $(success "$case" rate) | $(statuses "$case" rate) | $(attempts "$case" rate) | $(j "$case" sat .rps) | $(success "$case" sat) | $(statuses "$case" sat) |"
  done
fi

# --- (2) 1 vs DEPLOYMENTS deployments in one group ---------------------------------------------
if [[ " $PARTS " == *" scale "* ]]; then
  SCALE_ROWS=()
  for strategy in $STRATEGIES; do
    for n in 1 "$DEPLOYMENTS"; do
      case=scale-$strategy-$n
      dir=$OUT/$case
      mkdir -p "$dir"
      {
        echo "model_list:"
        for ((i = 1; i <= n; i++)); do deployment bench-model "d$i"; done
        echo "router_settings: { routing_strategy: $strategy }"
        general "$OUT_ABS/$case"
      } > "$dir/tollgate.yaml"
      log "(2) $strategy, $n deployment(s)"
      if start_gw "$case"; then
        measure "$case"
        stop_gw
      else
        log "WARNING: tollgate did not start for $case"
      fi
    done
    one=scale-$strategy-1
    many=scale-$strategy-$DEPLOYMENTS
    ratio=$(python3 -c "import sys
try: print('%.2f' % (float(sys.argv[2]) / float(sys.argv[1])))
except (ValueError, ZeroDivisionError): print('n/a')" "$(j "$one" sat .rps)" "$(j "$many" sat .rps)")
    for n in 1 "$DEPLOYMENTS"; do
      case=scale-$strategy-$n
      p50=$(j "$case" rate .latency_ms.p50)
      p99=$(j "$case" rate .latency_ms.p99)
      if [ "$n" = 1 ]; then
        extra="| — | — | |"
      else
        extra="| $(added "$p50" "$(j "$one" rate .latency_ms.p50)") | $(added "$p99" "$(j "$one" rate .latency_ms.p99)") | ${ratio}× |"
      fi
      errs=$(( $(j "$case" rate '.errors.total // 0' | sed 's/n\/a/0/') + $(j "$case" sat '.errors.total // 0' | sed 's/n\/a/0/') ))
      SCALE_ROWS+=("| $strategy | $n | $p50 | $p99 | $(j "$case" sat .rps) $extra $(cat "$OUT/$case/idle-rss-mb" 2>/dev/null || echo n/a) | $errs |")
    done
  done

  # Start-up: exec -> listening line and -> first 200, simple-shuffle configs (the model list is what grows).
  first=${STRATEGIES%% *}
  START_ROWS=()
  for n in 1 "$DEPLOYMENTS"; do
    case=scale-$first-$n
    log "(2) start-up x $STARTUP_RUNS, $n deployment(s)"
    if $BENCH coldstart --runs "$STARTUP_RUNS" --timeout 30s --label "startup-$n" --out "$OUT/$case/startup.json" -- \
      taskset -c "$GATEWAY_CORE" "$BIN/tollgate" --config "$OUT/$case/tollgate.yaml" \
      --host 127.0.0.1 --port 0 --num_workers 1 > /dev/null; then
      f=$OUT/$case/startup.json
      START_ROWS+=("| $n | $(jq -r '.listening_line_ms | "\(.median * 10 | round / 10) (\(.min * 10 | round / 10)-\(.max * 10 | round / 10))"' "$f") | $(jq -r '.first_200_ms | "\(.median * 10 | round / 10) (\(.min * 10 | round / 10)-\(.max * 10 | round / 10))"' "$f") | $(cat "$OUT/$case/idle-rss-mb" 2>/dev/null || echo n/a) |")
    else
      log "start-up timing failed for $n deployment(s)"
      START_ROWS+=("| $n | failed | failed | |")
    fi
  done

  add ""
  add "## (2) $DEPLOYMENTS deployments in one group vs 1"
  add ""
  add "All deployments \`openai/bench-model\` on the same mock, distinct \`model_info.id\`. Added = $DEPLOYMENTS"
  add "deployments minus 1 deployment, same strategy; sat. ratio = req/s with $DEPLOYMENTS / req/s with 1."
  add ""
  add "| strategy | deployments | p50 ms @$RATE/s | p99 ms @$RATE/s | saturation req/s | added p50 | added p99 | sat. ratio | idle RSS MB | errors |"
  add "|---|---|---|---|---|---|---|---|---|---|"
  for row in "${SCALE_ROWS[@]}"; do add "$row"; done
  add ""
  add "Start-up ($first config, $STARTUP_RUNS runs, median (min-max)):"
  add ""
  add "| deployments | exec → listening line ms | exec → first 200 ms | idle RSS MB (1 s after listening) |"
  add "|---|---|---|---|"
  for row in "${START_ROWS[@]}"; do add "$row"; done
fi

printf '%s\n' "${REPORT[@]}" > "$OUT/report.md"
cp "$OUT/report.md" bench/out/router-latest.md
cat "$OUT/report.md"
log "written $OUT/report.md and bench/out/router-latest.md"
