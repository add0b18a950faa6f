"""Run statistics: rolling latency percentiles, frame rates and counters, read out as
`edge_fer.results.StatsSnapshot` (where each figure is defined).

Each measurement has one writer (the stage that owns it) and any number of readers (the sinks,
the kiosk web server, the final summary), so reads take a lock and copy.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from edge_fer.results import StatsSnapshot

#: Samples kept per latency measurement: at 30 FPS about half a minute, enough for a stable p95.
WINDOW_SAMPLES = 1000
#: Seconds over which frame rates are averaged.
RATE_WINDOW_S = 5.0


class Rolling:
    """The last `size` samples of a duration in milliseconds, for percentiles."""

    def __init__(self, size: int = WINDOW_SAMPLES):
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.count = 0
        """Samples added since the start (not only those still in the window)."""

    def add(self, ms: float) -> None:
        with self._lock:
            self._values.append(ms)
            self.count += 1

    def percentiles(self, *ps: float) -> list[float | None]:
        with self._lock:
            values = np.fromiter(self._values, dtype=np.float64, count=len(self._values))
        if values.size == 0:
            return [None] * len(ps)
        return [round(float(v), 2) for v in np.percentile(values, ps)]


class RateMeter:
    """Events per second over the last `window` seconds."""

    def __init__(self, window: float = RATE_WINDOW_S, clock=time.monotonic):
        self.window = window
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self._first: float | None = None

    def tick(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        with self._lock:
            if self._first is None:
                self._first = now
            self._times.append(now)
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        now = self._clock() if now is None else now
        with self._lock:
            self._trim(now)
            if self._first is None:
                return 0.0
            # Early in a run the window is not full yet: divide by the time actually covered.
            span = min(self.window, now - self._first)
            return round(len(self._times) / span, 2) if span > 0 else 0.0


class PipelineStats:
    """Counters and measurements of one pipeline run."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.started_at: float | None = None
        self.started_wall: float | None = None
        self.first_result_at: float | None = None
        self.first_face_at: float | None = None
        self.last_result_at: float | None = None
        self.frames_captured = 0
        self.frames_processed = 0
        self.faces = 0
        self.tracks_started = 0
        self.reconnects = 0
        self.model_failures = 0
        self.detect = Rolling()
        self.classify = Rolling()
        self.latency = Rolling()
        self.captured_rate = RateMeter(clock=clock)
        self.processed_rate = RateMeter(clock=clock)

    def start(self) -> None:
        self.started_at = self.clock()
        self.started_wall = time.time()

    def captured(self, at: float) -> None:
        self.frames_captured += 1
        self.captured_rate.tick(at)

    def processed(self, captured_at: float, finished_at: float, faces: int) -> None:
        self.frames_processed += 1
        self.faces = faces
        self.processed_rate.tick(finished_at)
        self.latency.add((finished_at - captured_at) * 1000.0)
        if self.first_result_at is None:
            self.first_result_at = finished_at
        if faces and self.first_face_at is None:
            self.first_face_at = finished_at
        self.last_result_at = finished_at

    def _since_start(self, t: float | None) -> float | None:
        if t is None or self.started_at is None:
            return None
        return round(t - self.started_at, 3)

    def snapshot(self, dropped: int = 0, source_fps: float | None = None) -> StatsSnapshot:
        """The figures now; `dropped` (the queues' count) and `source_fps` come from outside."""
        now = self.clock()
        d50, d95 = self.detect.percentiles(50, 95)
        c50, c95 = self.classify.percentiles(50, 95)
        l50, l95 = self.latency.percentiles(50, 95)
        return StatsSnapshot(
            frames_captured=self.frames_captured,
            frames_processed=self.frames_processed,
            frames_dropped=dropped,
            capture_fps=self.captured_rate.rate(now),
            fps=self.processed_rate.rate(now),
            detect_p50_ms=d50, detect_p95_ms=d95,
            classify_p50_ms=c50, classify_p95_ms=c95,
            latency_p50_ms=l50, latency_p95_ms=l95,
            faces=self.faces,
            uptime_s=self._since_start(now) or 0.0,
            first_result_s=self._since_start(self.first_result_at),
            first_face_s=self._since_start(self.first_face_at),
            detections=self.detect.count,
            tracks_started=self.tracks_started,
            reconnects=self.reconnects,
            model_failures=self.model_failures,
            source_fps=source_fps,
        )

    def mean_processed_fps(self) -> float:
        """`RunSummary.fps_mean`: frames processed per second from the start to the last result."""
        if self.started_at is None or self.last_result_at is None:
            return 0.0
        span = self.last_result_at - self.started_at
        return round(self.frames_processed / span, 2) if span > 0 else 0.0
