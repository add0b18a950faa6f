"""Test and benchmark clips: real faces from the shared photos moving slowly over a canvas.

Generated at test (or benchmark) time so no video or shared data is committed. The generator
returns the true face boxes per frame, so tracking can be scored against ground truth.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Face boxes (x, y, w, h) in ../shared/images/test_image.jpg (2048x1536): the close face and
#: three of the group, found once with OpenCV's frontal-face cascade.
TEST_IMAGE_FACES = [(770, 840, 588, 588), (572, 418, 116, 116), (1186, 398, 108, 108)]


def match_boxes(truth: list, boxes: list, min_iou: float = 0.3) -> tuple[list[float], int]:
    """Each true face's best IoU with `boxes` (empty when either side is), and how many boxes
    overlap no true face by `min_iou`: what a clip's detections and tracks are scored by."""
    from edge_fer.pipeline.tracking import iou_matrix

    m = iou_matrix(truth, boxes)
    if not m.size:
        return [], len(boxes)
    return [float(v) for v in m.max(axis=1)], int((m.max(axis=0) < min_iou).sum())


@dataclass
class Clip:
    path: Path
    frames: int
    fps: float
    size: tuple[int, int]
    boxes: list[list[tuple[int, int, int, int] | None]]
    """boxes[frame][face]: the face's true box, or None while it is out of the picture."""


def face_sprites(images_dir: Path, face_px: int = 96, margin: float = 0.35) -> list[tuple[np.ndarray, tuple]]:
    """(sprite, face box inside the sprite) per face of the shared group photo."""
    import cv2

    from edge_fer.images import read_image

    photo = read_image(Path(images_dir) / "test_image.jpg")
    sprites = []
    for x, y, w, h in TEST_IMAGE_FACES:
        m = int(round(w * margin))
        crop = photo[max(0, y - m):y + h + m, max(0, x - m):x + w + m]
        scale = face_px / w
        sprite = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        off = int(round(m * scale))
        sprites.append((sprite, (off, off, face_px, face_px)))
    return sprites


