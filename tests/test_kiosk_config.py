"""The TOML config: the shipped example, errors with file and line, and CLI override order."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edge_fer.cli import cli, config_option, detector_options, model_options
from edge_fer.config import (SCHEMA, ConfigError, load_config, locate_keys, parse_address,
                             parse_config, run_default_map)
from edge_fer.errors import InputError, UsageError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "systemd" / "config.example.toml"


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    return e.value.problems


# --- the shipped example ---------------------------------------------------------------------------

def test_example_config_is_accepted_by_check_config():
    result = CliRunner().invoke(cli, ["check-config", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{EXAMPLE}: ok (")
    config = load_config(EXAMPLE)
    assert set(config.values) == set(SCHEMA)
    assert config.get("server", "serve") == "127.0.0.1:8080"


def test_example_documents_every_key_with_a_valid_value():
    text = EXAMPLE.read_text()
    active = tomllib.loads(text)
    section = None
    documented: dict[tuple[str, str], object] = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            section = m.group(1)
            continue
        # Active keys and commented-out `# key = value` lines both count as documented.
        m = re.fullmatch(r"(?:# )?(\w+) = (.+)", line)
        if m and section and m.group(1) in SCHEMA[section]:
            documented[(section, m.group(1))] = tomllib.loads(line.lstrip("# "))[m.group(1)]
    missing = [f"{s}.{k}" for s in SCHEMA for k in SCHEMA[s] if (s, k) not in documented]
    assert not missing, f"keys missing from the example: {missing}"
    for (s, k), value in documented.items():
        SCHEMA[s][k].check(value)  # raises ValueError for an invalid documented value
        if k in active.get(s, {}):
            assert active[s][k] == value
    # Every active key is preceded by a comment saying what it does (a group may share one).
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.fullmatch(r"(\w+) = .+", line):
            j = i - 1
            while re.fullmatch(r"(\w+) = .+", lines[j]):
                j -= 1
            assert lines[j].startswith("#"), f"undocumented key on line {i + 1}: {line}"


# --- errors name the file, the line, the key and what is allowed ----------------------------------

def test_unknown_key_names_its_line_and_the_allowed_keys(tmp_path):
    out = problems(tmp_path, "# comment\n[model]\nthreads = 2\nthread = 2\n")
    assert out == [f"{tmp_path / 'config.toml'}:4: key 'model.thread' is unknown: allowed keys in "
                   "[model]: model, labels, normalization, crop_margin, threads, backend "
                   "(did you mean 'threads'?)"]


def test_unknown_section(tmp_path):
    (msg,) = problems(tmp_path, "[source]\nfps = 10\n\n[sever]\nserve = '127.0.0.1:8080'\n")
    assert msg.startswith(f"{tmp_path / 'config.toml'}:4: section [sever] is unknown: allowed sections ")
    assert msg.endswith("(did you mean [server]?)")


def test_wrong_types_and_ranges(tmp_path):
    out = problems(tmp_path, "[source]\nwidth = \"640\"\nrealtime = 1\nfps = 0\ncamera = 'webcam'\n"
                             "[tracking]\nsmoothing = 1.5\n[detection]\nmin_face = true\n")
    path = tmp_path / "config.toml"
    assert out == [
        f"{path}:2: key 'source.width' has \"640\" (a string): allowed an integer from 16 to 8192",
        f"{path}:3: key 'source.realtime' has 1 (an integer): allowed true or false",
        f"{path}:4: key 'source.fps' has 0 (an integer): allowed a number > 0 and <= 240",
        f"{path}:5: key 'source.camera' has \"webcam\" (a string): allowed \"pi\", \"usb:N\" or \"N\" "
        "(a camera index)",
        f"{path}:7: key 'tracking.smoothing' has 1.5 (a number): allowed a number from 0 to 1",
        f"{path}:9: key 'detection.min_face' has true (a boolean): allowed an integer from 8 to 4096",
    ]


@pytest.mark.parametrize("serve", ["127.0.0.1:99999", "127.0.0.1:0", "localhost", "127.0.0.1:http",
                                   "[::1:8080", ""])
def test_bad_port_or_address(tmp_path, serve):
    (msg,) = problems(tmp_path, f"[server]\nserve = \"{serve}\"\n")
    assert msg.startswith(f"{tmp_path / 'config.toml'}:2: key 'server.serve' has ")
    assert msg.endswith('allowed "HOST:PORT" with PORT 1-65535, e.g. "127.0.0.1:8080" or "[::1]:8080"')


def test_good_addresses():
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    assert parse_address("kiosk-7.local:65535") == ("kiosk-7.local", 65535)


def test_weak_token_and_conflicting_source(tmp_path):
    out = problems(tmp_path, "[source]\ncamera = 'pi'\nsource = 'clip.mp4'\n[server]\ntoken = 'abc'\n")
    path = tmp_path / "config.toml"
    assert out[0].startswith(f"{path}:5: key 'server.token' has \"abc\" (a string): allowed a string of 16")
    assert out[1] == (f"{path}:3: key 'source.source' is set together with 'source.camera': "
                      "allowed only one of them (a camera or a file/URL)")


def test_key_outside_a_section_and_syntax_errors(tmp_path):
    (msg,) = problems(tmp_path, "threads = 2\n[model]\n")
    assert msg.startswith(f"{tmp_path / 'config.toml'}:1: key 'threads' is outside a section")
    assert msg.endswith("put it under [model]")
    (msg,) = problems(tmp_path, "[server]\nserve = \"127.0.0.1:8080\"\nport =\n")
    assert msg.startswith(f"{tmp_path / 'config.toml'}:3: invalid TOML: ")


def test_missing_model_file_and_relative_paths(tmp_path):
    (msg,) = problems(tmp_path, "[model]\nmodel = 'models/none.tflite'\n")
    assert msg.startswith(f"{tmp_path / 'config.toml'}:2: key 'model.model' names "
                          f"{tmp_path / 'models' / 'none.tflite'}, which is not a file")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "none.tflite").write_bytes(b"x")
    cfg = load_config(write(tmp_path, "[model]\nmodel = 'models/none.tflite'\n"))
    assert cfg.get("model", "model") == str(tmp_path / "models" / "none.tflite")


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_check_config_cli_prints_every_problem_and_exits_2(tmp_path):
    path = write(tmp_path, "[source]\nwidth = 'x'\n[model]\nthread = 2\n")
    result = CliRunner().invoke(cli, ["check-config", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"edge-fer: error: {path}:2: key 'source.width'")
    assert lines[1].startswith(f"{path}:4: key 'model.thread' is unknown")
    assert "Traceback" not in result.output


def test_warnings_for_a_network_address_without_token(tmp_path):
    path = write(tmp_path, "[server]\nserve = \"0.0.0.0:8080\"\n")
    result = CliRunner().invoke(cli, ["check-config", str(path)])
    assert result.exit_code == 0
    assert f"{path}:2: key 'server.serve' is not a loopback address" in result.output


def test_locate_keys_skips_multiline_values_and_reads_dotted_keys():
    text = ('server.serve = "127.0.0.1:1"\n'
            '[model]\nlabels = [\n  "a",\n  "b",  # threads = 3\n]\n'
            'x = """\nthreads = 4\n"""\nthreads = 2\n'
            '[ tracking ]\n"smoothing" = 0.5\n')
    where = locate_keys(text)
    assert where[("server", "serve")] == 1
    assert where[("model", "labels")] == 3
    assert where[("model", "threads")] == 10
    assert where[("tracking",)] == 11
    assert where[("tracking", "smoothing")] == 12


# --- the config feeds click's default_map; the command line wins ----------------------------------

def make_run(default_path):
    """A command with run's model and detection options and the real --config option."""

    @click.command()
    @config_option(default_path)
    @model_options
    @detector_options
    def fake_run(**kw):
        click.echo(json.dumps(kw))

    return fake_run


