"""Frame sources, one module per kind: `video_file`, `image_folder`, `usb` (V4L2 cameras through
OpenCV), `stream` (RTSP, HTTP, ...), `picamera` (the Raspberry Pi camera through picamera2),
on the `Source` interface of `base`.

Sources only know how to open, read and close; the capture stage around them
(`edge_fer.pipeline.capture`) owns pacing, bounds (`--max-frames`, `--duration`) and reconnecting
live sources with backoff, so every source behaves the same way in those respects. This module
holds what picks a source: `CaptureOptions` and `open_source`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edge_fer.errors import UsageError
from edge_fer.images import DEFAULT_MAX_PIXELS
from edge_fer.pipeline.sources.base import FALLBACK_FPS, Frame, OpenCVSource, Source, as_bgr
from edge_fer.pipeline.sources.image_folder import ImageFolderSource
from edge_fer.pipeline.sources.picamera import PiCameraSource
from edge_fer.pipeline.sources.stream import StreamSource, redact_url
from edge_fer.pipeline.sources.usb import USBCameraSource
from edge_fer.pipeline.sources.video_file import VideoFileSource


@dataclass
class CaptureOptions:
    """Where frames come from and how many to take."""

    camera: str | None = None
    """`pi`, `usb:N` or a bare index N; None when `source` is given."""
    source: str | None = None
    """A video file, a folder of images, or a stream URL (rtsp://, http://, ...)."""
    width: int = 640
    """Requested camera frame width (cameras only; files keep their size)."""
    height: int = 480
    """Requested camera frame height."""
    fps: float | None = None
    """Camera frame rate (default 30); for files and folders, the `realtime` pacing rate
    (default: the file's own rate, 30 for folders)."""
    realtime: bool = False
    """Pace a file or folder at its frame rate and drop frames the pipeline cannot keep up with,
    as a camera would; otherwise every frame is processed as fast as possible."""
    max_frames: int | None = None
    """Stop after reading this many frames."""
    duration: float | None = None
    """Stop after this many seconds."""
    lores_width: int = 320
    """Pi camera: width of the low-resolution stream whose Y plane feeds detection."""
    reconnect_initial_s: float = 0.5
    """Live sources: first wait before reconnecting; it doubles after each failed attempt."""
    reconnect_max_s: float = 10.0
    """Live sources: the longest wait between reconnection attempts."""
    reconnect_timeout_s: float | None = 30.0
    """Live sources: how long one that is down at the start, or lost during the run, is retried
    before the run fails; None keeps trying until stopped. A camera or a network stream often
    comes up a little after a kiosk's service, and a stream drops for a few seconds."""
    open_timeout_s: float = 10.0
    """Streams: how long opening or reading may block."""
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    """Image folders: images of more pixels are skipped, checked from the header before
    decoding (None: no limit)."""
    loop: bool = False
    """Files and folders: start again from the first frame at the end, until stopped (or
    `max_frames`, `duration`); cameras and streams ignore it."""


def parse_camera(spec: str) -> str | int:
    """`pi` or a USB camera index from `pi`, `usb:N` or `N`."""
    s = spec.strip().lower()
    if s == "pi":
        return "pi"
    m = re.fullmatch(r"(?:usb:)?(\d+)", s)
    if not m:
        raise UsageError(f"--camera {spec!r}: expected pi, usb:N or a camera index N")
    return int(m.group(1))


def open_source(options: CaptureOptions, camera=None) -> Source:
    """The source `options` name (not opened yet); `camera` is passed to the Pi camera source."""
    o = options
    if bool(o.camera) == bool(o.source):
        raise UsageError("give one of --camera (pi, usb:N) or --source (video, folder, URL)")
    if o.camera:
        which = parse_camera(o.camera)
        fps = o.fps or FALLBACK_FPS
        if which == "pi":
            return PiCameraSource(o.width, o.height, fps, o.lores_width, camera=camera)
        return USBCameraSource(which, o.width, o.height, fps)
    src = o.source
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", src):
        return StreamSource(src, o.open_timeout_s)
    if Path(src).is_dir():
        return ImageFolderSource(src, o.max_pixels)
    return VideoFileSource(src)


__all__ = ["FALLBACK_FPS", "CaptureOptions", "Frame", "ImageFolderSource", "OpenCVSource",
           "PiCameraSource", "Source", "StreamSource", "USBCameraSource", "VideoFileSource",
           "as_bgr", "open_source", "parse_camera", "redact_url"]
