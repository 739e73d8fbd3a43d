#!/usr/bin/env bash
# Install the test extra into ./.venv and run the whole suite.
# Needs only Python 3.11+; PostgreSQL, openssl and mosquitto tests skip
# without them on a developer machine and must run under CI=true.
# Arguments go to pytest: `bash scripts/test.sh -m "not slow and not postgres"`
# is the fast subset (markers in pyproject.toml); CI (.ci/run) runs everything.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]" 2>&1 \
    | grep -v "^WARNING: Location" || true
exec .venv/bin/python -m pytest "$@"
