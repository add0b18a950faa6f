"""The smaller faults of issue 13, case 12: click's own errors as the one `edge-fer: error:`
line, a warning for a token on the command line, and a `Server:` header without the Python
version. (The model-input shape as plain ints is tested with the model in test_cli_runtime.)"""

from __future__ import annotations

import socket
import urllib.request

import pytest

from conftest import run_cli
from edge_fer.sinks.server import ServerOptions, ServerSink

TOKEN = "cli-errors-test-token-0123456789"


@pytest.mark.parametrize("args, says", [
    (["run", "--width", "abc"], "Invalid value for '--width': 'abc' is not a valid integer"),
    (["run", "--no-such-option"], "No such option '--no-such-option'"),
    (["predict"], "Missing argument 'PATHS...'"),
    (["predict", "--threads", "0", "x.jpg"], "Invalid value for '--threads': 0 is not in the range"),
    (["evaluate", "--data"], "Option '--data' requires an argument"),
    (["no-such-command"], "No such command 'no-such-command'"),
])
def test_click_usage_errors_are_one_line_with_exit_2(args, says):
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    (line,) = r.stderr.splitlines()  # before: "Usage: ...", "Try ... for help.", "Error: ..."
    assert line.startswith(f"edge-fer: error: {says}"), line
    assert line.endswith("--help')"), "the line says where the help is"


def test_help_version_and_the_bare_command_are_unchanged():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("edge-fer, version ")
    r = run_cli("run", "--help")
    assert r.returncode == 0 and "--max-pixels N" in r.stdout
    r = run_cli()
    assert "Usage: edge-fer" in r.stdout + r.stderr and "Commands:" in r.stdout + r.stderr


def test_a_token_on_the_command_line_is_warned_about(tmp_path):
    absent = tmp_path / "absent.tflite"  # the run stops at the model: only the warning matters
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ("run", "--source", tmp_path, "--headless", "--model", absent, "--serve", f"127.0.0.1:{port}")
    r = run_cli(*args, "--token", TOKEN)
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("edge-fer: warning:")]
    assert len(warnings) == 1, r.stderr
    assert "/proc/PID/cmdline" in warnings[0] and "$EDGE_FER_TOKEN" in warnings[0]
    assert TOKEN not in r.stderr, "the warning must not repeat the secret"
    r = run_cli(*args, env={"EDGE_FER_TOKEN": TOKEN})
    assert "edge-fer: warning:" not in r.stderr, r.stderr


def test_server_header_names_edge_fer_but_not_python():
    with ServerSink(ServerOptions(port=0)) as sink:
        r = urllib.request.urlopen(sink.url, timeout=5)
    server = r.headers["Server"]
    assert server.startswith("edge-fer/") and "Python" not in server and " " not in server, server
