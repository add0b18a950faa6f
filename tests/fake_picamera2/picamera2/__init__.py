"""A stand-in `picamera2` package: `edge-fer run --camera pi` on a machine without a camera.

Put this folder and `tests/` on PYTHONPATH (the arm64 lane, `ci/arm64.sh`, does) and name a clip
in $EDGE_FER_FAKE_CAMERA_CLIP: `Picamera2()` then serves that clip's frames through the same
fake the tests use (`clips.FakePicamera2`), at $EDGE_FER_FAKE_CAMERA_FPS (default 30) frames
per second. Without a clip it behaves as picamera2 does on a Pi with no camera attached (an
IndexError from its list of cameras); with $EDGE_FER_FAKE_CAMERA_BUSY=1, as one whose camera
another program holds (RuntimeError "Camera __init__ sequence did not complete." over
libcamera's "Failed to acquire camera: Device or resource busy"). It is never on the path of the
test suite itself, whose tests pass the fake in directly.
"""

import os

from clips import LIBCAMERA_BUSY, FakePicamera2

__all__ = ["Picamera2"]


class Picamera2(FakePicamera2):
    def __init__(self, camera_num: int = 0):
        clip = os.environ.get("EDGE_FER_FAKE_CAMERA_CLIP")
        busy = RuntimeError(LIBCAMERA_BUSY) if os.environ.get("EDGE_FER_FAKE_CAMERA_BUSY") else None
        super().__init__(clip or os.devnull, camera_num=camera_num, cameras=1 if clip else 0,
                         open_error=busy,
                         fps=float(os.environ.get("EDGE_FER_FAKE_CAMERA_FPS", "30")))
