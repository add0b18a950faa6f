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


class LineLog:
    """An append-only file of whole lines, size-capped and rotated like `RotatingFileHandler`.

    Each line goes to the file in one `os.write` of the complete line. When the disk fills up
    (or a file-size limit is hit) mid-line, the file is cut back to the end of the last complete
    line before the error is raised, so a reader never finds half a record. When the next line
    would take the file past `max_bytes`, FILE becomes FILE.1 (FILE.1 becomes FILE.2, ...) and
    `backups` old files are kept. Not thread-safe: one writer.
    """

    def __init__(self, path: str | os.PathLike, max_bytes: int = 0, backups: int = 0, *,
                 truncate: bool = False):
        self.path = Path(path)
        self.max_bytes = max_bytes
        """Rotate before a line would take the file past this size; 0: never."""
        self.backups = backups
        self._fd = self._open(os.O_TRUNC if truncate else 0)

    def _open(self, extra: int = 0) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | extra,
                       0o666)

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            os.truncate(self.path, 0)
        self._fd = self._open()

    def write(self, line: str) -> None:
        """Append `line` (a newline is added); OSError naming the file when it cannot be whole."""
        if self._fd < 0:
            raise OSError(9, "the log is closed", str(self.path))
        data = (line.rstrip("\n") + "\n").encode("utf-8")
        size = -1
        try:
            size = os.fstat(self._fd).st_size
            if self.max_bytes and size and size + len(data) > self.max_bytes:
                self._rotate()
                size = 0
            done = 0
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError as exc:
            if self._fd >= 0 and size >= 0:
                try:
                    os.ftruncate(self._fd, size)
                except OSError:
                    pass  # nothing more can be done; the error below says what happened
            raise OSError(exc.errno, exc.strerror or str(exc), str(self.path)) from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
