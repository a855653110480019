#!/usr/bin/env bash
# The tollgate benchmark in one command: builds, runs scenarios (a)-(e), writes bench/out/latest.md.
# See bench/README.md for what each number means. Options are environment variables:
#   DURATION=10 WARMUP=2 RATE=1000 CONNECTIONS=64 RATE_CONNECTIONS=32 STREAM_RATE=$RATE
#   STREAM_CHUNKS=5 COLDSTART_RUNS=10 GATEWAY_CORE=0 LOAD_CORE=1 HEALTH_PATH=/health/liveliness
#   SKIP_BUILD=1 (reuse target/release) DIRECT_ONLY=1 (mock only: checks the tool, no gateway)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
RATE=${RATE:-1000}
CONNECTIONS=${CONNECTIONS:-64}
RATE_CONNECTIONS=${RATE_CONNECTIONS:-32}
STREAM_RATE=${STREAM_RATE:-$RATE}
STREAM_CHUNKS=${STREAM_CHUNKS:-5}
COLDSTART_RUNS=${COLDSTART_RUNS:-10}
GATEWAY_CORE=${GATEWAY_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
HEALTH_PATH=${HEALTH_PATH:-/health/liveliness}
SKIP_BUILD=${SKIP_BUILD:-0}
DIRECT_ONLY=${DIRECT_ONLY:-0}
MASTER_KEY=sk-bench-master

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-bench/out/run-$STAMP}
mkdir -p "$OUT"
ln -sfn "$(basename "$OUT")" bench/out/last-run 2>/dev/null || true
export RUST_BACKTRACE=0

BIN=target/release
BENCH="taskset -c $LOAD_CORE $BIN/tollgate-bench"

log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

# --- build ----------------------------------------------------------------------------------
GATEWAY=1
[ "$DIRECT_ONLY" = 1 ] && GATEWAY=0
if [ "$SKIP_BUILD" != 1 ]; then
  if [ "$GATEWAY" = 1 ]; then
    log "cargo build --release -p tollgate -p tollgate-mock -p tollgate-bench"
    if ! cargo build --release -p tollgate -p tollgate-mock -p tollgate-bench; then
      log "WARNING: the gateway does not build; running the direct-to-mock half only"
      GATEWAY=0
    fi
  fi
  if [ "$GATEWAY" = 0 ]; then
    cargo build --release -p tollgate-mock -p tollgate-bench
  fi
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
  local logfile=$1 pid=$2 deadline=$((SECONDS + 20)) addr
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

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo none)
if [ "$COMMIT" != none ] && ! git diff --quiet HEAD 2>/dev/null; then
  COMMIT="$COMMIT+dirty"
fi
printf '{"date":"%s","commit":"%s","cpu":"%s","duration_s":%s,"rate":%s,"connections":%s}\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  "$COMMIT" \
  "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //; s/"//g')" \
  "$DURATION" "$RATE" "$CONNECTIONS" > "$OUT/meta.json"

# --- mock upstream (core LOAD_CORE) ----------------------------------------------------------
log "starting tollgate-mock on core $LOAD_CORE"
taskset -c "$LOAD_CORE" "$BIN/tollgate-mock" --host 127.0.0.1 --port 0 --workers 1 > "$OUT/mock.log" 2>&1 &
MOCK_PID=$!
MOCK=$(wait_listening "$OUT/mock.log" "$MOCK_PID")
log "mock at http://$MOCK"

STREAM_MODEL="bench-model@chunks=$STREAM_CHUNKS,chunk_interval_ms=0"

cat > "$OUT/tollgate.yaml" <<EOF
model_list:
  - model_name: bench-model
    litellm_params: { model: openai/bench-model, api_base: "http://$MOCK/v1", api_key: sk-mock }
  - model_name: bench-stream
    litellm_params: { model: "openai/$STREAM_MODEL", api_base: "http://$MOCK/v1", api_key: sk-mock }
general_settings: { master_key: $MASTER_KEY }
EOF

