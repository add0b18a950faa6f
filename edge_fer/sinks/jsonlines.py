"""The run's log as JSON lines (`run --log-json FILE`), size-capped, whole lines only, written
off-thread."""

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


class JsonLinesSink(Sink):
    """The run's log as JSON lines: a `start` record, `stats` every `interval` seconds, face
    `event`s and a `summary`. An event holds the time, track id, frame number, box, label and
    scores: never pixels.

    Size-capped: the file moves to FILE.1 (FILE.1 to FILE.2, ...) when the next line would take
    it past `max_bytes`, and `backups` old files are kept, so the log never takes more than about
    max_bytes * (backups + 1). Lines are written whole (see `LineLog`) by a thread of their own,
    so a slow SD card never holds up the sinks, and a full disk never leaves half a line. The
    file is appended to: the runs of a long-lived kiosk follow each other, each opening with its
    `start` record. Once a write fails, the next call raises OutputError and nothing more is
    written but the summary, which `on_summary` still tries.
    """

    def __init__(self, path: str | os.PathLike, interval: float = 5.0, header: dict | None = None,
                 *, max_bytes: int = 10 * 1024 * 1024, backups: int = 3):
        self.path = Path(path)
        try:
            self._file = LineLog(self.path, max_bytes, backups)
        except OSError as exc:
            raise InputError(f"cannot write the JSON log {self.path}: {exc.strerror or exc}") from None
        self.error: OSError | None = None
        """Why writing stopped (set on the writer thread)."""
        self.lines_written = 0
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._drain, name="edge-fer-json-log", daemon=True)
        self._thread.start()
        self._closed = False
        self._due = Every(interval)
        self._write("start", header or {})

    def _drain(self) -> None:
        while (line := self._lines.get()) is not None:
            if self.error is None:
                self._put(line)

    def _put(self, line: str) -> None:
        try:
            self._file.write(line)
            self.lines_written += 1
        except OSError as exc:
            self.error = exc

    def _failure(self) -> OutputError:
        e = self.error
        return OutputError(f"the JSON log {self.path} stopped after {self.lines_written} lines: "
                           f"{e.strerror or e}")

    @staticmethod
    def _line(kind: str, fields: dict, at: float | None) -> str:
        return json.dumps({"type": kind, "time": round(time.time() if at is None else at, 3), **fields})

    def _write(self, kind: str, fields: dict, at: float | None = None) -> None:
        if self.error is not None:
            raise self._failure()
        self._lines.put(self._line(kind, fields, at))

    def on_result(self, result: FrameResult, stats: StatsSnapshot) -> None:
        if self._due():
            self._write("stats", stats.to_dict())

    def on_event(self, event: TrackEvent) -> None:
        # Events carry monotonic times; the log says when they happened on the wall clock.
        self._write("event", event.to_dict(), at=time.time() - (time.monotonic() - event.at))

    def _stop_thread(self) -> None:
        if self._thread.is_alive():
            self._lines.put(None)
            self._thread.join()

    def on_summary(self, summary: RunSummary) -> None:
        """Write what is queued, then the summary, even after a failure (space may have come
        back, and the summary says what was lost); OutputError if it cannot."""
        self._stop_thread()
        failed_before = self.error
        self.error = None
        self._put(self._line("summary", summary.to_dict(), None))
        self.error = self.error or failed_before
        if self.error is not None:
            raise self._failure()

    def close(self) -> None:
        """Write what is queued and close the file; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop_thread()
        self._file.close()
