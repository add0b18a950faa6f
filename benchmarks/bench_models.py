"""Accuracy against size and latency for `.tflite` models, with published FER2013 figures beside.

    python benchmarks/bench_models.py                       # every model in models/
    python benchmarks/bench_models.py runs/a.tflite --limit 1000

Latency is per face, batch 1, one interpreter thread, median of `--repeat` calls after warm-up:
the figure that decides whether a Pi keeps up with its camera. Accuracy and macro recall are
on FER2013 PrivateTest (the test split: never used for training or selection).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_fer.classifier import ClassifierOptions, EmotionClassifier  # noqa: E402
from edge_fer.datasets import load_folder, remap_labels  # noqa: E402
from edge_fer.evaluate import evaluate_probs  # noqa: E402

#: Published single-model results on FER2013 PrivateTest, for orientation (not measured here).
PUBLISHED = [
    ("VGGNet (Khaireddin & Chen 2021, arXiv 2105.03588), published", "73.28", "VGG-size float", "-"),
    ("mini-Xception (Arriaga et al. 2017, arXiv 1710.07557), published", "66", "58 k params float", "-"),
    ("ensembles, published", "75-76", "several nets", "-"),
    ("human agreement, published", "~65", "-", "-"),
]


def latency_ms(clf: EmotionClassifier, face: np.ndarray, repeat: int) -> float:
    for _ in range(10):
        clf.predict_proba([face])
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        clf.predict_proba([face])
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", help="default: every .tflite in models/")
    ap.add_argument("--data", default=str(REPO.parent / "shared/datasets/fer2013/privatetest"))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=300)
    ap.add_argument("--tta", action="store_true", help="also score and time each model with "
                                                       "test-time flip averaging (--tta at run time)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    models = [Path(m) for m in args.models] or sorted((REPO / "models").glob("*.tflite"))
    rows = []
    for path in models:
        data = None
        for tta in (False, True) if args.tta else (False,):
            clf = EmotionClassifier(path, ClassifierOptions(num_threads=1, flip_tta=tta))
            if data is None:
                data = remap_labels(load_folder(args.data, size=clf.input_size, color=clf.color,
                                                limit=args.limit), clf.labels)
            s = evaluate_probs(lambda x: clf.predict_proba(list(x)), data)
            rows.append({
                "model": path.name + (" --tta" if tta else ""), "accuracy": round(s.accuracy, 4),
                "macro_recall": round(s.macro_recall, 4),
                "size_kib": round(path.stat().st_size / 1024, 1),
                "ms_per_face_1_thread": round(latency_ms(clf, data.images[0], args.repeat), 3),
                "input": f"{clf.input_size[0]}x{clf.input_size[1]} {clf.color} {clf.input.dtype}",
                "faces": s.count,
                "per_class_recall": {k: round(v, 3) for k, v in s.per_class_recall.items()},
            })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("| model | accuracy % | macro recall | size | ms/face (1 thread) | input |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['accuracy'] * 100:.2f} | {r['macro_recall']:.3f} | "
              f"{r['size_kib']:.0f} KiB | {r['ms_per_face_1_thread']:.3f} | {r['input']} |")
    for name, acc, size, ms in PUBLISHED:
        print(f"| {name} | {acc} | - | {size} | {ms} | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
