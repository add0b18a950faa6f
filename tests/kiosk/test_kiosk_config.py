"""The TOML config: the shipped example, errors with file and line, and CLI override order."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conftest import REPO, invoke
from edge_fer.cli import config_option, detector_options, model_options, run
from edge_fer.config import (CONFIG_PARAM, ConfigError, default_map, load_config, locate_keys,
                             parse_config, schema_for)
from edge_fer.errors import InputError, UsageError
from edge_fer.network import parse_address
from edge_fer.options import SECTIONS

EXAMPLE = REPO / "systemd" / "config.example.toml"


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


SCHEMA = schema_for(run)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text), run)
    return e.value.problems


# --- the shipped example ---------------------------------------------------------------------------

def test_example_config_is_accepted_by_check_config():
    result = invoke("check-config", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{EXAMPLE}: ok (")
    config = load_config(EXAMPLE, run)
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
                   "[model]: model, labels, normalization, crop_margin, threads, tta, backend "
                   "(did you mean 'threads'?)"]


def test_unknown_section(tmp_path):
    (msg,) = problems(tmp_path, "[source]\nfps = 10\n\n[sever]\nserve = '127.0.0.1:8080'\n")
    assert msg.startswith(f"{tmp_path / 'config.toml'}:4: section [sever] is unknown: allowed sections ")
    assert msg.endswith("(did you mean [server]?)")


def test_wrong_types_and_ranges(tmp_path):
    out = problems(tmp_path, "[source]\nwidth = \"640\"\nrealtime = 1\nfps = 0\ncamera = 'webcam'\n"
                             "[tracking]\nsmoothing = 0.6\n[detection]\nmin_face = true\n"
                             "[output]\nduration = 0\n")
    path = tmp_path / "config.toml"
    assert out == [
        f"{path}:2: key 'source.width' has \"640\" (a string): allowed an integer >= 16",
        f"{path}:3: key 'source.realtime' has 1 (an integer): allowed true or false",
        f"{path}:4: key 'source.fps' has 0 (an integer): allowed a number from 1 to 240",
        f"{path}:5: key 'source.camera' has \"webcam\" (a string): allowed \"pi\", \"usb:N\" or \"N\" "
        "(a camera index)",
        # The tracker's window in frames, as `--smoothing` takes it: not a 0..1 factor.
        f"{path}:7: key 'tracking.smoothing' has 0.6 (a number): allowed an integer >= 1",
        f"{path}:9: key 'detection.min_face' has true (a boolean): allowed an integer >= 8",
        f"{path}:11: key 'output.duration' has 0 (an integer): allowed a number > 0",
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
    cfg = load_config(write(tmp_path, "[model]\nmodel = 'models/none.tflite'\n"), run)
    assert cfg.get("model", "model") == str(tmp_path / "models" / "none.tflite")


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_config(tmp_path / "nope.toml", run)


def test_check_config_cli_prints_every_problem_and_exits_2(tmp_path):
    path = write(tmp_path, "[source]\nwidth = 'x'\n[model]\nthread = 2\n")
    result = invoke("check-config", str(path))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"edge-fer: error: {path}:2: key 'source.width'")
    assert lines[1].startswith(f"{path}:4: key 'model.thread' is unknown")
    assert "Traceback" not in result.output


def test_warnings_for_a_network_address_without_token(tmp_path):
    path = write(tmp_path, "[server]\nserve = \"0.0.0.0:8080\"\n")
    result = invoke("check-config", str(path))
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
                          "allowed an integer >= 8\n")
    got = runner.invoke(fake_run, ["--config", str(tmp_path / "missing.toml")])
    assert got.exit_code == 3 and got.output.startswith("edge-fer: error: config file ")
    assert "Traceback" not in got.output


def test_default_map_holds_the_values_the_options_take():
    cfg = parse_config("[model]\nlabels = ['a', 'b']\n[server]\nserve = '127.0.0.1:9'\n", run)
    assert default_map(cfg) == {"labels": ["a", "b"], "serve": "127.0.0.1:9"}


def test_check_config_lists_the_keys():
    from edge_fer.config import FILE_ONLY

    out = invoke("check-config", "--keys").output.splitlines()
    assert len(out) == sum(len(keys) for keys in [*SCHEMA.values(), *FILE_ONLY.values()])
    # Keys no option has (secrets) say so.
    assert "mqtt.password: The MQTT broker's password (chmod 600 the file). Only in the file or " \
           "$EDGE_FER_MQTT_PASSWORD, never on the command line. (allowed a non-empty string)" in out
    assert "server.serve: Serve the live page, /api/stats, /api/faces and /metrics on HOST:PORT " \
           "(127.0.0.1:8080 when given alone). (allowed \"HOST:PORT\" with PORT 1-65535, e.g. " \
           "\"127.0.0.1:8080\" or \"[::1]:8080\")" in out
    # The help of the option is the documentation of the key.
    assert "tracking.smoothing: Frames of scores averaged per face (1 = off). (allowed an integer " \
           ">= 1)" in out


def test_config_error_is_a_usage_error():
    assert issubclass(ConfigError, UsageError)


# --- one truth: the keys are run's options, and take what the options take ----------------------

def test_every_run_option_has_a_key_and_every_key_is_a_run_option():
    options = {p.name for p in run.params if p.expose_value} - {CONFIG_PARAM}
    keys = [k for names in SECTIONS.values() for k in names]
    assert len(keys) == len(set(keys)), "a key in two sections"
    assert set(keys) == options
    assert {k for section in SCHEMA.values() for k in section} == options


def _values(param) -> tuple[list, list, list]:
    """TOML values for `param`: accepted by option and key; refused by both (range edges,
    choices, the option's own rules); refused by the key only, for their TOML type (on the
    command line everything is a string)."""
    t = param.type
    if param.is_bool_flag:
        return [True, False], [], ["yes", 1]
    if isinstance(t, (click.IntRange, click.FloatRange)):
        step = 1 if isinstance(t, click.IntRange) else 0.5
        good, bad = [], []
        for edge, is_open, outside in ((t.min, t.min_open, -step), (t.max, t.max_open, step)):
            if edge is not None:
                (bad if is_open else good).append(edge)
                bad.append(edge + outside)
                good.append(edge - outside)
        if isinstance(t, click.IntRange):
            bad.append((t.min or 0) + 1.5)
        return good, bad, [str(good[0])]
    if isinstance(t, click.Choice):
        return list(t.choices), ["nope", 1], [True]
    rules = {
        "camera": (["pi", "usb:0", "3"], ["webcam", "usb:x"], [0]),
        "labels": ([["a", "b"], ["x", "y", "z"]], [["a"], ["a", "a"]], [["a,b", "c"], "a,b"]),
        "serve": (["127.0.0.1:8080", "[::1]:80", "0.0.0.0:9000"],
                  ["127.0.0.1:0", "localhost", "[::1:80"], [8080]),
        "token": (["0123456789abcdef"], ["too-short", "with a space 0123456789"], [1234567890123456]),
        "mqtt": (["mqtt://127.0.0.1", "mqtts://broker.lan:8883", "mqtt://[::1]:1884"],
                 ["http://broker", "mqtt://user:pw@broker", "mqtt://broker:0", "mqtt://b/x"], [1883]),
        "mqtt_device": (["kiosk-1", "hall_2"], ["kiosk 1", "a/b", "x" * 65, "+"], [7]),
        "mqtt_prefix": (["homeassistant", "ha/discovery"], ["ha/", "#", "a b"], [True]),
    }
    if param.name in rules:
        return rules[param.name]
    assert isinstance(t, click.Path), f"no test values for {param.name} ({t!r}): add them here"
    return [str(Path(__file__))], [], [3, ""]


def _cli_takes(param, value, empty_config) -> bool:
    arg = ",".join(value) if isinstance(value, list) else str(value)
    try:
        run.make_context("run", ["--config", str(empty_config), param.opts[-1], arg])
    except click.ClickException:
        return False
    return True


def _key_takes(section, name, value, tmp_path) -> str | None:
    """None when the config takes `value`, else its one problem."""
    try:
        parse_config(f"[{section}]\n{name} = {json.dumps(value)}\n", run, tmp_path / "c.toml")
    except ConfigError as e:
        (problem,) = e.problems
        return problem
    return None


@pytest.mark.parametrize("name", [p.name for p in run.params if p.expose_value and p.name != CONFIG_PARAM])
def test_a_key_takes_what_its_option_takes(name, tmp_path):
    param = next(p for p in run.params if p.name == name)
    section = next(s for s, keys in SECTIONS.items() if name in keys)
    empty = write(tmp_path, "", "empty.toml")
    good, bad, bad_type = _values(param)
    allowed = f"allowed {SCHEMA[section][name].allowed}"
    for value in good:
        assert _key_takes(section, name, value, tmp_path) is None, value
        if not param.is_bool_flag:  # a flag takes no value on the command line
            assert _cli_takes(param, value, empty), f"{param.opts[-1]} {value!r} refused"
    for value in bad:
        assert _key_takes(section, name, value, tmp_path).endswith(allowed), value
        assert not _cli_takes(param, value, empty), f"{param.opts[-1]} {value!r} accepted"
    for value in bad_type:
        assert _key_takes(section, name, value, tmp_path).endswith(allowed), value


def test_a_shipped_model_by_its_short_name(tmp_path):
    from edge_fer_models import SHIPPED

    cfg = load_config(write(tmp_path, "[model]\nmodel = 'edgenet16'\n"), run)
    assert cfg.get("model", "model") == str(SHIPPED["edgenet16"])
    # A file of that name beside the config file is the user's own model and wins.
    (tmp_path / "edgenet16").write_bytes(b"x")
    cfg = load_config(write(tmp_path, "[model]\nmodel = 'edgenet16'\n"), run)
    assert cfg.get("model", "model") == str(tmp_path / "edgenet16")
