#!/bin/bash
# apt-get, one at a time: .ci/run starts ci/arm64.sh beside tests/run.sh (which runs
# ci/kiosk-deps.sh), and two apt-get processes at once fail on apt's and dpkg's locks instead of
# waiting for each other. Used by both scripts in place of apt-get.
exec flock -w 1800 /tmp/edge-fer-apt.lock apt-get -o DPkg::Lock::Timeout=600 "$@"
