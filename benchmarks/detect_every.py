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

    python benchmarks/detect_every.py --ferplus ../shared/datasets/fer2013/publictest [--faces 240]

--ferplus scores what the interval does to the emotions instead (issue 26: re-chosen on FER+
PublicTest): a clip of dataset faces that have a FER+ majority, three at a time, each enlarged 3x
and drifting over the canvas for --segment frames before three others take their places
(alternating between two sets of places, so a new face never starts under an old face's
track). Per setting: of every (frame, face) pair, the share with a box (coverage), the share
whose output label (smoothed, as the page and the sinks show it) is the FER+ majority, and that
among the pairs with a box; the raw per-frame label too. An interval that is no better than the
cheaper one by more than one standard error does not pay.
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

from clips import make_clip, match_boxes, textured_background  # noqa: E402
from edge_fer.classifier import EmotionClassifier  # noqa: E402
from edge_fer.datasets import load_folder, remap_labels  # noqa: E402
from edge_fer.detector import DETECTORS, DetectorOptions, create_detector  # noqa: E402
from edge_fer.evaluate import votes_of  # noqa: E402
from edge_fer.pipeline import CaptureOptions, Pipeline, PipelineOptions, TrackerOptions, open_source  # noqa: E402
from edge_fer.pipeline.tracking import iou_matrix  # noqa: E402
from edge_fer.sinks import Sink  # noqa: E402
from edge_fer_models import DEFAULT_MODEL  # noqa: E402

SHARED = Path(os.environ.get("EDGE_FER_DATA", REPO.parent / "shared"))


class _Keep(Sink):
    def __init__(self):
        self.results = []

    def on_result(self, result, stats):
        self.results.append(list(result.faces))


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


def run_clip(name: str, every: int, path: Path, clf) -> tuple[list[list], _Timed]:
    """The clip at `path` through the real pipeline, offline, with detector `name` every `every`
    frames: each frame's faces, and the timed detector."""
    det = _Timed(create_detector(name, DetectorOptions(detect_width=320)))
    keep = _Keep()
    pipeline = Pipeline(open_source(CaptureOptions(source=str(path))), det, clf,
                        PipelineOptions(tracking=TrackerOptions(detect_every=every)))
    pipeline.add_sink(keep)
    pipeline.start()
    pipeline.wait()
    return keep.results, det


def cpu_ms_per_frame(det: _Timed, frames: list) -> float:
    return round(det.cpu * 1000 / max(1, len(frames)), 2)


def ready_detectors() -> list[str]:
    return [n for n, s in DETECTORS.items() if s.status()[0] == "ready"]


def print_rows(rows: list[dict]) -> None:
    for row in rows:
        print("   " + "  ".join(f"{k}={v}" for k, v in row.items() if k != "detector"))


def measure(name: str, every: int, clip, clf) -> dict:
    frames, det = run_clip(name, every, clip.path, clf)
    ious, missed, false = [], 0, 0
    for i, faces in enumerate(frames[5:], start=5):
        truth = [b for b in clip.boxes[i] if b is not None]
        best, unmatched = match_boxes(truth, [f.box for f in faces])
        ious += best
        missed += len(truth) - sum(v >= 0.3 for v in best)
        false += unmatched
    return {"detector": name, "detect_every": every, "mean_iou": round(float(np.mean(ious)), 4),
            "missed": missed, "false": false, "detections": det.calls,
            "detect_cpu_ms_per_frame": cpu_ms_per_frame(det, frames)}


#: Where the three faces of a --ferplus segment drift; segments alternate between the two sets.
PLACES = ([(0.22, 0.35), (0.72, 0.30), (0.50, 0.72)], [(0.50, 0.28), (0.20, 0.72), (0.80, 0.72)])


