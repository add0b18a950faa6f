"""Every face detector on the same frames: speed, faces found, false faces, and the emotion
accuracy through it.

    python benchmarks/detectors.py [--data ../shared/datasets/fer2013/privatetest] [--limit N] [--json]

Per detector (each with its shipped defaults and crop transform):
- ms per 640x480 frame at its detection size, x86, one interpreter thread (`detect` alone), as
  the thread's CPU time, which other work on the machine does not inflate (median);
- faces found and false faces (IoU >= 0.3 with the truth) on the bench clip: three real faces
  of 160 px from the shared group photo drifting over 640x480, probed every third frame;
- the same on FER2013 faces placed, enlarged 3x, in noisy 320x240 frames (as crop_margin.py);
- PrivateTest accuracy through the detector's crops on the faces it finds, against the dataset's
  own crops of the same faces, and through it and through haar on the faces both find;
- faces found on the three shared photos (no ground truth: counts only);
- `edge-fer run --source CLIP` frames per second, offline (every frame processed), with the
  detector's default --detect-every, and the faces its summary reports.
Targets (issue 11): blazeface >= 5x faster than haar, finding at least as many faces on the clip
and the padded frames; run --detector blazeface >= 2x haar's frames/s; accuracy through each
detector within 1 point of haar's on the faces both find.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from clips import make_clip, match_boxes  # noqa: E402
from crop_margin import iou, place_in_frame  # noqa: E402
from edge_fer.classifier import EmotionClassifier  # noqa: E402
from edge_fer.datasets import load_folder, remap_labels  # noqa: E402
from edge_fer.detector import (DETECTORS, DetectorOptions, create_detector, crop_detected,  # noqa: E402
                               crop_face)
from edge_fer.evaluate import score  # noqa: E402
from edge_fer.images import read_image  # noqa: E402
from edge_fer_models import DEFAULT_MODEL  # noqa: E402

SHARED = Path(os.environ.get("EDGE_FER_DATA", REPO.parent / "shared"))
PHOTOS = ("test_image.jpg", "12_angry_men.jpg", "solvay_conference.jpg")


def read_clip(path: Path) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def on_clip(det, clip, frames, every: int = 3) -> dict:
    found = total = false = 0
    times = []
    for i in range(0, len(frames), every):
        truth = [b for b in clip.boxes[i] if b is not None]
        t0 = time.thread_time()
        boxes = [f.box for f in det.detect(frames[i])]
        times.append(time.thread_time() - t0)
        total += len(truth)
        best, unmatched = match_boxes(truth, boxes)
        found += sum(v >= 0.3 for v in best)
        false += unmatched
    return {"ms_per_frame": round(float(np.median(times)) * 1000, 2), "clip_faces": total,
            "clip_found": found, "clip_false": false}


def on_padded_fer(dets: dict, clf, data) -> dict:
    """Detection and accuracy through each detector on the same padded frames."""
    rng = np.random.default_rng(0)
    crops = {n: {} for n in dets}
    false = {n: 0 for n in dets}
    for i, face in enumerate(data.images):
        frame, truth = place_in_frame(face, rng)
        for name, det in dets.items():
            faces = det.detect(frame)
            hits = [f for f in faces if iou(f.box, truth) > 0.3]
            false[name] += len(faces) - len(hits)
            if hits:
                hit = max(hits, key=lambda f: iou(f.box, truth))
                crops[name][i] = crop_detected(frame, hit.box, hit.landmarks, det.crop,
                                               clf.input_size, "gray", clf.crop_margin)
    direct = np.argmax(clf.predict_proba([crop_face(f, (0, 0, f.shape[1], f.shape[0]), clf.input_size, "gray")
                                          for f in data.images]), axis=1)
    preds = {n: dict(zip(c, np.argmax(clf.predict_proba(list(c.values())), axis=1)))
             for n, c in crops.items() if c}
    out = {}
    for name in dets:
        idx = sorted(crops[name])
        y = data.labels[idx]
        through = score(y, np.array([preds[name][i] for i in idx]), clf.labels) if idx else None
        own = score(y, direct[idx], clf.labels) if idx else None
        common = sorted(set(crops[name]) & set(crops.get("haar", {})))
        both = score(data.labels[common], np.array([preds[name][i] for i in common]), clf.labels) \
            if common else None
        haar_both = score(data.labels[common], np.array([preds["haar"][i] for i in common]),
                          clf.labels) if common else None
        out[name] = {"fer_faces": len(data), "fer_found": len(idx), "fer_false": false[name],
                     "acc_through": round(through.accuracy, 4) if through else None,
                     "macro_recall_through": round(through.macro_recall, 4) if through else None,
                     "acc_dataset_crops": round(own.accuracy, 4) if own else None,
                     "acc_with_haar_common": round(both.accuracy, 4) if both else None,
                     "haar_acc_common": round(haar_both.accuracy, 4) if haar_both else None,
                     "common_faces": len(common)}
    return out


def run_fps(name: str, clip_path: Path, tmp: Path) -> dict:
    log = tmp / f"run-{name}.jsonl"
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edge_fer", "run", "--source", str(clip_path),
                           "--detector", name, "--headless", "--threads", "1", "--log-json",
                           str(log), "--config", os.devnull], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        return {"run_error": done.stderr.strip().splitlines()[-1:]}
    summary = [json.loads(ln) for ln in log.read_text().splitlines()][-1]
    fps = summary.get("fps_mean")  # RunSummary.fps_mean: the whole run's throughput
    return {"run_fps": round(float(fps), 1) if fps else None, "run_wall_s": round(wall, 1),
            "run_detections": summary.get("detections"), "run_tracks": summary.get("tracks_started")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "datasets/fer2013/privatetest"))
    ap.add_argument("--limit", type=int, default=None, help="stratified sample of the FER faces")
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    names = [n for n, spec in DETECTORS.items() if spec.status()[0] == "ready"]
    skipped = [n for n in DETECTORS if n not in names]
    clf = EmotionClassifier(args.model)
    data = remap_labels(load_folder(args.data, size=None, color="gray", limit=args.limit), clf.labels)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = make_clip(tmp / "bench.mp4", SHARED / "images", frames=150, face_px=160)
        frames = read_clip(clip.path)
        rows = {}
        run_dets = {n: create_detector(n, DetectorOptions(detect_width=320)) for n in names}
        for name, det in run_dets.items():
            rows[name] = {"detector": name, "default_detect_every": det.default_detect_every,
                          **on_clip(det, clip, frames)}
            photo_det = create_detector(name, DetectorOptions())  # predict's defaults
            for photo in PHOTOS:
                rows[name][photo] = len(photo_det.detect(read_image(SHARED / "images" / photo)))
            rows[name].update(run_fps(name, clip.path, tmp))
        padded = {n: create_detector(n, DetectorOptions(min_size=60, detect_width=0)) for n in names}
        for name, r in on_padded_fer(padded, clf, data).items():
            rows[name].update(r)
    result = {"model": args.model, "data": args.data, "detectors": list(rows.values()),
              "not_ready": skipped}
    if args.json:
        print(json.dumps(result))
        return 0
    cols = [("detector", 15), ("ms_per_frame", 12), ("clip_found", 10), ("clip_false", 10),
            ("fer_found", 9), ("fer_false", 9), ("acc_through", 11), ("acc_dataset_crops", 17),
            ("acc_with_haar_common", 20), ("haar_acc_common", 15), ("common_faces", 12), ("run_fps", 7), *((p, len(p)) for p in PHOTOS)]
    print(f"model {args.model}; FER faces: {args.data} ({len(data)}); bench clip: "
          f"{len(frames)} frames, {rows[names[0]]['clip_faces']} faces probed")
    print(" ".join(f"{c:>{w}}" for c, w in cols))
    for r in rows.values():
        print(" ".join(f"{str(r.get(c, '')):>{w}}" for c, w in cols))
    if skipped:
        print(f"not ready (edge-fer detectors fetch ...): {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