COMMON=(--duration "${DURATION}s" --warmup "${WARMUP}s")
STREAM_HEADERS=(-H "x-mock-chunks: $STREAM_CHUNKS" -H "x-mock-chunk_interval_ms: 0")

# scenario NAME ARGS...: runs one load, JSON to $OUT/NAME.json, summary on stderr.
scenario() {
  local name=$1
  shift
  if ! $BENCH load --label "$name" --out "$OUT/$name.json" "$@" > /dev/null; then
    log "scenario $name failed"
    rm -f "$OUT/$name.json"
  fi
}

run_target() { # run_target PREFIX URL API_KEY CHAT_MODEL STREAM_MODEL
  local prefix=$1 url=$2 key=$3 model=$4 smodel=$5
  scenario "$prefix-rate" --url "$url" --api-key "$key" --model "$model" \
    --rate "$RATE" --connections "$RATE_CONNECTIONS" "${COMMON[@]}"
  scenario "$prefix-sat" --url "$url" --api-key "$key" --model "$model" \
    --connections "$CONNECTIONS" "${COMMON[@]}"
  scenario "$prefix-stream" --url "$url" --api-key "$key" --model "$smodel" --stream \
    "${STREAM_HEADERS[@]}" --rate "$STREAM_RATE" --connections "$RATE_CONNECTIONS" "${COMMON[@]}"
}

# --- gateway (core GATEWAY_CORE) --------------------------------------------------------------
GW=""
if [ "$GATEWAY" = 1 ]; then
  log "starting tollgate on core $GATEWAY_CORE (--num_workers 1)"
  taskset -c "$GATEWAY_CORE" "$BIN/tollgate" --config "$OUT/tollgate.yaml" \
    --host 127.0.0.1 --port 0 --num_workers 1 > "$OUT/tollgate.log" 2>&1 &
  GW_PID=$!
  if GW=$(wait_listening "$OUT/tollgate.log" "$GW_PID"); then
    log "tollgate at http://$GW (pid $GW_PID)"
    sleep 1
    $BIN/tollgate-bench rss --pid "$GW_PID" --label idle --out "$OUT/gateway-rss-idle.json" > /dev/null
  else
    log "WARNING: tollgate did not start; gateway scenarios skipped"
    GW=""
    GATEWAY=0
  fi
fi

# Interleave direct and gateway per scenario family so both see the same machine state.
log "(a)-(c) direct to mock"
run_target direct "http://$MOCK/v1/chat/completions" sk-mock bench-model "$STREAM_MODEL"
if [ -n "$GW" ]; then
  log "(a)-(c) through tollgate"
  run_target gateway "http://$GW/v1/chat/completions" "$MASTER_KEY" bench-model bench-stream
  log "(d) peak RSS"
  $BIN/tollgate-bench rss --pid "$GW_PID" --label peak --out "$OUT/gateway-rss-peak.json" > /dev/null
  kill "$GW_PID" 2>/dev/null || true
  wait "$GW_PID" 2>/dev/null || true
  GW_PID=""

  log "(e) cold start x $COLDSTART_RUNS"
  $BENCH coldstart --runs "$COLDSTART_RUNS" --health-path "$HEALTH_PATH" --timeout 20s \
    --label tollgate --out "$OUT/gateway-coldstart.json" -- \
    taskset -c "$GATEWAY_CORE" "$BIN/tollgate" --config "$OUT/tollgate.yaml" \
    --host 127.0.0.1 --port 0 --num_workers 1 > /dev/null || {
    log "cold start failed"
    rm -f "$OUT/gateway-coldstart.json"
  }
fi

# Results of the last bench/litellm.sh run, if any, go in the same report.
if compgen -G "bench/out/litellm/litellm-*.json" > /dev/null; then
  cp bench/out/litellm/litellm-*.json "$OUT/"
fi

$BIN/tollgate-bench report --dir "$OUT" --out "$OUT/report.md"
cp "$OUT/report.md" bench/out/latest.md
log "written $OUT/report.md and bench/out/latest.md"
