"""Shared pieces of the kiosk tests: frames with real faces, a frame feeder, an MJPEG reader."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np

from edge_fer.results import FrameResult, TrackedFace

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def load_frames(images_dir: Path, width: int = 640) -> list[tuple[np.ndarray, list[tuple[int, int, int, int]]]]:
    """The shared test images, scaled to `width`, with the faces the Haar detector finds."""
    from edge_fer.detector import DetectorOptions, HaarFaceDetector

    det = HaarFaceDetector(DetectorOptions(min_size=20))
    out = []
    for path in sorted(images_dir.glob("*.jpg")):
        img = cv2.imread(str(path))
        scale = width / img.shape[1]
        img = cv2.resize(img, (width, int(round(img.shape[0] * scale))))
        out.append((img, det.detect(img)))
    assert out, f"no images in {images_dir}"
    return out


def tracked(boxes, labels: list[str] | None = None) -> list[TrackedFace]:
    """TrackedFaces for `boxes`, labels cycling through `labels` (inputs of the test, not results)."""
    labels = labels or LABELS
    faces = []
    for i, box in enumerate(boxes):
        label = labels[i % len(labels)]
        scores = {name: (0.7 if name == label else 0.3 / (len(LABELS) - 1)) for name in LABELS}
        faces.append(TrackedFace(track_id=i + 1, box=tuple(int(v) for v in box), label=label,
                                 score=0.7, scores=scores, raw_label=label))
    return faces


def stats_for(n: int, faces: int = 0) -> dict:
    """A stats dict with every key of the pipeline's contract."""
    return {"frames_captured": n + n // 10, "frames_processed": n, "dropped": n // 10,
            "captured_fps": 15.0, "processed_fps": 12.5, "detect_p50_ms": 20.0,
            "detect_p95_ms": 31.0, "classify_p50_ms": 4.0, "classify_p95_ms": 6.5,
            "latency_p50_ms": 60.0, "latency_p95_ms": 95.0, "faces": faces,
            "uptime_s": 10.0 + n, "first_result_s": 1.5}


class Feeder:
    """Calls sink.handle() with cycling frames from a thread, like the pipeline's output thread."""

    def __init__(self, sink, frames: list[tuple[np.ndarray, list[TrackedFace]]], fps: float = 20.0):
        self.sink = sink
        self.frames = frames
        self.period = 1.0 / fps
        self.count = 0
        self.handle_times: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            frame, faces = self.frames[self.count % len(self.frames)]
            now = time.monotonic()
            result = FrameResult(self.count, now - 0.05, now, frame, faces)
            t0 = time.perf_counter()
            self.sink.handle(result, stats_for(self.count + 1, len(faces)))
            self.handle_times.append(time.perf_counter() - t0)
            self.count += 1
            self.stop.wait(self.period)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)


def read_part(stream) -> tuple[dict, bytes]:
    """One part of a multipart/x-mixed-replace response: (headers, body)."""
    line = stream.readline()
    while line in (b"\r\n", b"\n"):
        line = stream.readline()
    assert line.startswith(b"--"), f"expected a boundary, got {line[:60]!r}"
    headers = {}
    while True:
        line = stream.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, v = line.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = stream.read(int(headers["content-length"]))
    return headers, body
