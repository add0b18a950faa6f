"""Typed results that flow from the pipeline to its sinks (log, display, recorder, web server).

Sinks receive a `FrameResult` for each processed frame. The frame array is shared, not copied:
a sink that draws must draw on its own copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TrackedFace:
    """A face followed across frames, with temporally smoothed emotion scores."""

    track_id: int
    box: tuple[int, int, int, int]
    """(x, y, w, h) in full-frame pixels."""
    label: str
    """Smoothed label (what a display shows)."""
    score: float
    """Smoothed probability of `label`."""
    scores: dict[str, float] = field(default_factory=dict)
    """Smoothed probabilities per label."""
    raw_label: str = ""
    """This frame's unsmoothed top label."""


@dataclass
class FrameResult:
    """One processed frame."""

    index: int
    """Sequence number of the frame at capture (gaps are dropped frames)."""
    captured_at: float
    """time.monotonic() when the frame was captured."""
    finished_at: float
    """time.monotonic() when classification finished."""
    frame: np.ndarray
    """The BGR frame (shared; copy before drawing)."""
    faces: list[TrackedFace] = field(default_factory=list)

    @property
    def latency_ms(self) -> float:
        return (self.finished_at - self.captured_at) * 1000.0


@dataclass
class TrackEvent:
    """Something that happened to a tracked face: it appeared, its label changed, it left."""

    kind: str
    """`appear`, `label` or `leave`."""
    track_id: int
    frame_index: int
    """The frame on which it was noticed."""
    at: float
    """time.monotonic() when it was noticed."""
    label: str
    """The smoothed label (the last one, for `leave`)."""
    score: float
    previous: str | None = None
    """The label before a `label` change."""
    box: tuple[int, int, int, int] | None = None
    scores: dict[str, float] = field(default_factory=dict)
    """The smoothed probabilities per label."""

    def to_dict(self) -> dict:
        """What a log keeps of an event: no pixels, only the track, its box and its scores."""
        return {"event": self.kind, "track": self.track_id, "frame": self.frame_index,
                "label": self.label, "score": round(self.score, 4), "previous": self.previous,
                "box": [int(v) for v in self.box] if self.box else None,
                "scores": {k: round(float(v), 4) for k, v in self.scores.items()}}
