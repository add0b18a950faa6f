"""The TOML configuration file of `edge-fer run`: schema, validation with line numbers, and the
mapping onto the command's options.

Every key is `section.key` where `key` is the `run` option name with `_` for `-`
(`[detection] min_face = 40` is `--min-face 40`). The file supplies the *defaults* of `run`
(click's `default_map`), so an option given on the command line, or its environment variable,
wins. One module per job:

- `schema`: which keys exist and what each takes, read off `run`'s click options (`schema_for`,
  `FILE_ONLY` for the secrets no option carries, `describe_keys` for `check-config --keys`).
- `locate`: the line of each key in the TOML text, for error messages (`locate_keys`).
- `ownership`: the file must not be changeable by anyone but root or the user running edge-fer
  (`check_ownership`).
- `validate`: a text checked against the schema, every problem at once (`parse_config`,
  `Config`, `ConfigError`).
- `load`: the file read and applied as click's defaults (`load_config`, `apply_config`,
  `default_map`, `file_only`, `DEFAULT_CONFIG_PATH`).

Import from here (`from edge_fer.config import load_config`); the modules are the rooms behind it.
"""

from edge_fer.config.load import (CONFIG_META, DEFAULT_CONFIG_PATH, apply_config, default_map,
                                  file_only, load_config)
from edge_fer.config.locate import locate_keys
from edge_fer.config.ownership import check_ownership
from edge_fer.config.schema import (CONFIG_PARAM, FILE_ONLY, INPUT_FILES, Key, describe_keys,
                                    schema_for)
from edge_fer.config.validate import Config, ConfigError, parse_config

__all__ = ["CONFIG_META", "CONFIG_PARAM", "DEFAULT_CONFIG_PATH", "FILE_ONLY", "INPUT_FILES",
           "Config", "ConfigError", "Key", "apply_config", "check_ownership", "default_map",
           "describe_keys", "file_only", "load_config", "locate_keys", "parse_config",
           "schema_for"]