def ferplus_clip(path: Path, faces: list[np.ndarray], segment: int, fps: float = 30.0,
                 size: tuple[int, int] = (640, 480), scale: int = 3):
    """A clip of `faces` (48x48 gray), three at a time for `segment` frames each, drifting slowly;
    returns the clip's true boxes and, per frame and place, the index of the face shown."""
    import cv2

    w, h = size
    background = textured_background(size)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    sprites = [cv2.cvtColor(cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR),
                            cv2.COLOR_GRAY2BGR) for f in faces]
    boxes, shown = [], []
    for i in range(segment * (len(faces) // 3)):
        seg, t = divmod(i, segment)
        frame, row, who = background.copy(), [], []
        for k, (px, py) in enumerate(PLACES[seg % 2]):
            sprite = sprites[3 * seg + k]
            phase = 2 * np.pi * (t / 150.0 + k / 3)
            sh, sw = sprite.shape[:2]
            x0 = int(np.clip(round(px * w + 40 * np.sin(phase) - sw / 2), 0, w - sw))
            y0 = int(np.clip(round(py * h + 20 * np.cos(phase) - sh / 2), 0, h - sh))
            frame[y0:y0 + sh, x0:x0 + sw] = sprite
            row.append((x0, y0, sw, sh))
            who.append(3 * seg + k)
        boxes.append(row)
        shown.append(who)
        writer.write(frame)
    writer.release()
    return boxes, shown


def measure_ferplus(name: str, every: int, path: Path, boxes, shown, majority: np.ndarray,
                    labels: list[str], clf) -> dict:
    frames, det = run_clip(name, every, path, clf)
    # Per face shown: frames, frames with a box, right (smoothed label), right (raw label).
    tally = np.zeros((len(majority), 4))
    for truth, who, out in zip(boxes, shown, frames):
        m = iou_matrix(truth, [f.box for f in out]) if out else None
        for k, face in enumerate(who):
            tally[face, 0] += 1
            if m is None or m[k].max() < 0.3:
                continue
            found, want = out[int(m[k].argmax())], labels[majority[face]]
            tally[face, 1:] += (1, found.label == want, found.raw_label == want)
    pairs, with_box, right, right_raw = tally.sum(axis=0)
    # A face's frames are not independent draws: the standard error is over the faces.
    per_face = tally[:, 2] / np.maximum(1, tally[:, 0])
    return {"detector": name, "detect_every": every, "pairs": int(pairs),
            "coverage": round(with_box / max(1, pairs), 4), "accuracy": round(right / max(1, pairs), 4),
            "se": round(float(per_face.std(ddof=1) / np.sqrt(len(per_face))), 4),
            "accuracy_with_box": round(right / max(1, with_box), 4),
            "raw_accuracy_with_box": round(right_raw / max(1, with_box), 4),
            "detect_cpu_ms_per_frame": cpu_ms_per_frame(det, frames)}


def ferplus(args, clf) -> int:
    data = remap_labels(load_folder(args.ferplus, size=None, color="gray"), clf.labels)
    votes, note = votes_of(data, args.ferplus)
    if votes is None:
        print(f"detect_every.py: {note}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    chosen = rng.permutation(np.flatnonzero(votes.majority >= 0))[:args.faces - args.faces % 3]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ferplus.mp4"
        boxes, shown = ferplus_clip(path, [data.images[i] for i in chosen], args.segment)
        majority = votes.majority[chosen]
        for name in ready_detectors():
            rows = [measure_ferplus(name, int(e), path, boxes, shown, majority, clf.labels, clf)
                    for e in args.every.split(",")]
            out[name] = {"rows": rows, "shipped": DETECTORS[name].cls.default_detect_every}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{len(chosen)} faces of {args.ferplus} with a FER+ majority, {args.segment} frames each, "
          f"three at a time; model {args.model}")
    for name, r in out.items():
        print(f"{name} (shipped default {r['shipped']}):")
        print_rows(r["rows"])
    return 0


def choose(rows: list[dict], shipped: int) -> int:
    cheap = [r["detect_every"] for r in rows if r["detect_cpu_ms_per_frame"] <= 2.0]
    return min(cheap) if cheap and min(cheap) < max(r["detect_every"] for r in rows) else shipped


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", default="1,2,3,5,8")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--ferplus", metavar="DIR", help="score the emotions on a clip of this folder's "
                    "faces against their FER+ majority (votes beside the folder)")
    ap.add_argument("--faces", type=int, default=240, help="--ferplus: faces in the clip")
    ap.add_argument("--segment", type=int, default=60, help="--ferplus: frames each face is shown")
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    args = ap.parse_args(argv)
    clf = EmotionClassifier(args.model)
    if args.ferplus:
        return ferplus(args, clf)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "bench.mp4", SHARED / "images", frames=150, face_px=160)
        for name in ready_detectors():
            rows = [measure(name, int(e), clip, clf) for e in args.every.split(",")]
            shipped = DETECTORS[name].cls.default_detect_every
            out[name] = {"rows": rows, "chosen": choose(rows, shipped), "shipped": shipped}
    if args.json:
        print(json.dumps(out))
        return 0
    for name, r in out.items():
        print(f"{name}: chosen --detect-every {r['chosen']} (shipped default {r['shipped']})")
        print_rows(r["rows"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
