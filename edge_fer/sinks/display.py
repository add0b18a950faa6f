"""A window showing the annotated stream (`run --display`)."""

from __future__ import annotations

import os
import sys
from typing import Callable

import cv2
import numpy as np

from edge_fer.draw import annotate
from edge_fer.errors import UsageError
from edge_fer.results import FrameResult, StatsSnapshot
from edge_fer.sinks.base import Sink


def gui_problem() -> str | None:
    """Why a window cannot be shown here, or None when it can."""
    framework = cv2.currentUIFramework() if hasattr(cv2, "currentUIFramework") else "unknown"
    if not framework:
        return ("this OpenCV has no GUI (opencv-python-headless): for --display install "
                "opencv-python in its place, or use Raspberry Pi OS's python3-opencv")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no graphical session (DISPLAY is not set): run from the desktop, or use --headless"
    return None


class DisplaySink(Sink):
    """Shows the annotated stream in a window; `q` or Esc (or closing it) calls `on_quit`."""

    def __init__(self, on_quit: Callable[[], None], title: str = "edge-fer", *,
                 blur_faces: bool = False, privacy: str | None = None):
        problem = gui_problem()
        if problem:
            raise UsageError(f"--display: {problem}")
        self.title = title
        self.blur_faces = blur_faces
        self.privacy = privacy
        """What is hidden in the window (`edge_fer.draw.hide`): "faces", "frame" or None."""
        self._on_quit = on_quit
        self._buf: np.ndarray | None = None

    def on_result(self, result: FrameResult, stats: StatsSnapshot) -> None:
        self._buf = annotate(result, stats, self._buf, blur=self.blur_faces,
                             privacy=self.privacy)
        cv2.imshow(self.title, self._buf)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27) or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self._on_quit()

    def close(self) -> None:
        cv2.destroyAllWindows()
