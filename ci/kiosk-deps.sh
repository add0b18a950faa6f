#!/bin/bash
# CI dependencies of the kiosk tests (tests/kiosk/); called from .ci/run as root.
#   chromium, chromium-driver   the page in headless Chromium (Selenium)
#   systemd                     systemd-analyze verify / security on the units
#   python3-venv, -setuptools   install.sh builds a venv from /usr/bin/python3 into a DESTDIR
#   curl, util-linux, shellcheck  the kiosk launcher's page check; setpriv; lint of the scripts
#   mosquitto, mosquitto-clients  the MQTT broker tests/kiosk/test_mqtt.py starts (never as a service)
# The Python side (prometheus-client, systemd-watchdog, selenium) is in setup.cfg
# (install_requires and the dev extra), installed with the package by tests/run.sh.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$HERE/apt-get.sh" update
"$HERE/apt-get.sh" install -y --no-install-recommends \
    chromium chromium-driver systemd shellcheck curl util-linux mosquitto mosquitto-clients \
    python3 python3-venv python3-setuptools python3-wheel
