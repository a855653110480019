#!/usr/bin/env bash
# Keys, spend and limits on: the fixed-rate and saturation loads of run.sh through a virtual key with a budget,
# rpm/tpm/parallel limits and spend tracking, on the embedded SQLite file and on PostgreSQL, next to the same
# loads with the master key in the same run. Then a sustained saturation run that checks the spend writer
# keeps up (rows written / s) without growing memory. Writes bench/out/accounts-latest.md.
# Options (environment): DURATION=10 WARMUP=2 RATE=1000 CONNECTIONS=64 RATE_CONNECTIONS=32 SUSTAIN=30
#   GATEWAY_CORE=0 LOAD_CORE=1 SKIP_BUILD=1 DATABASES="sqlite postgres" PG_URL=postgres://postgres@127.0.0.1:5432
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
RATE=${RATE:-1000}
CONNECTIONS=${CONNECTIONS:-64}
RATE_CONNECTIONS=${RATE_CONNECTIONS:-32}
SUSTAIN=${SUSTAIN:-30}
GATEWAY_CORE=${GATEWAY_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
DATABASES=${DATABASES:-sqlite postgres}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
MASTER_KEY=sk-bench-master
BIN=target/release
BENCH="taskset -c $LOAD_CORE $BIN/tollgate-bench"
OUT=bench/out/accounts-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

if [ "$SKIP_BUILD" != 1 ]; then
  cargo build --release -p tollgate -p tollgate-mock -p tollgate-bench
fi

PIDS=""
PG_DB=""
cleanup() {
  for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$PG_DB" ]; then psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true; fi
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
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
hwm_mb() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

taskset -c "$LOAD_CORE" "$BIN/tollgate-mock" --host 127.0.0.1 --port 0 --workers 1 > "$OUT/mock.log" 2>&1 &
PIDS="$PIDS $!"
MOCK=$(wait_listening "$OUT/mock.log")
COMMON=(--duration "${DURATION}s" --warmup "${WARMUP}s")
# One request of the bench body: the mock counts its prompt and answer tokens; 1e-6 USD per token either way.
PRICE=0.000001

ROWS=()
for db in $DATABASES; do
  dir="$OUT/$db"
  mkdir -p "$dir"
  case $db in
    sqlite) dbline="  tollgate_database_path: $ROOT/$dir/tollgate.db" ;;
    postgres)
      if ! psql "$PG_URL/postgres" -qc 'SELECT 1' >/dev/null 2>&1; then log "PostgreSQL unavailable: skipped"; continue; fi
      PG_DB="tg_bench_$$"
      psql "$PG_URL/postgres" -qc "CREATE DATABASE $PG_DB" >/dev/null
      dbline="  database_url: $PG_URL/$PG_DB" ;;
  esac
  cat > "$dir/tollgate.yaml" <<YAML
model_list:
  - model_name: bench-model
    litellm_params: { model: openai/bench-model, api_base: "http://$MOCK/v1", api_key: sk-mock }
    model_info: { input_cost_per_token: $PRICE, output_cost_per_token: $PRICE }
general_settings:
  master_key: $MASTER_KEY
  tollgate_spend_journal_path: $ROOT/$dir/spend.journal
