"""Haar-cascade face detection on a downscaled grayscale frame, and face cropping.

Detection cost grows with the pixel count, so frames are scaled to `detect_width` first and the
boxes scaled back; on a Pi camera the low-resolution Y plane is already such a frame.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_fer.errors import InputError
from edge_fer.images import resize_to

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]
"""(x, y, w, h) in pixels of the full frame."""


def default_cascade_path() -> Path:
    import cv2

    data = getattr(cv2, "data", None)
    if data is None or not hasattr(data, "haarcascades"):
        raise InputError(
            "this OpenCV has no bundled Haar cascades (OpenCV 5 dropped them): install "
            "'opencv-python-headless>=4.8,<5' or pass --cascade FILE.xml"
        )
    return Path(data.haarcascades) / "haarcascade_frontalface_default.xml"


@dataclass
class DetectorOptions:
    """Haar detection settings."""

    cascade: str | None = None
    """Cascade XML file; None uses OpenCV's bundled frontal-face cascade."""
    scale_factor: float = 1.1
    """Image-pyramid step; larger is faster and misses more faces."""
    min_neighbors: int = 5
    """Overlapping detections needed to keep a face; larger means fewer false faces."""
    min_size: int = 30
    """Smallest face side to report, in pixels of the full frame."""
    detect_width: int = 640
    """Frames wider than this are downscaled to it before detection; 0 keeps the full size."""
    equalize: bool = False
    """Histogram-equalize before detection (helps in flat, dim light)."""


class HaarFaceDetector:
    """Finds faces in BGR or grayscale frames."""

    def __init__(self, options: DetectorOptions | None = None):
        import cv2

        self.options = options or DetectorOptions()
        path = Path(self.options.cascade) if self.options.cascade else default_cascade_path()
        if not path.is_file():
            raise InputError(f"cascade file not found: {path}")
        self._cascade = cv2.CascadeClassifier(os.fspath(path))
        if self._cascade.empty():
            raise InputError(f"not a Haar cascade XML file: {path}")
        if self.options.scale_factor <= 1.0:
            raise InputError("scale factor must be greater than 1.0")
        self.cascade_path = path

    def detect(self, frame: np.ndarray, full_size: tuple[int, int] | None = None) -> list[Box]:
        """Face boxes, largest first, in `frame` coordinates, or in those of a frame of
        `full_size` (w, h) when `frame` is a smaller view of it (a Pi camera's low-resolution
        plane); `min_size` is always in full-frame pixels."""
        import cv2

        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        h, w = gray.shape[:2]
        full_w, full_h = full_size or (w, h)
        o = self.options
        if o.detect_width and w > o.detect_width:
            gray = cv2.resize(gray, (o.detect_width, max(1, round(h * o.detect_width / w))),
                              interpolation=cv2.INTER_AREA)
        if o.equalize:
            gray = cv2.equalizeHist(gray)
        sx, sy = gray.shape[1] / full_w, gray.shape[0] / full_h
        min_side = max(8, int(round(o.min_size * sx)))
        found = self._cascade.detectMultiScale(gray, scaleFactor=o.scale_factor,
                                               minNeighbors=o.min_neighbors,
                                               minSize=(min_side, min_side))
        boxes = [(int(round(x / sx)), int(round(y / sy)), int(round(bw / sx)), int(round(bh / sy)))
                 for x, y, bw, bh in (found if len(found) else [])]
        boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
        return boxes


def expand_box(box: Box, margin: float, frame_w: int, frame_h: int) -> Box:
    """`box` grown by `margin` x its size on each side, clipped to the frame."""
    x, y, w, h = box
    dx, dy = int(round(w * margin)), int(round(h * margin))
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(frame_w, x + w + dx), min(frame_h, y + h + dy)
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def crop_face(frame: np.ndarray, box: Box, size: tuple[int, int], color: str,
              margin: float = 0.0) -> np.ndarray:
    """The face at `box` as a uint8 crop of `size` (w, h) in `color` (`gray` or `rgb`)."""
    import cv2

    fh, fw = frame.shape[:2]
    x, y, w, h = expand_box(box, margin, fw, fh)
    crop = frame[y:y + h, x:x + w]
    if color == "gray" and crop.ndim == 3:
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    elif color == "rgb":
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB if crop.ndim == 2 else cv2.COLOR_BGR2RGB)
    return resize_to(crop, size)
