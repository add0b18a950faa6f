"""Checking a config file's text against the schema: `parse_config` and what it returns.

Validation collects every problem and reports each one as `FILE:LINE: key 'section.key' ...:
allowed ...` (the lines come from `edge_fer.config.locate`). What passes becomes a `Config`:
values as the options would take them, relative paths resolved against the file's folder.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_fer.config.locate import locate_keys
from edge_fer.config.schema import FILE_ONLY, KIND_CHECKS, schema_for
from edge_fer.errors import UsageError
from edge_fer.network import is_loopback, parse_address
from edge_fer_models import SHIPPED

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


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


# bool before int: a TOML boolean is a Python int too.
_TOML_TYPES = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
               (list, "an array"), (dict, "a table"))


def _type_name(value: Any) -> str:
    return next((name for kind, name in _TOML_TYPES if isinstance(value, kind)),
                type(value).__name__)


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
                if not KIND_CHECKS["string"](value):
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
