"""JSON-lines event log of the faces a device saw: size-capped, rotated, and never any pixels.

One line per face event: a track appears (`enter`), its smoothed label changes (`change`), it
is still there after `heartbeat_s` (`update`), or it is gone (`exit`). Each line holds only the
time, event, track id, box, label and scores. Writing happens on a `QueueListener` thread so a
slow SD card never holds up the pipeline; rotation is `RotatingFileHandler`'s.
"""

from __future__ import annotations

import json
import logging
import queue
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler
from pathlib import Path

from edge_fer.errors import InputError
from edge_fer.results import FrameResult, TrackedFace

log = logging.getLogger(__name__)

#: The only fields an event line holds.
EVENT_FIELDS = ("time", "event", "track_id", "box", "label", "scores")


@dataclass
class EventLogOptions:
    """Where the event log goes and how much of it is kept."""

    path: str
    """The log file; rotated copies are PATH.1, PATH.2, ..."""
    max_bytes: int = 10 * 1024 * 1024
    """Rotate when the file would grow past this size."""
    backups: int = 3
    """Rotated files kept; the log never takes more than max_bytes * (backups + 1)."""
    heartbeat_s: float = 1.0
    """An unchanged face is logged again after this many seconds (0: every frame)."""


@dataclass
class _Track:
    face: TrackedFace
    logged_at: float


class EventLogSink:
    """Pipeline sink writing face events as JSON lines."""

    def __init__(self, options: EventLogOptions):
        self.options = options
        path = Path(options.path)
        try:
            handler = RotatingFileHandler(path, maxBytes=options.max_bytes,
                                          backupCount=options.backups, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot open the event log {path}: {exc.strerror or exc}: create its "
                             "folder or set [logging] log_json to a writable file") from None
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._handler = handler
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        # A private logger object (not from getLogger): events never reach the root handlers,
        # and the application's log configuration never reaches the events.
        self._logger = logging.Logger("edge_fer.events", logging.INFO)
        self._logger.propagate = False
        self._logger.addHandler(QueueHandler(self._queue))
        self._listener = QueueListener(self._queue, handler)
        self._listener.start()
        self._tracks: dict[int, _Track] = {}
        self._closed = False

    def handle(self, result: FrameResult, stats: dict) -> None:
        # Frame times are monotonic; the log needs wall-clock time of the capture.
        wall = time.time() - (time.monotonic() - result.captured_at)
        seen = set()
        for face in result.faces:
            seen.add(face.track_id)
            prev = self._tracks.get(face.track_id)
            if prev is None:
                event = "enter"
            elif prev.face.label != face.label:
                event = "change"
            elif result.captured_at - prev.logged_at >= self.options.heartbeat_s:
                event = "update"
            else:
                self._tracks[face.track_id] = _Track(face, prev.logged_at)
                continue
            self._write(wall, event, face)
            self._tracks[face.track_id] = _Track(face, result.captured_at)
        for track_id in [t for t in self._tracks if t not in seen]:
            self._write(wall, "exit", self._tracks.pop(track_id).face)

    def _write(self, wall: float, event: str, face: TrackedFace) -> None:
        line = {
            "time": datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds"),
            "event": event,
            "track_id": int(face.track_id),
            "box": [int(v) for v in face.box],
            "label": face.label,
            "scores": {k: round(float(v), 4) for k, v in face.scores.items()},
        }
        self._logger.info(json.dumps(line, separators=(",", ":")))

    def close(self) -> None:
        """Write what is queued and close the file."""
        if self._closed:
            return
        self._closed = True
        self._listener.stop()
        self._handler.close()
