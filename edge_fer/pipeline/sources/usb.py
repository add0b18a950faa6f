"""A V4L2 / USB camera opened by index with OpenCV."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from edge_fer.errors import SourceError
from edge_fer.pipeline.sources.base import OpenCVSource, video_capture

log = logging.getLogger(__name__)


def _video_device(index: int) -> Path | None:
    return Path(f"/dev/video{index}") if sys.platform.startswith("linux") else None


class USBCameraSource(OpenCVSource):
    """A V4L2 / USB camera opened by index with OpenCV."""

    live = True

    def __init__(self, index: int, width: int, height: int, fps: float):
        self.index = index
        self.size = (width, height)
        self.fps = fps
        self._warned_size = False

    @property
    def description(self) -> str:
        return f"camera usb:{self.index}"

    def open(self) -> None:
        import cv2

        device = _video_device(self.index)
        if device is not None and not device.exists():
            # Checked first: OpenCV would only print a warning and report "not opened".
            raise SourceError(
                f"no camera at {device}: plug in a USB camera, list them with "
                f"'v4l2-ctl --list-devices', or pick another with --camera usb:N")
        api = cv2.CAP_V4L2 if device is not None else cv2.CAP_ANY
        cap = video_capture(self.index, api)
        if not cap.isOpened():
            raise SourceError(
                f"cannot open {self.description}: it is busy (another program is using it) or "
                f"{device or 'the device'} is not a capture device")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        # A driver-side queue of old frames is latency: keep one.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap
        got = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if got != self.size and not self._warned_size:
            self._warned_size = True
            log.warning("%s gives %dx%d frames, not the requested %dx%d", self.description,
                        *got, *self.size)


__all__ = ["USBCameraSource"]
