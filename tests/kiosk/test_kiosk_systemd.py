"""The shipped units and installer: systemd-analyze verify and security, install.sh into a DESTDIR
(idempotent, clean uninstall), shellcheck, and the kiosk launcher's wait for the page."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO
from edge_fer.cli import run as cli_run
from edge_fer.config import load_config
from edge_fer.sinks.server import ServerOptions, ServerSink
from kiosk_helpers import free_port

SYSTEMD = REPO / "systemd"
INSTALL = SYSTEMD / "install.sh"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
HOST_UNITS = Path("/usr/lib/systemd/system")
PYTHON = "/usr/bin/python3"
needs_analyze = pytest.mark.skipif(not SYSTEMD_ANALYZE or not HOST_UNITS.is_dir(),
                                   reason="systemd-analyze and the system units are absent: apt install systemd")


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def install(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DESTDIR": str(root), "PYTHON": PYTHON}
    p = run(["bash", str(INSTALL), *args], env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def snapshot(root: Path) -> dict[str, str]:
    """path -> mode and content hash (files) or mode (folders); the venv's files by name only."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith("usr/lib/systemd/system/"):
            continue
        st = p.lstat()
        if stat.S_ISREG(st.st_mode) and "/venv/" not in rel:
            out[rel] = f"{stat.S_IMODE(st.st_mode):o} {hashlib.sha256(p.read_bytes()).hexdigest()}"
        else:
            out[rel] = f"{stat.S_IMODE(st.st_mode):o}"
    return out


# --- systemd-analyze ------------------------------------------------------------------------------

@needs_analyze
def test_service_exposure_is_at_most_2_5():
    p = run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(SYSTEMD / "edge-fer.service")])
    m = re.search(r"Overall exposure level for edge-fer\.service: (\d+\.\d+)", p.stdout)
    assert m, p.stdout[-2000:] + p.stderr
    assert float(m.group(1)) <= 2.5, p.stdout


@needs_analyze
def test_security_check_is_real(tmp_path):
    # A unit without hardening must score far worse: the check above can fail.
    unit = tmp_path / "plain.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    p = run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(unit)])
    assert float(re.search(r"Overall exposure level for plain\.service: (\d+\.\d+)", p.stdout).group(1)) > 9


# --- the unit runs the command the CLI has -------------------------------------------------------

def test_exec_start_is_a_run_the_cli_takes_with_the_shipped_config(tmp_path):
    unit = (SYSTEMD / "edge-fer.service").read_text()
    (exec_start,) = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart=")]
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    shutil.copy(SYSTEMD / "config.example.toml", credentials / "config.toml")
    argv = shlex.split(exec_start.replace("${CREDENTIALS_DIRECTORY}", str(credentials)))
    assert argv[:2] == ["/opt/edge-fer/venv/bin/edge-fer", "run"]
    params = cli_run.make_context("run", argv[2:]).params
    # The service reads the camera and serves the page the kiosk launcher waits for, headless,
    # logging into the one folder it may write logs to.
    assert params["camera"] == "pi" and params["display"] is False
    assert f"http://{params['serve']}/" == re.search(r'url="\$\{EDGE_FER_URL:-([^}]+)\}"',
                                                     (SYSTEMD / "edge-fer-kiosk").read_text()).group(1)
    assert "LogsDirectory=edge-fer" in unit and params["log_json"].startswith("/var/log/edge-fer/")


def _unit_settings(path: Path) -> dict[str, str]:
    """`Section.Key` -> value of a unit file (the last one wins, as in systemd)."""
    out, section = {}, ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[f"{section}.{key.strip()}"] = value.strip()
    return out


def test_the_service_is_never_left_failed_for_good():
    # A camera or stream that comes up late, or a fault that clears, must find the service still
    # restarting: no start limit (systemd 252, Debian 12, has no RestartSteps= to slow it down).
    unit = _unit_settings(SYSTEMD / "edge-fer.service")
    assert unit["Service.Restart"] in ("on-failure", "always")
    assert unit["Unit.StartLimitIntervalSec"] == "0"
    assert int(unit["Service.RestartSec"]) >= 5  # spaced, not a tight loop
    # The browser comes back with the service after a restart, not only at boot.
    kiosk = _unit_settings(SYSTEMD / "edge-fer-kiosk.service")
    assert "edge-fer.service" in kiosk["Install.WantedBy"].split()


