"""A network stream (RTSP, HTTP, ...) read with OpenCV's FFmpeg backend, every wait bounded."""

from __future__ import annotations

import re

from edge_fer.errors import SourceError
from edge_fer.pipeline.sources.base import OpenCVSource, sane_fps, video_capture


def redact_url(url: str) -> str:
    """`url` without a password, for messages and logs."""
    return re.sub(r"//([^/@:]+):[^/@]*@", r"//\1:***@", url)


class StreamSource(OpenCVSource):
    """A network stream (RTSP, HTTP, ...) read with OpenCV's FFmpeg backend."""

    live = True

    def __init__(self, url: str, timeout_s: float = 10.0):
        self.url = url
        self.timeout_ms = int(timeout_s * 1000)
        self._open_limit_ms: int | None = None

    def limit_open(self, seconds: float | None) -> None:
        self._open_limit_ms = None if seconds is None else max(1, int(seconds * 1000))

    @property
    def description(self) -> str:
        return f"stream {redact_url(self.url)}"

    def open(self) -> None:
        import cv2

        # Without these FFmpeg may block for minutes on a dead host: every wait has a bound.
        open_ms = min(self.timeout_ms, self._open_limit_ms or self.timeout_ms)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_ms,
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.timeout_ms]
        cap = video_capture(self.url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            raise SourceError(f"cannot open {self.description}: check the address, the network "
                              f"and that the stream is running")
        self._cap = cap
        self.fps = sane_fps(cap.get(cv2.CAP_PROP_FPS))


__all__ = ["StreamSource", "redact_url"]
