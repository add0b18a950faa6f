"""What every frame source is (`Source`), the frame it yields to the pipeline (`Frame`), and
what the sources read through OpenCV's VideoCapture share."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from edge_fer.errors import SourceError
from edge_fer.quiet import native_output_filtered

#: Frame rate assumed for pacing when a file does not say (or says nonsense).
FALLBACK_FPS = 30.0


@dataclass
class Frame:
    """One captured frame, as it travels from capture to detection."""

    index: int
    """Sequence number at capture (gaps downstream are dropped frames)."""
    captured_at: float
    """time.monotonic() when the frame arrived."""
    image: np.ndarray
    """BGR uint8, H x W x 3; shared downstream and never written to."""
    gray: np.ndarray | None = None
    """A smaller grayscale view of the same scene for detection (the Pi's low-resolution Y
    plane), or None to derive it from `image`."""


class Source(ABC):
    """Something frames can be read from."""

    live = False
    """Frames arrive in real time and the source may come back after failing (cameras,
    streams); a non-live source (file, folder) ends for good."""
    fps: float | None = None
    """The source's nominal frame rate once open, if it has one."""

    @property
    @abstractmethod
    def description(self) -> str:
        """What to call the source in messages (never a password)."""

    @abstractmethod
    def open(self) -> None:
        """Open or re-open; raises SourceError with what to do about it."""

    @abstractmethod
    def read(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(BGR or gray or BGRA image, optional detection gray), or None at the end of a
        non-live source; raises SourceError when a live source fails."""

    def close(self) -> None:
        """Release the device or file; safe to call twice."""

    def limit_open(self, seconds: float | None) -> None:
        """Let the next `open` block for at most `seconds` (None: the source's own bound), so a
        deadline such as `--source-timeout` covers an open that hangs; sources whose open does
        not block ignore it."""


def as_bgr(image: np.ndarray, where: str) -> np.ndarray:
    """`image` as H x W x 3 uint8 BGR, converting gray and BGRA; SourceError if it is no image."""
    import cv2

    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.size == 0:
        kind = getattr(image, "dtype", type(image).__name__)
        raise SourceError(f"{where} gave a frame that is not an 8-bit image ({kind})")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise SourceError(f"{where} gave a frame of shape {image.shape}, not an image")


def sane_fps(value: float) -> float | None:
    """A frame rate OpenCV reported, or None when it is missing or nonsense."""
    return float(value) if value and math.isfinite(value) and 1.0 <= value <= 240.0 else None


def video_capture(*args):
    """cv2.VideoCapture(*args), with what FFmpeg and OpenCV print meanwhile sent to the log."""
    import cv2

    with native_output_filtered():
        return cv2.VideoCapture(*args)


class OpenCVSource(Source):
    """What the sources read through OpenCV's VideoCapture share: a subclass's `open` sets
    `_cap`; reading and closing are the same for all."""

    _cap = None

    def read(self):
        with native_output_filtered():  # FFmpeg's decoding errors, OpenCV's timeout warnings
            ok, image = self._cap.read()
        if ok:
            return image, None
        if self.live:
            raise SourceError(f"{self.description} stopped delivering frames")
        return None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


__all__ = ["FALLBACK_FPS", "Frame", "OpenCVSource", "Source", "as_bgr", "sane_fps",
           "video_capture"]
