#!/usr/bin/env bash
# Provider translation benchmark: the gateway's cost of speaking Anthropic's Messages API (OpenAI chat in,
# Anthropic out, and back) next to the OpenAI pass-through, per request and per stream chunk. Both deployments
# point at the same mock upstream; the gateway is pinned to one core and its CPU time is read from
# /proc/PID/stat around fixed-rate runs, so the difference is the translation's CPU per request (complete) and
# per chunk (streams of CHUNKS chunks), each case run twice in A-B-B-A order and averaged. Also saturation runs
# (the mock and the load generator share LOAD_CORE, so saturation can be bound by the mock's side of a
# format, not the gateway). Writes bench/out/providers-latest.md.
# Options (environment variables):
#   DURATION=10 WARMUP=2 RATE=1000 STREAM_RATE=200 CHUNKS=100 CONNECTIONS=64 RATE_CONNECTIONS=32
#   GATEWAY_CORE=0 LOAD_CORE=1 SKIP_BUILD=1
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
RATE=${RATE:-1000}
STREAM_RATE=${STREAM_RATE:-200}
CHUNKS=${CHUNKS:-100}
CONNECTIONS=${CONNECTIONS:-64}
RATE_CONNECTIONS=${RATE_CONNECTIONS:-32}
GATEWAY_CORE=${GATEWAY_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
MASTER_KEY=sk-bench-master

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-bench/out/providers-$STAMP}
mkdir -p "$OUT"
OUT_ABS=$ROOT/$OUT
case $OUT in /*) OUT_ABS=$OUT ;; esac

BIN=target/release
BENCH="taskset -c $LOAD_CORE $BIN/tollgate-bench"
log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

if [ "$SKIP_BUILD" != 1 ]; then
  log "cargo build --release -p tollgate -p tollgate-mock -p tollgate-bench"
  cargo build --release -p tollgate -p tollgate-mock -p tollgate-bench
fi

MOCK_PID=""
GW_PID=""
cleanup() {
  for pid in $GW_PID $MOCK_PID; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_listening() {
  local logfile=$1 pid=$2 deadline=$((SECONDS + 30)) addr
  while [ $SECONDS -lt $deadline ]; do
    addr=$(grep -o 'listening on http://[^ /]*' "$logfile" 2>/dev/null | head -n1 | sed 's|.*http://||') || true
    if [ -n "$addr" ]; then echo "$addr"; return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  log "no listening line in $logfile:"; tail -n 20 "$logfile" >&2
  return 1
}
# CPU time (user + system) of a process in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo none)
if [ "$COMMIT" != none ] && ! git diff --quiet HEAD 2>/dev/null; then COMMIT="$COMMIT+dirty"; fi

log "starting tollgate-mock on core $LOAD_CORE"
taskset -c "$LOAD_CORE" "$BIN/tollgate-mock" --host 127.0.0.1 --port 0 --workers 1 > "$OUT/mock.log" 2>&1 &
MOCK_PID=$!
MOCK=$(wait_listening "$OUT/mock.log" "$MOCK_PID")

cat > "$OUT/tollgate.yaml" <<EOF
model_list:
  - model_name: openai
    litellm_params: { model: "openai/gpt-4o-mini", api_base: "http://$MOCK/v1", api_key: sk-mock }
  - model_name: anthropic
    litellm_params: { model: "anthropic/claude-3-5-sonnet-20241022", api_base: "http://$MOCK", api_key: sk-mock }
  - model_name: openai-stream
    litellm_params: { model: "openai/gpt-4o-mini@chunks=$CHUNKS", api_base: "http://$MOCK/v1", api_key: sk-mock }
  - model_name: anthropic-stream
    litellm_params: { model: "anthropic/claude-3-5-sonnet@chunks=$CHUNKS", api_base: "http://$MOCK", api_key: sk-mock }
general_settings:
  master_key: $MASTER_KEY
  tollgate_database_path: $OUT_ABS/tollgate.db
  tollgate_spend_journal_path: $OUT_ABS/spend.journal
EOF
# The streamed answer must have CHUNKS pieces: a content of CHUNKS words.
WORDS=$(python3 -c "print(' '.join(['word'] * $CHUNKS))")
for m in openai anthropic; do
  printf '{"model":"%s","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16}' "$m" > "$OUT/$m.json"
  printf '{"model":"%s-stream","stream":true,"messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":%d}' "$m" $((CHUNKS * 2)) > "$OUT/$m-stream.json"
done

log "starting tollgate on core $GATEWAY_CORE"
taskset -c "$GATEWAY_CORE" "$BIN/tollgate" --config "$OUT/tollgate.yaml" --host 127.0.0.1 --port 0 --num_workers 1 \
  > "$OUT/tollgate.log" 2>&1 &
GW_PID=$!
GW=$(wait_listening "$OUT/tollgate.log" "$GW_PID")
# The complete cases answer the mock's default sentence; the stream cases run after them with a
# server-wide `content` knob of CHUNKS words, so each stream has CHUNKS content chunks.

COMMON=(--duration "${DURATION}s" --warmup "${WARMUP}s" --quiet)
# run NAME RATE: fixed-rate run; writes $OUT/NAME.rate.json and the gateway CPU µs per request.
run() {
  local name=$1 rate=$2 t0 t1
  t0=$(cpu_ticks "$GW_PID")
  $BENCH load --label "$name" --out "$OUT/$name.rate.json" --url "http://$GW/v1/chat/completions" \
    --api-key "$MASTER_KEY" --rate "$rate" --connections "$RATE_CONNECTIONS" --body-file "$OUT/$name.json" "${COMMON[@]}"
  t1=$(cpu_ticks "$GW_PID")
  jq -r --argjson t "$((t1 - t0))" --argjson hz "$TICK" --argjson w "$WARMUP" \
    '((.ok + .errors.total) * (.duration_s + $w) / .duration_s) as $n | ($t / $hz * 1e6 / $n * 10 | round / 10)' \
    "$OUT/$name.rate.json" > "$OUT/$name.cpu"
  $BENCH load --label "$name-sat" --out "$OUT/$name.sat.json" --url "http://$GW/v1/chat/completions" \
    --api-key "$MASTER_KEY" --connections "$CONNECTIONS" --body-file "$OUT/$name.json" "${COMMON[@]}"
}
# Each case runs twice in A-B-B-A order (the first runs of a fresh gateway are the slowest); the report gives
# the mean of the two CPU figures and the second run's latencies.
cpu_mean() { python3 -c "import sys; print('%.1f' % ((float(sys.argv[1]) + float(sys.argv[2])) / 2))" "$1" "$2"; }
abba() { # abba A B RATE
  local a=$1 b=$2 rate=$3
  log "$a"; run "$a" "$rate"; cp "$OUT/$a.cpu" "$OUT/$a.cpu1"
  log "$b"; run "$b" "$rate"; cp "$OUT/$b.cpu" "$OUT/$b.cpu1"
  log "$b (again)"; run "$b" "$rate"; cpu_mean "$(cat "$OUT/$b.cpu1")" "$(cat "$OUT/$b.cpu")" > "$OUT/$b.cpu"
  log "$a (again)"; run "$a" "$rate"; cpu_mean "$(cat "$OUT/$a.cpu1")" "$(cat "$OUT/$a.cpu")" > "$OUT/$a.cpu"
}
abba openai anthropic "$RATE"
curl -sf -X PUT "http://$MOCK/mock/faults" -d "{\"content\":\"$WORDS\"}" > /dev/null
abba openai-stream anthropic-stream "$STREAM_RATE"
curl -sf -X DELETE "http://$MOCK/mock/faults" > /dev/null

j() { jq -r "$2" "$OUT/$1.json"; }
diff_of() { python3 -c "import sys; print('%+.1f' % (float(sys.argv[1]) - float(sys.argv[2])))" "$1" "$2"; }
per_chunk() { python3 -c "import sys; print('%+.2f' % ((float(sys.argv[1]) - float(sys.argv[2])) / float(sys.argv[3])))" "$1" "$2" "$3"; }

{
  echo "# Provider translation benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $COMMIT"
  echo
  echo "Gateway pinned to core $GATEWAY_CORE (\`--num_workers 1\`, master key, spend to SQLite); mock and load generator on"
  echo "core $LOAD_CORE. Fixed rate $RATE req/s (streams: $STREAM_RATE req/s of $CHUNKS chunks) over $RATE_CONNECTIONS"
  echo "connections, saturation with $CONNECTIONS; ${DURATION}s after ${WARMUP}s warm-up. CPU = gateway user+system"
  echo "time per request over the fixed-rate run (warm-up included), from /proc."
  echo
  echo "| case | p50 ms | p99 ms | gateway CPU µs/request | saturation req/s | errors (rate / sat) |"
  echo "|---|---|---|---|---|---|"
  for c in openai anthropic openai-stream anthropic-stream; do
    echo "| $c | $(j "$c.rate" .latency_ms.p50) | $(j "$c.rate" .latency_ms.p99) | $(cat "$OUT/$c.cpu") | $(j "$c.sat" .rps) | $(j "$c.rate" .errors.total) / $(j "$c.sat" .errors.total) |"
  done
  echo
  echo "- Translation cost per complete request (anthropic − openai CPU): $(diff_of "$(cat "$OUT/anthropic.cpu")" "$(cat "$OUT/openai.cpu")") µs"
  echo "- Translation cost per stream chunk ((anthropic-stream − openai-stream CPU) / $CHUNKS): $(per_chunk "$(cat "$OUT/anthropic-stream.cpu")" "$(cat "$OUT/openai-stream.cpu")" "$CHUNKS") µs"
} > "$OUT/report.md"
cp "$OUT/report.md" bench/out/providers-latest.md
cat "$OUT/report.md"
