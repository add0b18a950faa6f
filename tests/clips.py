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


#: picamera2's message when its constructor fails after finding the camera (picamera2.py,
#: `Picamera2.__init__`); the cause rides along only as `__context__` up to 0.3.36 (`from e`
#: came later, as `__cause__`).
PICAMERA2_INIT_FAILED = "Camera __init__ sequence did not complete."
#: What libcamera's Python bindings raise when another process holds the camera:
#: `Camera.acquire()` throws std::system_error(EBUSY, "Failed to acquire camera"), which pybind11
#: turns into a RuntimeError of the system_error's what().
LIBCAMERA_BUSY = "Failed to acquire camera: Device or resource busy"


class _FakeRequest:
    """One completed request: every configured stream's buffer from the same sensor frame."""

    def __init__(self, camera: "_FakePicamera2Base", frame: np.ndarray, sequence: int):
        self.camera = camera
        self.frame = frame
        self.sequence = sequence

    def make_array(self, name: str) -> np.ndarray:
        import cv2

        config = self.camera.camera_config.get(name)
        if config is None:  # picamera2's Request.make_array says exactly this
            raise RuntimeError(f"Stream {name!r} is not defined")
        w, h = config["size"]
        if name == "main":
            # RGB888 is BGR byte order, H x W x 3: what OpenCV calls BGR.
            return cv2.resize(self.frame, (w, h), interpolation=cv2.INTER_AREA)
        if self.camera.blank_lores:
            y = np.full((h, w), 128, np.uint8)
        else:
            y = cv2.resize(cv2.cvtColor(self.frame, cv2.COLOR_BGR2GRAY), (w, h),
                           interpolation=cv2.INTER_AREA)
        # YUV420 as picamera2 hands it out: (h * 3/2) rows of `stride` bytes, padding kept.
        yuv = np.full((h * 3 // 2, config["stride"]), 128, np.uint8)
        yuv[:h, :w] = y
        return yuv

    def get_metadata(self) -> dict:
        period_us = int(round(1e6 / self.camera.fps))
        return {"SensorTimestamp": self.sequence * period_us * 1000, "FrameDuration": period_us}


class _FakePicamera2Base:
    """What every picamera2 release has, serving a real clip's frames (see FakePicamera2)."""

    def __init__(self, clip_path: str | os.PathLike, fps: float = 60.0, blank_lores: bool = False,
                 stride_pad: int = 64, camera_num: int = 0, cameras: int = 1,
                 open_error: BaseException | None = None):
        self.clip_path = Path(clip_path)
        self.fps = fps
        self.blank_lores = blank_lores
        self.stride_pad = stride_pad
        self.camera_config: dict | None = None
        self.started = False
        self.is_open = False
        self.stopped = 0
        self.requests = 0
        self.captures = {"main": 0, "lores": 0}
        self._cap = None
        self._next_at = 0.0
        # As Picamera2.__init__: the number is looked up in the list of detected cameras first,
        # outside any try (no camera: a bare IndexError), then the camera is opened inside one
        # that re-raises whatever went wrong as RuntimeError, the original only as __context__.
        self.camera_idx = [{"Num": i} for i in range(cameras)][camera_num]["Num"]
        try:
            if open_error is not None:
                raise open_error
            self.is_open = True
        except Exception:
            raise RuntimeError(PICAMERA2_INIT_FAILED)  # noqa: B904 - picamera2 0.3.x chains so

    def create_video_configuration(self, main={}, lores=None, raw={}, transform=None,  # noqa: B006
                                   colour_space=None, buffer_count=6, controls={}, display="main",
                                   encode="main", queue=True, sensor={}, use_case="video") -> dict:
        def stream(defaults, updates):
            if updates is None:
                return None
            valid = ("format", "size", "stride", "preserve_ar")
            for key in updates:
                if key not in valid:
                    raise ValueError(f"Bad key {key!r}: valid stream configuration keys are {valid}")
            conf = {**defaults, **updates}
            w, h = conf["size"]
            conf["size"] = (w - w % 2, h - h % 2)  # align_stream(optimal=False)
            return conf

        if not self.is_open:
            raise RuntimeError("Camera not opened")
        main = stream({"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}, main)
        lores = stream({"format": "YUV420", "size": main["size"], "preserve_ar": False}, lores)
        return {"use_case": use_case, "transform": transform, "colour_space": colour_space,
                "buffer_count": buffer_count, "queue": queue, "main": main, "lores": lores,
                "raw": raw, "controls": {"FrameDurationLimits": (33333, 33333), **controls},
                "sensor": sensor, "display": display, "encode": encode}

    def configure(self, camera_config=None) -> None:
        """picamera2's check_camera_config, on what this fake can serve."""
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if not isinstance(camera_config, dict):
            raise TypeError("Invalid type for `camera_config` given")
        for name in ("main", "lores"):
            conf = camera_config[name]
            if conf is None:
                continue
            size = conf["size"]
            if type(size) is not tuple or len(size) != 2:
                raise RuntimeError(f"size in {name} stream should be (width, height)")
            if size[0] % 2 or size[1] % 2:
                raise RuntimeError("width and height should be even")
        if camera_config["main"]["format"] != "RGB888":
            raise RuntimeError("this fake serves main only as RGB888")
        if camera_config["lores"] is not None:
            lw, lh = camera_config["lores"]["size"]
            mw, mh = camera_config["main"]["size"]
            if lw > mw or lh > mh:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if camera_config["lores"]["format"] != "YUV420":
                raise RuntimeError("lores stream must be YUV")
            camera_config["lores"].setdefault("stride", lw + self.stride_pad)
        self.camera_config = camera_config

    def start(self, config=None, show_preview=False) -> None:
        import cv2

        if config is not None:
            self.configure(config)
        if not self.camera_config:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            return
        self._cap = cv2.VideoCapture(os.fspath(self.clip_path))
        self.started = True

    def _next_request(self) -> _FakeRequest:
        """The next completed request: the camera delivers at its own rate, so this waits for
        the frame's time; a clip loops, as a camera never ends."""
        import time

        import cv2

        if not self.started:
            # Real picamera2 would wait for ever for a request that never comes.
            raise RuntimeError("the fake camera was not started")
        now = time.monotonic()
        if self._next_at > now:
            time.sleep(self._next_at - now)
        self._next_at = max(now, self._next_at) + 1.0 / self.fps
        ok, frame = self._cap.read()
        if not ok:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read()
        self.requests += 1
        return _FakeRequest(self, frame, self.requests)

    def capture_array(self, name="main", wait=None, signal_function=None) -> np.ndarray:
        """The named stream of the next request: two calls are two requests, two frames."""
        array = self._next_request().make_array(name)
        self.captures[name] += 1
        return array

    def stop(self) -> None:
        if not self.started:
            return
        self.stopped += 1
        self.started = False
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def close(self) -> None:
        if self.is_open:
            self.stop()
            self.is_open = False


class FakePicamera2(_FakePicamera2Base):
    """picamera2.Picamera2's API as the Pi camera source uses it, written from picamera2's own
    source (picamera2/picamera2.py and request.py, 0.3.x), serving a real clip's frames.

    - The constructor does what Picamera2's does: `camera_num` is looked up in the list of
      `cameras` detected (none: a bare IndexError), then the camera is opened, and `open_error`,
      when given, fails that step as libcamera would (e.g. RuntimeError(LIBCAMERA_BUSY)), re-raised
      as RuntimeError(PICAMERA2_INIT_FAILED) with the original only as `__context__`.
    - `create_video_configuration`, `configure` (picamera2's checks), `start`, `stop`, `close`.
    - Each `capture_array(name)` takes the next request, so main and lores captured in two calls
      come from two frames, as on a real camera; `capture_arrays(names)` gives every named stream
      from one request, with its metadata.
    - `main` comes as RGB888 does (BGR byte order, H x W x 3); `lores` as YUV420, (h * 3/2) rows of
      a padded stride whose first h rows are the Y plane. `blank_lores` serves a flat Y plane, to
      show which stream detection reads.
    """

    def capture_arrays(self, names=["main"], wait=None, signal_function=None):  # noqa: B006
        """([one array per name], metadata), all from the same request."""
        request = self._next_request()
        arrays = [request.make_array(name) for name in names]
        for name in names:
            self.captures[name] += 1
        return arrays, request.get_metadata()


class FakePicamera2WithoutCaptureArrays(_FakePicamera2Base):
    """An API without `capture_arrays` (picamera2 before August 2022): streams one call each."""


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
