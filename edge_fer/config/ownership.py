"""Who may change a config file: its ownership and permission policy.

The config decides what the service runs, so a file that someone else could change is refused
before it is read (`check_ownership`), the rule sshd calls StrictModes. Kept apart from the
validation because it is about the file on disk, not about its contents.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from edge_fer.errors import InputError


def check_ownership(path: Path, st: os.stat_result) -> None:
    """InputError unless only root or the user running edge-fer can change the file.

    The config decides what the service runs (the model, the address it serves on, where it
    writes), so the rule is sshd's StrictModes: not writable by group or others, owned by root
    or the current user.
    """
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
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
