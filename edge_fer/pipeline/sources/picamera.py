"""A Raspberry Pi camera through picamera2: the BGR main stream and the low-resolution Y plane
for detection from one request.

picamera2 comes with Raspberry Pi OS (python3-picamera2), not from pip: it is imported when a
camera is made, so everything else runs without it; tests pass a fake (tests/fake_picamera2).
"""

from __future__ import annotations

import errno
import logging
from typing import Callable

import numpy as np

from edge_fer.errors import SourceError
from edge_fer.pipeline.sources.base import Source

log = logging.getLogger(__name__)

PICAMERA2_MISSING = ("picamera2 is not installed: on Raspberry Pi OS run 'sudo apt install "
                     "python3-picamera2' (a virtual environment needs --system-site-packages to "
                     "see it)")
PICAMERA_NOT_FOUND = ("no Raspberry Pi camera found: enable it (raspi-config, or camera_auto_detect=1 "
                      "in /boot/firmware/config.txt), check the ribbon cable, and list cameras with "
                      "'rpicam-hello --list-cameras'")
PICAMERA_BUSY = ("the Pi camera is busy: another program (rpicam-*, libcamera, another edge-fer) is "
                 "using it, or its last user was killed and it is not free yet; stop that program "
                 "(list it with 'sudo fuser -v /dev/media* /dev/video*')")
PICAMERA_FAILED = ("the Pi camera failed to start: check the ribbon cable and the camera with "
                   "'rpicam-hello --list-cameras'")
#: How long a Pi camera can stay busy after its last user was killed uncleanly (other Pi projects
#: measure 10-15 s): --source-timeout's default and the service's restart delay must cover it.
PICAMERA_BUSY_CLEARS_S = 15.0


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it was raised from or while handling, outermost first: picamera2 wraps
    the cause of a failed constructor in RuntimeError, keeping it only as __context__."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def _even(v: float) -> int:
    return max(2, int(round(v / 2)) * 2)


class PiCameraSource(Source):
    """A Raspberry Pi camera through picamera2, with two streams from the same request.

    The main stream (BGR) is what sinks show and faces are cropped from; the low-resolution
    YUV420 stream's Y plane is already a small grayscale image, so detection needs no colour
    conversion and no resize. `camera` takes an open object with picamera2's API, which the
    caller owns (tests pass a fake); otherwise `factory` (picamera2.Picamera2 when None, imported
    only then) makes the camera on each open, and it is closed with the source.
    """

    live = True

    def __init__(self, width: int, height: int, fps: float, lores_width: int = 320, camera=None,
                 factory: Callable[[], object] | None = None):
        self.size = (_even(width), _even(height))
        self.fps = fps
        lw = min(lores_width or width, width)
        self.lores_size = (_even(lw), _even(lw * height / width))
        self._injected = camera
        self._factory = factory
        self._cam = None
        self._warned_size = False

    @property
    def description(self) -> str:
        return "Pi camera"

    def _create(self):
        if self._injected is not None:
            return self._injected
        factory = self._factory
        if factory is None:
            try:
                from picamera2 import Picamera2 as factory
            except ImportError:
                raise SourceError(PICAMERA2_MISSING, permanent=True) from None
        try:
            return factory()
        except Exception as exc:  # noqa: BLE001 - picamera2 raises plain exceptions; explain them
            raise SourceError(self._explain(exc)) from None

    @staticmethod
    def _explain(exc: BaseException) -> str:
        """One line for a failure to open the camera, from every error in its chain: busy (held by
        another program), absent (picamera2 indexes its list of detected cameras: an empty list
        is an IndexError), or another fault, with what libcamera said."""
        chain = _exception_chain(exc)
        said = " <- ".join(f"{type(e).__name__}: {e}" for e in chain)
        if any("busy" in str(e).lower() or getattr(e, "errno", None) == errno.EBUSY for e in chain):
            return f"{PICAMERA_BUSY} ({said})"
        if any(isinstance(e, IndexError) or "not found" in str(e).lower() for e in chain):
            return f"{PICAMERA_NOT_FOUND} ({said})"
        return f"{PICAMERA_FAILED} ({said})"

    def open(self) -> None:
        cam = self._create()
        try:
            config = cam.create_video_configuration(
                main={"size": self.size, "format": "RGB888"},
                lores={"size": self.lores_size, "format": "YUV420"},
                controls={"FrameRate": float(self.fps)})
            cam.configure(config)
            cam.start()
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - picamera2 raises plain exceptions; explain them
            self._release(cam)
            raise SourceError(self._explain(exc)) from None
        self._cam = cam

    def read(self):
        cam = self._cam
        try:
            if hasattr(cam, "capture_arrays"):
                # One request, both streams: the detection plane and the crops show the same instant.
                (main, lores), _ = cam.capture_arrays(["main", "lores"])
            else:
                main, lores = cam.capture_array("main"), cam.capture_array("lores")
        except Exception as exc:  # noqa: BLE001 - a camera fault is a SourceError: reconnect
            raise SourceError(f"Pi camera capture failed: {type(exc).__name__}: {exc}") from None
        lw, lh = self.lores_size
        if not isinstance(lores, np.ndarray) or lores.ndim != 2 or lores.shape[0] < lh * 3 // 2 \
                or lores.shape[1] < lw:
            shape = getattr(lores, "shape", None)
            raise SourceError(f"Pi camera low-resolution stream gave {shape}, expected YUV420 "
                              f"of {lw}x{lh} ({lh * 3 // 2} rows of at least {lw})")
        # YUV420 arrives as (h * 3/2) rows of `stride` bytes: the first h rows are Y.
        return main, lores[:lh, :lw]

    def _release(self, cam) -> None:
        for method in ("stop", "close"):
            if cam is self._injected and method == "close":
                continue  # the caller owns an injected camera
            fn = getattr(cam, method, None)
            if fn is not None:
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001 - closing a failed camera may fail too
                    log.debug("Pi camera %s failed: %s", method, exc)

    def close(self) -> None:
        if self._cam is not None:
            self._release(self._cam)
            self._cam = None


__all__ = ["PICAMERA2_MISSING", "PICAMERA_BUSY", "PICAMERA_BUSY_CLEARS_S", "PICAMERA_FAILED",
           "PICAMERA_NOT_FOUND", "PiCameraSource"]
