"""What the pipeline thread hands the HTTP threads: the newest result and stats, under a lock.

`ServerState.put()` (the sink's `on_result`) only stores references and wakes the stream
clients; it never encodes, draws or touches a socket, so the pipeline runs at the same speed with
zero or fifty browsers watching. The JPEG of a frame is encoded once, on demand, by the first
client that needs it (`jpeg()`), and `/api/faces` is built from the same snapshot
(`faces_json()`). Every route reads from here; none of them writes but the stream counter.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import cv2

from edge_fer.draw import draw_faces, hide
from edge_fer.exposure import privacy_mode
from edge_fer.results import FrameResult, StatsSnapshot
from edge_fer.sinks.server.options import ServerOptions

log = logging.getLogger(__name__)


def finite(value):
    """JSON-safe copy: NaN/inf (a percentile before any sample) become null, not invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return finite(value.item())
    return value


class ServerState:
    """The newest result, the stats, other outputs' statuses and the stream clients' count."""

    def __init__(self, options: ServerOptions):
        self.options = options
        self._cond = threading.Condition()
        self._result: FrameResult | None = None
        self._stats: StatsSnapshot | None = None
        self._live_stats: Callable[[], StatsSnapshot] | None = None
        self._statuses: dict[str, tuple[Callable[[], dict], dict[str, tuple[str, str]]]] = {}
        self._seq = 0
        self._handled_at = 0.0  # time.monotonic() of the newest result
        self._encode_lock = threading.Lock()
        self._jpeg: bytes | None = None
        self._jpeg_seq = 0
        self._frames_encoded = 0
        self._streams = 0
        self.stopped = threading.Event()
        """Set when the server closes: stream clients end within a wait interval."""

    # --- written by the pipeline and the assembly ------------------------------------------------

    def put(self, result: FrameResult, stats: StatsSnapshot) -> None:
        """Keep the newest result and stats; wakes the stream clients. Never blocks on clients."""
        with self._cond:
            self._result = result
            self._stats = stats
            self._seq += 1
            self._handled_at = time.monotonic()
            self._cond.notify_all()

    def follow(self, stats_fn: Callable[[], StatsSnapshot]) -> None:
        """Read the stats from `stats_fn` at request time (`ServerSink.follow`)."""
        self._live_stats = stats_fn

    def add_status(self, name: str, status_fn: Callable[[], dict],
                   metrics: dict[str, tuple[str, str]] | None = None) -> None:
        """Serve `status_fn()` under `name` (`ServerSink.add_status`)."""
        self._statuses[name] = (status_fn, dict(metrics or {}))

    def stop(self) -> None:
        """Tell the stream clients to end."""
        self.stopped.set()
        with self._cond:
            self._cond.notify_all()

    # --- read by the routes --------------------------------------------------------------------

    def statuses(self) -> dict[str, tuple[dict, dict[str, tuple[str, str]]]]:
        """name -> (its status now, its metrics) for every `add_status`."""
        return {name: (fn(), metrics) for name, (fn, metrics) in self._statuses.items()}

    @property
    def stream_clients(self) -> int:
        with self._cond:
            return self._streams

    @property
    def frames_encoded(self) -> int:
        return self._frames_encoded

    @contextmanager
    def stream_slot(self, limit: int) -> Iterator[bool]:
        """Whether a new stream client fits under `limit`; it counts as one while inside."""
        with self._cond:
            admitted = self._streams < limit
            if admitted:
                self._streams += 1
        try:
            yield admitted
        finally:
            if admitted:
                with self._cond:
                    self._streams -= 1

    def snapshot(self) -> tuple[FrameResult | None, StatsSnapshot | None, int, float]:
        """(newest result, the stats now, its sequence number, seconds since it arrived)."""
        with self._cond:
            age = time.monotonic() - self._handled_at if self._result is not None else math.nan
            result, stats, seq = self._result, self._stats, self._seq
        if self._live_stats is not None:
            stats = self._live_stats()
        return result, stats, seq, age

    def wait_newer(self, seq: int, timeout: float) -> int | None:
        """The sequence number of a result newer than `seq`, waiting up to `timeout` for one;
        None if none came (or the server is stopping)."""
        with self._cond:
            if self._seq <= seq and not self.stopped.is_set():
                self._cond.wait(timeout)
            return self._seq if self._seq > seq else None

    def jpeg(self) -> tuple[bytes | None, int]:
        """The newest frame, annotated and encoded (at most once per frame), and its sequence."""
        with self._encode_lock:
            with self._cond:
                result, seq = self._result, self._seq
            if result is None:
                return None, 0
            if self._jpeg_seq != seq:
                # The pipeline shares the frame with every sink: draw on a copy.
                frame = result.frame.copy()
                hide(frame, result.faces, privacy_mode(self.options.blur_faces, self.options.privacy))
                draw_faces(frame, result.faces)
                ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.options.jpeg_quality])
                if not ok:
                    log.warning("cannot encode frame %d as JPEG", result.index)
                    return None, seq
                self._jpeg, self._jpeg_seq = buf.tobytes(), seq
                self._frames_encoded += 1
            return self._jpeg, self._jpeg_seq

    def faces_json(self) -> dict:
        """What `/api/faces` serves: the newest frame's faces, or with `faces_api="aggregate"`
        only how many show each label (`{"count": N, "counts": {label: n}}`)."""
        result, _, _, age = self.snapshot()
        aggregate = self.options.faces_api == "aggregate"
        if result is None:
            empty = {"count": 0, "counts": {}} if aggregate else {"faces": []}
            return {"index": None, "age_s": None, "latency_ms": None, **empty}
        head = {"index": result.index, "age_s": round(age, 3),
                "latency_ms": round(result.latency_ms, 2)}
        if aggregate:
            counts: dict[str, int] = {}
            for f in result.faces:
                counts[f.label] = counts.get(f.label, 0) + 1
            return finite({**head, "count": len(result.faces), "counts": dict(sorted(counts.items()))})
        faces = [f.to_dict(digits=None) for f in result.faces]
        return finite({**head, "faces": faces})
