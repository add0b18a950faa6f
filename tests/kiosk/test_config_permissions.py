"""A config file that others can change is refused, as sshd refuses one (issue 13, case 9: a
world-writable config was accepted by `check-config` and `run --config`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import assert_one_line_error, invoke
from edge_fer.errors import InputError

CONFIG = '[source]\nwidth = 320\n'


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    os.chmod(path, 0o644)
    return path


@pytest.mark.parametrize("mode, who", [(0o666, "its group and everyone"), (0o646, "everyone"),
                                       (0o664, "its group"), (0o622, "its group and everyone")])
def test_check_config_refuses_a_file_others_can_write(config, mode, who):
    os.chmod(config, mode)
    r = invoke("check-config", str(config))
    line = assert_one_line_error(r, str(config), f"writable by {who} (mode {mode:04o})",
                                 code=InputError.exit_code)
    assert line.endswith(f"chmod go-w {config}")
    os.chmod(config, mode & ~0o022)  # the fix the line names
    r = invoke("check-config", str(config))
    assert r.exit_code == 0 and f"{config}: ok" in r.output


def test_run_refuses_a_world_writable_config_before_starting(config, images_dir, default_model):
    os.chmod(config, 0o666)
    r = subprocess.run([sys.executable, "-m", "edge_fer", "run", "--config", str(config), "--source",
                        str(images_dir), "--headless", "-m", str(default_model)],
                       capture_output=True, text=True, timeout=120)
    assert_one_line_error(r, str(config), "writable by its group and everyone", "chmod go-w",
                          code=InputError.exit_code)
    assert "frames processed" not in r.stdout, "the run must not start"


def test_the_service_environment_variable_is_checked_too(config, images_dir):
    os.chmod(config, 0o666)
    r = invoke("run", "--source", images_dir, "--headless", env={"EDGE_FER_CONFIG": str(config)})
    assert_one_line_error(r, "chmod go-w", code=InputError.exit_code)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_file_owned_by_another_user_is_refused(config):
    os.chown(config, 65534, 65534)  # nobody: not root, not the user running the tests
    r = invoke("check-config", str(config))
    line = assert_one_line_error(r, str(config), "is owned by nobody, not root,",
                                 code=InputError.exit_code)
    assert line.endswith(f"chown root {config}")
    os.chown(config, 0, 0)
    assert invoke("check-config", str(config)).exit_code == 0


def test_dev_null_still_means_no_config():
    """`--config /dev/null` (mode 0666) is how scripts and tests say "no config file"."""
    r = invoke("check-config", os.devnull)
    assert r.exit_code == 0, r.output
