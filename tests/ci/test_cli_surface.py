"""The user-facing surface of the options, recorded: `run --help`, `predict --help`,
`evaluate --help` (and the host commands' and the group's), the config-file schema and
`stream()`'s keywords, compared with
tests/expected/cli_surface.json. An option changed on purpose is re-recorded with
`python tests/ci/test_cli_surface.py` and the diff of the JSON file reviewed like code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from click.testing import CliRunner

EXPECTED = Path(__file__).resolve().parents[1] / "expected" / "cli_surface.json"


def surface() -> dict:
    import edge_fer
    from edge_fer.cli import cli, evaluate, predict, run
    from edge_fer.config import FILE_ONLY, schema_for

    runner = CliRunner()
    helps = {}
    for name in ("run", "predict", "evaluate", "train", "ensemble", "convert", ""):
        r = runner.invoke(cli, [name, "--help"] if name else ["--help"], terminal_width=100,
                          env={"COLUMNS": "100", "EDGE_FER_CONFIG": None})
        assert r.exit_code == 0, r.output
        helps[name or "edge-fer"] = r.output.splitlines()
    schema = {section: {key: {"kind": k.kind, "allowed": k.allowed, "doc": k.doc,
                              "path": k.path, "must_exist": k.must_exist,
                              "default": repr(k.param.default)}
                        for key, k in keys.items()}
              for section, keys in schema_for(run).items()}
    defaults = {cmd.name: {p.name: repr(p.default) for p in cmd.params}
                for cmd in (run, predict, evaluate)}
    return {"help": helps, "config_schema": schema,
            "config_file_only": {s: sorted(keys) for s, keys in FILE_ONLY.items()},
            "defaults": defaults, "stream_options": sorted(edge_fer.STREAM_OPTIONS)}


def test_options_surface_is_the_recorded_one():
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    got = json.loads(json.dumps(surface()))
    for part in expected:
        assert got[part] == expected[part], f"{part} differs from {EXPECTED.name}"
    assert set(got) == set(expected)


if __name__ == "__main__":
    EXPECTED.write_text(json.dumps(surface(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {EXPECTED}", file=sys.stderr)
