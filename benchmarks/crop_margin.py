"""Accuracy when faces are found by the runtime's own detectors in larger frames, per crop.

FER2013 faces are loose crops framed like a Haar box; another detector frames a face differently.
Each labelled face is enlarged and placed in a bigger noisy frame (optionally tilted), the
detector finds it, and the crop is taken through each candidate box transform (scale about the
box centre, vertical shift) and model margin exactly as `edge-fer predict`/`run` would, with and
without levelling the eyes when the detector gives landmarks. Where the FER+ votes file sits
beside the folder, each crop is also scored against the FER+ majority of the faces that have one
(the faces `edge-fer evaluate` keeps), and the best crop is the best against it. The transform
to ship with a detector is chosen on publictest; report on privatetest.

    python benchmarks/crop_margin.py --data ../shared/datasets/fer2013/publictest --detector haar
    python benchmarks/crop_margin.py --data ../shared/datasets/fer2013/publictest --detector blazeface \\
        --scales 1.0,1.1,1.2,1.3 --dys=-0.1,-0.05,0,0.05
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_fer.classifier import EmotionClassifier  # noqa: E402
from edge_fer.datasets import load_folder, remap_labels  # noqa: E402
from edge_fer.detector import (CropTransform, DetectorOptions, create_detector, crop_face,  # noqa: E402
                               crop_face_levelled, detector_names)
from edge_fer.evaluate import score, votes_of  # noqa: E402
from edge_fer_models import DEFAULT_MODEL  # noqa: E402


def place_in_frame(face: np.ndarray, rng: np.random.Generator, scale: int = 3,
                   frame_size: tuple[int, int] = (320, 240), tilt: float = 0.0,
                   ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The face enlarged `scale` times (and turned by up to +-`tilt` degrees) at a random spot of
    a noisy gray frame; returns the frame and the face's box."""
    import cv2

    big = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    if tilt:
        h, w = big.shape
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-tilt, tilt)), 1.0)
        big = cv2.warpAffine(big, rot, (w, h), borderMode=cv2.BORDER_REFLECT)
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


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--data", required=True, help="folder of class subfolders (FER2013 layout)")
    ap.add_argument("--detector", default="haar", choices=detector_names())
    ap.add_argument("--margins", default="0", help="model crop margins to try (after the transform)")
    ap.add_argument("--scales", default="1.0", help="box transform scales to try")
    ap.add_argument("--dys", default="0", help="box transform vertical shifts to try (fraction of height); "
                    "a list starting with a minus sign needs --dys=-0.05,0")
    ap.add_argument("--level", choices=["off", "on", "both"], default="off",
                    help="level the eyes before cropping (detectors with landmarks)")
    ap.add_argument("--level-above", type=float, default=1.0,
                    help="level only faces whose eyes tilt by at least DEG")
    ap.add_argument("--tilt", type=float, default=0.0, help="turn each face by up to +-DEG")
    ap.add_argument("--limit", type=int, default=None, help="stratified sample size")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    clf = EmotionClassifier(args.model)
    data = remap_labels(load_folder(args.data, size=None, color="gray", limit=args.limit), clf.labels)
    det = create_detector(args.detector, DetectorOptions(min_size=60, detect_width=0))
    rng = np.random.default_rng(0)
    grid = list(itertools.product(floats(args.scales), floats(args.dys), floats(args.margins),
                                  {"off": [False], "on": [True], "both": [False, True]}[args.level]))

    direct = np.argmax(clf.predict_proba([crop_face(f, (0, 0, 48, 48), clf.input_size, "gray")
                                          for f in data.images]), axis=1)
    crops = {g: [] for g in grid}
    found_idx, box_ratio, false_faces, detect_s = [], [], 0, 0.0
    for i, face in enumerate(data.images):
        frame, truth = place_in_frame(face, rng, tilt=args.tilt)
        t0 = time.perf_counter()
        faces = det.detect(frame)
        detect_s += time.perf_counter() - t0
        hits = [f for f in faces if iou(f.box, truth) > 0.3]
        false_faces += len(faces) - len(hits)
        if not hits:
            continue
        hit = max(hits, key=lambda f: iou(f.box, truth))
        found_idx.append(i)
        box_ratio.append(hit.box[2] / truth[2])
        fh, fw = frame.shape[:2]
        for g in grid:
            scale, dy, margin, level = g
            box = CropTransform(scale, 0.0, dy).apply(hit.box, fw, fh)
            if level and hit.landmarks:
                crops[g].append(crop_face_levelled(frame, box, (hit.landmark("right_eye"), hit.landmark("left_eye")),
                                                   clf.input_size, "gray", margin,
                                                   args.level_above))
            else:
                crops[g].append(crop_face(frame, box, clf.input_size, "gray", margin))
    found_idx = np.asarray(found_idx, dtype=np.int64)
    y = data.labels[found_idx]
    fv, _ = votes_of(data, args.data)
    clean = None
    if fv is not None:
        majority = fv.majority[found_idx]
        clean = np.flatnonzero(majority >= 0)

    def scores(pred: np.ndarray) -> dict:
        s = score(y, pred, clf.labels)
        out = {"accuracy": round(s.accuracy, 4), "macro_recall": round(s.macro_recall, 4)}
        if clean is not None:
            f = score(majority[clean], pred[clean], clf.labels)
            out.update(ferplus_accuracy=round(f.accuracy, 4), ferplus_macro_recall=round(f.macro_recall, 4))
        return out

    rows = []
    for g in grid:
        pred = np.argmax(clf.predict_proba(crops[g]), axis=1) if len(found_idx) else np.array([], np.int64)
        rows.append({"scale": g[0], "dy": g[1], "margin": g[2], "level": g[3], **scores(pred)})
    ref = scores(direct[found_idx])
    key = ("ferplus_accuracy", "ferplus_macro_recall") if clean is not None else ("accuracy", "macro_recall")
    best = max(rows, key=lambda r: (r[key[0]], r[key[1]])) if rows else None
    summary = {
        "model": args.model, "data": args.data, "detector": args.detector, "tilt": args.tilt,
        "faces": len(data), "detected": int(len(found_idx)),
        "detection_rate": round(len(found_idx) / max(1, len(data)), 4), "false_faces": false_faces,
        "ms_per_detection": round(detect_s * 1000 / max(1, len(data)), 3),
        "box_to_crop_ratio_median": round(float(np.median(box_ratio)), 3) if box_ratio else None,
        "ferplus_faces": None if clean is None else int(len(clean)),
        "on_original_crops_of_detected": ref,
        "by_crop": rows, "best": best,
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"model {args.model}\ndata {args.data}: {len(data)} faces, {args.detector} found "
          f"{len(found_idx)} ({summary['detection_rate'] * 100:.1f} %), {false_faces} false faces, "
          f"{summary['ms_per_detection']} ms per 320x240 frame; median box / FER crop width = "
          f"{summary['box_to_crop_ratio_median']}")

    def figures(r: dict) -> str:
        out = f"{r['accuracy'] * 100:>11.2f} {r['macro_recall']:>13.4f}"
        if clean is not None:
            out += f" {r['ferplus_accuracy'] * 100:>11.2f} {r['ferplus_macro_recall']:>13.4f}"
        return out

    if clean is not None:
        print(f"FER+ majority: {len(clean)} of the {len(found_idx)} faces found have one ({fv.votes_file})")
    print(f"on the original 48x48 crops of those faces: {figures(ref)}")
    head = f"{'accuracy %':>11} {'macro recall':>13}"
    if clean is not None:
        head += f" {'FER+ acc %':>11} {'FER+ recall':>13}"
    print(f"{'scale':>6} {'dy':>6} {'margin':>7} {'level':>6} {head}")
    for r in rows:
        print(f"{r['scale']:>6.2f} {r['dy']:>6.2f} {r['margin']:>7.2f} {str(r['level']):>6} {figures(r)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
