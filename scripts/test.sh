#!/usr/bin/env bash
# Install the test extra into ./.venv and run the whole suite.
# Needs only Python 3.11+; PostgreSQL, openssl, mosquitto and RabbitMQ tests skip
# without them on a developer machine and must run under CI=true.
# Arguments go to pytest: `bash scripts/test.sh -m "not slow and not postgres"`
# is the fast subset (markers in pyproject.toml); CI (.ci/run) runs everything.
set -euo pipefail
cd "$(dirname "$0")/.."

# Under CI=true the broker, HSM and browser tests must run, never skip (tests/support/__init__.py
# skip_or_fail): install Debian's brokers, SoftHSM2 and chromium when they are missing. A failed install
# fails the run. Nothing is done when they are present.
if [ "${CI:-}" = "true" ]; then
    missing=()
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null \
        || missing+=(rabbitmq-server)
    [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing+=(mosquitto)
    command -v mosquitto_pub >/dev/null || missing+=(mosquitto-clients)
    # The console's browser test (tests/test_console_browser.py): Debian's chromium and its driver.
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || [ -x /usr/lib/chromium/chromedriver ] || missing+=(chromium-driver)
    # PKCS#11 custody tests (tests/test_hsm.py) initialise a SoftHSM2 token in a temp dir.
    command -v softhsm2-util >/dev/null || missing+=(softhsm2)
    command -v curl >/dev/null || missing+=(curl)  # the independent EST client (tests/test_est_tls.py)
    command -v openssl >/dev/null || missing+=(openssl)
    if [ "${#missing[@]}" -gt 0 ]; then
        SUDO=()
        [ "$(id -u)" = 0 ] || SUDO=(sudo -n)
        echo "CI=true: installing ${missing[*]}" >&2
        "${SUDO[@]}" apt-get update -qq
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}"
    fi
fi
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]" 2>&1 \
    | grep -v "^WARNING: Location" || true
# Screenshots of the console tests land in test-artifacts/console/ (PKI_TEST_ARTIFACTS moves them).
exec .venv/bin/python -m pytest "$@"
