"""Typed results that flow from the pipeline to its sinks (log, display, recorder, web server).

Sinks receive a `FrameResult` for each processed frame with the newest `StatsSnapshot`, the
`TrackEvent`s and, at the end, a `RunSummary`. The frame array is shared, not copied:
a sink that draws must draw on its own copy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Mapping

import numpy as np

from edge_fer.detector.base import Box


def _rounding(digits: int | None) -> Callable[[Any], float]:
    """float(v) rounded to `digits` places (None: as it is)."""
    return float if digits is None else (lambda v: round(float(v), digits))


@dataclass(frozen=True)
class Face:
    """One face: where it is and what it shows. What `edge_fer.analyze` returns for an image, and
    (as `TrackedFace`, with its track) what the loop gives for a frame; both become JSON through
    `to_dict`."""

    box: Box
    """(x, y, w, h) in image pixels."""
    label: str
    """The most probable emotion (smoothed over the track's frames for a `TrackedFace`)."""
    score: float
    """The probability of `label`, 0..1."""
    scores: Mapping[str, float] = field(default_factory=dict, hash=False)
    """The probability of every label the model knows, in the model's label order."""
    landmarks: tuple[tuple[float, float], ...] = field(default=(), kw_only=True)
    """(x, y) per keypoint (see `edge_fer.detector.LANDMARK_NAMES`) when the detector has them
    (BlazeFace), else empty. Keyword-only, so that `TrackedFace` keeps its positional order."""

    def to_dict(self, digits: int | None = 4) -> dict[str, Any]:
        """The face as JSON: `predict --json` and `/api/predict` (scores to 4 places, the
        default), `run --results` (6) and `/api/faces` (None: as computed). Landmarks to 0.1 px
        and left out when there are none; a `TrackedFace` adds its track's fields."""
        rnd = _rounding(digits)
        d: dict[str, Any] = {"box": [int(v) for v in self.box], "label": self.label,
                             "score": rnd(self.score),
                             "scores": {k: rnd(v) for k, v in self.scores.items()}}
        if self.landmarks:
            d["landmarks"] = [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks]
        return d


@dataclass(frozen=True)
class _Track:
    """The track number, in a base of its own: dataclass fields of bases come first, so
    `TrackedFace(track_id, box, label, score, scores, raw_label, ...)` keeps the positional
    order it had before it was a `Face`."""

    track_id: int


@dataclass(frozen=True)
class TrackedFace(Face, _Track):
    """A face followed across frames, with temporally smoothed emotion scores: a `Face` whose
    `box` is in full-frame pixels and whose `label`, `score` and `scores` are smoothed."""

    raw_label: str = ""
    """This frame's unsmoothed top label."""
    first_frame: int = -1
    """The frame on which this face's track started (-1: unknown)."""
    dwell_s: float = 0.0
    """Seconds from the capture of the track's first frame to this one's: how long this person
    has been in view (for a file read offline, processing time; frames over the file's fps
    give its video time)."""
    since_detection: int = 0
    """Frames since a detection last found this face: 0 when this frame's own detection did;
    more when the box was moved here by the tracker's motion model."""

    def to_dict(self, digits: int | None = 4) -> dict[str, Any]:
        """`Face.to_dict` with the track, in the order of a `--results` line: `track_id` first,
        `raw_label` beside the smoothed label, then `first_frame`, `dwell_s` (to the
        millisecond at most) and `since_detection`."""
        face = super().to_dict(digits)
        head = {k: face.pop(k) for k in ("box", "label", "score")}
        return {"track_id": self.track_id, **head, "raw_label": self.raw_label, **face,
                "first_frame": self.first_frame,
                "dwell_s": _rounding(None if digits is None else min(digits, 3))(self.dwell_s),
                "since_detection": self.since_detection}


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
    first_frame: int = -1
    """The frame on which the track started."""
    last_frame: int = -1
    """The last frame on which the face was shown (a `leave` is noticed later when the face
    vanished mid-picture: its track is kept `keep_lost` frames in case it comes back)."""
    dwell_s: float = 0.0
    """Seconds from the capture of the track's first frame to that of `last_frame` (for a
    file read offline, processing time: (last_frame - first_frame) / fps is its video time)."""
    labels: dict[str, int] = field(default_factory=dict)
    """The track's label history: frames shown with each smoothed label so far."""

    def to_dict(self) -> dict:
        """What a log keeps of an event: no pixels, only the track, its box and its scores."""
        return {"event": self.kind, "track": self.track_id, "frame": self.frame_index,
                "label": self.label, "score": round(self.score, 4), "previous": self.previous,
                "box": [int(v) for v in self.box] if self.box else None,
                "scores": {k: round(float(v), 4) for k, v in self.scores.items()},
                "first_frame": self.first_frame, "last_frame": self.last_frame,
                "dwell_s": round(self.dwell_s, 3),
                "labels": dict(self.labels)}


def _figure(doc: str, metric: str | None = "gauge"):
    """A field of the stats: `doc` says what it measures (the one definition: the Prometheus
    help, `describe_stats()` and README's "Figures" table follow it); `metric` is its
    Prometheus kind ("gauge", "counter") or None when it is not exported."""
    return field(metadata={"doc": doc, "metric": metric})


@dataclass(frozen=True, kw_only=True)
class StatsSnapshot:
    """The run's figures at one moment: what the log line, the `stats` records of the JSON log,
    `/api/stats`, `/metrics`, systemd's STATUS= and the end-of-run summary all show, under these
    names. Rates are over the last `RATE_WINDOW_S` seconds; percentiles over the last
    `WINDOW_SAMPLES` measurements (see `edge_fer.pipeline.stats`). A percentile is None before its
    first measurement."""

    frames_captured: int = _figure("Frames read from the source.", "counter")
    frames_processed: int = _figure("Frames that went through detection/tracking and "
                                    "classification and reached the sinks.", "counter")
    frames_dropped: int = _figure("Frames discarded by a full queue between stages so that a "
                                  "live source stays current (0 for a file read offline).", "counter")
    capture_fps: float = _figure("Frames read from the source per second, over the last 5 s.")
    fps: float = _figure("Frames processed per second, over the last 5 s.")
    detect_p50_ms: float | None = _figure("Median time of one face-detector pass in ms (passes run "
                                          "every --detect-every frames, tracking in between).")
    detect_p95_ms: float | None = _figure("95th percentile of one face-detector pass in ms.")
    classify_p50_ms: float | None = _figure("Median time to classify all the faces of one frame "
                                            "in ms (cropping and the interpreter).")
    classify_p95_ms: float | None = _figure("95th percentile of classifying one frame's faces in ms.")
    latency_p50_ms: float | None = _figure(
        "Median latency in ms: from the moment the source returned a frame to the moment its "
        "faces were classified (queueing, detection or tracking and classification; not the "
        "camera's own exposure and transfer, nor the sinks).")
    latency_p95_ms: float | None = _figure("95th percentile of the latency in ms.")
    faces: int = _figure("Faces in the newest processed frame.")
    uptime_s: float = _figure("Seconds since the pipeline started.")
    first_result_s: float | None = _figure("Seconds from the start to the first processed frame.")
    first_face_s: float | None = _figure("Seconds from the start to the first frame with a face.")
    detections: int = _figure("Face-detector passes so far.", "counter")
    tracks_started: int = _figure("Face tracks started so far (faces that appeared: the people "
                                  "seen; someone who leaves and comes back counts again).",
                                  "counter")
    reconnects: int = _figure("Times a lost live source was reopened.", "counter")
    model_failures: int = _figure("Frames on which the model raised an error (their faces are "
                                  "left out).", "counter")
    source_fps: float | None = _figure("The source's own frame rate, when it reports one.")

    def to_dict(self) -> dict:
        """The figures by name, JSON-ready (what `/api/stats` serves and the log records)."""
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class RunSummary(StatsSnapshot):
    """The figures at the end of a run and how it ended: the JSON log's `summary` record and the
    line `edge-fer run` prints."""

    source: str = _figure("What was read (camera, file or stream, without passwords).", None)
    fps_mean: float = _figure("Frames processed per second over the whole run: frames_processed "
                              "divided by the time from the start to the last result (the "
                              "throughput of a file read offline).", None)
    dropped_by_queue: dict[str, int] = _figure("frames_dropped split by the queue that dropped "
                                               "them.", None)
    stop_reason: str = _figure("Why the run ended: end of source, max frames, duration, a "
                               "signal, or the stage that failed.", None)
    error: str | None = _figure("The error that ended the run, or None.", None)
    outputs_failed: list[str] = field(default_factory=list, metadata={
        "doc": "Outputs that stopped before the end (a full disk): what was not written, in "
               "words; the exit code is then 7.", "metric": None})
    started_wall: float | None = _figure("Unix time at which the pipeline started.", None)


def describe_stats(cls: type = RunSummary) -> dict[str, str]:
    """Field name -> what it measures, for documentation and help texts."""
    return {f.name: f.metadata["doc"] for f in fields(cls)}
