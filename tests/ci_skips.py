"""Under CI (CI set and not "0" or "false", as .ci/run exports it), a skipped test is a failed test,
unless ALLOWED names it with the reason CI cannot run it.

A skip outside CI says what is missing here (no ../shared, no TensorFlow, not root); in CI every
prerequisite is installed, so a skip there means a check silently did not run. conftest.py turns
such a skip into a failure where it happens: a test's report (setup, call or teardown) becomes
"failed" with the skip's reason, and a module that skips while being collected (a module-level
importorskip) becomes a collection error. Expected failures (xfail) are not skips.
"""

from __future__ import annotations

import fnmatch
import os
import platform
from dataclasses import dataclass


@dataclass(frozen=True)
class Allowed:
    """One skip CI may take."""

    nodeid: str
    """The test's node id, as pytest prints it (fnmatch wildcards allowed)."""
    reason: str
    """A piece of the skip's reason: the skip is allowed only for this reason."""
    why: str
    """Why CI cannot run it: said beside the skip in the summary."""
    machine: str = "*"
    """Where it may skip: platform.machine() (fnmatch wildcards allowed)."""


#: Skips CI may take, each with the reason. Keep it short: every entry is a check CI never runs.
ALLOWED: tuple[Allowed, ...] = (
    Allowed("tests/runtime/test_classifier.py::test_every_installed_backend_gives_the_same_answer",
            "one interpreter backend installed",
            "the arm64 lane's guest installs the runtime alone (ai-edge-litert, no TensorFlow), "
            "so it has no second interpreter; on x86 CI both are installed and compared",
            machine="aarch64"),
    Allowed("tests/models/test_shipped_models.py::test_every_installed_backend_gives_the_same_answer*",
            "one interpreter backend installed",
            "the same, should the arm64 lane's guest run this file", machine="aarch64"),
)


def under_ci(env=os.environ) -> bool:
    return env.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_reason(report) -> str:
    """The reason pytest gives for a skipped report."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr)
    return reason.removeprefix("Skipped: ")


def allowed(nodeid: str, reason: str, allow=ALLOWED, machine: str | None = None) -> Allowed | None:
    """The entry allowing this skip here (or on `machine`), or None."""
    machine = machine or platform.machine()
    for entry in allow:
        if fnmatch.fnmatchcase(nodeid, entry.nodeid) and entry.reason in reason and \
                fnmatch.fnmatchcase(machine, entry.machine):
            return entry
    return None


def check(report, allow=ALLOWED) -> None:
    """Make `report` (a test's or a collector's) a failure if it is a skip CI does not allow."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report)
    entry = allowed(report.nodeid, reason, allow)
    if entry is not None:
        # Said in the short summary (-ra) beside the skip itself.
        report.longrepr = (*report.longrepr[:2], f"{reason} [allowed in CI: {entry.why}]") \
            if isinstance(report.longrepr, tuple) else report.longrepr
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI, which must run every test: {reason}\n"
                       f"(install what it needs in CI, or add it with the reason to ALLOWED in "
                       f"tests/ci_skips.py)")
