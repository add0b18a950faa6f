"""The run's log as JSON lines (`run --log-json FILE`), size-capped and written off-thread."""

from __future__ import annotations

import json
import logging
import os
import queue
import time
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler
from pathlib import Path

from edge_fer.errors import InputError
from edge_fer.results import FrameResult, RunSummary, StatsSnapshot, TrackEvent
from edge_fer.sinks.base import Every, Sink


class JsonLinesSink(Sink):
    """The run's log as JSON lines: a `start` record, `stats` every `interval` seconds, face
    `event`s and a `summary`. An event holds the time, track id, frame number, box, label and
    scores: never pixels.

    Size-capped: `RotatingFileHandler` moves the file to FILE.1 (FILE.1 to FILE.2, ...) when the
    next line would take it past `max_bytes` and keeps `backups` old files, so the log never
    takes more than about max_bytes * (backups + 1). Lines are written by a `QueueListener`
    thread, so a slow SD card never holds up the sinks. The file is appended to: the runs of a
    long-lived kiosk follow each other, each opening with its `start` record.
    """

    def __init__(self, path: str | os.PathLike, interval: float = 5.0, header: dict | None = None,
                 *, max_bytes: int = 10 * 1024 * 1024, backups: int = 3):
        self.path = Path(path)
        try:
            handler = RotatingFileHandler(self.path, maxBytes=max_bytes, backupCount=backups,
                                          encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write the JSON log {self.path}: {exc.strerror or exc}") from None
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._handler = handler
        lines: queue.SimpleQueue = queue.SimpleQueue()
        # A logger of its own (not from getLogger): the records never reach the application's
        # handlers, and the application's log configuration never reaches the records.
        self._logger = logging.Logger(f"{__name__}.json", logging.INFO)  # noqa: LOG001
        self._logger.propagate = False
        self._logger.addHandler(QueueHandler(lines))
        self._listener = QueueListener(lines, handler)
        self._listener.start()
        self._closed = False
        self._due = Every(interval)
        self._write("start", header or {})

    def _write(self, kind: str, fields: dict, at: float | None = None) -> None:
        record = {"type": kind, "time": round(time.time() if at is None else at, 3), **fields}
        self._logger.info("%s", json.dumps(record))

    def on_result(self, result: FrameResult, stats: StatsSnapshot) -> None:
        if self._due():
            self._write("stats", stats.to_dict())

    def on_event(self, event: TrackEvent) -> None:
        # Events carry monotonic times; the log says when they happened on the wall clock.
        self._write("event", event.to_dict(), at=time.time() - (time.monotonic() - event.at))

    def on_summary(self, summary: RunSummary) -> None:
        self._write("summary", summary.to_dict())

    def close(self) -> None:
        """Write what is queued and close the file; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._listener.stop()
        self._handler.close()
