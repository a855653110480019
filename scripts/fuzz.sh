#!/usr/bin/env bash
# Run every fuzz target in fuzz/ for a bounded time: scripts/fuzz.sh [seconds-per-target, default 60] [target...]
# Needs the nightly toolchain (libFuzzer instrumentation); installs cargo-fuzz when it is missing. Corpora grow
# in fuzz/corpus/<target> (seeded from fuzz/seeds/<target>, with fuzz/dicts/<target>.dict); a crash leaves its input in fuzz/artifacts/<target>/
# and makes the script exit non-zero after the remaining targets ran. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-60}"
shift || true
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
  echo "usage: scripts/fuzz.sh [seconds-per-target] [target...]" >&2
  exit 2
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# A target dir of its own, so the main build's artifacts are not rebuilt with fuzzing flags.
export CARGO_TARGET_DIR="$PWD/target"

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "== building ${targets[*]}"
if [ "$#" -gt 0 ]; then
  for t in "${targets[@]}"; do
    cargo +nightly fuzz build "$t"
  done
else
  cargo +nightly fuzz build
fi

failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  dict=()
  [ -f "dicts/$t.dict" ] && dict=("-dict=dicts/$t.dict")
  echo "== fuzzing $t for ${secs}s"
  before=$(find "artifacts/$t" -type f | sort)
  # `-timeout`: an input taking longer than 10 s is a hang and reported like a crash.
  if ! cargo +nightly fuzz run "$t" "corpus/$t" "${seeds[@]}" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 "${dict[@]}"; then
    failed+=("$t")
  fi
  new=$(comm -13 <(echo "$before") <(find "artifacts/$t" -type f | sort) | sed '/^$/d')
  if [ -n "$new" ]; then
    echo "!! $t: crash/hang input(s) written to:" >&2
    sed "s|^|   $PWD/|" <<<"$new" >&2
    [[ " ${failed[*]} " == *" $t "* ]] || failed+=("$t")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "!! fuzzing found problems in: ${failed[*]}" >&2
  echo "   reproduce: cd fuzz && cargo +nightly fuzz run <target> artifacts/<target>/<file>" >&2
  exit 1
fi
echo "== no crashes"
