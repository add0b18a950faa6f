"""The host commands (train, ensemble, convert) join `edge-fer` through the `edge_fer.commands`
entry-point group: the runtime's command line defines none of them, and a command whose package
does not load fails in one line naming what to install."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

import click
from click.testing import CliRunner

from edge_fer.cli import COMMANDS_GROUP, EdgeFerGroup, cli, plugin_commands


def test_the_host_commands_come_from_the_toolchain_entry_points():
    installed = plugin_commands()
    assert {"train", "ensemble", "convert"} <= set(installed)
    assert all(ep.module.startswith("edge_fer_convert.") for ep in installed.values())
    # Defined by the toolchain, not by the runtime's module.
    r = subprocess.run([sys.executable, "-c",
                        "import sys, edge_fer.cli as c; "
                        "print(sorted(set(c.cli.commands) & {'train', 'ensemble', 'convert'}), "
                        "any(m.startswith('edge_fer_convert') for m in sys.modules))"],
                       capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["[]", "False"], r.stdout
    listed = cli.list_commands(click.Context(cli))
    assert {"train", "ensemble", "convert", "run", "predict"} <= set(listed)
    assert listed == sorted(listed)


def test_the_host_commands_join_the_top_level_group_only():
    """`detectors` is a sub-group: its help lists `fetch` alone, and `detectors train` is no
    command (it once listed, and ran, every host command)."""
    runner = CliRunner()
    listed = runner.invoke(cli, ["detectors", "--help"])
    assert listed.exit_code == 0, listed.output
    commands = listed.output.split("Commands:")[1].split()
    assert commands[0] == "fetch" and not {"train", "ensemble", "convert"} & set(commands), listed.output
    r = subprocess.run([sys.executable, "-m", "edge_fer", "detectors", "train", "--help"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "No such command 'train'" in r.stderr, r.stderr


def test_a_host_command_runs_with_the_groups_error_handling(tmp_path):
    # The command's own UsageError (int8 without calibration data), shown as one line, exit 2.
    r = subprocess.run([sys.executable, "-m", "edge_fer", "convert", str(tmp_path / "none.h5")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "needs --calibration" in r.stderr, r.stderr
    assert r.stderr.startswith("edge-fer: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr


def _group_with(ep: EntryPoint) -> click.Group:
    @click.group(cls=EdgeFerGroup, commands=lambda: {ep.name: ep})
    def group():
        pass

    return group


def test_a_command_whose_package_is_absent_says_what_to_install():
    ep = EntryPoint("convert", "edge_fer_no_such_toolchain.commands:convert [convert]",
                    COMMANDS_GROUP)
    group = _group_with(ep)
    runner = CliRunner()
    listed = runner.invoke(group, ["--help"])
    assert listed.exit_code == 0 and "convert" in listed.output and "Not installed" in listed.output
    r = runner.invoke(group, ["convert", "model.h5", "--calibration", "faces/"])
    assert r.exit_code == 5, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-fer: error: 'convert' cannot load ("), lines
    assert "edge_fer_no_such_toolchain" in lines[0] and "convert" in lines[0]


def test_an_unknown_command_is_still_an_unknown_command():
    group = _group_with(EntryPoint("convert", "edge_fer_no_such_toolchain:convert", COMMANDS_GROUP))
    r = CliRunner().invoke(group, ["trian"])
    assert r.exit_code == 2 and "No such command" in r.output


def test_the_runtime_never_imports_the_toolchain():
    """No module of edge_fer/ imports edge_fer_convert, at the top or in a function: the
    toolchain comes in through the entry points of edge_fer.plugins only."""
    import ast
    from pathlib import Path

    import edge_fer

    offenders = []
    for path in Path(edge_fer.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            named = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}:{node.lineno}" for n in named
                          if n.split(".")[0] == "edge_fer_convert"]
    assert not offenders, offenders


def test_what_the_toolchain_adds_loads_or_says_what_to_install():
    import pytest

    from edge_fer import plugins
    from edge_fer.errors import BackendError

    assert callable(plugins.load(plugins.MODEL_LOADERS, "keras", "evaluating a Keras model"))
    assert callable(plugins.load(plugins.PLOTS, "confusion", "evaluate --plot"))
    with pytest.raises(BackendError) as err:
        plugins.load("edge_fer.no_such_group", "keras", "evaluating a Keras model")
    assert str(err.value) == ("evaluating a Keras model needs the host toolchain, which is not "
                              "installed: pip install 'edge-fer[convert]'")
