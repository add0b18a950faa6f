"""Under CI a skip is a failure: tiny test files run through the real tests/run.sh (in a copy of
the checkout whose pip and kiosk-package steps are stand-ins), with and without CI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest

import ci_skips
from conftest import REPO

PROBE = '''
import pytest

def test_passes():
    pass

def test_skips_when_called():
    pytest.skip("the widget is not installed")

@pytest.fixture
def missing():
    pytest.skip("no widget data here")

def test_skips_in_its_fixture(missing):
    pass

@pytest.mark.skipif(True, reason="marked to skip")
def test_marked():
    pass

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_to_fail():
    assert False
'''


@pytest.fixture
def checkout(tmp_path):
    """A checkout holding the real tests/run.sh, conftest.py and ci_skips.py, whose
    .venv/bin/python runs this interpreter (pip does nothing: everything is installed) and whose
    ci/kiosk-deps.sh exits $KIOSK_DEPS_RC (0 unless set)."""
    tests = tmp_path / "tests"
    tests.mkdir()
    for name in ("run.sh", "conftest.py", "ci_skips.py"):
        shutil.copy(REPO / "tests" / name, tests / name)
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "kiosk-deps.sh").write_text('echo kiosk-deps ran\nexit "${KIOSK_DEPS_RC:-0}"\n')
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    python = tmp_path / ".venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\n[ "$1 $2" = "-m pip" ] && exit 0\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return tmp_path


def _run_sh(checkout, test_text: str, ci: str | None, **env):
    """tests/run.sh on tests/test_probe.py holding `test_text`, and a file of one passing test
    (a run in which no test ran fails anyway)."""
    (checkout / "tests" / "test_probe.py").write_text(test_text)
    (checkout / "tests" / "test_ok.py").write_text("def test_ok():\n    pass\n")
    args = ["-p", "no:cacheprovider", "-q", "tests/test_probe.py", "tests/test_ok.py"]
    environ = {k: v for k, v in os.environ.items() if k != "CI"}
    environ.update(env)
    if ci is not None:
        environ["CI"] = ci
    return subprocess.run(["bash", str(checkout / "tests" / "run.sh"), *args], env=environ,
                          capture_output=True, text=True, timeout=120)


def test_skips_pass_outside_ci_and_turn_run_sh_red_under_it(checkout):
    outside = _run_sh(checkout, PROBE, None)
    assert outside.returncode == 0, outside.stdout[-3000:]
    assert "2 passed, 3 skipped, 1 xfailed" in outside.stdout, outside.stdout[-3000:]
    assert _run_sh(checkout, PROBE, "0").returncode == 0
    under = _run_sh(checkout, PROBE, "1")
    assert under.returncode == 1, under.stdout[-3000:]
    # Each skip is reported as a failure (as an error where it happened in setup: the fixture's
    # and the marker's), with its reason;
    # the passing test and the expected failure are untouched.
    assert "1 failed, 2 passed, 1 xfailed, 2 errors" in under.stdout, under.stdout[-3000:]
    for reason in ("the widget is not installed", "no widget data here", "marked to skip"):
        assert f"skipped under CI, which must run every test: {reason}" in under.stdout


def test_a_module_skipped_while_collected_turns_run_sh_red_under_ci(checkout):
    module = 'import pytest\npytest.importorskip("no_such_module_edge_fer")\n\ndef test_never():\n    pass\n'
    assert _run_sh(checkout, module, None).returncode == 0
    under = _run_sh(checkout, module, "true")
    assert under.returncode != 0 and "skipped under CI" in under.stdout, under.stdout[-3000:]


@pytest.mark.skipif(os.geteuid() != 0, reason="run.sh installs the kiosk packages only as root")
def test_a_failing_kiosk_package_install_is_fatal_as_root(checkout):
    failed = _run_sh(checkout, "", None, KIOSK_DEPS_RC="100")
    assert failed.returncode == 1 and "kiosk-deps ran" in failed.stdout
    assert "ci/kiosk-deps.sh failed" in failed.stderr and "passed" not in failed.stdout
    assert _run_sh(checkout, "", None).returncode == 0


def test_ci_runs_the_suite_with_ci_set():
    ci = (REPO / ".ci" / "run").read_text()
    assert "export CI=1" in ci and ci.index("export CI=1") < ci.index("bash tests/run.sh")


def _report(nodeid, reason):
    return SimpleNamespace(nodeid=nodeid, skipped=True, outcome="skipped",
                           longrepr=("tests/x.py", 3, f"Skipped: {reason}"))


def test_only_an_allowed_skip_for_its_reason_passes():
    allow = (ci_skips.Allowed("tests/test_x.py::test_gpu*", "no GPU", "CI machines have none"),)
    ok = _report("tests/test_x.py::test_gpu_speed", "no GPU here")
    ci_skips.check(ok, allow)
    assert ok.outcome == "skipped" and "allowed in CI: CI machines have none" in ok.longrepr[2]
    for report in (_report("tests/test_x.py::test_gpu_speed", "no driver"),
                   _report("tests/test_x.py::test_other", "no GPU here")):
        ci_skips.check(report, allow)
        assert report.outcome == "failed"


def test_every_allowed_skip_says_why_and_names_a_test_that_exists():
    for entry in ci_skips.ALLOWED:
        assert re.fullmatch(r"tests/\w+/test_\w+\.py::test_.+", entry.nodeid), entry
        assert entry.reason and len(entry.why) > 20, entry
        path, test = entry.nodeid.split("::")
        assert f"def {test.rstrip('*')}" in (REPO / path).read_text(), entry


def test_the_backend_comparison_may_skip_on_the_arm64_guest_only():
    nodeid = "tests/runtime/test_classifier.py::test_every_installed_backend_gives_the_same_answer"
    reason = "one interpreter backend installed (litert): nothing to compare it with"
    assert ci_skips.allowed(nodeid, reason, machine="aarch64")
    assert not ci_skips.allowed(nodeid, reason, machine="x86_64")
