#!/usr/bin/env bash
# Installs edge-fer with every extra into .venv and runs the whole test suite.
# README.md gives this as the test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[convert,mqtt,dev]'
# System packages some tests drive (headless Chromium for the kiosk page, the Mosquitto broker
# of the MQTT tests). As root (CI) they must install; without root those tests skip, which fails
# the run under CI (tests/ci_skips.py).
if [ -f ci/kiosk-deps.sh ]; then
    if [ "$(id -u)" -eq 0 ]; then
        bash ci/kiosk-deps.sh || { echo "tests/run.sh: ci/kiosk-deps.sh failed (see above)" >&2; exit 1; }
    else
        echo "not root: kiosk system packages not installed, those tests will skip"
    fi
fi
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest's 5 means no test ran, which must fail here, not pass. Under CI (CI=1, as .ci/run
# sets it) a skipped test fails too, unless tests/ci_skips.py allows it with the reason.
exit $rc