$dbline
YAML
  log "$db: starting tollgate on core $GATEWAY_CORE"
  (cd "$dir" && exec taskset -c "$GATEWAY_CORE" "$ROOT/$BIN/tollgate" --config tollgate.yaml \
    --host 127.0.0.1 --port 0 --num_workers 1 > tollgate.log 2>&1) &
  GW_PID=$!
  PIDS="$PIDS $GW_PID"
  GW=$(wait_listening "$dir/tollgate.log")
  sleep 0.5
  GW_PID=$(pgrep -f "tollgate --config tollgate.yaml" | head -n1 || echo "$GW_PID")
  KEY=$(curl -sf "http://$GW/key/generate" -H "Authorization: Bearer $MASTER_KEY" \
    -d '{"max_budget": 1000000, "rpm_limit": 100000000, "tpm_limit": 100000000000, "max_parallel_requests": 100000, "key_alias": "bench"}' | jq -r .key)
  idle=$(rss_mb "$GW_PID")
  log "$db: master key, then virtual key (budget + limits + spend)"
  $BENCH load --label "$db-master-rate" --out "$dir/master-rate.json" --url "http://$GW/v1/chat/completions" \
    --api-key "$MASTER_KEY" --rate "$RATE" --connections "$RATE_CONNECTIONS" "${COMMON[@]}" >/dev/null
  $BENCH load --label "$db-key-rate" --out "$dir/key-rate.json" --url "http://$GW/v1/chat/completions" \
    --api-key "$KEY" --rate "$RATE" --connections "$RATE_CONNECTIONS" "${COMMON[@]}" >/dev/null
  $BENCH load --label "$db-master-sat" --out "$dir/master-sat.json" --url "http://$GW/v1/chat/completions" \
    --api-key "$MASTER_KEY" --connections "$CONNECTIONS" "${COMMON[@]}" >/dev/null
  $BENCH load --label "$db-key-sat" --out "$dir/key-sat.json" --url "http://$GW/v1/chat/completions" \
    --api-key "$KEY" --connections "$CONNECTIONS" "${COMMON[@]}" >/dev/null
  before=$(rss_mb "$GW_PID")
  spent_before=$(curl -sf "http://$GW/key/info?key=$KEY" -H "Authorization: Bearer $MASTER_KEY" | jq .info.spend)
  log "$db: sustained saturation with the virtual key, ${SUSTAIN}s"
  $BENCH load --label "$db-sustain" --out "$dir/sustain.json" --url "http://$GW/v1/chat/completions" \
    --api-key "$KEY" --connections "$CONNECTIONS" --duration "${SUSTAIN}s" --warmup 0s >/dev/null
  after=$(rss_mb "$GW_PID")
  buffered=$(curl -s "http://$GW/health/readiness" | jq .spend_rows_buffered)
  sleep 2
  spent_after=$(curl -sf "http://$GW/key/info?key=$KEY" -H "Authorization: Bearer $MASTER_KEY" | jq .info.spend)
  cost=$(curl -s "http://$GW/spend/logs?api_key=$KEY&limit=1" -H "Authorization: Bearer $MASTER_KEY" | jq '.[0].spend')
  hwm=$(hwm_mb "$GW_PID")
  kill "$GW_PID" 2>/dev/null || true
  wait "$GW_PID" 2>/dev/null || true
  case $db in
    sqlite) total_rows=$(sqlite3 "$dir/tollgate.db" 'SELECT COUNT(*) FROM tg_spend_logs') ;;
    postgres) total_rows=$(psql "$PG_URL/$PG_DB" -tAc 'SELECT COUNT(*) FROM tg_spend_logs') ;;
  esac
  j() { jq -r "$2" "$dir/$1.json"; }
  sustain_rows=$(python3 -c "print(round(($spent_after - $spent_before) / $cost))")
  ROWS+=("| $db | master key | $(j master-rate .latency_ms.p50) | $(j master-rate .latency_ms.p99) | $(j master-sat .rps) | | |")
  ROWS+=("| $db | virtual key + budget + limits + spend | $(j key-rate .latency_ms.p50) | $(j key-rate .latency_ms.p99) | $(j key-sat .rps) | | |")
  ROWS+=("| $db | sustained ${SUSTAIN}s, virtual key | | $(j sustain .latency_ms.p99) | $(j sustain .rps) | $(python3 -c "print(round($sustain_rows / $SUSTAIN))") rows/s ($sustain_rows rows; $total_rows rows in all; $buffered buffered at the end) | RSS idle $idle, before $before, after $after, peak $hwm MB |")
  errors=$(jq -s 'map(.errors.total) | add' "$dir"/*.json)
  ROWS+=("| $db | errors in all runs | | | | $errors | |")
done

{
  echo "# Keys, spend and limits on — $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD)"
  echo
  echo "Gateway pinned to core $GATEWAY_CORE (\`--num_workers 1\`), mock and load generator on core $LOAD_CORE. Fixed rate $RATE req/s"
  echo "($RATE_CONNECTIONS connections) and saturation ($CONNECTIONS connections), ${DURATION}s each after ${WARMUP}s warm-up."
  echo
  echo "| database | caller | p50 ms @$RATE/s | p99 ms @$RATE/s | saturation req/s | spend rows | memory |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
} > "$OUT/report.md"
cp "$OUT/report.md" bench/out/accounts-latest.md
cat "$OUT/report.md"
