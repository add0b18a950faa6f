"""The face-detector interface every detector implements, and the typed objects it returns.

The pipeline, the tracker, cropping and the commands depend on this module only; a detector is
added by implementing `FaceDetector` and naming it in `registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from edge_fer.errors import InputError

Box = tuple[int, int, int, int]
"""(x, y, w, h) in pixels of the full frame."""

LANDMARK_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")
"""BlazeFace's six keypoints, in its output order; `right` is the subject's right (image left
for a camera that does not mirror)."""


@dataclass(frozen=True)
class DetectedFace:
    """One face a detector found."""

    box: Box
    """(x, y, w, h) in full-frame pixels."""
    score: float = 1.0
    """Detector confidence 0..1 (Haar has none and reports 1.0)."""
    landmarks: tuple[tuple[float, float], ...] = ()
    """(x, y) in full-frame pixels, in `LANDMARK_NAMES` order; empty when the detector has none."""

    def landmark(self, name: str) -> tuple[float, float] | None:
        """The keypoint called `name` (see `LANDMARK_NAMES`), or None without landmarks."""
        if not self.landmarks:
            return None
        return self.landmarks[LANDMARK_NAMES.index(name)]


@dataclass(frozen=True)
class CropTransform:
    """How a detector's box becomes the face crop the classifier was trained on.

    FER2013's faces are framed like Haar boxes; another detector frames a face differently
    (BlazeFace's box stops at the brows), so each detector carries the transform measured for it
    by `benchmarks/detector_crops.py` on PublicTest. The transform belongs to the detector, the
    model's own `crop_margin` is applied after it.
    """

    scale: float = 1.0
    """Side of the crop over the side of the box, about the box centre."""
    dx: float = 0.0
    """Shift of the centre to the right, as a fraction of the box width."""
    dy: float = 0.0
    """Shift of the centre downwards, as a fraction of the box height."""
    level_above: float | None = None
    """Turn the face upright (eyes level) before cropping when its eyes tilt by at least this
    many degrees; None never does. Needs a detector with landmarks."""

    def apply(self, box: Box, frame_w: int, frame_h: int) -> Box:
        """The transformed box, clipped to the frame (never empty)."""
        if (self.scale, self.dx, self.dy) == (1.0, 0.0, 0.0):  # Haar's: nothing to do
            return box
        x, y, w, h = box
        cx, cy = x + w / 2 + self.dx * w, y + h / 2 + self.dy * h
        nw, nh = w * self.scale, h * self.scale
        x0 = max(0, int(round(cx - nw / 2)))
        y0 = max(0, int(round(cy - nh / 2)))
        x1 = min(frame_w, int(round(cx + nw / 2)))
        y1 = min(frame_h, int(round(cy + nh / 2)))
        x0, y0 = min(x0, frame_w - 1), min(y0, frame_h - 1)
        return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


@dataclass
class DetectorOptions:
    """Detection settings. Each detector reads the fields that apply to it."""

    cascade: str | None = None
    """Haar: cascade XML file; None uses OpenCV's bundled frontal-face cascade."""
    scale_factor: float = 1.1
    """Haar: image-pyramid step; larger is faster and misses more faces."""
    min_neighbors: int = 5
    """Haar: overlapping detections needed to keep a face; larger means fewer false faces."""
    min_size: int = 30
    """All: smallest face side to report, in pixels of the full frame."""
    detect_width: int = 640
    """Haar: frames wider than this are downscaled to it before detection; 0 keeps the full
    size. CNN detectors always resize to their own input size."""
    equalize: bool = False
    """Haar: histogram-equalize before detection (helps in flat, dim light)."""
    min_score: float | None = None
    """CNN detectors: smallest confidence to keep a face; None takes the detector's default."""
    threads: int | None = 1
    """CNN detectors: interpreter threads (one leaves the other cores to classification)."""
    backend: str | None = None
    """CNN detectors: TFLite backend (`litert`, `tflite-runtime`, `tensorflow`; None: the first
    that loads)."""


class FaceDetector(ABC):
    """Turns a frame into faces. Instances are not thread-safe: one per thread that detects."""

    name: ClassVar[str]
    """The registry name (`haar`, `blazeface`, ...)."""
    accepts_gray: ClassVar[bool] = False
    """Detects as well on a gray frame, so the Pi's low-resolution Y plane can feed it."""
    default_detect_every: ClassVar[int] = 5
    """Frames between detections in `edge-fer run` when the user does not choose
    (measured per detector: cheap detectors run more often)."""
    crop: ClassVar[CropTransform] = CropTransform()
    """Box-to-crop transform measured for this detector (see `CropTransform`)."""

    def __init__(self, options: DetectorOptions | None = None):
        self.options = options or DetectorOptions()

    @abstractmethod
    def detect(self, frame: np.ndarray, full_size: tuple[int, int] | None = None) -> list[DetectedFace]:
        """Faces in `frame` (BGR H x W x 3 or gray H x W, uint8), largest first, in its pixels,
        or in those of a frame of `full_size` (w, h) when `frame` is a smaller view of it (a Pi
        camera's low-resolution plane); `min_size` is always in full-frame pixels."""

    def detect_photo(self, frame: np.ndarray) -> list[DetectedFace]:
        """Faces in a still photo, where time matters less than finding each face: `detect`,
        unless the detector has a better way (BlazeFace tiles photos larger than its view)."""
        return self.detect(frame)

    no_face_hint: ClassVar[str] = "another --detector, or a smaller --min-face"
    """What to try when a photo shows no face: the options that find more faces with this
    detector, or the detector that would."""

    def describe(self) -> dict:
        """What a log records about the detector."""
        return {"name": self.name, **asdict(self.options),
                "crop": asdict(self.crop)}


def largest_first(faces: list[DetectedFace]) -> list[DetectedFace]:
    """Largest first; faces of the same size top to bottom, then left to right. The order the
    detector found them in differs between CPUs (Haar's on aarch64 and x86 did, on two faces of
    104 px in solvay_conference.jpg), and the output must not."""
    return sorted(faces, key=lambda f: (-f.box[2] * f.box[3], f.box[1], f.box[0]))


def as_uint8_frame(frame: np.ndarray) -> np.ndarray:
    """`frame` checked to be an image a detector can take: uint8, H x W or H x W x 1/3/4."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise InputError(f"a frame must be a uint8 numpy array, got "
                         f"{getattr(frame, 'dtype', type(frame).__name__)}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 3 and frame.shape[2] == 4:
        import cv2

        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)) or min(frame.shape[:2]) < 1:
        raise InputError(f"a frame must be H x W (gray) or H x W x 3 (BGR), got shape {tuple(frame.shape)}")
    return frame


