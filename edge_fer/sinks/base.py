"""The one contract between the pipeline and everything that takes its output.

The pipeline's output stage (`edge_fer.pipeline.output.SinkStage`) calls, on its one thread and
in this order: `on_result` for each processed frame, `on_event` for each track event (faces
appearing, changing label, leaving: never dropped), `on_summary` once at the end of the run, and
`close`. A sink must return quickly: while it works, newer results replace older ones in its
queue (the kiosk web server, for one, only stores the latest result).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Callable

from edge_fer.results import FrameResult, RunSummary, StatsSnapshot, TrackEvent


class Sink(ABC):
    """Where results go. Only `on_result` is required; the other hooks do nothing by default."""

    @abstractmethod
    def on_result(self, result: FrameResult, stats: StatsSnapshot) -> None:
        """A processed frame and the newest stats (refreshed ten times a second, shared by every
        sink). `result.frame` is shared too: draw on a copy."""

    def on_event(self, event: TrackEvent) -> None:
        """A face appeared, changed label or left."""

    def on_summary(self, summary: RunSummary) -> None:
        """The run is over; called once, even when it ended with an error."""

    def close(self) -> None:
        """Release files, windows, sockets; safe to call more than once."""


class Every:
    """True once per `interval` seconds (a sink's periodic output)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic):
        self.interval, self.clock = interval, clock
        self._next = clock() + interval

    def __call__(self) -> bool:
        now = self.clock()
        if now < self._next:
            return False
        self._next = now + self.interval
        return True
