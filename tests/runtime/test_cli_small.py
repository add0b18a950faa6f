"""Small rough edges a new user meets (issue 29, item 6): `-v` after the command, `info`'s
provenance for people, `out/` kept out of git."""

from __future__ import annotations

import logging
import subprocess

from click.testing import CliRunner

from conftest import REPO, run_cli
from edge_fer.cli import cli
from edge_fer.metadata import provenance_lines


def test_verbose_after_the_command_is_the_same_as_before_it(default_model):
    after = run_cli("info", "--model", default_model, "-v")
    before = run_cli("-v", "info", "--model", default_model)
    plain = run_cli("info", "--model", default_model)
    assert after.returncode == before.returncode == plain.returncode == 0, after.stderr
    loaded = "INFO edge_fer.classifier: loaded"
    assert loaded in after.stderr and loaded in before.stderr, after.stderr
    assert loaded not in plain.stderr


def test_verbose_counts_add_up_across_the_command():
    root = logging.getLogger()
    saved = root.level
    try:
        for args, level in ((["check-config", "--keys"], logging.WARNING),
                            (["check-config", "--keys", "-v"], logging.INFO),
                            (["-v", "check-config", "--keys", "-v"], logging.DEBUG),
                            (["check-config", "-vv", "--keys"], logging.DEBUG)):
            root.setLevel(logging.WARNING)
            r = CliRunner().invoke(cli, args)
            assert r.exit_code == 0, r.output
            assert root.level == level, (args, root.level)
    finally:
        root.setLevel(saved)


def test_verbose_after_a_sub_group_command():
    r = run_cli("detectors", "fetch", "--help")
    assert r.returncode == 0 and "-v, --verbose" in r.stdout


def test_info_shows_the_provenance_line_by_line_without_the_build_machine(default_model):
    r = run_cli("info", "--model", default_model)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    start = lines.index("provenance:")
    shown = lines[start + 1:]
    assert len(shown) > 10 and all(len(line) <= 102 for line in shown), max(shown, key=len)
    text = "\n".join(shown)
    # The default was trained with its votes file at /work/shared/...: the folders are cut.
    assert "command: edge-fer train --arch" in text and "ferplus.votes: …/ferplus.csv" in text
    assert "/work/" not in text and "/root/" not in text
    assert "  logit_adjustment.tau: 0.1" in shown


def test_provenance_lines_wrap_rather_than_cut():
    long = "x " * 120
    lines = provenance_lines({"a": {"b": [1, 2.5, "c"]}, "note": long, "empty": {},
                              "where": "built in /home/someone/runs/model.keras today"}, width=40)
    assert lines[0] == "a.b: 1; 2.5; c"
    assert "where: built in …/model.keras today" in lines
    assert "empty: -" in lines
    note = [ln for ln in lines if ln.startswith("note:") or ln.startswith("    x")]
    assert "".join(note).count("x") == 120 and all(len(ln) <= 40 for ln in note)


def test_out_folder_is_ignored_by_git():
    r = subprocess.run(["git", "check-ignore", "-q", "out/annotated.jpg"], cwd=REPO)
    assert r.returncode == 0
