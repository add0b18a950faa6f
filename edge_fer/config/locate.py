"""Where each key of a TOML text is: line numbers for the config file's error messages.

`tomllib` parses (it is the reference parser of the standard library) but keeps no positions, so
`locate_keys` scans the source text for table headers and keys, enough of TOML's grammar to skip
the insides of multi-line strings and arrays. It never decides what the file means; `tomllib`
does.
"""

from __future__ import annotations

import re

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
