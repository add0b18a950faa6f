""".ci/run starts the arm64 lane beside the test suite and fails when either fails; the apt-get
the two share runs one at a time. The real .ci/run and ci/apt-get.sh, in a copy of the checkout
whose tests/run.sh and ci/arm64.sh are stand-ins that record when they ran."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from conftest import REPO

STAND_IN = '''#!/bin/bash
echo "$(date +%s.%N) start" >>"$STAMPS/{name}"
echo "{name} says hello"
sleep "${{SLEEP:-2}}"
echo "$(date +%s.%N) end" >>"$STAMPS/{name}"
exit "${{{rc_var}:-0}}"
'''


@pytest.fixture
def checkout(tmp_path):
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    for folder, name, rc_var in (("tests", "run.sh", "TESTS_RC"), ("ci", "arm64.sh", "LANE_RC")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_text(STAND_IN.format(name=name, rc_var=rc_var))
    (tmp_path / "stamps").mkdir()
    return tmp_path


def _ci(checkout, **env):
    environ = dict(os.environ, STAMPS=str(checkout / "stamps"), TMPDIR=str(checkout), **env)
    return subprocess.run(["bash", str(checkout / ".ci" / "run")], env=environ,
                          capture_output=True, text=True, timeout=60)


def _span(checkout, name):
    start, end = (float(line.split()[0]) for line in (checkout / "stamps" / name).read_text().splitlines())
    return start, end


def test_the_lane_runs_beside_the_tests_and_its_log_follows_theirs(checkout):
    t0 = time.monotonic()
    done = _ci(checkout)
    took = time.monotonic() - t0
    assert done.returncode == 0, done.stdout + done.stderr
    tests, lane = _span(checkout, "run.sh"), _span(checkout, "arm64.sh")
    # Side by side: each started before the other ended, and the pair took about one sleep.
    assert tests[0] < lane[1] and lane[0] < tests[1]
    assert took < 3.8, took
    out = done.stdout
    # The lane's output comes whole, after the tests' line, not interleaved with it.
    assert out.index("run.sh says hello") < out.index("----- ci/arm64.sh") < out.index("arm64.sh says hello")
    assert "tests/run.sh: exit 0; ci/arm64.sh: exit 0" in out


@pytest.mark.parametrize("env, expected", [({"TESTS_RC": "1"}, "exit 1; ci/arm64.sh: exit 0"),
                                           ({"LANE_RC": "2"}, "exit 0; ci/arm64.sh: exit 2")])
def test_either_failing_fails_ci_and_both_still_run(checkout, env, expected):
    done = _ci(checkout, SLEEP="0", **env)
    assert done.returncode == 1
    assert f"tests/run.sh: {expected}" in done.stdout
    assert (checkout / "stamps" / "run.sh").exists() and (checkout / "stamps" / "arm64.sh").exists()


def test_ci_apt_get_runs_one_at_a_time(tmp_path):
    """Two ci/apt-get.sh at once (the lane's and ci/kiosk-deps.sh's): the second waits for the
    first instead of failing on apt's lock. apt-get here is a stand-in on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(
        '#!/bin/bash\necho "$(date +%s.%N) start $*" >>"$STAMPS/apt"\nsleep 1\n'
        'echo "$(date +%s.%N) end" >>"$STAMPS/apt"\n')
    (bin_dir / "apt-get").chmod(0o755)
    env = dict(os.environ, STAMPS=str(tmp_path), PATH=f"{bin_dir}:{os.environ['PATH']}")
    both = [subprocess.Popen(["bash", str(REPO / "ci" / "apt-get.sh"), "install", name], env=env)
            for name in ("chromium", "debootstrap")]
    assert [p.wait(timeout=30) for p in both] == [0, 0]
    lines = (tmp_path / "apt").read_text().splitlines()
    # start, end, start, end: never two starts in a row; apt-get got its arguments and the lock timeout.
    assert [line.split()[1] for line in lines] == ["start", "end", "start", "end"]
    assert all("-o DPkg::Lock::Timeout=600 install" in line for line in lines[::2])
