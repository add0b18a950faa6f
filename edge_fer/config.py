"""The TOML configuration file of `edge-fer run`: schema, validation with line numbers, and the
mapping onto the command's options.

Every key is `section.key` where `key` is the `run` option name with `_` for `-`
(`[detection] min_face = 40` is `--min-face 40`), and every option of `run` has a key. Sections
and options are declared once, in `edge_fer.options`; what a key accepts and means is read off the
click option made from that declaration (`schema_for`): type, range, choices and help. The file supplies the *defaults* of `run` (click's
`default_map`), so an option given on the command line, or its environment variable, wins.

Validation collects every problem and reports each one as `FILE:LINE: key 'section.key' ...:
allowed ...`. `tomllib` parses (it is the reference parser of the standard library) but keeps no
positions, so `locate_keys` finds the line of each key in the source text.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge_fer.errors import InputError, UsageError
from edge_fer.network import is_loopback, parse_address
from edge_fer.options import SECTIONS
from edge_fer_models import SHIPPED

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

#: Where the service looks when no `--config` is given.
DEFAULT_CONFIG_PATH = Path("/etc/edge-fer/config.toml")


# --- the schema, derived from the command's options -------------------------------------------

#: Keys of the file that no option has: secrets the command line must never carry (anyone on
#: the machine reads it in /proc/PID/cmdline). section -> key -> (what it is, the environment
#: variable that overrides it).
FILE_ONLY: dict[str, dict[str, tuple[str, str]]] = {
    "mqtt": {"username": ("The MQTT broker's user name.", "EDGE_FER_MQTT_USERNAME"),
             "password": ("The MQTT broker's password (chmod 600 the file).",
                          "EDGE_FER_MQTT_PASSWORD")},
}
#: Where `apply_config` leaves the loaded `Config` in the click context's `meta`.
CONFIG_META = "edge_fer.config"
#: Files the run reads: the command line checks them when it loads them, the config file at once,
#: so `check-config` catches a wrong path before a restart does.
INPUT_FILES = frozenset({"model", "cascade", "mqtt_ca"})
#: The parameter of `--config` itself, the one option without a key.
CONFIG_PARAM = "config_path"


@dataclass(frozen=True)
class Key:
    """One allowed key: the option it sets, what it accepts and what to tell the user."""

    param: Any
    """The click parameter of the option."""
    kind: str
    """The TOML type it takes: "bool", "int", "number", "string" or "array"."""
    allowed: str
    """What the key accepts, in words (shown after `allowed` in errors)."""
    doc: str
    """The option's help: one line for the documentation and `check-config --keys`."""
    path: bool = False
    """The value is a file path: relative paths are resolved against the config file's folder."""
    must_exist: bool = False
    """The path is an input that has to exist (a model, a cascade)."""

    def check(self, value: Any) -> Any:
        """The value as the option would take it; ValueError if the option would refuse it."""
        import click

        # TOML's own types first: click would turn "640" or 1.5 into an integer, a file must not.
        if not _KIND_CHECKS[self.kind](value):
            raise ValueError
        try:
            return self.param.type.convert(value, self.param, None)
        except click.ClickException:
            raise ValueError from None