def textured_background(size: tuple[int, int], seed: int = 1234) -> np.ndarray:
    """A grey BGR canvas of `size` (w, h) with a gentle gradient and sensor-like noise."""
    import cv2

    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    canvas = (70 + 60 * xx / w + 30 * yy / h).astype(np.float32)
    canvas += rng.normal(0, 6, canvas.shape)
    return cv2.cvtColor(np.clip(canvas, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def make_clip(path: str | os.PathLike, images_dir: Path, frames: int = 150, fps: float = 30.0,
              n_faces: int = 3, leave_at: float | None = 0.6, size: tuple[int, int] = (640, 480),
              face_px: int = 96) -> Clip:
    """Write a clip of `n_faces` (1-3) faces drifting slowly (under 2 px per frame) over a
    textured canvas; with `leave_at`, the last face leaves after that fraction of the clip."""
    import cv2

    w, h = size
    background = textured_background(size)
    sprites = face_sprites(images_dir, face_px)[:n_faces]
    # Centres spread over the canvas; each drifts on its own slow ellipse.
    centres = [(0.22, 0.35), (0.72, 0.30), (0.50, 0.72)]
    writer = cv2.VideoWriter(os.fspath(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    boxes = []
    period = 150.0
    for i in range(frames):
        frame = background.copy()
        row = []
        for k, (sprite, (fx, fy, fw, fh)) in enumerate(sprites):
            if leave_at is not None and k == len(sprites) - 1 and k > 0 and i >= leave_at * frames:
                row.append(None)
                continue
            phase = 2 * math.pi * (i / period + k / 3)
            cx = centres[k][0] * w + 40 * math.sin(phase)
            cy = centres[k][1] * h + 20 * math.cos(phase)
            sh, sw = sprite.shape[:2]
            x0 = int(np.clip(round(cx - sw / 2), 0, w - sw))
            y0 = int(np.clip(round(cy - sh / 2), 0, h - sh))
            frame[y0:y0 + sh, x0:x0 + sw] = sprite
            row.append((x0 + fx, y0 + fy, fw, fh))
        boxes.append(row)
        writer.write(frame)
    writer.release()
    return Clip(Path(path), frames, fps, size, boxes)


class FakePicamera2:
    """picamera2's API as the Pi camera source uses it (`create_video_configuration`,
    `configure`, `start`, `capture_array`, `stop`), serving a real clip's frames.

    `main` frames come as picamera2's RGB888 does (BGR byte order, H x W x 3); `lores` as YUV420,
    (h * 3/2) rows of a padded stride, whose first h rows are the Y plane. `blank_lores` serves a
    flat Y plane, to show which stream detection reads.
    """

    def __init__(self, clip_path: str | os.PathLike, fps: float = 60.0, blank_lores: bool = False,
                 stride_pad: int = 64):
        self.clip_path = Path(clip_path)
        self.fps = fps
        self.blank_lores = blank_lores
        self.stride_pad = stride_pad
        self.config: dict | None = None
        self.started = False
        self.stopped = 0
        self.captures = {"main": 0, "lores": 0}
        self._cap = None
        self._gray = None
        self._next_at = 0.0

    def create_video_configuration(self, main=None, lores=None, controls=None, **kwargs):
        return {"main": dict(main or {}), "lores": dict(lores or {}), "controls": dict(controls or {})}

    def configure(self, config):
        self.config = config

    def start(self):
        import cv2

        if self.config is None:
            raise RuntimeError("Camera must be configured before start")
        self._cap = cv2.VideoCapture(os.fspath(self.clip_path))
        self.started = True

    def capture_array(self, name="main"):
        import time

        import cv2

        if not self.started:
            raise RuntimeError("Camera is not running")
        self.captures[name] += 1
        if name == "main":
            # A camera delivers at its own rate.
            now = time.monotonic()
            if self._next_at > now:
                time.sleep(self._next_at - now)
            self._next_at = max(now, self._next_at) + 1.0 / self.fps
            ok, frame = self._cap.read()
            if not ok:  # loop the clip, as a camera never ends
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self._cap.read()
            frame = cv2.resize(frame, tuple(self.config["main"]["size"]))
            self._gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            return frame
        lw, lh = self.config["lores"]["size"]
        y = np.full((lh, lw), 128, np.uint8) if self.blank_lores else \
            cv2.resize(self._gray, (lw, lh), interpolation=cv2.INTER_AREA)
        stride = lw + self.stride_pad
        yuv = np.full((lh * 3 // 2, stride), 128, np.uint8)
        yuv[:lh, :lw] = y
        return yuv

    def stop(self):
        self.stopped += 1
        self.started = False
        if self._cap is not None:
            self._cap.release()


def clip_jpegs(clip: Clip) -> list[bytes]:
    """The clip's frames as JPEG files, as an IP camera sends them."""
    import cv2

    cap = cv2.VideoCapture(os.fspath(clip.path))
    jpegs = [cv2.imencode(".jpg", cap.read()[1])[1].tobytes() for _ in range(clip.frames)]
    cap.release()
    return jpegs


def mjpeg_server(jpegs: list[bytes], port: int = 0, fps: float = 60.0):
    """An HTTP MJPEG camera (multipart/x-mixed-replace, as IP cameras serve) on localhost,
    looping over `jpegs`; `stop_server` takes it away."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            i = 0
            try:
                while not self.server.going_away:
                    jpg = jpegs[i % len(jpegs)]
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                     % len(jpg) + jpg + b"\r\n")
                    i += 1
                    time.sleep(1 / fps)
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.going_away = False
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop_server(server) -> None:
    server.going_away = True  # ends the open streams too, as a camera losing power would
    server.shutdown()
    server.server_close()
