"""Per-stage cost of the pipeline's heavy calls, and whether each releases the GIL.

    python benchmarks/stages.py [--model M.tflite]

For each call (decode, Haar at the pipeline's and at the serial loops' settings, one batched
interpreter call) it prints the time per call and how far a pure-Python thread gets while the
call runs. A call that holds the GIL lets the other thread run only at the interpreter's switch
interval (5 ms); one that releases it lets it run throughout. The control row holds the GIL.
Run it on the development machine and on the Pi: the per-stage ratios are what the projection
in benchmarks/README.md multiplies by.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGE_FER_DATA", REPO.parent / "shared"))


def measure(call, repeat: int) -> tuple[float, float]:
    """(ms per call, ticks per ms of a pure-Python thread while the call runs)."""
    spans, ticks = [], []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.0002)

    call()  # warm up: first calls allocate
    t = threading.Thread(target=ticker)
    t.start()
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        spans.append((t0, time.perf_counter()))
    stop.set()
    t.join()
    ts = np.array(ticks)
    inside = sum(int(((ts > a) & (ts < b)).sum()) for a, b in spans)
    total_ms = sum(b - a for a, b in spans) * 1000
    return total_ms / repeat, inside / total_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.environ.get("EDGE_FER_MODEL"))
    ap.add_argument("--repeat", type=int, default=10)
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "tests"))
    import cv2

    from clips import make_clip
    from edge_fer.classifier import EmotionClassifier
    from edge_fer.detector import DetectorOptions, HaarFaceDetector
    from edge_fer_models import DEFAULT_MODEL

    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "c.mp4", SHARED / "images", frames=30)
        cap = cv2.VideoCapture(str(clip.path))
        ok, frame = cap.read()

        def decode():
            # Ten frames per call: one is too short to see the other thread run during it.
            for _ in range(10):
                if not cap.read()[0]:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)

        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        small = cv2.resize(gray, (320, 240), interpolation=cv2.INTER_AREA)
        pipeline_det = HaarFaceDetector(DetectorOptions(detect_width=320))
        serial_det = cv2.CascadeClassifier(str(pipeline_det.cascade_path))
        clf = EmotionClassifier(a.model or DEFAULT_MODEL)
        crops = [cv2.resize(gray[y:y + h, x:x + w], clf.input_size) for x, y, w, h in clip.boxes[0] if x is not None]

        def hold():
            end = time.perf_counter() + 0.02
            while time.perf_counter() < end:
                pass

        rows = [
            ("decode 10 frames of 640x480", decode),
            ("Haar, pipeline (320 px, 1.1)", lambda: pipeline_det.detect(small, full_size=(640, 480))),
            ("Haar, serial loops (640 px, 1.3)", lambda: serial_det.detectMultiScale(gray, 1.3, 5)),
            (f"classify {len(crops)} faces, one call", lambda: clf.predict_proba(crops)),
            ("classify 1 face", lambda: clf.predict_proba(crops[:1])),
            ("control: pure Python, 20 ms", hold),
        ]
        print(f"{'call':36s} {'ms/call':>8s} {'other thread ticks/ms':>22s}")
        for name, fn in rows:
            ms, rate = measure(fn, a.repeat)
            print(f"{name:36s} {ms:8.2f} {rate:22.2f}")
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; OpenCV threads "
              f"{cv2.getNumThreads()}; a call that releases the GIL shows ticks/ms near the "
              "ticker's free rate (about 2-5), one that holds it near the control's (about 0.2)")


if __name__ == "__main__":
    main()
