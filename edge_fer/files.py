"""Writing outputs so that a failure (a full disk, a kill) never leaves half a file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file; nothing is left behind on failure.

    An existing `path` is replaced only once the new content is on disk, so a failed write
    keeps the previous file intact. An `OSError` names `path`: the temporary file it happened
    on means nothing to the user.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".part", dir=path.parent)
        # mkstemp creates the file 0600; a model is read by other users (a kiosk service's own
        # account), so give it the mode a plain open() would, under the caller's umask.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