fake_run = make_run(Path("/nonexistent/edge-fer/config.toml"))


def test_config_values_become_option_defaults_and_the_command_line_overrides(tmp_path):
    path = write(tmp_path, "[model]\nlabels = ['sad', 'happy']\nthreads = 2\nbackend = 'litert'\n"
                           "[detection]\nmin_face = 44\nscale_factor = 1.2\n")
    runner = CliRunner()
    got = json.loads(runner.invoke(fake_run, ["--config", str(path)], catch_exceptions=False).output)
    assert got["labels"] == ["sad", "happy"]
    assert (got["threads"], got["backend"], got["min_face"], got["scale_factor"]) == (2, "litert", 44, 1.2)
    got = json.loads(runner.invoke(fake_run, ["--config", str(path), "--min-face", "60", "--threads", "1"],
                                   catch_exceptions=False).output)
    assert (got["min_face"], got["threads"], got["backend"]) == (60, 1, "litert")
    # The option order on the command line does not matter: --config is eager.
    got = json.loads(runner.invoke(fake_run, ["--min-face", "60", "--config", str(path)],
                                   catch_exceptions=False).output)
    assert got["min_face"] == 60


def test_default_config_path_is_read_when_present_and_optional(tmp_path):
    default = tmp_path / "config.toml"
    cmd = make_run(default)
    runner = CliRunner()
    assert json.loads(runner.invoke(cmd, [], catch_exceptions=False).output)["min_face"] == 30
    default.write_text("[detection]\nmin_face = 50\n")
    assert json.loads(runner.invoke(cmd, [], catch_exceptions=False).output)["min_face"] == 50
    other = write(tmp_path, "[detection]\nmin_face = 70\n", "other.toml")
    got = runner.invoke(cmd, [], env={"EDGE_FER_CONFIG": str(other)}, catch_exceptions=False)
    assert json.loads(got.output)["min_face"] == 70


def test_bad_or_missing_config_is_one_line_and_an_exit_code(tmp_path):
    runner = CliRunner()
    bad = write(tmp_path, "[detection]\nmin_face = 2\n")
    got = runner.invoke(fake_run, ["--config", str(bad)])
    assert got.exit_code == 2
    assert got.output == (f"edge-fer: error: {bad}:2: key 'detection.min_face' has 2 (an integer): "
                          "allowed an integer from 8 to 4096\n")
    got = runner.invoke(fake_run, ["--config", str(tmp_path / "missing.toml")])
    assert got.exit_code == 3 and got.output.startswith("edge-fer: error: config file ")
    assert "Traceback" not in got.output


def test_schema_keys_are_the_option_names_of_run():
    params = {p.name for p in fake_run.params}
    for section in ("model", "detection"):
        assert set(SCHEMA[section]) <= params, section
    cfg = parse_config("[model]\nlabels = ['a', 'b']\n[server]\nserve = '127.0.0.1:9'\n")
    assert run_default_map(cfg) == {"labels": "a,b", "serve": "127.0.0.1:9"}


def test_check_config_lists_the_keys():
    out = CliRunner().invoke(cli, ["check-config", "--keys"]).output.splitlines()
    assert len(out) == sum(len(keys) for keys in SCHEMA.values())
    assert "server.serve: Serve the local page, API and metrics on HOST:PORT. (allowed \"HOST:PORT\" " \
           "with PORT 1-65535, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\")" in out


def test_config_error_is_a_usage_error():
    assert issubclass(ConfigError, UsageError)
