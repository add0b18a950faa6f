"""The pipeline: capture -> detect/track -> classify -> sinks, one thread per stage.

Between stages sit latest-frame queues (see `queues`); one stop event ends the run. A live source
(camera, stream, a file with `realtime`) drops frames the pipeline cannot keep up with, so
latency stays bounded; a file processed offline is lossless instead, every stage waiting for
room in the next one.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Iterator

from edge_fer.classifier import EmotionClassifier
from edge_fer.detector import FaceDetector
from edge_fer.errors import EdgeFerError
from edge_fer.pipeline.capture import CaptureStage
from edge_fer.pipeline.classify import ClassifyStage
from edge_fer.pipeline.detect import DetectStage
from edge_fer.pipeline.output import SinkStage
from edge_fer.pipeline.queues import LatestQueue
from edge_fer.pipeline.sources import CaptureOptions, Source, redact_url
from edge_fer.pipeline.stage import POLL_S, STOP_GRACE_S
from edge_fer.pipeline.stats import PipelineStats
from edge_fer.pipeline.tracking import TrackerOptions
from edge_fer.results import RunSummary, StatsSnapshot
from edge_fer.sinks.base import Sink

log = logging.getLogger(__name__)


@dataclass
class PipelineOptions:
    """How the pipeline runs."""

    capture: CaptureOptions = field(default_factory=CaptureOptions)
    """Pacing and bounds of the source (the source itself is passed to `Pipeline`)."""
    tracking: TrackerOptions = field(default_factory=TrackerOptions)
    """Detection interval, IoU matching and score smoothing."""
    queue_size: int = 1
    """Frames held between capture, detection and classification (1 or 2)."""
    sink_queue_size: int = 2
    """Results held for the sinks."""
    max_model_failures: int = 3
    """Model failures on consecutive frames that end the run (fewer are logged and skipped)."""


class StageFailed(EdgeFerError):
    """A stage failed with an unexpected exception (the message names the stage and the cause)."""


class Pipeline:
    """Frames in, tracked faces with smoothed emotions out, as FrameResults to the sinks."""

    def __init__(self, source: Source, detector: FaceDetector, classifier: EmotionClassifier,
                 options: PipelineOptions | None = None):
        self.source = source
        self.detector = detector
        self.classifier = classifier
        self.options = options or PipelineOptions()
        self._sinks: list[Sink] = []
        self._stop = threading.Event()
        self._stats = PipelineStats()
        self._error: BaseException | None = None
        self._stop_reason: str | None = None
        self._lock = threading.Lock()
        self._stages: list = []
        self._queues: list[LatestQueue] = []
        self._started = False

    # -- control ----------------------------------------------------------------------------

    def add_sink(self, sink: Sink) -> None:
        """Add a sink (see `edge_fer.sinks`); only before `start`."""
        if not isinstance(sink, Sink):
            raise TypeError(f"{type(sink).__name__} is not an edge_fer.sinks.Sink")
        if self._started:
            raise RuntimeError("add sinks before starting the pipeline")
        self._sinks.append(sink)

    def start(self) -> None:
        if self._started:
            raise RuntimeError("a pipeline runs once")
        self._started = True
        o = self.options
        # Lossless (back-pressure, nothing dropped) only for a file read as fast as possible.
        lossless = not (self.source.live or o.capture.realtime)
        frames = LatestQueue(o.queue_size, "capture->detect")
        tracked = LatestQueue(o.queue_size, "detect->classify")
        results = LatestQueue(o.sink_queue_size, "classify->sinks")
        events: queue.Queue = queue.Queue()
        self._queues = [frames, tracked, results]
        capture = CaptureStage(self.source, o.capture, frames, self._stats, self._stop,
                               self._failed, lossless, self._ended)
        detect = DetectStage(self.detector, o.tracking, frames, capture.done, tracked, self._stats,
                             self._stop, self._failed, lossless)
        classify = ClassifyStage(self.classifier, o.tracking, tracked, detect.done, results, events,
                                 self._stats, self._stop, self._failed, lossless,
                                 o.max_model_failures, self.detector.crop)
        sinks = SinkStage(self._sinks, results, classify.done, events, self.stats, self.summary,
                          self._stop, self._failed)
        self._stages = [capture, detect, classify, sinks]
        self._stats.start()
        for stage in reversed(self._stages):
            stage.start()

    def stop(self, reason: str = "stopped") -> None:
        """Ask every stage to stop; frames in flight still reach the sinks. Returns at once."""
        self._ended(reason)
        self._stop.set()

    def _ended(self, reason: str) -> None:
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason

    def _failed(self, stage: str, exc: BaseException) -> None:
        if not isinstance(exc, EdgeFerError):
            log.debug("%s stage failed", stage, exc_info=exc)
            wrapped = StageFailed(f"{stage} stage failed: {type(exc).__name__}: {exc}")
            wrapped.__cause__ = exc
            exc = wrapped
        with self._lock:
            if self._error is None:
                self._error = exc
                # A failure is why the run ended, even if the source had ended just before.
                self._stop_reason = f"error in {stage}"
        log.debug("%s stage: %s", stage, exc)
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the sinks have had the last result and the summary; True when they have."""
        if not self._stages:
            return True
        return self._stages[-1].join(timeout)

    def wait(self) -> None:
        """Block until the run is over, in short waits so signal handlers get to run; then give
        the other stages a moment to end."""
        while not self.join(POLL_S * 2):
            pass
        deadline = time.monotonic() + STOP_GRACE_S
        for stage in self._stages[:-1]:
            if not stage.join(max(0.0, deadline - time.monotonic())):
                log.warning("the %s thread did not end (a blocked read?); leaving it behind", stage.name)

    # -- state ------------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """The stop event is set (asked to stop, or the source ended, or a stage failed)."""
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        return self._started and not self.join(0)

    @property
    def error(self) -> BaseException | None:
        """What ended the run, when it was a failure."""
        return self._error

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    @property
    def started_at(self) -> float | None:
        """time.monotonic() when the run started (None before `start`): the origin of the
        times in the per-frame results."""
        return self._stats.started_at

    @property
    def output_failures(self) -> list[str]:
        """Outputs that stopped during the run (a full disk): what was not written, in words."""
        return list(self._stages[-1].failures) if self._stages else []

    def stats(self) -> StatsSnapshot:
        """A snapshot of the run's counters and rolling measurements (safe from any thread)."""
        return self._stats.snapshot(dropped=sum(q.dropped for q in self._queues),
                                    source_fps=self.source.fps)

    def describe(self) -> dict:
        """The run's configuration, for the head of a log (no passwords)."""
        o = self.options
        capture = replace(o.capture, source=o.capture.source and redact_url(o.capture.source))
        return {"source": self.source.description, "model": str(self.classifier.path),
                "backend": self.classifier.backend.name, "labels": self.classifier.labels,
                "capture": asdict(capture), "tracking": asdict(o.tracking),
                "detector": self.detector.describe()}

    def summary(self) -> RunSummary:
        """`stats()` plus how the run ended: written to the sinks and printed at the end."""
        return RunSummary(
            **self.stats().to_dict(),
            source=self.source.description,
            fps_mean=self._stats.mean_processed_fps(),
            dropped_by_queue={q.name: q.dropped for q in self._queues},
            stop_reason=self._stop_reason or "running",
            error=str(self._error) if self._error else None,
            outputs_failed=self.output_failures,
            started_wall=self._stats.started_wall,
        )


@contextmanager
def stop_on_signals(pipeline: Pipeline) -> Iterator[None]:
    """SIGINT and SIGTERM stop `pipeline` cleanly while inside; a second SIGINT interrupts.

    For the main thread of a program (the CLI): handlers are process-wide.
    """
    def handler(signum, _frame):
        name = signal.Signals(signum).name
        if pipeline.stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.warning("%s: stopping", name)
        pipeline.stop(f"signal {name}")

    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in wanted}
    for s in wanted:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
