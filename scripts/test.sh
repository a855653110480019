#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit + integration tests (real binaries, mock upstream, SQLite,
# PostgreSQL), and the official OpenAI Python SDK against the gateway.
# With TOLLGATE_REQUIRE_SERVICES=1 (CI), tests that need PostgreSQL/Python fail instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo build (binaries used by integration tests)"
cargo build --workspace --locked --bins

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