# --- install.sh into a DESTDIR ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A DESTDIR holding a copy of the host's units (verify needs them) and an unrelated file,
    then edge-fer installed into it: (root, snapshot before the install)."""
    if run([PYTHON, "-c", "import venv, ensurepip, setuptools"]).returncode != 0:
        pytest.skip(f"{PYTHON} lacks venv/ensurepip/setuptools: apt install python3-venv python3-setuptools")
    root = tmp_path_factory.mktemp("destdir")
    if HOST_UNITS.is_dir():
        shutil.copytree(HOST_UNITS, root / HOST_UNITS.relative_to("/"), symlinks=True)
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("kiosk-7\n")
    before = snapshot(root)
    install(root, "--kiosk-user", "kiosk")
    return root, before


def test_install_lays_out_the_service(installed):
    root, _ = installed
    for unit in ("edge-fer.service", "edge-fer-kiosk.service"):
        assert (root / "etc/systemd/system" / unit).read_text() == (SYSTEMD / unit).read_text()
    config = root / "etc/edge-fer/config.toml"
    assert config.read_text() == (SYSTEMD / "config.example.toml").read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # it may hold the server token
    assert load_config(config, cli_run).get("server", "serve") == "127.0.0.1:8080"
    assert (root / "etc/systemd/system/edge-fer-kiosk.service.d/user.conf").read_text().endswith(
        "[Service]\nUser=kiosk\n")
    launcher = root / "opt/edge-fer/bin/edge-fer-kiosk"
    assert launcher.read_text() == (SYSTEMD / "edge-fer-kiosk").read_text() and os.access(launcher, os.X_OK)
    entry = root / "opt/edge-fer/venv/bin/edge-fer"
    assert os.access(entry, os.X_OK) and "edge_fer.cli" in entry.read_text()
    cfg = (root / "opt/edge-fer/venv/pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg  # picamera2 comes from apt
    assert (root / "etc/hostname").read_text() == "kiosk-7\n"


@needs_analyze
def test_installed_units_pass_systemd_analyze_verify(installed):
    root, _ = installed
    p = run([SYSTEMD_ANALYZE, "verify", f"--root={root}", "edge-fer.service", "edge-fer-kiosk.service"])
    assert p.returncode == 0 and "edge-fer" not in p.stdout + p.stderr, p.stdout + p.stderr


@needs_analyze
def test_verify_fails_when_the_binary_is_missing(installed):
    # The check above is real: without the installed entry point, verify fails.
    root, _ = installed
    broken = root / "etc/systemd/system/edge-fer-broken.service"
    broken.write_text((SYSTEMD / "edge-fer.service").read_text().replace("venv/bin/edge-fer", "venv/bin/gone"))
    try:
        p = run([SYSTEMD_ANALYZE, "verify", f"--root={root}", "edge-fer-broken.service"])
    finally:
        broken.unlink()
    assert p.returncode != 0 and "/opt/edge-fer/venv/bin/gone is not executable" in p.stderr


def test_install_twice_gives_the_same_result(installed):
    root, _ = installed
    first = snapshot(root)
    p = install(root, "--kiosk-user", "kiosk")
    assert "kept the existing /etc/edge-fer/config.toml" in p.stdout
    assert snapshot(root) == first


def test_uninstall_removes_what_it_added_and_nothing_else(installed):
    root, before = installed
    install(root, "--uninstall")
    assert snapshot(root) == before


def test_existing_config_is_never_overwritten_nor_removed(tmp_path):
    mine = "[source]\ncamera = \"usb:0\"\n"
    (tmp_path / "etc/edge-fer").mkdir(parents=True)
    (tmp_path / "etc/edge-fer/config.toml").write_text(mine)
    install(tmp_path, "--no-pip", "--no-kiosk")
    assert (tmp_path / "etc/edge-fer/config.toml").read_text() == mine
    install(tmp_path, "--uninstall")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == \
        ["etc", "etc/edge-fer", "etc/edge-fer/config.toml"]


@pytest.mark.parametrize("purge", [False, True])
def test_edited_config_is_kept_unless_purged(tmp_path, purge):
    config = tmp_path / "etc/edge-fer/config.toml"
    install(tmp_path, "--no-pip", "--no-kiosk")
    config.write_text(config.read_text().replace("fps = 15", "fps = 10"))
    p = install(tmp_path, "--uninstall", *(["--purge"] if purge else []))
    left = sorted(q.relative_to(tmp_path).as_posix() for q in tmp_path.rglob("*"))
    if purge:
        assert left == []
    else:
        assert "kept /etc/edge-fer/config.toml: it was edited" in p.stdout
        assert left == ["etc", "etc/edge-fer", "etc/edge-fer/config.toml"]


def test_install_rejects_unknown_options(tmp_path):
    p = run(["bash", str(INSTALL), "--frobnicate"], env={**os.environ, "DESTDIR": str(tmp_path)})
    assert p.returncode == 1 and "unknown option --frobnicate" in p.stderr


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="apt install shellcheck")
def test_scripts_are_shellcheck_clean():
    p = run(["shellcheck", str(INSTALL), str(SYSTEMD / "edge-fer-kiosk"), str(REPO / "ci" / "kiosk-deps.sh")])
    assert p.returncode == 0, p.stdout


# --- the kiosk launcher ---------------------------------------------------------------------------

@pytest.fixture
def as_user():
    """Command prefix running as an unprivileged user (the launcher refuses root), and a folder
    that user can write to."""
    work = Path(tempfile.mkdtemp(prefix="edge-fer-kiosk-"))
    work.chmod(0o777)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv (util-linux) to drop privileges")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    yield prefix, work
    shutil.rmtree(work, ignore_errors=True)


@pytest.mark.skipif(not shutil.which("curl"), reason="apt install curl")
def test_kiosk_launcher_waits_for_the_page_then_starts_the_browser(as_user):
    prefix, work = as_user
    browser = work / "browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {work}/args\n')
    browser.chmod(0o755)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {"PATH": os.environ["PATH"], "EDGE_FER_URL": url, "EDGE_FER_WAIT": "20",
           "EDGE_FER_BROWSER": str(browser), "DISPLAY": ":0", "XDG_CACHE_HOME": str(work),
           "HOME": str(work)}
    t0 = time.monotonic()
    proc = subprocess.Popen([*prefix, str(SYSTEMD / "edge-fer-kiosk")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.5)
        assert proc.poll() is None, proc.stdout.read()  # still waiting: no page yet
        assert not (work / "args").exists()
        with ServerSink(ServerOptions(port=port)):
            out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    args = (work / "args").read_text().splitlines()
    assert "--kiosk" in args and args[-1] == url
    assert f"--user-data-dir={work}/edge-fer-kiosk" in args
    assert time.monotonic() - t0 >= 1.5


@pytest.mark.skipif(not shutil.which("curl"), reason="apt install curl")
def test_kiosk_launcher_gives_up_with_a_reason(as_user):
    prefix, work = as_user
    env = {"PATH": os.environ["PATH"], "EDGE_FER_URL": f"http://127.0.0.1:{free_port()}/",
           "EDGE_FER_WAIT": "1", "EDGE_FER_BROWSER": "/bin/true", "DISPLAY": ":0", "HOME": str(work)}
    p = run([*prefix, str(SYSTEMD / "edge-fer-kiosk")], env=env)
    assert p.returncode == 1
    assert "no answer from" in p.stderr and "journalctl -u edge-fer" in p.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="checks the refusal to run as root")
def test_kiosk_launcher_refuses_root():
    p = run([str(SYSTEMD / "edge-fer-kiosk")], env={"PATH": os.environ["PATH"]})
    assert p.returncode == 1 and "refusing to run the browser as root" in p.stderr
