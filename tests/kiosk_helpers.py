"""Shared pieces of the kiosk tests: frames with real faces, a frame feeder, an MJPEG reader,
`edge-fer run` in a subprocess, and the service manager's end of the notify socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edge_fer.results import FrameResult, RunSummary, StatsSnapshot, TrackedFace

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
REPO = Path(__file__).resolve().parent.parent
#: What the environment may carry that would change how a run under test behaves.
RUN_ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "EDGE_FER_CONFIG",
                   "EDGE_FER_TOKEN")


def load_frames(images_dir: Path, width: int = 640) -> list[tuple[np.ndarray, list[tuple[int, int, int, int]]]]:
    """The shared test images, scaled to `width`, with the faces the Haar detector finds."""
    from edge_fer.detector import DetectorOptions, HaarFaceDetector

    det = HaarFaceDetector(DetectorOptions(min_size=20))
    out = []
    for path in sorted(images_dir.glob("*.jpg")):
        img = cv2.imread(str(path))
        scale = width / img.shape[1]
        img = cv2.resize(img, (width, int(round(img.shape[0] * scale))))
        out.append((img, [f.box for f in det.detect(img)]))
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


def stats_for(n: int, faces: int = 0) -> StatsSnapshot:
    """Stats with every figure set, as the pipeline hands them to sinks after `n` frames."""
    return StatsSnapshot(frames_captured=n + n // 10, frames_processed=n, frames_dropped=n // 10,
                         capture_fps=15.0, fps=12.5, detect_p50_ms=20.0, detect_p95_ms=31.0,
                         classify_p50_ms=4.0, classify_p95_ms=6.5, latency_p50_ms=60.0,
                         latency_p95_ms=95.0, faces=faces, uptime_s=10.0 + n, first_result_s=1.5,
                         first_face_s=2.0, detections=n // 5, tracks_started=faces, reconnects=0,
                         model_failures=0, source_fps=30.0)


def summary_for(n: int, stop_reason: str = "end of source") -> RunSummary:
    """A run's summary after `n` frames."""
    return RunSummary(**stats_for(n).to_dict(), source="test", fps_mean=11.0,
                      dropped_by_queue={"capture->detect": n // 10}, stop_reason=stop_reason,
                      error=None, started_wall=1.7e9)


class Feeder:
    """Calls sink.on_result() with cycling frames from a thread, like the pipeline's output thread."""

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
            self.sink.on_result(result, stats_for(self.count + 1, len(faces)))
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, interval: float = 0.05):
    """The first truthy value of `check()` within `timeout` seconds; fails naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def get_json(url: str, headers: dict | None = None):
    """The JSON at `url`, or None while nothing answers there."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return json.load(r)
    except (urllib.error.URLError, ConnectionError):
        return None


@contextmanager
def spawn_run(args, cwd: Path, env: dict | None = None) -> Iterator[subprocess.Popen]:
    """`edge-fer run ARGS` in its own process, as systemd starts it, killed on the way out if
    still running; `env` adds variables to a clean copy of this one (no notify socket, config
    or token unless given)."""
    base = {k: v for k, v in os.environ.items() if k not in RUN_ENVIRONMENT}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-m", "edge_fer", "run", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**base, **(env or {})}, cwd=cwd)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def alive(proc: subprocess.Popen) -> bool:
    """True while `proc` runs; once it has ended, fails with the end of what it said."""
    if proc.poll() is not None:
        raise AssertionError(f"the run ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
    return True


def stop_run(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> tuple[str, str]:
    """Signal a running `edge-fer run` and collect (stdout, stderr)."""
    assert proc.poll() is None, "the run ended before it could be signalled: " + proc.stderr.read()
    proc.send_signal(sig)
    return proc.communicate(timeout=timeout)


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


class NotifySocket:
    """The service manager's end of sd_notify(3): a real AF_UNIX datagram socket whose messages
    a thread collects, each with the wall-clock time it arrived."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / "notify"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        self._sock.settimeout(0.05)
        self._got: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self._got.append((time.time(), data.decode().rstrip("\n")))

    def messages(self, prefix: str = "", after: float = 0.0) -> list[str]:
        """What arrived (after wall-clock time `after`), starting with `prefix`."""
        with self._lock:
            return [m for t, m in self._got if m.startswith(prefix) and t > after]

    def times(self, message: str, prefix: bool = False) -> list[float]:
        """When `message` arrived (each message starting with it, with `prefix`)."""
        with self._lock:
            return [t for t, m in self._got if (m.startswith(message) if prefix else m == message)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
