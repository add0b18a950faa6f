"""The human-readable output of a run: a stats line every few seconds and the summary line.

Both use the names of `StatsSnapshot`/`RunSummary` (`fps=12.5 frames_dropped=0 ...`), the same
as the JSON log, `/api/stats` and `/metrics`.
"""

from __future__ import annotations

import logging
from typing import Callable

from edge_fer.results import FrameResult, RunSummary, StatsSnapshot
from edge_fer.sinks.base import Every, Sink

log = logging.getLogger(__name__)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def format_stats(stats: StatsSnapshot) -> str:
    """The periodic log line."""
    s = stats
    return (f"fps={s.fps:.1f} frames_dropped={s.frames_dropped} "
            f"detect_p50_ms={_ms(s.detect_p50_ms)} classify_p50_ms={_ms(s.classify_p50_ms)} "
            f"latency_p95_ms={_ms(s.latency_p95_ms)} faces={s.faces}")


def format_summary(summary: RunSummary) -> str:
    """The one-line summary printed at the end of a run."""
    s = summary
    first = "-" if s.first_result_s is None else f"{s.first_result_s:.2f}"
    return (f"{s.frames_processed} frames processed of {s.frames_captured} captured in "
            f"{s.uptime_s:.1f} s: fps_mean={s.fps_mean:.1f} frames_dropped={s.frames_dropped} "
            f"latency_p50_ms={_ms(s.latency_p50_ms)} latency_p95_ms={_ms(s.latency_p95_ms)} "
            f"first_result_s={first} tracks_started={s.tracks_started}; stopped: {s.stop_reason}"
            + "".join(f"; NOT WRITTEN: {f}" for f in s.outputs_failed or ()))


class LogSink(Sink):
    """`format_stats` every `interval` seconds, through `emit` (default: logging)."""

    def __init__(self, interval: float = 5.0, emit: Callable[[str], None] | None = None):
        self._due = Every(interval)
        self._emit = emit or log.info

    def on_result(self, result: FrameResult, stats: StatsSnapshot) -> None:
        if self._due():
            self._emit(format_stats(stats))
