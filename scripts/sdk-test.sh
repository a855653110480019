#!/usr/bin/env bash
# The official OpenAI and Anthropic Python SDKs against a running tollgate: runs tests/python with pytest.
#
#   TOLLGATE_BASE_URL=http://127.0.0.1:4000 TOLLGATE_KEY=sk-... scripts/sdk-test.sh [pytest args]
#
# The gateway must serve the models tests/python/test_openai_sdk.py names (crates/tollgate/tests/sdk.rs starts
# one with the mock upstream and runs this script). The virtualenv is created once under target/sdk-venv
# (override with TOLLGATE_SDK_VENV) and reused; it gets `openai`, `anthropic` and `pytest` from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${TOLLGATE_BASE_URL:?set TOLLGATE_BASE_URL to the gateway, e.g. http://127.0.0.1:4000}"
: "${TOLLGATE_KEY:?set TOLLGATE_KEY to the gateway master key}"

PYTHON="${PYTHON:-python3}"
VENV="${TOLLGATE_SDK_VENV:-target/sdk-venv}"

if ! "$VENV/bin/python" -c 'import openai, anthropic, pytest' >/dev/null 2>&1; then
  echo "== creating $VENV (openai, anthropic, pytest)"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check 'openai>=1.40,<3' 'anthropic>=0.40,<1' 'pytest>=8'
fi
"$VENV/bin/python" -c 'import openai, anthropic, sys; print("openai", openai.__version__, "anthropic", anthropic.__version__, "python", sys.version.split()[0])'

set +e
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/python "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "sdk-test: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$rc"
