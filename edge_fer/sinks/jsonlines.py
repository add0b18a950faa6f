"""The run's log as JSON lines (`run --log-json FILE`), size-capped, whole lines only, written
off-thread; `LineWriter` is that machinery, shared with the per-frame results file."""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from pathlib import Path

from edge_fer.errors import InputError, OutputError
from edge_fer.files import LineLog
from edge_fer.results import FrameResult, RunSummary, StatsSnapshot, TrackEvent
from edge_fer.sinks.base import Every, Sink


class LineWriter:
    """Whole lines appended to a `LineLog` by a thread of its own, so a slow SD card never holds
    up the sinks and a full disk never leaves half a line (one `put` may hold several lines:
    they reach the file together or not at all).

    Once a write fails, `put` raises OutputError and nothing more is written but the `last`
    line that `finish` still tries (space may have come back). `what` names the file in
    messages ("the JSON log"); `unit` counts what was written ("lines", "frames"); `header`
    (the CSV column names) is written before anything else.
    """

    def __init__(self, path: str | os.PathLike, what: str, *, max_bytes: int = 0,
                 backups: int = 0, truncate: bool = False, unit: str = "lines",
                 header: str | None = None):
        self.path = Path(path)
        self.what, self.unit = what, unit
        try:
            self._file = LineLog(self.path, max_bytes, backups, truncate=truncate)
        except OSError as exc:
            raise InputError(f"cannot write {what} {self.path}: {exc.strerror or exc}") from None
        try:
            if header is not None:
                # Written here, not counted: a file that cannot take its header fails at once.
                self._file.write(header)
        except OSError as exc:
            self._file.close()
            raise InputError(f"cannot write {what} {self.path}: {exc.strerror or exc}") from None
        self.error: OSError | None = None
        """Why writing stopped (set on the writer thread)."""
        self.written = 0
        """`put` calls that reached the file."""
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._drain, name="edge-fer-lines", daemon=True)
        self._thread.start()
        self._closed = False

    def _drain(self) -> None:
        while (line := self._lines.get()) is not None:
            if self.error is None:
                self._write(line)

    def _write(self, line: str) -> None:
        try:
            self._file.write(line)
            self.written += 1
        except OSError as exc:
            self.error = exc

    def failure(self) -> OutputError:
        e = self.error
        return OutputError(f"{self.what} {self.path} stopped after {self.written} {self.unit}: "
                           f"{e.strerror or e}")

    def put(self, line: str) -> None:
        """Queue `line` for the file; OutputError once a write has failed."""
        if self.error is not None:
            raise self.failure()
        self._lines.put(line)

    def _stop_thread(self) -> None:
        if self._thread.is_alive():
            self._lines.put(None)
            self._thread.join()

    def finish(self, last: str | None = None) -> None:
        """Write what is queued, then `last` even after a failure; OutputError if anything
        was lost."""
        self._stop_thread()
        if last is not None:
            failed_before = self.error
            self.error = None
            self._write(last)
            self.error = self.error or failed_before
        if self.error is not None:
            raise self.failure()

    def close(self) -> None:
        """Write what is queued and close the file; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop_thread()
        self._file.close()


class JsonLinesSink(Sink):
    """The run's log as JSON lines: a `start` record, `stats` every `interval` seconds, face
    `event`s and a `summary`. An event holds the time, track id, frame number, box, label and
    scores: never pixels.

    Size-capped: the file moves to FILE.1 (FILE.1 to FILE.2, ...) when the next line would take
    it past `max_bytes`, and `backups` old files are kept, so the log never takes more than about
    max_bytes * (backups + 1). Lines are written whole by a `LineWriter`. The file is appended
    to: the runs of a long-lived kiosk follow each other, each opening with its `start` record.
    Once a write fails, the next call raises OutputError and nothing more is written but the
    summary, which `on_summary` still tries.
    """

    def __init__(self, path: str | os.PathLike, interval: float = 5.0, header: dict | None = None,
                 *, max_bytes: int = 10 * 1024 * 1024, backups: int = 3):
        self._writer = LineWriter(path, "the JSON log", max_bytes=max_bytes, backups=backups)
        self.path = self._writer.path
        self._due = Every(interval)
        self._write("start", header or {})

    @property
    def error(self) -> OSError | None:
        """Why writing stopped, or None."""
        return self._writer.error

    @staticmethod
    def _line(kind: str, fields: dict, at: float | None) -> str:
        return json.dumps({"type": kind, "time": round(time.time() if at is None else at, 3), **fields})

    def _write(self, kind: str, fields: dict, at: float | None = None) -> None:
        self._writer.put(self._line(kind, fields, at))

    def on_result(self, result: FrameResult, stats: StatsSnapshot) -> None:
        if self._due():
            self._write("stats", stats.to_dict())

    def on_event(self, event: TrackEvent) -> None:
        # Events carry monotonic times; the log says when they happened on the wall clock.
        self._write("event", event.to_dict(), at=time.time() - (time.monotonic() - event.at))

    def on_summary(self, summary: RunSummary) -> None:
        """Write what is queued, then the summary, even after a failure (space may have come
        back, and the summary says what was lost); OutputError if it cannot."""
        self._writer.finish(self._line("summary", summary.to_dict(), None))

    def close(self) -> None:
        """Write what is queued and close the file; safe to call twice."""
        self._writer.close()
