"""Which teacher to distil from: each candidate, and the mean of every subset, scored as the
student would see it. Selection data only (PublicTest by default).

    python benchmarks/teachers.py models/edgenet-l.tflite runs/l80s4.keras \
        --data ../shared/datasets/fer2013/publictest

A candidate is a `.tflite` or Keras model; its probabilities are the mirror mean that
`edge-fer train --teacher` trains on (`edge_fer_convert.distill.teacher_probabilities`), and a
subset's are the mean of its members', as `--teacher A --teacher B` makes them. Printed per
subset: accuracy and macro recall of the mean's top class, and its mean entropy in nats (a mean
of teachers is softer than its members; temperature softens it further). Then each pair's top-1
agreement: a second teacher that mostly agrees with the first adds little but softness.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_fer.datasets import load_labelled  # noqa: E402
from edge_fer.errors import EdgeFerError  # noqa: E402
from edge_fer.evaluate import score  # noqa: E402
from edge_fer_convert.distill import teacher_probabilities  # noqa: E402


def entropy(probs: np.ndarray) -> float:
    """Mean entropy of the rows of `probs`, in nats."""
    p = np.clip(probs, 1e-12, 1.0)
    return float(np.mean(-np.sum(p * np.log(p), axis=1)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="candidate teachers (.tflite, .keras, .h5)")
    ap.add_argument("--data", default=str(REPO.parent / "shared/datasets/fer2013/publictest"),
                    help="labelled faces (class subfolders, CSV or .npz); default PublicTest")
    ap.add_argument("--size", type=int, default=48, help="the student's input side in pixels")
    ap.add_argument("--color", choices=["gray", "rgb"], default="gray", help="the student's pixels")
    ap.add_argument("--limit", type=int, help="a stratified sample of N faces")
    ap.add_argument("--seed", type=int, default=0, help="the sample's seed")
    args = ap.parse_args(argv)
    try:
        data = load_labelled(args.data, size=(args.size, args.size), color=args.color,
                             limit=args.limit, seed=args.seed)
        probs = [teacher_probabilities(m, data, source=args.data, limit=args.limit, seed=args.seed)
                 for m in args.models]
    except EdgeFerError as exc:
        print(f"teachers.py: {exc}", file=sys.stderr)
        return 2
    names = [Path(m).name for m in args.models]
    print(f"{len(data)} faces from {args.data}; teachers' mirror mean, as train --teacher uses them")
    print(f"{'accuracy':>9s} {'macro rec':>9s} {'entropy':>8s}  teachers")
    for r in range(1, len(probs) + 1):
        for sub in itertools.combinations(range(len(probs)), r):
            mean = np.mean([probs[i] for i in sub], axis=0)
            s = score(data.labels, mean.argmax(axis=1), data.classes)
            print(f"{s.accuracy * 100:8.2f}% {s.macro_recall:9.4f} {entropy(mean):8.3f}  "
                  + " + ".join(names[i] for i in sub))
    if len(probs) > 1:
        print("top-1 agreement between teachers:")
        for i, j in itertools.combinations(range(len(probs)), 2):
            agree = np.mean(probs[i].argmax(axis=1) == probs[j].argmax(axis=1))
            print(f"{agree * 100:8.2f}%  {names[i]} / {names[j]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
