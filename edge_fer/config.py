"""The TOML configuration file of `edge-fer run`: schema, validation with line numbers, and the
mapping onto the command's options.

Every key is `section.key` where `key` is the `run` option name with `_` for `-`
(`[detection] min_face = 40` is `--min-face 40`). The file supplies the *defaults* of `run`
(click's `default_map`), so an option given on the command line always wins.

Validation collects every problem and reports each one as `FILE:LINE: key 'section.key' ...:
allowed ...`. `tomllib` parses (it is the reference parser of the standard library) but keeps no
positions, so `locate_keys` finds the line of each key in the source text.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge_fer.errors import InputError, UsageError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

#: Where the service looks when no `--config` is given.
DEFAULT_CONFIG_PATH = Path("/etc/edge-fer/config.toml")
#: Address the local page is served on when `[server] serve` is not set.
DEFAULT_SERVE = "127.0.0.1:8080"
#: A token shorter than this is too easy to guess for a device on a shared network.
MIN_TOKEN_LENGTH = 16


# --- value checkers -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Key:
    """One allowed key: how to check its value and what to tell the user."""

    allowed: str
    """What the key accepts, in words (shown after `allowed` in errors)."""
    check: Callable[[Any], Any]
    """Returns the normalized value or raises ValueError (the value is then reported as wrong)."""
    doc: str
    """One line for the documentation and the example config."""
    path: bool = False
    """The value is a file path: relative paths are resolved against the config file's folder."""
    must_exist: bool = False
    """The path is an input that has to exist (a model, a cascade)."""


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


def integer(lo: int | None = None, hi: int | None = None) -> tuple[str, Callable[[Any], Any]]:
    allowed = "an integer" + _range_words(lo, hi)

    def check(v: Any) -> int:
        # bool is an int subclass in Python, but `width = true` is a mistake, not 1.
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ValueError
        return v

    return allowed, check


def number(lo: float | None = None, hi: float | None = None, *,
           lo_open: bool = False) -> tuple[str, Callable[[Any], Any]]:
    allowed = "a number" + _range_words(lo, hi, lo_open=lo_open)

    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise ValueError
        if hi is not None and v > hi:
            raise ValueError
        return float(v)

    return allowed, check


def _range_words(lo, hi, *, lo_open: bool = False) -> str:
    if lo is not None and hi is not None and not lo_open:
        return f" from {lo} to {hi}"
    words = []
    if lo is not None:
        words.append(f"{'>' if lo_open else '>='} {lo}")
    if hi is not None:
        words.append(f"<= {hi}")
    return (" " + " and ".join(words)) if words else ""


def boolean() -> tuple[str, Callable[[Any], Any]]:
    def check(v: Any) -> bool:
        if not isinstance(v, bool):
            raise ValueError
        return v

    return "true or false", check


def string(pattern: str | None = None, words: str = "a non-empty string") -> tuple[str, Callable[[Any], Any]]:
    rx = re.compile(pattern) if pattern else None

    def check(v: Any) -> str:
        if not isinstance(v, str) or not v.strip():
            raise ValueError
        if rx and not rx.fullmatch(v):
            raise ValueError
        return v

    return words, check


def choice(*options: str) -> tuple[str, Callable[[Any], Any]]:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError
        return v

    return "one of " + ", ".join(f'"{o}"' for o in options), check


