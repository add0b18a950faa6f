"""Reading the config file and handing it to click: where it is, who may have written it, and
its values as the command's defaults.

`load_config` opens the file, refuses one that others can change (`edge_fer.config.ownership`)
and validates it (`edge_fer.config.validate`); `apply_config` makes its values click's
`default_map`, so an option given on the command line, or its environment variable, wins.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from edge_fer.config.ownership import check_ownership
from edge_fer.config.schema import FILE_ONLY
from edge_fer.config.validate import Config, ConfigError, parse_config
from edge_fer.errors import InputError

log = logging.getLogger(__name__)

#: Where the service looks when no `--config` is given.
DEFAULT_CONFIG_PATH = Path("/etc/edge-fer/config.toml")
#: Where `apply_config` leaves the loaded `Config` in the click context's `meta`.
CONFIG_META = "edge_fer.config"


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
