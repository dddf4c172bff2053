#!/usr/bin/env bash
# Install provaudit with its test, ML and Ray extras into .venv-test, then lint and run the whole test suite.
# Prefers the CPU build of torch 2.13.0 where this machine's pip can find it (no multi-GB CUDA download).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${PROVAUDIT_TEST_VENV:-.venv-test}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip >/dev/null
python -m pip install -q "torch==2.13.0" 2>/dev/null || echo "note: torch 2.13.0 not available here; pip will pick a torch>=2.2,<3"
python -m pip install -q -e ".[ml,test,ray]"
ruff check audit tests benchmarks scripts
mypy
set +e
python -m pytest -q "$@"
rc=$?
set -e
[ "$rc" -eq 5 ] && { echo "pytest collected no tests" >&2; exit 1; }
exit "$rc"
