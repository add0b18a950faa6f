"""Following faces between detections, and smoothing each face's emotion scores over time.

Detection is the expensive step, so it does not run on every frame: an IoU tracker carries each
face's box (and its identity) from one detection to the next. A face's scores are averaged over
its last few frames and its label only switches when another label clearly leads, so a face
between two expressions does not flicker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edge_fer.detector import Box

log = logging.getLogger(__name__)


@dataclass
class TrackerOptions:
    """How faces are tracked between detections and how their scores are smoothed."""

    detect_every: int = 5
    """Run a full detection at least every N frames (more often while a face is being lost or
    none is tracked)."""
    iou_threshold: float = 0.3
    """Smallest box overlap (intersection over union) for a detection to continue a track."""
    max_misses: int = 2
    """A track ends after this many detections in a row that do not find it."""
    smoothing: int = 10
    """Frames of scores averaged per face; 1 turns smoothing off."""
    switch_margin: float = 0.1
    """A face's label changes only when another label's averaged score leads it by this much."""


@dataclass
class Track:
    """A face followed across frames."""

    track_id: int
    box: Box
    hits: int = 1
    """Detections that found this face."""
    misses: int = 0
    """Detections in a row that did not."""
    landmarks: tuple[tuple[float, float], ...] = ()
    """The keypoints of the last detection that found it (detectors that have them)."""


@dataclass(frozen=True)
class TrackedBox:
    """Where a track is on one frame, as handed to classification."""

    track_id: int
    box: Box
    landmarks: tuple[tuple[float, float], ...] = ()


def iou_matrix(a: list[Box], b: list[Box]) -> np.ndarray:
    """len(a) x len(b) intersection over union of (x, y, w, h) boxes."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    A = np.asarray(a, dtype=np.float64)[:, None, :]
    B = np.asarray(b, dtype=np.float64)[None, :, :]
    ix = np.clip(np.minimum(A[..., 0] + A[..., 2], B[..., 0] + B[..., 2]) - np.maximum(A[..., 0], B[..., 0]), 0, None)
    iy = np.clip(np.minimum(A[..., 1] + A[..., 3], B[..., 1] + B[..., 3]) - np.maximum(A[..., 1], B[..., 1]), 0, None)
    inter = ix * iy
    union = A[..., 2] * A[..., 3] + B[..., 2] * B[..., 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(row, col) pairs, best overlap first, each row and column used once, all >= threshold.

    With the handful of faces in a frame, greedy matching gives the same pairs as an optimal
    assignment in practice and needs no solver.
    """
    pairs = []
    if iou.size == 0:
        return pairs
    order = np.dstack(np.unravel_index(np.argsort(-iou, axis=None), iou.shape))[0]
    rows, cols = set(), set()
    for r, c in order:
        if iou[r, c] < threshold:
            break
        if r in rows or c in cols:
            continue
        rows.add(r)
        cols.add(c)
        pairs.append((int(r), int(c)))
    return pairs


class IouTracker:
    """Matches each detection to the track it overlaps most; unmatched detections start tracks."""

    def __init__(self, options: TrackerOptions | None = None):
        self.options = options or TrackerOptions()
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: list[Box], landmarks: list[tuple] | None = None
               ) -> tuple[list[Track], list[Track]]:
        """Apply one detection's boxes (and their keypoints, when the detector has them);
        returns (tracks started, tracks ended)."""
        landmarks = landmarks or [()] * len(boxes)
        pairs = greedy_match(iou_matrix([t.box for t in self.tracks], boxes),
                             self.options.iou_threshold)
        matched_tracks = {r for r, _ in pairs}
        matched_boxes = {c for _, c in pairs}
        for r, c in pairs:
            t = self.tracks[r]
            t.box, t.hits, t.misses, t.landmarks = boxes[c], t.hits + 1, 0, landmarks[c]
        ended = []
        for i, t in enumerate(self.tracks):
            if i not in matched_tracks:
                t.misses += 1
                if t.misses >= self.options.max_misses:
                    ended.append(t)
        started = []
        for c, box in enumerate(boxes):
            if c not in matched_boxes:
                started.append(Track(self._next_id, box, landmarks=landmarks[c]))
                self._next_id += 1
        self.tracks = [t for t in self.tracks if t not in ended] + started
        return started, ended

    def snapshot(self) -> list[TrackedBox]:
        """The current tracks, immutable, for another thread."""
        return [TrackedBox(t.track_id, t.box, t.landmarks) for t in self.tracks]

    @property
    def losing(self) -> bool:
        """Some face was missed by the last detection: detect again soon to confirm or end it."""
        return any(t.misses for t in self.tracks)


@dataclass
class Smoothed:
    """A face's scores after smoothing."""

    label: str
    score: float
    scores: np.ndarray
    """Averaged probability per label."""
    raw_label: str
    changed_from: str | None = None
    """The previous label when this update changed it."""


class _History:
    __slots__ = ("buf", "n", "pos", "label")

    def __init__(self, window: int, classes: int):
        self.buf = np.zeros((window, classes), dtype=np.float32)
        self.n = 0
        self.pos = 0
        self.label = -1


class ScoreSmoother:
    """Per-track moving average of class probabilities, with hysteresis on the label."""

    def __init__(self, labels: list[str], window: int = 10, switch_margin: float = 0.1):
        if window < 1:
            raise ValueError("the smoothing window is at least one frame")
        self.labels = list(labels)
        self.window = window
        self.switch_margin = switch_margin
        self._tracks: dict[int, _History] = {}

    def __contains__(self, track_id: int) -> bool:
        return track_id in self._tracks

    @property
    def track_ids(self) -> set[int]:
        return set(self._tracks)

    def update(self, track_id: int, probs: np.ndarray) -> Smoothed:
        h = self._tracks.get(track_id)
        if h is None:
            h = self._tracks[track_id] = _History(self.window, len(self.labels))
        h.buf[h.pos] = probs
        h.pos = (h.pos + 1) % self.window
        h.n = min(h.n + 1, self.window)
        avg = h.buf[:h.n].mean(axis=0) if h.n < self.window else h.buf.mean(axis=0)
        best = int(np.argmax(avg))
        previous = None
        if h.label < 0:
            h.label = best
        elif best != h.label and avg[best] - avg[h.label] >= self.switch_margin:
            previous = self.labels[h.label]
            h.label = best
        return Smoothed(self.labels[h.label], float(avg[h.label]), avg,
                        self.labels[int(np.argmax(probs))], previous)

    def forget(self, track_id: int) -> None:
        self._tracks.pop(track_id, None)
