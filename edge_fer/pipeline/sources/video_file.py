"""A video file read with OpenCV (FFmpeg), refusing text FFmpeg would draw and files that end
early."""

from __future__ import annotations

import math
import os
from pathlib import Path

from edge_fer.errors import SourceError
from edge_fer.pipeline.sources.base import OpenCVSource, sane_fps, video_capture

#: What OpenCV reports as the codec (FFmpeg's codec name cut to four characters when the
#: container has no tag) of FFmpeg's text "videos": its tty demuxer renders any text file with
#: the ANSI decoder, and the bintext demuxers read .bin/.xb/.idf/.adf art, so a notes file or a
#: log given as --source plays as a few frames of drawn characters.
TEXT_CODECS = frozenset({"ansi", "bint", "xbin", "idf"})


def _fourcc(value: float) -> str:
    code = int(value) if value and math.isfinite(value) and value > 0 else 0
    return code.to_bytes(4, "little").decode("latin-1").rstrip("\0 ").lower()


class VideoFileSource(OpenCVSource):
    """A video file read with OpenCV (FFmpeg)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def description(self) -> str:
        return f"video {self.path}"

    def open(self) -> None:
        import cv2

        if not self.path.exists():
            raise SourceError(f"video file not found: {self.path}")
        cap = video_capture(os.fspath(self.path))
        if not cap.isOpened():
            raise SourceError(f"{self.path} is not a video OpenCV can read (damaged, or not a video)")
        codec = _fourcc(cap.get(cv2.CAP_PROP_FOURCC))
        if codec in TEXT_CODECS:
            cap.release()
            raise SourceError(f"{self.path} is text, not a video (FFmpeg would draw its "
                              f"characters as frames): give a video file, an image folder or a "
                              f"stream URL", permanent=True)
        self._cap = cap
        self.fps = sane_fps(cap.get(cv2.CAP_PROP_FPS))
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if count and math.isfinite(count) and count > 0 else None
        self.frames_read = 0

    frame_count: int | None = None
    """Frames the container says it holds, when it says (some formats only estimate it)."""
    frames_read = 0

    def read(self):
        got = super().read()
        if got is not None:
            self.frames_read += 1
            return got
        self._check_complete()
        return None

    def _check_complete(self) -> None:
        """A video whose decoding stops well before its container's frame count is damaged:
        FFmpeg gives up at the first bad stretch, and "end of source" would hide the loss."""
        expected, got = self.frame_count, self.frames_read
        if got == 0:
            raise SourceError(f"{self.path} has no frame OpenCV can decode (empty, damaged, or "
                              f"not a video)")
        # Containers that estimate the count (duration x rate) may be off by a frame or two.
        if expected is not None and got < expected - max(2, expected // 100):
            raise SourceError(f"{self.path} ended early: {got} of {expected} frames decoded "
                              f"(the file is damaged or truncated)")


__all__ = ["TEXT_CODECS", "VideoFileSource"]