_KIND_CHECKS: dict[str, Callable[[Any], bool]] = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool)
                         and math.isfinite(v)),
    "string": lambda v: isinstance(v, str) and bool(v.strip()),
    "array": lambda v: isinstance(v, list),
}


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _range_words(lo, hi, *, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None and not (lo_open or hi_open):
        return f" from {lo} to {hi}"
    words = []
    if lo is not None:
        words.append(f"{'>' if lo_open else '>='} {lo}")
    if hi is not None:
        words.append(f"{'<' if hi_open else '<='} {hi}")
    return (" " + " and ".join(words)) if words else ""


def _describe(param) -> tuple[str, str]:
    """(TOML kind, allowed words) of a click parameter."""
    import click

    t = param.type
    if getattr(param, "is_bool_flag", False):
        return "bool", "true or false"
    if hasattr(t, "allowed"):  # the project's own types say what they take
        return getattr(t, "toml_kind", "string"), t.allowed
    if isinstance(t, (click.IntRange, click.FloatRange)):
        kind, noun = ("int", "an integer") if isinstance(t, click.IntRange) else ("number", "a number")
        return kind, noun + _range_words(t.min, t.max, lo_open=t.min_open, hi_open=t.max_open)
    if isinstance(t, click.types.IntParamType):
        return "int", "an integer"
    if isinstance(t, click.types.FloatParamType):
        return "number", "a number"
    if isinstance(t, click.Choice):
        return "string", "one of " + ", ".join(f'"{c}"' for c in t.choices)
    if isinstance(t, click.Path):
        return "string", "a file path" if not t.dir_okay else "a path"
    if isinstance(t, click.types.StringParamType):
        return "string", "a non-empty string"
    raise TypeError(f"option {param.name}: no config kind for {t!r}")


def schema_for(command) -> dict[str, dict[str, Key]]:
    """section -> key -> Key for the options of click `command`.

    Every option but `--config` must have a place in SECTIONS (a missing one is a programming
    error, caught by the tests); sections the command has no options of are left out.
    """
    import click

    # Options that set no value of the command (`--config` itself, `-v`) have no key.
    params = {p.name: p for p in command.params if p.name != CONFIG_PARAM and p.expose_value}
    placed = {name for names in SECTIONS.values() for name in names}
    unplaced = sorted(set(params) - placed)
    if unplaced:
        raise RuntimeError(f"options of {command.name} without a config key: {unplaced}: add them "
                           "to edge_fer.options.RUN_OPTIONS")
    schema: dict[str, dict[str, Key]] = {}
    for section, names in SECTIONS.items():
        keys = {}
        for name in names:
            param = params.get(name)
            if param is None:
                continue
            kind, allowed = _describe(param)
            keys[name] = Key(param=param, kind=kind, allowed=allowed,
                             doc=" ".join((param.help or "").split()),
                             path=isinstance(param.type, click.Path),
                             must_exist=name in INPUT_FILES)
        if keys:
            schema[section] = keys
    return schema


# --- locating keys in the source ------------------------------------------------------------------

_HEADER = re.compile(r"\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?")
_KEYLINE = re.compile(r"\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
                      r"(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=")


def _split_dotted(text: str) -> tuple[str, ...]:
    parts = re.findall(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+)", text)
    return tuple(next(p for p in groups if p) if any(groups) else "" for groups in parts)


def locate_keys(text: str) -> dict[tuple[str, ...], int]:
    """Line number (1-based) of every table header and key in a TOML text.

    `("server",)` is the `[server]` header, `("server", "serve")` its key; a dotted key at the top
    level (`server.serve = ...`) gives the same path. Lines inside multi-line strings and arrays
    are skipped, so their contents are never mistaken for keys.
    """
    where: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    in_string: str | None = None  # the delimiter of an open multi-line string
    depth = 0  # open brackets/braces of a value spanning lines
    for lineno, line in enumerate(text.splitlines(), 1):
        if in_string is None and depth == 0:
            m = _HEADER.fullmatch(line)
            if m and not line.lstrip().startswith("[["):
                table = _split_dotted(m.group(1))
                where.setdefault(table, lineno)
                continue
            m = _KEYLINE.match(line)
            if m:
                path = table + _split_dotted(m.group(1))
                where.setdefault(path, lineno)
                if len(path) > 1:
                    where.setdefault(path[:1], lineno)
                line = line[m.end():]
            else:
                continue
        in_string, depth = _scan(line, in_string, depth)
    return where


def _scan(line: str, in_string: str | None, depth: int) -> tuple[str | None, int]:
    """Carry multi-line-string and bracket state across one line of a value."""
    i = 0
    while i < len(line):
        if in_string:
            if in_string == '"""' and line[i] == "\\":
                i += 2
                continue
            if line.startswith(in_string, i):
                in_string = None
                i += 3
                continue
            i += 1
            continue
        c = line[i]
        if c == "#":
            break
        if line.startswith('"""', i) or line.startswith("'''", i):
            in_string = line[i:i + 3]
            i += 3
            continue
        if c in "\"'":
            end = i + 1
            while end < len(line) and line[end] != c:
                end += 2 if (c == '"' and line[end] == "\\") else 1
            i = end + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return in_string, depth


# --- loading --------------------------------------------------------------------------------------

@dataclass
class Config:
    """A validated configuration file."""

    path: Path
    """The file it was read from."""
    values: dict[str, dict[str, Any]]
    """section -> key -> normalized value (only what the file sets; paths made absolute)."""
    warnings: list[str] = field(default_factory=list)
    """Things that are allowed but probably wrong, as `FILE:LINE: ...` lines."""

    def get(self, section: str, key: str, default: Any = None) -> Any:
        return self.values.get(section, {}).get(key, default)

    @property
    def key_count(self) -> int:
        return sum(len(v) for v in self.values.values())


class ConfigError(UsageError):
    """A configuration file with one or more problems; the message has one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _close(word: str, options, fmt: str = "'{}'") -> str:
    near = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {fmt.format(near[0])}?)" if near else ""


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def check_ownership(path: Path, st: os.stat_result) -> None:
    """InputError unless only root or the user running edge-fer can change the file.

    The config decides what the service runs (the model, the address it serves on, where it
    writes), so the rule is sshd's StrictModes: not writable by group or others, owned by root
    or the current user.
    """
    import stat

    if os.path.samestat(st, os.stat(os.devnull)):
        return  # `--config /dev/null`: no config at all; writing to it changes nothing read
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        who = {0o020: "its group", 0o002: "everyone"}.get(mode & 0o022, "its group and everyone")
        raise InputError(f"config file {path} is writable by {who} (mode {mode:04o}), so anyone "
                         f"who can write it decides what edge-fer runs: chmod go-w {path}")
    me = os.geteuid()
    if st.st_uid not in (0, me):
        allowed = "root" if me == 0 else f"root or {_user_name(me)} (who runs edge-fer)"
        raise InputError(f"config file {path} is owned by {_user_name(st.st_uid)}, not {allowed}, "
                         f"so that user decides what edge-fer runs: chown {_user_name(me)} {path}")


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def load_config(path: str | os.PathLike, command) -> Config:
    """Read and validate a config file for click `command` (`run`). InputError if unreadable or
    if others can change it (`check_ownership`), ConfigError if invalid."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            # Checked on the open file: the file read is the file checked.
            check_ownership(p, os.fstat(fh.fileno()))
            raw = fh.read()
    except FileNotFoundError:
        raise InputError(f"config file {p} does not exist: copy systemd/config.example.toml "
                         "there, or pass --config FILE") from None
    except OSError as exc:
        raise InputError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{p}: not UTF-8 text (byte {exc.start}): save it as UTF-8"]) from None
    return parse_config(text, command, p)


def parse_config(text: str, command, path: str | os.PathLike = "<config>") -> Config:
    """Validate TOML `text` for click `command` as if read from `path` (relative paths resolve
    against its folder)."""
    schema = schema_for(command)
    p = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column \d+\)", msg)
        line = m.group(1) if m else "?"
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        if not m and "end of document" in msg:
            line = str(text.count("\n") + 1)
        raise ConfigError([f"{p}:{line}: invalid TOML: {msg}: allowed TOML syntax, "
                           "see systemd/config.example.toml"]) from None
    lines = locate_keys(text)
    base = p.resolve().parent if str(p) != "<config>" else Path.cwd()
    problems: list[str] = []
    warnings: list[str] = []
    values: dict[str, dict[str, Any]] = {}

    def at(*keypath: str) -> str:
        return f"{p}:{lines.get(keypath, lines.get(keypath[:1], '?'))}"

    for section, table in data.items():
        if section not in schema:
            if not isinstance(table, dict):
                owner = [s for s, keys in schema.items() if section in keys]
                hint = f"put it under [{owner[0]}]" if owner else "keys belong in a section"
                problems.append(f"{at(section)}: key '{section}' is outside a section: allowed "
                                f"sections {', '.join(schema)}; {hint}")
            else:
                problems.append(f"{at(section)}: section [{section}] is unknown: allowed sections "
                                f"{', '.join(schema)}{_close(section, schema, '[{}]')}")
            continue
        if not isinstance(table, dict):
            problems.append(f"{at(section)}: key '{section}' must be a section [{section}]: "
                            f"allowed keys in it: {', '.join(schema[section])}")
            continue
        keys = schema[section]
        file_only = FILE_ONLY.get(section, {})
        for key, value in table.items():
            name = f"{section}.{key}"
            if key in file_only:
                if not _KIND_CHECKS["string"](value):
                    problems.append(f"{at(section, key)}: key '{name}' has {_type_name(value)}: "
                                    "allowed a non-empty string")
                else:
                    values.setdefault(section, {})[key] = value
                continue
            if key not in keys:
                allowed = [*keys, *file_only]
                problems.append(f"{at(section, key)}: key '{name}' is unknown: allowed keys in "
                                f"[{section}]: {', '.join(allowed)}{_close(key, allowed)}")
                continue
            spec = keys[key]
            try:
                checked = spec.check(value)
            except ValueError:
                problems.append(f"{at(section, key)}: key '{name}' has {_shown(value)} "
                                f"({_type_name(value)}): allowed {spec.allowed}")
                continue
            if spec.path and key == "model" and checked in SHIPPED and not (base / checked).exists():
                checked = str(SHIPPED[checked])
            if spec.path:
                checked = str((base / os.path.expanduser(checked)).resolve()) \
                    if "://" not in checked else checked
                if spec.must_exist and not Path(checked).is_file():
                    problems.append(f"{at(section, key)}: key '{name}' names {checked}, which is "
                                    f"not a file: allowed an existing file (relative paths start "
                                    f"at the config file's folder)")
                    continue
            values.setdefault(section, {})[key] = checked

    src = values.get("source", {})
    if "camera" in src and "source" in src:
        problems.append(f"{at('source', 'source')}: key 'source.source' is set together with "
                        "'source.camera': allowed only one of them (a camera or a file/URL)")
    srv = values.get("server", {})
    if "serve" in srv and "token" not in srv and not is_loopback(parse_address(srv["serve"])[0]):
        warnings.append(f"{at('server', 'serve')}: key 'server.serve' is not a loopback address "
                        "and the file sets no 'server.token': the server will refuse to start "
                        "unless --token is given")
    # Secrets in a file anyone on the machine can read.
    for section, key in (("server", "token"), ("mqtt", "password")):
        if key not in values.get(section, {}):
            continue
        try:
            mode = p.stat().st_mode
        except OSError:
            mode = 0
        if mode & 0o004:
            warnings.append(f"{at(section, key)}: the file holds '{section}.{key}' and anyone "
                            f"on the machine can read it: chmod 600 {p}")
    if problems:
        raise ConfigError(problems)
    return Config(path=p, values=values, warnings=warnings)