def string_list() -> tuple[str, Callable[[Any], Any]]:
    def check(v: Any) -> list[str]:
        if (not isinstance(v, list) or len(v) < 2
                or not all(isinstance(s, str) and s.strip() and "," not in s for s in v)
                or len(set(v)) != len(v)):
            raise ValueError
        return [s.strip() for s in v]

    return "an array of at least two distinct names without commas, in output order", check


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:8080`) as (host, port); ValueError with the reason if bad."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([A-Za-z0-9.\-]+):(\d{1,5})", text.strip())
    if not m:
        raise ValueError("not HOST:PORT")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1-65535")
    if m.group(1):
        ipaddress.IPv6Address(host)  # raises ValueError for a malformed address
    return host, port


def address() -> tuple[str, Callable[[Any], Any]]:
    def check(v: Any) -> str:
        parse_address(v)
        return v.strip()

    return '"HOST:PORT" with PORT 1-65535, e.g. "127.0.0.1:8080" or "[::1]:8080"', check


def token() -> tuple[str, Callable[[Any], Any]]:
    def check(v: Any) -> str:
        check_token(v)
        return v

    return (f"a string of {MIN_TOKEN_LENGTH} or more printable characters without spaces "
            "(e.g. from `openssl rand -hex 16`)"), check


def check_token(value: Any) -> None:
    """ValueError unless `value` is a usable access token."""
    if (not isinstance(value, str) or len(value) < MIN_TOKEN_LENGTH
            or not value.isprintable() or any(c.isspace() for c in value)):
        raise ValueError("weak or malformed token")


def _key(spec: tuple[str, Callable[[Any], Any]], doc: str, **kw) -> Key:
    return Key(allowed=spec[0], check=spec[1], doc=doc, **kw)


# --- the schema -----------------------------------------------------------------------------------

SCHEMA: dict[str, dict[str, Key]] = {
    "source": {
        "camera": _key(string(r"pi|usb:\d+|\d+", '"pi", "usb:N" or "N" (a camera index)'),
                       "Camera to read: the Pi camera, a USB camera, or an OpenCV index."),
        "source": _key(string(), "Video file or stream URL to read instead of a camera.", path=True),
        "width": _key(integer(16, 8192), "Capture width in pixels."),
        "height": _key(integer(16, 8192), "Capture height in pixels."),
        "fps": _key(number(0, 240, lo_open=True), "Capture frame rate."),
        "realtime": _key(boolean(), "Pace a file source at its own frame rate (drop late frames)."),
    },
    "model": {
        "model": _key(string(), "Classifier (.tflite); default: the shipped model.", path=True,
                      must_exist=True),
        "labels": _key(string_list(), "Class names in output order (overrides the metadata)."),
        "normalization": _key(choice("unit", "symmetric", "raw"),
                              "Pixel normalization (overrides the metadata)."),
        "crop_margin": _key(number(0, 1), "Face-box margin per side, fraction of box width."),
        "threads": _key(integer(1, 64), "Interpreter threads."),
        "backend": _key(choice("auto", "litert", "tflite-runtime", "tensorflow"),
                        "TFLite interpreter backend."),
    },
    "detection": {
        "cascade": _key(string(), "Haar cascade XML (default: OpenCV's frontal-face cascade).",
                        path=True, must_exist=True),
        "scale_factor": _key(number(1.01, 2.0), "Image-pyramid step; larger is faster."),
        "min_neighbors": _key(integer(0, 100), "Detections needed to keep a face."),
        "min_face": _key(integer(8, 4096), "Smallest face side in pixels."),
        "detect_width": _key(integer(0, 8192), "Downscale frames to this width for detection (0 = full size)."),
    },
    "tracking": {
        "detect_every": _key(integer(1, 1000), "Run the detector on every Nth frame; track in between."),
        "smoothing": _key(number(0, 1), "Temporal smoothing of the emotion scores (0 = none)."),
        "iou_threshold": _key(number(0, 1), "Box overlap that continues a track."),
    },
    "logging": {
        "log_json": _key(string(), "JSON-lines event log file (time, track id, box, label, scores).",
                         path=True),
        "log_interval": _key(number(0, 86400), "Seconds between stats lines in the log (0 = off)."),
        "event_log_max_bytes": _key(integer(4096), "Rotate the event log when it reaches this size."),
        "event_log_backups": _key(integer(0, 100), "Rotated event logs to keep."),
    },
    "output": {
        "display": _key(boolean(), "Show the annotated video in a local window."),
        "record": _key(string(), "Write the annotated video to this file (the only way frames reach disk).",
                       path=True),
        "max_frames": _key(integer(1), "Stop after this many frames."),
        "duration": _key(number(0, lo_open=True), "Stop after this many seconds."),
    },
    "server": {
        "serve": _key(address(), "Serve the local page, API and metrics on HOST:PORT."),
        "token": _key(token(), "Access token; required to serve on a non-loopback address."),
    },
}


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


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate a config file. InputError if unreadable, ConfigError if invalid."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"config file {p} does not exist: copy systemd/config.example.toml "
                         "there, or pass --config FILE") from None
    except OSError as exc:
        raise InputError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{p}: not UTF-8 text (byte {exc.start}): save it as UTF-8"]) from None
    return parse_config(text, p)


def parse_config(text: str, path: str | os.PathLike = "<config>") -> Config:
    """Validate TOML `text` as if read from `path` (relative paths resolve against its folder)."""
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
        if section not in SCHEMA:
            if not isinstance(table, dict):
                owner = [s for s, keys in SCHEMA.items() if section in keys]
                hint = f"put it under [{owner[0]}]" if owner else "keys belong in a section"
                problems.append(f"{at(section)}: key '{section}' is outside a section: allowed "
                                f"sections {', '.join(SCHEMA)}; {hint}")
            else:
                problems.append(f"{at(section)}: section [{section}] is unknown: allowed sections "
                                f"{', '.join(SCHEMA)}{_close(section, SCHEMA, '[{}]')}")
            continue
        if not isinstance(table, dict):
            problems.append(f"{at(section)}: key '{section}' must be a section [{section}]: "
                            f"allowed keys in it: {', '.join(SCHEMA[section])}")
            continue
        keys = SCHEMA[section]
        for key, value in table.items():
            name = f"{section}.{key}"
            if key not in keys:
                problems.append(f"{at(section, key)}: key '{name}' is unknown: allowed keys in "
                                f"[{section}]: {', '.join(keys)}{_close(key, keys)}")
                continue
            spec = keys[key]
            try:
                checked = spec.check(value)
            except ValueError:
                problems.append(f"{at(section, key)}: key '{name}' has {_shown(value)} "
                                f"({_type_name(value)}): allowed {spec.allowed}")
                continue
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
    if "token" in srv:
        try:
            mode = p.stat().st_mode
        except OSError:
            mode = 0
        if mode & 0o004:
            warnings.append(f"{at('server', 'token')}: the file holds 'server.token' and anyone "
                            f"on the machine can read it: chmod 600 {p}")
    if problems:
        raise ConfigError(problems)
    return Config(path=p, values=values, warnings=warnings)


def describe_keys() -> list[str]:
    """One line per allowed key: `section.key: doc (allowed ...)`."""
    return [f"{section}.{key}: {spec.doc} (allowed {spec.allowed})"
            for section, keys in SCHEMA.items() for key, spec in keys.items()]


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1), without DNS."""
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_default_map(config: Config) -> dict[str, Any]:
    """The `run` command's `default_map`: option parameter name -> value as the CLI would take it.

    Keys map 1:1 to `run` parameters. Values are given in the form the option parses (labels
    as the comma-separated string `--labels` takes), so click converts and checks them exactly
    as if typed.
    """
    out: dict[str, Any] = {}
    for table in config.values.values():
        for key, value in table.items():
            if isinstance(value, list):
                value = ",".join(value)
            out[key] = value
    return out


def apply_config(ctx, path: str | os.PathLike | None, *, required: bool = True) -> Config | None:
    """Load `path` into the defaults of click context `ctx` (command-line options still win).

    For a `--config` option declared with `is_eager=True`: eager options are processed first, so
    the default_map is in place before click resolves the other options' defaults. With
    `required=False` a missing file is no error (the default path on a fresh machine).
    """
    if path is None:
        return None
    if not required and not Path(path).exists():
        log.info("no config file at %s; using built-in defaults", path)
        return None
    config = load_config(path)
    for w in config.warnings:
        log.warning("%s", w)
    ctx.default_map = {**(ctx.default_map or {}), **run_default_map(config)}
    return config
