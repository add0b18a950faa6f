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
# of the MQTT tests); skipped without root.
if [ -f ci/kiosk-deps.sh ]; then bash ci/kiosk-deps.sh || echo "kiosk system packages not installed: those tests will skip"; fi
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest's 5 means no test ran, which must fail here, not pass.
exit $rc
