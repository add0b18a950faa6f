"""The annotated stream to a video file (`run --record`): the only way frames reach the disk."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from edge_fer.draw import annotate
from edge_fer.errors import InputError, OutputError, UsageError
from edge_fer.results import FrameResult, StatsSnapshot
from edge_fer.sinks.base import Sink

#: Container suffix -> codec that OpenCV's FFmpeg writer has everywhere. Only containers that
#: stay readable when the recording is cut short (a kill, a power cut): Matroska is written as
#: it goes (a kill loses at most the cluster being filled, 5 s), and OpenCV's AVI writer puts
#: every MJPEG frame on disk as it comes. An .mp4 holds its index at the end: without it,
#: nothing can be read.
RECORD_CODECS = {".mkv": "mp4v", ".avi": "MJPG"}
#: Bytes a recording leaves free on its disk: room to close the file cleanly and for the JSON
#: log's last lines and summary.
RECORD_RESERVE_BYTES = 1024 * 1024


class RecorderSink(Sink):
    """Writes the annotated stream to a video file at the source's frame rate.

    An existing file is never replaced unless `overwrite`. Before each frame the free space of
    the file's disk is checked: below `reserve` bytes (or about 3 s of this video, if more) the
    recording is closed cleanly and OutputError says how many frames it holds, instead of
    OpenCV failing frame after frame with a warning each and a file that will not open.
    """

    def __init__(self, path: str | os.PathLike, fps: float | None = None, *, overwrite: bool = False,
                 reserve: int = RECORD_RESERVE_BYTES, blur_faces: bool = False,
                 privacy: str | None = None):
        self.path = Path(path)
        codec = RECORD_CODECS.get(self.path.suffix.lower())
        if codec is None:
            raise UsageError(f"--record {self.path}: use .mkv (MPEG-4 in Matroska) or .avi (MJPEG), "
                             f"which stay readable if the recording is cut short; an .mp4 does "
                             f"not (convert afterwards: ffmpeg -i rec.mkv -c copy rec.mp4)")
        if not self.path.parent.is_dir():
            raise InputError(f"cannot record to {self.path}: folder {self.path.parent} does not exist")
        if self.path.exists() and not overwrite:
            raise InputError(f"--record {self.path} already exists: choose another name, or add "
                             f"--overwrite to replace it")
        self._codec = codec
        self.blur_faces = blur_faces
        """Blur each face in the recording (`edge_fer.draw.blur_faces`)."""
        self.privacy = privacy
        """What is hidden in the recording (`edge_fer.draw.hide`): "faces", "frame" or None."""
        self.fps = fps
        self.reserve = reserve
        self._writer = None
        self._size: tuple[int, int] | None = None
        self._buf: np.ndarray | None = None
        self.frames = 0
        """Frames written to the file."""

    def _open(self, size: tuple[int, int], fps: float) -> None:
        writer = cv2.VideoWriter(os.fspath(self.path), cv2.VideoWriter_fourcc(*self._codec), fps, size)
        if not writer.isOpened():
            raise InputError(f"cannot write the video {self.path} ({self._codec} at {size[0]}x{size[1]})")
        self._writer, self._size = writer, size

    def _check_space(self) -> None:
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return  # not a reason to stop recording
        free = st.f_bavail * st.f_frsize
        written = self.path.stat().st_size if self.frames and self.path.exists() else 0
        need = max(self.reserve, 3 * 30 * written // max(self.frames, 1))
        if free < need:
            self.close()
            raise OutputError(f"recording {self.path} stopped after {self.frames} frames: the "
                              f"disk is full ({free // 1024} KiB left)")

    def on_result(self, result: FrameResult, stats: StatsSnapshot) -> None:
        self._check_space()
        self._buf = annotate(result, stats, self._buf, blur=self.blur_faces,
                             privacy=self.privacy)
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
