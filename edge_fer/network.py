"""Network settings checked before anything listens: `HOST:PORT` addresses, loopback, tokens.

Shared by the command line's option types, the config file's validation and the page server,
so each of them refuses the same values with the same words.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

#: Address the local page is served on when `[server] serve` is not set.
DEFAULT_SERVE = "127.0.0.1:8080"
#: A token shorter than this is too easy to guess for a device on a shared network.
MIN_TOKEN_LENGTH = 16
#: What `--serve` and `[server] serve` take, in words.
ADDRESS_WORDS = '"HOST:PORT" with PORT 1-65535, e.g. "127.0.0.1:8080" or "[::1]:8080"'
#: What `--token` and `[server] token` take, in words.
TOKEN_WORDS = (f"a string of {MIN_TOKEN_LENGTH} or more printable characters without spaces "
               "(e.g. from `openssl rand -hex 16`)")


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


def check_token(value: Any) -> None:
    """ValueError unless `value` is a usable access token."""
    if (not isinstance(value, str) or len(value) < MIN_TOKEN_LENGTH
            or not value.isprintable() or any(c.isspace() for c in value)):
        raise ValueError("weak or malformed token")


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1), without DNS."""
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
