#!/bin/bash
# CI dependencies of the kiosk tests (tests/test_kiosk_*.py); called from .ci/run as root.
#   chromium, chromium-driver   the page in headless Chromium (Selenium)
#   systemd                     systemd-analyze verify / security on the units
#   python3-venv, -setuptools   install.sh builds a venv from /usr/bin/python3 into a DESTDIR
#   curl, util-linux, shellcheck  the kiosk launcher's page check; setpriv; lint of the scripts
# The Python side (prometheus-client, systemd-watchdog, selenium) is in setup.cfg
# (install_requires and the dev extra); PYTHON names the interpreter of the test environment.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    chromium chromium-driver systemd shellcheck curl util-linux \
    python3 python3-venv python3-setuptools python3-wheel
"${PYTHON:-python3}" -m pip install --disable-pip-version-check \
    "prometheus-client>=0.17" "systemd-watchdog>=1.0,<2" "selenium>=4.11"
