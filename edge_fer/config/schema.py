"""What a config file may hold: the schema of `run`'s keys, read off its click options.

Every key is `section.key` where `key` is the `run` option name with `_` for `-`
(`[detection] min_face = 40` is `--min-face 40`), and every option of `run` has a key. Sections
and options are declared once, in `edge_fer.options`; what a key accepts and means is read off the
click option made from that declaration (`schema_for`): type, range, choices and help. This room
only describes keys; checking a file against them is `edge_fer.config.validate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import click

from edge_fer.options import SECTIONS

#: Keys of the file that no option has: secrets the command line must never carry (anyone on
#: the machine reads it in /proc/PID/cmdline). section -> key -> (what it is, the environment
#: variable that overrides it).
FILE_ONLY: dict[str, dict[str, tuple[str, str]]] = {
    "mqtt": {"username": ("The MQTT broker's user name.", "EDGE_FER_MQTT_USERNAME"),
             "password": ("The MQTT broker's password (chmod 600 the file).",
                          "EDGE_FER_MQTT_PASSWORD")},
}
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
        # TOML's own types first: click would turn "640" or 1.5 into an integer, a file must not.
        if not KIND_CHECKS[self.kind](value):
            raise ValueError
        try:
            return self.param.type.convert(value, self.param, None)
        except click.ClickException:
            raise ValueError from None


#: TOML kind -> whether a parsed value is of it (before click converts it).
KIND_CHECKS: dict[str, Callable[[Any], bool]] = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool)
                         and math.isfinite(v)),
    "string": lambda v: isinstance(v, str) and bool(v.strip()),
    "array": lambda v: isinstance(v, list),
}


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


def describe_keys(command) -> list[str]:
    """One line per allowed key of click `command`: `section.key: doc (allowed ...)`."""
    lines = [f"{section}.{key}: {spec.doc} (allowed {spec.allowed})"
             for section, keys in schema_for(command).items() for key, spec in keys.items()]
    return lines + [f"{section}.{key}: {doc} Only in the file or ${env}, never on the command "
                    f"line. (allowed a non-empty string)"
                    for section, keys in FILE_ONLY.items() for key, (doc, env) in keys.items()]
