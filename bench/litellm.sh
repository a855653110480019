#!/usr/bin/env bash
# Optional comparison: the LiteLLM proxy on the gateway's core, against the same mock, same load.
# Results go to bench/out/litellm/litellm-*.json; run.sh (and this script, for the last run)
# merge them into the report. Options are environment variables:
#   DURATION=10 WARMUP=2 CONNECTIONS=64 LITELLM_RATE=20 STREAM_CHUNKS=5 LITELLM_COLDSTART_RUNS=3
#   GATEWAY_CORE=0 LOAD_CORE=1 LITELLM_VERSION= (pip pin, e.g. 1.74.0) SKIP_BUILD=1
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-64}
LITELLM_RATE=${LITELLM_RATE:-20}
STREAM_CHUNKS=${STREAM_CHUNKS:-5}
LITELLM_COLDSTART_RUNS=${LITELLM_COLDSTART_RUNS:-3}
GATEWAY_CORE=${GATEWAY_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
LITELLM_VERSION=${LITELLM_VERSION:-}
SKIP_BUILD=${SKIP_BUILD:-0}
MASTER_KEY=sk-bench-master

VENV=bench/out/litellm-venv
OUT=bench/out/litellm
mkdir -p "$OUT"
rm -f "$OUT"/litellm-*.json
export RUST_BACKTRACE=0
# No network but the package registries: use the bundled model cost map, send no telemetry.
export LITELLM_LOCAL_MODEL_COST_MAP=True
export LITELLM_TELEMETRY=False

BIN=target/release
BENCH="taskset -c $LOAD_CORE $BIN/tollgate-bench"
log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

if [ ! -x "$VENV/bin/litellm" ]; then
  log "installing litellm[proxy] into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "litellm[proxy]${LITELLM_VERSION:+==$LITELLM_VERSION}"
fi
VERSION=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')
log "litellm $VERSION"
printf '{"version":"%s","date":"%s"}\n' "$VERSION" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$OUT/litellm-meta.json"

if [ "$SKIP_BUILD" != 1 ]; then
  cargo build --release -p tollgate-mock -p tollgate-bench
fi

MOCK_PID=""
LL_PID=""
cleanup() {
  for pid in $LL_PID $MOCK_PID; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

taskset -c "$LOAD_CORE" "$BIN/tollgate-mock" --host 127.0.0.1 --port 0 --workers 1 > "$OUT/mock.log" 2>&1 &
MOCK_PID=$!
MOCK=""
for _ in $(seq 500); do
  MOCK=$(grep -o 'listening on http://[^ /]*' "$OUT/mock.log" 2>/dev/null | sed 's|.*http://||') || true
  [ -n "$MOCK" ] && break
  sleep 0.02
done
[ -n "$MOCK" ] || { log "mock did not start"; cat "$OUT/mock.log" >&2; exit 1; }
log "mock at http://$MOCK"

STREAM_MODEL="bench-model@chunks=$STREAM_CHUNKS,chunk_interval_ms=0"
cat > "$OUT/litellm.yaml" <<EOF
model_list:
  - model_name: bench-model
    litellm_params: { model: openai/bench-model, api_base: "http://$MOCK/v1", api_key: sk-mock }
  - model_name: bench-stream
    litellm_params: { model: "openai/$STREAM_MODEL", api_base: "http://$MOCK/v1", api_key: sk-mock }
general_settings: { master_key: $MASTER_KEY }
EOF

LITELLM_CMD=(taskset -c "$GATEWAY_CORE" "$VENV/bin/litellm" --config "$OUT/litellm.yaml"
  --host 127.0.0.1 --num_workers 1)

PORT=$(free_port)
log "starting LiteLLM proxy on core $GATEWAY_CORE, port $PORT"
"${LITELLM_CMD[@]}" --port "$PORT" > "$OUT/litellm.log" 2>&1 &
LL_PID=$!
URL=http://127.0.0.1:$PORT
up=0
for _ in $(seq 1200); do
  if curl -fsS -o /dev/null "$URL/health/liveliness" 2>/dev/null; then
    up=1
    break
  fi
  kill -0 "$LL_PID" 2>/dev/null || break
  sleep 0.1
done
if [ "$up" != 1 ]; then
  log "LiteLLM did not come up:"
  tail -n 30 "$OUT/litellm.log" >&2
  exit 1
fi
sleep 2
$BIN/tollgate-bench rss --pid "$LL_PID" --label idle --out "$OUT/litellm-rss-idle.json" > /dev/null
if pgrep -P "$LL_PID" > /dev/null; then
  log "note: LiteLLM has child processes; RSS covers the main process only"
fi

# One request first: LiteLLM does lazy set-up on the first call.
curl -fsS -o /dev/null "$URL/v1/chat/completions" -H "Authorization: Bearer $MASTER_KEY" \
  -H 'content-type: application/json' \
  -d '{"model":"bench-model","messages":[{"role":"user","content":"hi"}],"max_tokens":16}' ||
  { log "first request through LiteLLM failed"; tail -n 30 "$OUT/litellm.log" >&2; exit 1; }

COMMON=(--url "$URL/v1/chat/completions" --api-key "$MASTER_KEY" --duration "${DURATION}s"
  --warmup "${WARMUP}s" --timeout 60s)
log "saturation, $CONNECTIONS connections"
$BENCH load "${COMMON[@]}" --label litellm-sat --connections "$CONNECTIONS" \
  --out "$OUT/litellm-sat.json" > /dev/null || log "saturation run failed"
log "fixed rate $LITELLM_RATE req/s"
$BENCH load "${COMMON[@]}" --label litellm-rate --rate "$LITELLM_RATE" --connections 32 \
  --out "$OUT/litellm-rate.json" > /dev/null || log "rate run failed"
log "streaming at $LITELLM_RATE req/s"
$BENCH load "${COMMON[@]}" --label litellm-stream --model bench-stream --stream \
  --rate "$LITELLM_RATE" --connections 32 --out "$OUT/litellm-stream.json" > /dev/null ||
  log "stream run failed"
$BIN/tollgate-bench rss --pid "$LL_PID" --label peak --out "$OUT/litellm-rss-peak.json" > /dev/null
kill "$LL_PID" 2>/dev/null || true
wait "$LL_PID" 2>/dev/null || true
LL_PID=""

log "cold start x $LITELLM_COLDSTART_RUNS"
PORT=$(free_port)
$BENCH coldstart --runs "$LITELLM_COLDSTART_RUNS" --url "http://127.0.0.1:$PORT" \
  --timeout 120s --poll-interval 5ms --label litellm --out "$OUT/litellm-coldstart.json" -- \
  "${LITELLM_CMD[@]}" --port "$PORT" > /dev/null || log "cold start failed"

# Merge into the last run.sh report, if there is one.
if [ -d bench/out/last-run ]; then
  cp "$OUT"/litellm-*.json bench/out/last-run/
  $BIN/tollgate-bench report --dir bench/out/last-run --out bench/out/last-run/report.md > /dev/null
  cp bench/out/last-run/report.md bench/out/latest.md
  log "merged into bench/out/last-run/report.md and bench/out/latest.md"
fi
$BIN/tollgate-bench report --dir "$OUT" --out "$OUT/report.md"
