"""The annotated stream to a video file (`run --record`): the only way frames reach the disk."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from edge_fer.draw import annotate
from edge_fer.errors import InputError, UsageError
from edge_fer.results import FrameResult, StatsSnapshot
from edge_fer.sinks.base import Sink

#: Container suffix -> codec that OpenCV's FFmpeg writer has everywhere.
RECORD_CODECS = {".mp4": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


class RecorderSink(Sink):
    """Writes the annotated stream to a video file at the source's frame rate."""

    def __init__(self, path: str | os.PathLike, fps: float | None = None):
        self.path = Path(path)
        codec = RECORD_CODECS.get(self.path.suffix.lower())
        if codec is None:
            raise UsageError(f"--record {self.path}: use one of {', '.join(RECORD_CODECS)}")
        if not self.path.parent.is_dir():
            raise InputError(f"cannot record to {self.path}: folder {self.path.parent} does not exist")
        self._codec = codec
        self.fps = fps
        self._writer = None
        self._size: tuple[int, int] | None = None
        self._buf: np.ndarray | None = None
        self.frames = 0

    def _open(self, size: tuple[int, int], fps: float) -> None:
        writer = cv2.VideoWriter(os.fspath(self.path), cv2.VideoWriter_fourcc(*self._codec), fps, size)
        if not writer.isOpened():
            raise InputError(f"cannot write the video {self.path} ({self._codec} at {size[0]}x{size[1]})")
        self._writer, self._size = writer, size

    def on_result(self, result: FrameResult, stats: StatsSnapshot) -> None:
        self._buf = annotate(result, stats, self._buf)
        size = (self._buf.shape[1], self._buf.shape[0])
        if self._writer is None:
            self._open(size, self.fps or stats.source_fps or 30.0)
        frame = self._buf
        if size != self._size:
            # A video file has one frame size: fit frames from a source that changed size.
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
