"""Haar-cascade face detection on a downscaled grayscale frame: the design's named detector.

Detection cost grows with the pixel count, so frames are scaled to `detect_width` first and the
boxes scaled back; on a Pi camera the low-resolution Y plane is already such a frame.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from edge_fer.detector.base import DetectedFace, DetectorOptions, FaceDetector, as_uint8_frame, largest_first
from edge_fer.errors import InputError

log = logging.getLogger(__name__)


def default_cascade_path() -> Path:
    import cv2

    data = getattr(cv2, "data", None)
    if data is None or not hasattr(data, "haarcascades"):
        raise InputError(
            "this OpenCV has no bundled Haar cascades (OpenCV 5 dropped them): install "
            "'opencv-python-headless>=4.8,<5' or pass --cascade FILE.xml"
        )
    return Path(data.haarcascades) / "haarcascade_frontalface_default.xml"


class HaarFaceDetector(FaceDetector):
    """OpenCV's Viola-Jones cascade; finds frontal faces in BGR or grayscale frames."""

    name = "haar"
    accepts_gray = True
    default_detect_every = 5
    no_face_hint = ("a larger --detect-width (0: full size) or a smaller --min-face for small "
                    "faces, or --detector blazeface-full for faces turned aside")

    def __init__(self, options: DetectorOptions | None = None):
        import cv2

        super().__init__(options)
        path = Path(self.options.cascade) if self.options.cascade else default_cascade_path()
        if not path.is_file():
            raise InputError(f"cascade file not found: {path}")
        self._cascade = cv2.CascadeClassifier(os.fspath(path))
        if self._cascade.empty():
            raise InputError(f"not a Haar cascade XML file: {path}")
        if self.options.scale_factor <= 1.0:
            raise InputError("scale factor must be greater than 1.0")
        self.cascade_path = path

    def detect(self, frame: np.ndarray, full_size: tuple[int, int] | None = None) -> list[DetectedFace]:
        import cv2

        frame = as_uint8_frame(frame)
        h, w = frame.shape[:2]
        full_w, full_h = full_size or (w, h)
        o = self.options
        if o.detect_width and w > o.detect_width:
            # Shrink first, then convert: a quarter of the pixels to convert at half the width.
            frame = cv2.resize(frame, (o.detect_width, max(1, round(h * o.detect_width / w))),
                               interpolation=cv2.INTER_AREA)
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if o.equalize:
            gray = cv2.equalizeHist(gray)
        sx, sy = gray.shape[1] / full_w, gray.shape[0] / full_h
        min_side = max(8, int(round(o.min_size * sx)))
        found = self._cascade.detectMultiScale(gray, scaleFactor=o.scale_factor,
                                               minNeighbors=o.min_neighbors,
                                               minSize=(min_side, min_side))
        return largest_first([
            DetectedFace((int(round(x / sx)), int(round(y / sy)), int(round(bw / sx)), int(round(bh / sy))))
            for x, y, bw, bh in (found if len(found) else [])])
