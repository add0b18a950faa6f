"""The classification stage: all faces of a frame in one interpreter call, then smoothing.

The stage owns the classifier (its interpreter is used by this thread only) and the per-track
score history, and it notices tracks appearing, changing label and leaving.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

import numpy as np

from edge_fer.classifier import EmotionClassifier
from edge_fer.detector import CropTransform
from edge_fer.errors import ModelError
from edge_fer.pipeline.detect import TrackedFrame
from edge_fer.pipeline.queues import LatestQueue
from edge_fer.pipeline.stage import Stage
from edge_fer.pipeline.stats import PipelineStats
from edge_fer.pipeline.tracking import ScoreSmoother, TrackerOptions
from edge_fer.predict import FacePredictor
from edge_fer.results import FrameResult, TrackedFace, TrackEvent

log = logging.getLogger(__name__)


class ClassifyStage(Stage):
    """Crops and classifies the tracked faces of each frame; emits FrameResults and events."""

    name = "classify"

    def __init__(self, classifier: EmotionClassifier, options: TrackerOptions,
                 inbox: LatestQueue[TrackedFrame], upstream: threading.Event,
                 outbox: LatestQueue[FrameResult], events: queue.Queue,
                 stats: PipelineStats, stop: threading.Event,
                 on_error: Callable[[str, BaseException], None], lossless: bool,
                 max_failures: int = 3, crop: CropTransform | None = None):
        super().__init__(stop, on_error, lossless)
        self.classifier = classifier
        # The boxes are the detector's: crop them as that detector's crops were measured.
        self.predictor = FacePredictor(classifier, None, crop)
        self.smoother = ScoreSmoother(classifier.labels, options.smoothing, options.switch_margin)
        self.inbox, self.upstream, self.outbox = inbox, upstream, outbox
        self.events = events
        """Unbounded on purpose: events are rare and, unlike frames, must never be dropped."""
        self.stats = stats
        self.max_failures = max_failures
        self._failures = 0
        self._last: dict[int, TrackedFace] = {}
        self._first_seen: dict[int, float] = {}
        """Capture time of each current track's first classified frame."""
        self._labels: dict[int, dict[str, int]] = {}
        """Each current track's label history (frames per smoothed label)."""
        self._shown: dict[int, int] = {}
        """Each current track's last frame shown."""
        self._last_index = -1

    def run_loop(self) -> None:
        for item in self.items(self.inbox, self.upstream):
            self.emit(self.outbox, self.process(item))
        now = time.monotonic()
        for face in self._last.values():
            # The run is over: every face still tracked leaves with it.
            self._event("leave", face, self._last_index, now)

    def _predict(self, item: TrackedFrame) -> np.ndarray | None:
        t0 = time.perf_counter()
        crops = self.predictor.crops(item.frame.image, [t.box for t in item.tracks],
                                     [t.landmarks for t in item.tracks])
        try:
            probs = self.classifier.predict_proba(crops)
        except Exception as exc:  # noqa: BLE001 - bounded: logged, counted, fatal when repeated
            self._failures += 1
            self.stats.model_failures += 1
            if self._failures >= self.max_failures:
                raise ModelError(f"the model failed on {self._failures} frames in a row, last on "
                                 f"frame {item.frame.index}: {type(exc).__name__}: {exc}") from exc
            log.warning("the model failed on frame %d (%s: %s); its faces are left out",
                        item.frame.index, type(exc).__name__, exc)
            return None
        self._failures = 0
        self.stats.classify.add((time.perf_counter() - t0) * 1000.0)
        return probs

    def process(self, item: TrackedFrame) -> FrameResult:
        frame = item.frame
        faces: list[TrackedFace] = []
        probs = self._predict(item) if item.tracks else None
        now = time.monotonic()
        if probs is not None:
            for track, p in zip(item.tracks, probs):
                track_id, box = track.track_id, track.box
                s = self.smoother.update(track_id, p)
                first = self._first_seen.setdefault(track_id, frame.captured_at)
                history = self._labels.setdefault(track_id, {})
                history[s.label] = history.get(s.label, 0) + 1
                face = TrackedFace(track_id, box, s.label, round(s.score, 4),
                                   {lab: round(float(v), 4) for lab, v in zip(self.smoother.labels, s.scores)},
                                   s.raw_label, track.first_frame,
                                   round(frame.captured_at - first, 3), track.since_detection)
                faces.append(face)
                if track_id not in self._last:
                    self._event("appear", face, frame.index, now)
                elif s.changed_from is not None:
                    self._event("label", face, frame.index, now, s.changed_from)
                self._last[track_id] = face
                self._shown[track_id] = frame.index
        # Compared with the tracks of this frame, not with the tracker's list of ended tracks:
        # a frame dropped between the stages cannot hide a departure.
        current = {t.track_id for t in item.tracks} | item.held
        for track_id in [t for t in self._last if t not in current]:
            self._event("leave", self._last.pop(track_id), frame.index, now)
            self.smoother.forget(track_id)
            self._first_seen.pop(track_id, None)
            self._labels.pop(track_id, None)
            self._shown.pop(track_id, None)
        self._last_index = frame.index
        finished = time.monotonic()
        self.stats.processed(frame.captured_at, finished, len(faces))
        return FrameResult(frame.index, frame.captured_at, finished, frame.image, faces)

    def _event(self, kind: str, face: TrackedFace, index: int, at: float,
               previous: str | None = None) -> None:
        self.events.put(TrackEvent(kind, face.track_id, index, at, face.label, face.score,
                                   previous, face.box, face.scores, face.first_frame,
                                   self._shown.get(face.track_id, index), face.dwell_s,
                                   dict(self._labels.get(face.track_id, {}))))
