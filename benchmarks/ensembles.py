"""Which trained models to ensemble, and whether to balance: measured on PublicTest only.

    python benchmarks/ensembles.py runs/edgenet-l.keras runs/edgenet16.keras

For every subset of the given Keras models (with `edge-fer train` metadata): accuracy and macro
recall of the mean of their probabilities, the same with per-class logit offsets
(`edge-fer ensemble --balance`) chosen on one half of the data and scored on the other (both
ways, averaged: the offsets are never scored on the faces they were chosen on), and for pairs,
the mean weighted 0.9 / 0.8 / 0.7 / 0.6 towards the first model. Probabilities are cached
beside each model as MODEL.<data>.npy.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_fer.datasets import load_folder, remap_labels  # noqa: E402
from edge_fer.evaluate import score  # noqa: E402
from edge_fer_convert.ensemble import choose_offsets, predict_all, shifted  # noqa: E402
from edge_fer_convert.loader import KerasClassifier  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="Keras models with edge-fer metadata")
    ap.add_argument("--data", default=str(REPO.parent / "shared/datasets/fer2013/publictest"))
    args = ap.parse_args(argv)
    probs, y, labels, loaded = [], None, None, {}
    for p in args.models:
        clf = KerasClassifier.load(p)
        if labels is not None and clf.labels != labels:
            print(f"{p}: its labels differ from {args.models[0]}'s", file=sys.stderr)
            return 2
        key = (clf.input_size, clf.color)
        if key not in loaded:
            loaded[key] = remap_labels(load_folder(args.data, size=clf.input_size, color=clf.color),
                                       clf.labels)
        data = loaded[key]
        y, labels = data.labels, clf.labels
        cache = Path(f"{p}.{Path(args.data).name}.npy")
        if not cache.exists():
            np.save(cache, predict_all(clf, data.images))
        probs.append(np.load(cache))
    probs = np.stack(probs)
    halves = [np.arange(len(y)) % 2 == k for k in (0, 1)]
    print(f"{'members':44s} {'mean acc':>9s} {'mr':>7s} | {'balanced, held-out half: acc':>29s} {'mr':>7s}")
    for r in range(1, len(args.models) + 1):
        for sub in itertools.combinations(range(len(args.models)), r):
            p = probs[list(sub)]
            s = score(y, p.mean(0).argmax(1), labels)
            held = []
            for k in (0, 1):
                fit, test = halves[k], halves[1 - k]
                t = score(y[test], shifted(p[:, test], choose_offsets(p[:, fit], y[fit])).mean(0).argmax(1),
                          labels)
                held.append((t.accuracy, t.macro_recall))
            acc, mr = np.mean(held, axis=0)
            name = " + ".join(Path(args.models[i]).stem for i in sub)
            print(f"{name:44s} {s.accuracy * 100:8.2f}% {s.macro_recall:7.4f} | {acc * 100:28.2f}% {mr:7.4f}")
            if r == 2:
                for w in (0.9, 0.8, 0.7, 0.6):
                    s = score(y, (w * p[0] + (1 - w) * p[1]).argmax(1), labels)
                    print(f"  weighted {w:.1f} / {1 - w:.1f}{'':25s} {s.accuracy * 100:8.2f}% {s.macro_recall:7.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