def describe_keys(command) -> list[str]:
    """One line per allowed key of click `command`: `section.key: doc (allowed ...)`."""
    lines = [f"{section}.{key}: {spec.doc} (allowed {spec.allowed})"
             for section, keys in schema_for(command).items() for key, spec in keys.items()]
    return lines + [f"{section}.{key}: {doc} Only in the file or ${env}, never on the command "
                    f"line. (allowed a non-empty string)"
                    for section, keys in FILE_ONLY.items() for key, (doc, env) in keys.items()]


def default_map(config: Config) -> dict[str, Any]:
    """The command's `default_map`: option parameter name -> value. Keys are the parameter
    names; click converts each value with the option's own type, as if typed."""
    return {key: value for section, table in config.values.items() for key, value in table.items()
            if key not in FILE_ONLY.get(section, {})}


def file_only(config: Config | None, section: str, key: str) -> str | None:
    """A `FILE_ONLY` key's value: its environment variable, else the config file, else None."""
    env = FILE_ONLY[section][key][1]
    return os.environ.get(env) or (config.get(section, key) if config is not None else None)


def apply_config(ctx, path: str | os.PathLike | None, *, required: bool = True,
                 command=None) -> Config | None:
    """Load `path` into the defaults of click context `ctx` (command-line options still win).

    For a `--config` option declared with `is_eager=True`: eager options are processed first, so
    the default_map is in place before click resolves the other options' defaults. With
    `required=False` a missing file is no error (the default path on a fresh machine).
    `command`: validate against that command's options (`run`'s, for a command that takes some
    of them) and take the keys `ctx.command` has. The Config is kept in `ctx.meta[CONFIG_META]`.
    """
    if path is None:
        return None
    if not required and not Path(path).exists():
        log.info("no config file at %s; using built-in defaults", path)
        return None
    config = load_config(path, command or ctx.command)
    for w in config.warnings:
        log.warning("%s", w)
    defaults = default_map(config)
    if command is not None:
        own = {p.name for p in ctx.command.params}
        defaults = {k: v for k, v in defaults.items() if k in own}
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta[CONFIG_META] = config
    return config
