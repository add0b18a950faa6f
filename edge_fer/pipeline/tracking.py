"""Following faces between detections, and smoothing each face's emotion scores over time.

Detection is the expensive step, so it does not run on every frame: a tracker carries each
face's box (and its identity) from one detection to the next, moving it with the face's speed
(a constant-velocity Kalman filter, as SORT does) and matching the next detection against the
moved boxes. A face's scores are averaged over
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
    """Run a full detection at least every N frames (more often while a face is being lost, is
    new, or none is tracked)."""
    iou_threshold: float = 0.3
    """Smallest overlap (intersection over union) of a detection with a track's box moved to the
    detection's frame by the track's motion, for the detection to continue the track."""
    max_misses: int = 3
    """A track is no longer shown after this many detections in a row that do not find it (its
    box goes on moving with the face's last speed meanwhile)."""
    keep_lost: int = 30
    """Frames a track no longer shown is remembered, moving with its face's last speed, so a
    face found again where its motion puts it (after walking behind someone) gets its track
    back instead of a new one; then, or once its box has moved out of the picture, it ends."""
    smoothing: int = 10
    """Frames of scores averaged per face; 1 turns smoothing off."""
    switch_margin: float = 0.1
    """A face's label changes only when another label's averaged score leads it by this much."""
    motion: bool = True
    """Move each box between detections with its face's speed, and match detections against
    the moved boxes; False leaves boxes where the last detection put them (the tracker before
    motion, for comparison)."""


class BoxKalman:
    """A constant-velocity Kalman filter on a box's centre and size, as SORT and DeepSORT use.

    State (cx, cy, w, h, and their speeds in pixels per frame); measurement (cx, cy, w, h). The
    noises scale with the box's size, so a near face and a far one are followed alike. Time is
    counted in frames (the capture sequence numbers), so dropped frames and a detection that
    lands a few frames late are accounted for. A small numpy filter: filterpy would bring SciPy
    (tens of megabytes on a Pi) for the same eight-state algebra.
    """

    #: Standard deviations as fractions of the box's height (DeepSORT's choices).
    POS_STD = 1 / 20
    VEL_STD = 1 / 160
    #: A new track's speed is unknown: a quarter of its height per frame covers walking past a
    #: close camera (a 60 px face at 12 px per frame), so the second detection sets it at once.
    INIT_VEL_STD = 1 / 4

    def __init__(self, box: Box, frame: int):
        x, y, w, h = (float(v) for v in box)
        self.x = np.array([x + w / 2, y + h / 2, w, h, 0, 0, 0, 0], dtype=np.float64)
        p, v = 2 * self.POS_STD * h, self.INIT_VEL_STD * h
        self.P = np.diag(np.square([p, p, p, p, v, v, v, v]))
        self.frame = frame
        """The frame the state describes."""

    @staticmethod
    def _f(dt: float) -> np.ndarray:
        F = np.eye(8)
        F[range(4), range(4, 8)] = dt
        return F

    def state_at(self, frame: int) -> np.ndarray:
        """The predicted (cx, cy, w, h) at `frame`, the filter left as it is."""
        dt = max(0, frame - self.frame)
        return self.x[:4] + self.x[4:] * dt

    def predict(self, frame: int) -> None:
        """Move the state to `frame` (no earlier than its own)."""
        dt = frame - self.frame
        if dt <= 0:
            return
        F = self._f(dt)
        h = max(self.x[3], 1.0)
        q = np.square([self.POS_STD * h] * 4 + [self.VEL_STD * h] * 4) * dt
        self.x = F @ self.x
        self.P = F @ self.P @ F.T + np.diag(q)
        self.frame = frame

    def update(self, box: Box, frame: int) -> None:
        """Correct the state with the box measured at `frame`."""
        self.predict(frame)
        x, y, w, h = (float(v) for v in box)
        z = np.array([x + w / 2, y + h / 2, w, h])
        R = np.diag(np.square([self.POS_STD * max(h, 1.0)] * 4))
        S = self.P[:4, :4] + R
        K = np.linalg.solve(S, self.P[:4, :]).T
        self.x = self.x + K @ (z - self.x[:4])
        self.P = self.P - K @ self.P[:4, :]


def _box(state: np.ndarray) -> Box:
    cx, cy, w, h = (float(v) for v in state)
    w, h = max(w, 1.0), max(h, 1.0)
    return (int(round(cx - w / 2)), int(round(cy - h / 2)), int(round(w)), int(round(h)))


@dataclass
class Track:
    """A face followed across frames."""

    track_id: int
    box: Box
    """The box of the last detection that found it."""
    hits: int = 1
    """Detections that found this face."""
    misses: int = 0
    """Detections in a row that did not."""
    landmarks: tuple[tuple[float, float], ...] = ()
    """The keypoints of the last detection that found it (detectors that have them)."""
    first_frame: int = 0
    """The frame of the detection that started it."""
    last_hit: int = 0
    """The frame of the last detection that found it."""
    motion: BoxKalman | None = None
    """Its motion model (None: the box stays where the last detection put it)."""

    def box_at(self, frame: int) -> tuple[Box, tuple[tuple[float, float], ...]]:
        """Its box and keypoints on `frame`: the detection's own on the frame that found it,
        otherwise moved there by the motion model (keypoints moved with the box)."""
        if frame == self.last_hit or self.motion is None:
            return self.box, self.landmarks
        box = _box(self.motion.state_at(frame))
        if not self.landmarks:
            return box, ()
        ox, oy, ow, oh = self.box
        sx, sy = box[2] / max(ow, 1), box[3] / max(oh, 1)
        return box, tuple((box[0] + (lx - ox) * sx, box[1] + (ly - oy) * sy)
                          for lx, ly in self.landmarks)


@dataclass(frozen=True)
class TrackedBox:
    """Where a track is on one frame, as handed to classification."""

    track_id: int
    box: Box
    landmarks: tuple[tuple[float, float], ...] = ()
    first_frame: int = 0
    """The frame of the detection that started the track."""
    since_detection: int = 0
    """Frames since a detection last found it (0: this frame's own detection)."""


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
    assignment in practice (ByteTrack's and SORT's Hungarian step) and needs no solver: SciPy is
    no runtime dependency.
    """
    pairs = []
    if iou.size == 0:
        return pairs
    order = np.dstack(np.unravel_index(np.argsort(-iou, axis=None, kind="stable"), iou.shape))[0]
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
    """SORT-style tracking: each track's box is moved by its motion model (`BoxKalman`) to the
    frame of a detection, each detection is matched to the moved box it overlaps most, unmatched
    detections start tracks. A track missed `max_misses` detections in a row is hidden, then
    ends `keep_lost` frames after its last detection (or when its box leaves the picture) unless
    a detection finds it again. Between detections `snapshot(frame)` gives each track's box
    moved to that frame."""

    def __init__(self, options: TrackerOptions | None = None):
        self.options = options or TrackerOptions()
        self.tracks: list[Track] = []
        self._next_id = 1
        self._frame = 0

    def hidden(self, t: Track) -> bool:
        """`t` is remembered but not shown: the last `max_misses` detections did not find it."""
        return t.misses >= self.options.max_misses

    def update(self, boxes: list[Box], landmarks: list[tuple] | None = None,
               frame: int | None = None, size: tuple[int, int] | None = None
               ) -> tuple[list[Track], list[Track]]:
        """Apply one detection's boxes (and their keypoints, when the detector has them), found
        on `frame` (default: the frame after the previous detection's) of `size` (w, h; when
        given, a missed track moved out of the picture ends); returns (tracks started, tracks
        ended)."""
        frame = self._frame + 1 if frame is None else frame
        self._frame = frame
        landmarks = landmarks or [()] * len(boxes)
        predicted = [t.box_at(frame)[0] for t in self.tracks]
        pairs = greedy_match(iou_matrix(predicted, boxes), self.options.iou_threshold)
        matched_tracks = {r for r, _ in pairs}
        matched_boxes = {c for _, c in pairs}
        for r, c in pairs:
            t = self.tracks[r]
            t.box, t.hits, t.misses, t.landmarks, t.last_hit = boxes[c], t.hits + 1, 0, landmarks[c], frame
            if t.motion is not None:
                t.motion.update(boxes[c], frame)
        ended = []
        for i, t in enumerate(self.tracks):
            if i not in matched_tracks:
                t.misses += 1
                gone = size is not None and _inside(predicted[i], size) < 0.5
                if gone or (self.hidden(t) and frame - t.last_hit > self.options.keep_lost):
                    ended.append(t)
        started = []
        for c, box in enumerate(boxes):
            if c not in matched_boxes:
                started.append(Track(self._next_id, box, landmarks=landmarks[c], first_frame=frame,
                                     last_hit=frame,
                                     motion=BoxKalman(box, frame) if self.options.motion else None))
                self._next_id += 1
        self.tracks = [t for t in self.tracks if t not in ended] + started
        return started, ended

    def snapshot(self, frame: int | None = None, size: tuple[int, int] | None = None
                 ) -> list[TrackedBox]:
        """The tracks shown on `frame` (default: the last detection's), immutable, for another
        thread. With the frame's `size` (w, h), a box moved more than half out of the picture is
        left out (the face has walked out; its track ends at the next detection)."""
        frame = self._frame if frame is None else frame
        out = []
        for t in self.tracks:
            if self.hidden(t):
                continue
            box, landmarks = t.box_at(frame)
            if size is not None:
                if _inside(box, size) < 0.5:
                    continue
                box = _clip(box, size)
            out.append(TrackedBox(t.track_id, box, landmarks, t.first_frame, frame - t.last_hit))
        return out

    @property
    def held(self) -> set[int]:
        """The ids of the tracks remembered but not shown (see `keep_lost`)."""
        return {t.track_id for t in self.tracks if self.hidden(t)}

    @property
    def losing(self) -> bool:
        """Some face shown was missed by the last detection: detect again soon to confirm or
        hide it."""
        return any(t.misses and not self.hidden(t) for t in self.tracks)

    @property
    def young(self) -> bool:
        """Some track has been found by one detection only: detect again soon, so its motion is
        measured before its box has to be moved far."""
        return self.options.motion and any(t.hits < 2 for t in self.tracks)


def _clip(box: Box, size: tuple[int, int]) -> Box:
    """The part of `box` inside a frame of `size` (w, h), as detectors give their boxes."""
    x, y, w, h = box
    x0, y0 = max(x, 0), max(y, 0)
    return x0, y0, max(1, min(x + w, size[0]) - x0), max(1, min(y + h, size[1]) - y0)


def _inside(box: Box, size: tuple[int, int]) -> float:
    """The fraction of `box` inside a frame of `size` (w, h)."""
    x, y, w, h = box
    ix = max(0, min(x + w, size[0]) - max(x, 0))
    iy = max(0, min(y + h, size[1]) - max(y, 0))
    return ix * iy / max(w * h, 1)


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
