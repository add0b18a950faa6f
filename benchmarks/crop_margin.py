"""Accuracy when faces are found by the runtime's own detector in larger frames, per crop margin.

FER2013 faces are loose crops; a Haar box is tighter. Each labelled face is enlarged and placed
in a bigger noisy frame, the runtime's HaarFaceDetector finds it, and the crop is taken with
each candidate margin exactly as `edge-fer predict`/`run` would. The margin to ship is chosen on
publictest; report on privatetest.

    python benchmarks/crop_margin.py --data ../shared/datasets/fer2013/publictest
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_fer.classifier import EmotionClassifier  # noqa: E402
from edge_fer.datasets import load_folder, remap_labels  # noqa: E402
from edge_fer.detector import DetectorOptions, HaarFaceDetector, crop_face  # noqa: E402
from edge_fer.evaluate import score  # noqa: E402
from edge_fer_models import DEFAULT_MODEL  # noqa: E402


def place_in_frame(face: np.ndarray, rng: np.random.Generator, scale: int = 3,
                   frame_size: tuple[int, int] = (320, 240)) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The face enlarged `scale` times at a random spot of a noisy gray frame; returns its box."""
    import cv2

    big = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    fw, fh = frame_size
    frame = rng.normal(110, 25, (fh, fw)).clip(0, 255).astype(np.uint8)
    frame = cv2.GaussianBlur(frame, (0, 0), 3)
    h, w = big.shape
    x = int(rng.integers(0, fw - w + 1))
    y = int(rng.integers(0, fh - h + 1))
    frame[y:y + h, x:x + w] = big
    return frame, (x, y, w, h)


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / float(aw * ah + bw * bh - inter)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--data", required=True, help="folder of class subfolders (FER2013 layout)")
    ap.add_argument("--margins", default="0,0.05,0.1,0.15,0.2,0.25,0.3")
    ap.add_argument("--limit", type=int, default=None, help="stratified sample size")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    clf = EmotionClassifier(args.model)
    data = remap_labels(load_folder(args.data, size=None, color="gray", limit=args.limit), clf.labels)
    det = HaarFaceDetector(DetectorOptions(min_size=60, detect_width=0))
    rng = np.random.default_rng(0)
    margins = [float(m) for m in args.margins.split(",")]

    direct = np.argmax(clf.predict_proba([crop_face(f, (0, 0, 48, 48), clf.input_size, "gray")
                                          for f in data.images]), axis=1)
    crops = {m: [] for m in margins}
    found_idx, box_ratio = [], []
    for i, face in enumerate(data.images):
        frame, truth = place_in_frame(face, rng)
        boxes = [b for b in det.detect(frame) if iou(b, truth) > 0.3]
        if not boxes:
            continue
        box = max(boxes, key=lambda b: iou(b, truth))
        found_idx.append(i)
        box_ratio.append(box[2] / truth[2])
        for m in margins:
            crops[m].append(crop_face(frame, box, clf.input_size, "gray", m))
    found_idx = np.asarray(found_idx)
    y = data.labels[found_idx]
    rows = []
    for m in margins:
        pred = np.argmax(clf.predict_proba(crops[m]), axis=1) if len(found_idx) else np.array([])
        s = score(y, pred, clf.labels)
        rows.append({"margin": m, "accuracy": round(s.accuracy, 4), "macro_recall": round(s.macro_recall, 4)})
    ref = score(y, direct[found_idx], clf.labels)
    summary = {
        "model": args.model, "data": args.data, "faces": len(data),
        "detected": int(len(found_idx)), "detection_rate": round(len(found_idx) / max(1, len(data)), 4),
        "haar_box_to_crop_ratio_median": round(float(np.median(box_ratio)), 3) if box_ratio else None,
        "accuracy_on_original_crops_of_detected": round(ref.accuracy, 4),
        "by_margin": rows,
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"model {args.model}\ndata {args.data}: {len(data)} faces, Haar found "
          f"{len(found_idx)} ({summary['detection_rate'] * 100:.1f} %); median Haar box / FER crop "
          f"width = {summary['haar_box_to_crop_ratio_median']}")
    print(f"accuracy on the original 48x48 crops of those faces: {ref.accuracy * 100:.2f} %")
    print(f"{'margin':>8} {'accuracy %':>11} {'macro recall':>13}")
    for r in rows:
        print(f"{r['margin']:>8.2f} {r['accuracy'] * 100:>11.2f} {r['macro_recall']:>13.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
