"""A stand-in `picamera2` package: `edge-fer run --camera pi` on a machine without a camera.

Put this folder and `tests/` on PYTHONPATH (the arm64 lane, `ci/arm64.sh`, does) and name a clip
in $EDGE_FER_FAKE_CAMERA_CLIP: `Picamera2()` then serves that clip's frames through the same
fake the tests inject (`clips.FakePicamera2`), at $EDGE_FER_FAKE_CAMERA_FPS (default 30) frames
per second. Without a clip it behaves as picamera2 does on a Pi with no camera attached
(IndexError from its list of cameras). It is never on the path of the test suite itself, whose
tests pass the fake in directly.
"""

import os

from clips import FakePicamera2

__all__ = ["Picamera2"]


class Picamera2(FakePicamera2):
    def __init__(self, camera_num: int = 0):
        clip = os.environ.get("EDGE_FER_FAKE_CAMERA_CLIP")
        if not clip or camera_num != 0:
            raise IndexError("list index out of range")
        super().__init__(clip, fps=float(os.environ.get("EDGE_FER_FAKE_CAMERA_FPS", "30")))

    def close(self) -> None:
        self.stop()
