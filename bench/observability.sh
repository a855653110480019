#!/usr/bin/env bash
# What metrics and tracing cost on the hot path: the same virtual-key load (budget, limits, spend on; SQLite)
# through the gateway with observability off, with Prometheus metrics (`callbacks: ["prometheus"]`), and with
# metrics + OpenTelemetry traces for every request (`callbacks: ["prometheus", "otel"]`, sampled 100% and 10%, exported
# as OTLP/protobuf; the collector is the mock, whose 404 makes the exporter drop each batch after sending it, so
# all the work of encoding and posting is paid). Variants run ROUNDS times in turn (A-B-C-A-B-C...) so they see
# the same machine. Writes bench/out/observability-latest.md.
# Options (environment): DURATION=10 WARMUP=2 RATE=1000 CONNECTIONS=64 RATE_CONNECTIONS=32 ROUNDS=2
#   GATEWAY_CORE=0 LOAD_CORE=1 SKIP_BUILD=1
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
RATE=${RATE:-1000}
CONNECTIONS=${CONNECTIONS:-64}
RATE_CONNECTIONS=${RATE_CONNECTIONS:-32}
ROUNDS=${ROUNDS:-2}
GATEWAY_CORE=${GATEWAY_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
MASTER_KEY=sk-bench-master
BIN=target/release
BENCH="taskset -c $LOAD_CORE $BIN/tollgate-bench"
OUT=bench/out/observability-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

if [ "$SKIP_BUILD" != 1 ]; then
  cargo build --release -p tollgate -p tollgate-mock -p tollgate-bench
fi

PIDS=""
cleanup() {
  for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_listening() {
  local logfile=$1 deadline=$((SECONDS + 20)) addr
  while [ $SECONDS -lt $deadline ]; do
    addr=$(grep -o 'listening on http://[^ /]*' "$logfile" 2>/dev/null | head -n1 | sed 's|.*http://||') || true
    if [ -n "$addr" ]; then echo "$addr"; return 0; fi
    sleep 0.02
  done
  tail -n 20 "$logfile" >&2
  return 1
}

taskset -c "$LOAD_CORE" "$BIN/tollgate-mock" --host 127.0.0.1 --port 0 --workers 1 > "$OUT/mock.log" 2>&1 &
PIDS="$PIDS $!"
MOCK=$(wait_listening "$OUT/mock.log")
COMMON=(--duration "${DURATION}s" --warmup "${WARMUP}s")

TICKS=$(getconf CLK_TCK)
# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

callbacks_of() {
  case $1 in
    off) echo "[]" ;;
    metrics) echo '["prometheus"]' ;;
    traces | traces10) echo '["prometheus", "otel"]' ;;
  esac
}

ROWS=()
for round in $(seq 1 "$ROUNDS"); do
  for variant in off metrics traces traces10; do
    sampler=always_on
    [ "$variant" = traces10 ] && sampler=traceidratio
    dir="$OUT/$variant-$round"
    mkdir -p "$dir"
    cat > "$dir/tollgate.yaml" <<YAML
model_list:
  - model_name: bench-model
    litellm_params: { model: openai/bench-model, api_base: "http://$MOCK/v1", api_key: sk-mock }
    model_info: { input_cost_per_token: 0.000001, output_cost_per_token: 0.000001 }
general_settings:
  master_key: $MASTER_KEY
  tollgate_database_path: $ROOT/$dir/tollgate.db
  tollgate_spend_journal_path: $ROOT/$dir/spend.journal
litellm_settings:
  callbacks: $(callbacks_of "$variant")
YAML
    log "round $round, $variant: starting tollgate on core $GATEWAY_CORE"
    (cd "$dir" && OTEL_EXPORTER_OTLP_ENDPOINT="http://$MOCK" OTEL_BSP_SCHEDULE_DELAY=1000 \
      OTEL_TRACES_SAMPLER=$sampler OTEL_TRACES_SAMPLER_ARG=0.1 \
      OTEL_BSP_MAX_QUEUE_SIZE=65536 exec taskset -c "$GATEWAY_CORE" "$ROOT/$BIN/tollgate" \
      --config tollgate.yaml --host 127.0.0.1 --port 0 --num_workers 1 > tollgate.log 2>&1) &
    GW_PID=$!
    PIDS="$PIDS $GW_PID"
    GW=$(wait_listening "$dir/tollgate.log")
    sleep 0.5
    KEY=$(curl -sf "http://$GW/key/generate" -H "Authorization: Bearer $MASTER_KEY" \
      -d '{"max_budget": 1000000, "rpm_limit": 100000000, "tpm_limit": 100000000000, "key_alias": "bench"}' | jq -r .key)
    $BENCH load --label "$variant-rate" --out "$dir/rate.json" --url "http://$GW/v1/chat/completions" \
      --api-key "$KEY" --rate "$RATE" --connections "$RATE_CONNECTIONS" "${COMMON[@]}" >/dev/null
    cpu_before=$(cpu_ticks "$GW_PID")
    $BENCH load --label "$variant-sat" --out "$dir/sat.json" --url "http://$GW/v1/chat/completions" \
      --api-key "$KEY" --connections "$CONNECTIONS" "${COMMON[@]}" >/dev/null
    cpu_after=$(cpu_ticks "$GW_PID")
    series=$(curl -s "http://$GW/metrics" | grep -c '^litellm_' || true)
    pkill -TERM -f "tollgate --config tollgate.yaml" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
    j() { jq -r "$2" "$dir/$1.json"; }
    # Gateway CPU per request over the saturation run (warm-up included in both the ticks and the count).
    reqs=$(jq '.ok' "$dir/sat.json")
    cpu_us=$(python3 -c "print(round(($cpu_after - $cpu_before) / $TICKS * 1e6 / max($reqs * ($DURATION + $WARMUP) / $DURATION, 1), 1))")
    ROWS+=("| $round | $variant | $(j rate .latency_ms.p50) | $(j rate .latency_ms.p99) | $(j sat .rps) | $cpu_us | $(jq -s 'map(.errors.total) | add' "$dir"/*.json) | $series |")
  done
done

{
  echo "# Observability overhead — $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD)"
  echo
  echo "Virtual key with budget and limits, spend on (SQLite). Gateway pinned to core $GATEWAY_CORE (\`--num_workers 1\`),"
  echo "mock and load on core $LOAD_CORE. Fixed rate $RATE req/s ($RATE_CONNECTIONS connections), saturation $CONNECTIONS"
  echo "connections, ${DURATION}s each after ${WARMUP}s warm-up. \`traces\` samples every request, \`traces10\` one in ten"
  echo "(\`OTEL_TRACES_SAMPLER=traceidratio\`, 0.1); OTLP/protobuf, batches of 512."
  echo
  echo "| round | variant | p50 ms @$RATE/s | p99 ms @$RATE/s | saturation req/s | gateway CPU µs/req (sat.) | errors | litellm_ series |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
} > "$OUT/report.md"
cp "$OUT/report.md" bench/out/observability-latest.md
cat "$OUT/report.md"
