"""The detection stage: tracks faces on every frame, runs the face detector beside it.

Detection (Haar above all) can cost tens of milliseconds on a Pi-class CPU, more than classifying
a few faces, so it is kept off the per-frame path: a worker thread detects on one frame while the
following frames go on with the tracked boxes, and its boxes update the tracks when they are
ready. Per-frame latency then no longer includes detection, and on two or more cores detection
runs in parallel with classification (OpenCV and the interpreters release the GIL).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable


from edge_fer.detector import DetectedFace, FaceDetector
from edge_fer.pipeline.sources import Frame
from edge_fer.pipeline.queues import LatestQueue
from edge_fer.pipeline.stage import POLL_S, Stage
from edge_fer.pipeline.stats import PipelineStats
from edge_fer.pipeline.tracking import IouTracker, TrackedBox, TrackerOptions

log = logging.getLogger(__name__)


@dataclass
class Detection:
    """The boxes the detector found on one frame."""

    frame_index: int
    frame_size: tuple[int, int]
    """(w, h) of the frame the faces belong to."""
    faces: list[DetectedFace]


@dataclass
class TrackedFrame:
    """A frame with its tracked faces, on its way to classification."""

    frame: Frame
    tracks: list[TrackedBox] = field(default_factory=list)
    """Each track's id, box in frame pixels and keypoints."""
    held: set[int] = field(default_factory=set)
    """Tracks not shown on this frame that have not ended (a face behind another): they have
    not left."""


class DetectionWorker(Stage):
    """Runs the detector on the frames it is given, one at a time, on its own thread."""

    name = "detector"

    def __init__(self, detector: FaceDetector, stats: PipelineStats, stop: threading.Event,
                 on_error: Callable[[str, BaseException], None]):
        super().__init__(stop, on_error)
        self.detector = detector
        self.stats = stats
        self._inbox: LatestQueue[Frame] = LatestQueue(1, "detector")
        self._cond = threading.Condition()
        self._busy = False
        self._result: Detection | None = None
        self._finish = threading.Event()

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._busy

    def submit(self, frame: Frame) -> bool:
        """Start detecting on `frame`; False (nothing done) while the previous one runs."""
        with self._cond:
            if self._busy:
                return False
            self._busy = True
        self._inbox.put(frame)
        return True

    def take(self, timeout: float = 0.0) -> Detection | None:
        """The finished detection not yet taken, waiting up to `timeout` for one."""
        with self._cond:
            if self._result is None and timeout > 0:
                self._cond.wait_for(lambda: self._result is not None, timeout)
            result, self._result = self._result, None
            return result

    def finish(self) -> None:
        """End the thread once the current detection is done."""
        self._finish.set()

    def run_loop(self) -> None:
        while not (self.stop_event.is_set() or self._finish.is_set()):
            frame = self._inbox.get(POLL_S)
            if frame is None:
                continue
            t0 = time.perf_counter()
            faces = self._detect(frame)
            self.stats.detect.add((time.perf_counter() - t0) * 1000.0)
            with self._cond:
                self._result = Detection(frame.index, frame.image.shape[1::-1], faces)
                self._busy = False
                self._cond.notify_all()

    def _detect(self, frame: Frame) -> list[DetectedFace]:
        h, w = frame.image.shape[:2]
        if frame.gray is not None and self.detector.accepts_gray:
            return self.detector.detect(frame.gray, full_size=(w, h))
        return self.detector.detect(frame.image)


class DetectStage(Stage):
    """Gives every frame its tracked faces and decides when to detect again."""

    name = "detect"

    def __init__(self, detector: FaceDetector, options: TrackerOptions,
                 inbox: LatestQueue[Frame], upstream: threading.Event,
                 outbox: LatestQueue[TrackedFrame], stats: PipelineStats, stop: threading.Event,
                 on_error: Callable[[str, BaseException], None], lossless: bool):
        super().__init__(stop, on_error, lossless)
        self.options = options
        self.tracker = IouTracker(options)
        self.worker = DetectionWorker(detector, stats, stop, on_error)
        self.inbox, self.upstream, self.outbox = inbox, upstream, outbox
        self.stats = stats
        self._last_submitted: int | None = None
        self._size: tuple[int, int] | None = None
        self._size_changed = False

    def start(self) -> None:
        self.worker.start()
        super().start()

    def _due(self, index: int) -> bool:
        if (self._last_submitted is None or not self.tracker.tracks or self.tracker.losing
                or self.tracker.young):
            return True
        return index - self._last_submitted >= self.options.detect_every

    def _apply(self, detection: Detection | None) -> None:
        # Boxes found on a frame of another size say nothing about this one.
        if detection is not None and detection.frame_size == self._size:
            started, _ = self.tracker.update([f.box for f in detection.faces],
                                             [f.landmarks for f in detection.faces],
                                             detection.frame_index, self._size)
            self.stats.tracks_started += len(started)

    def _check_size(self, frame: Frame) -> None:
        size = frame.image.shape[1::-1]
        if size != self._size:
            if self._size is not None:
                # A new frame size (a camera mode change, a folder of mixed images) is no error,
                # but the boxes point at the wrong pixels: every face is tracked afresh.
                if not self._size_changed:
                    log.warning("frame size changed from %dx%d to %dx%d: tracking starts afresh "
                                "(further changes are not reported)", *self._size, *size)
                    self._size_changed = True
                self.tracker.tracks.clear()
                self._last_submitted = None
            self._size = size

    def run_loop(self) -> None:
        for frame in self.items(self.inbox, self.upstream):
            self._check_size(frame)
            self._apply(self.worker.take())
            if self._due(frame.index) and self.lossless:
                # Offline, a detection is never skipped for lack of time: wait for the
                # previous one so detections stay `detect_every` frames apart.
                while self.worker.busy and not self.stop_event.is_set():
                    self._apply(self.worker.take(POLL_S))
                self._apply(self.worker.take())
            if self._due(frame.index) and self.worker.submit(frame):
                self._last_submitted = frame.index
                if self.lossless:
                    # Offline, a frame gets the boxes of its own detection: when a detection
                    # would land otherwise depends on how fast the stages run, and a file must
                    # give the same answers on any machine (the arm64 lane compares them).
                    while self.worker.busy and not self.stop_event.is_set():
                        self._apply(self.worker.take(POLL_S))
                    self._apply(self.worker.take())
            self.emit(self.outbox, TrackedFrame(frame, self.tracker.snapshot(frame.index, self._size),
                                                  self.tracker.held))

    def close(self) -> None:
        self.worker.finish()
        if not self.worker.join(POLL_S * 20):
            log.warning("the detector thread is still busy; leaving it behind")
