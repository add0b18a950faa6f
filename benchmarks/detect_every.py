"""How often each detector should run in `edge-fer run`: box quality against detection cost.

    python benchmarks/detect_every.py [--every 1,2,3,5,8] [--json]

The bench clip (three real 160 px faces drifting over 640x480, one leaving) goes through the real
pipeline, offline, with each detector at each --detect-every. Per setting: the mean IoU of the
output boxes with the true ones (stale tracked boxes lower it), faces missed, boxes without a
face, and the detector's CPU milliseconds per frame (detection time x detections / frames,
thread CPU time, so other load on the machine does not inflate it).

The rule for the shipped defaults: a cheap detector runs as often as fits in 2 ms of x86 CPU per
frame (a Pi 4 is several times slower: see benchmarks/pi_budget.py), so faces appear and leave
sooner and boxes stay fresh; the smallest such interval wins. Haar fits at no interval and
keeps its long-standing 5.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from clips import make_clip, match_boxes  # noqa: E402
from edge_fer.classifier import EmotionClassifier  # noqa: E402
from edge_fer.detector import DETECTORS, DetectorOptions, create_detector  # noqa: E402
from edge_fer.pipeline import CaptureOptions, Pipeline, PipelineOptions, TrackerOptions, open_source  # noqa: E402
from edge_fer.sinks import Sink  # noqa: E402
from edge_fer_models import DEFAULT_MODEL  # noqa: E402

SHARED = Path(os.environ.get("EDGE_FER_DATA", REPO.parent / "shared"))


class _Keep(Sink):
    def __init__(self):
        self.results = []

    def on_result(self, result, stats):
        self.results.append([f.box for f in result.faces])


class _Timed:
    """The detector, with its thread CPU time counted."""

    def __init__(self, det):
        self.det, self.cpu, self.calls = det, 0.0, 0

    def __getattr__(self, name):
        return getattr(self.det, name)

    def detect(self, frame, full_size=None):
        t0 = time.thread_time()
        try:
            return self.det.detect(frame, full_size)
        finally:
            self.cpu += time.thread_time() - t0
            self.calls += 1


def measure(name: str, every: int, clip, clf) -> dict:
    det = _Timed(create_detector(name, DetectorOptions(detect_width=320)))
    keep = _Keep()
    pipeline = Pipeline(open_source(CaptureOptions(source=str(clip.path))), det, clf,
                        PipelineOptions(tracking=TrackerOptions(detect_every=every)))
    pipeline.add_sink(keep)
    pipeline.start()
    pipeline.wait()
    ious, missed, false = [], 0, 0
    for i, boxes in enumerate(keep.results[5:], start=5):
        truth = [b for b in clip.boxes[i] if b is not None]
        best, unmatched = match_boxes(truth, boxes)
        ious += best
        missed += len(truth) - sum(v >= 0.3 for v in best)
        false += unmatched
    return {"detector": name, "detect_every": every, "mean_iou": round(float(np.mean(ious)), 4),
            "missed": missed, "false": false, "detections": det.calls,
            "detect_cpu_ms_per_frame": round(det.cpu * 1000 / max(1, len(keep.results)), 2)}


def choose(rows: list[dict], shipped: int) -> int:
    cheap = [r["detect_every"] for r in rows if r["detect_cpu_ms_per_frame"] <= 2.0]
    return min(cheap) if cheap and min(cheap) < max(r["detect_every"] for r in rows) else shipped


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", default="1,2,3,5,8")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    clf = EmotionClassifier(DEFAULT_MODEL)
    names = [n for n, s in DETECTORS.items() if s.status()[0] == "ready"]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "bench.mp4", SHARED / "images", frames=150, face_px=160)
        for name in names:
            rows = [measure(name, int(e), clip, clf) for e in args.every.split(",")]
            shipped = DETECTORS[name].cls.default_detect_every
            out[name] = {"rows": rows, "chosen": choose(rows, shipped), "shipped": shipped}
    if args.json:
        print(json.dumps(out))
        return 0
    for name, r in out.items():
        print(f"{name}: chosen --detect-every {r['chosen']} (shipped default {r['shipped']})")
        for row in r["rows"]:
            print("   " + "  ".join(f"{k}={v}" for k, v in row.items() if k != "detector"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
