"""Choose `edge-fer convert --logit-adjust TAU` for a trained Keras model, on validation data.

Scores the float model once, then each tau by the formula `convert` folds into the logits'
bias (`logit_adjust.shifted`: probabilities times prior^-tau, renormalized;
tests/convert/test_logit_adjust.py checks the two agree), and prints accuracy and macro recall per
tau. The rule used for the shipped models: the largest tau whose accuracy is within
`--max-loss` points (default 0.3, the loss that asks for QAT in conversion) of the unadjusted
model's, i.e. the most recall for at most 0.3 points. Choose on PublicTest; PrivateTest is
for reporting the converted model. Where the FER+ votes file sits beside the folder, the faces
are scored against their FER+ majority (the faces `edge-fer evaluate` keeps), else against
the folder's labels.

    python benchmarks/logit_adjust.py runs/lite120.keras --data ../shared/datasets/fer2013/publictest
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_fer.datasets import load_labelled  # noqa: E402
from edge_fer.evaluate import score, votes_of  # noqa: E402
from edge_fer_convert.loader import KerasClassifier  # noqa: E402
from edge_fer_convert.logit_adjust import class_prior, shifted  # noqa: E402


def sweep(probs: np.ndarray, labels: np.ndarray, names: list[str], prior: dict[str, float],
          taus: list[float]) -> list[dict]:
    pri = np.array([prior[k] for k in names])
    rows = []
    for tau in taus:
        s = score(labels, shifted(probs, -tau * np.log(pri)).argmax(axis=1), names)
        rows.append({"tau": tau, "accuracy": s.accuracy, "macro_recall": s.macro_recall,
                     "per_class_recall": s.per_class_recall})
    return rows


def choose(rows: list[dict], max_loss: float) -> dict:
    base = rows[0]["accuracy"]
    ok = [r for r in rows if (base - r["accuracy"]) * 100 <= max_loss + 1e-9]
    return max(ok, key=lambda r: r["tau"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="trained .keras (with edge-fer train's metadata)")
    ap.add_argument("--data", required=True, help="validation faces (class subfolders)")
    ap.add_argument("--taus", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0")
    ap.add_argument("--max-loss", type=float, default=0.3, help="accuracy points the rule may spend")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    taus = [float(t) for t in a.taus.split(",")]
    if taus[0] != 0:
        taus = [0.0] + taus
    clf = KerasClassifier.load(a.model)
    data = load_labelled(a.data, classes=clf.labels, size=clf.input_size, color=clf.color)
    probs = np.concatenate([clf.predict_proba(data.images[i:i + 256]) for i in range(0, len(data), 256)])
    truth, against = data.labels, "the folder's labels"
    fv, _ = votes_of(data, a.data)
    if fv is not None:
        probs, truth = probs[fv.kept], fv.majority[fv.kept]
        against = f"the FER+ majority ({fv.counts.summary()})"
    prior, where = class_prior(clf.labels, clf.metadata.provenance, None)
    rows = sweep(probs, truth, clf.labels, prior, taus)
    pick = choose(rows, a.max_loss)
    if a.json:
        print(json.dumps({"model": a.model, "data": a.data, "against": against, "prior_from": where, "rows": rows,
                          "chosen_tau": pick["tau"], "max_loss": a.max_loss}))
        return 0
    print(f"{a.model} on {a.data} ({len(truth)} faces, float) against {against}; prior from {where}")
    print(f"{'tau':>5} {'accuracy %':>11} {'macro recall':>13}  " + " ".join(f"{k[:7]:>7}" for k in clf.labels))
    for r in rows:
        mark = "  <- chosen" if r is pick else ""
        print(f"{r['tau']:>5.2f} {r['accuracy'] * 100:>11.2f} {r['macro_recall']:>13.4f}  "
              + " ".join(f"{r['per_class_recall'][k]:>7.3f}" for k in clf.labels) + mark)
    print(f"rule: the largest tau within {a.max_loss:g} accuracy points of tau 0 -> "
          f"edge-fer convert ... --logit-adjust {pick['tau']:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
