"""Scoring a classifier on labelled faces: accuracy, macro recall, per-class recall, confusion."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from edge_fer.datasets import LabelledImages
from edge_fer.detector import FaceDetector, crop_detected

log = logging.getLogger(__name__)


@dataclass
class Scores:
    """Classification quality on one labelled set."""

    accuracy: float
    macro_recall: float
    """Mean of per-class recall over the classes present in the data (FER2013's disgust is tiny)."""
    per_class_recall: dict[str, float]
    confusion: list[list[int]]
    """Rows are true classes, columns predicted, both in `labels` order."""
    labels: list[str]
    count: int
    seconds_per_face: float = 0.0

    def to_dict(self) -> dict:
        return {
            "accuracy": round(self.accuracy, 4),
            "macro_recall": round(self.macro_recall, 4),
            "per_class_recall": {k: round(v, 4) for k, v in self.per_class_recall.items()},
            "confusion": self.confusion,
            "labels": self.labels,
            "count": self.count,
            "ms_per_face": round(self.seconds_per_face * 1000, 3),
        }

    def table(self) -> str:
        lines = [f"images: {self.count}   accuracy: {self.accuracy * 100:.2f} %   "
                 f"macro recall: {self.macro_recall:.4f}"]
        width = max(8, max(len(lab) for lab in self.labels) + 1)
        lines.append("recall   " + "".join(f"{lab:>{width}}" for lab in self.labels))
        lines.append("         " + "".join(
            f"{self.per_class_recall.get(lab, float('nan')):>{width}.3f}" for lab in self.labels))
        lines.append("confusion (rows true, columns predicted)")
        lines.append(" " * width + "".join(f"{lab[:width - 1]:>{width}}" for lab in self.labels))
        for lab, row in zip(self.labels, self.confusion):
            lines.append(f"{lab:<{width}}" + "".join(f"{v:>{width}d}" for v in row))
        return "\n".join(lines)


def score(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> Scores:
    n = len(labels)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    support = cm.sum(axis=1)
    present = support > 0
    recall = np.divide(np.diag(cm), support, out=np.zeros(n), where=present)
    return Scores(
        accuracy=float(np.trace(cm) / max(1, cm.sum())),
        macro_recall=float(recall[present].mean()) if present.any() else 0.0,
        per_class_recall={labels[i]: float(recall[i]) for i in range(n) if present[i]},
        confusion=cm.tolist(),
        labels=list(labels),
        count=int(cm.sum()),
    )


def evaluate_probs(predict: Callable[[np.ndarray], np.ndarray], data: LabelledImages,
                   batch: int = 64) -> Scores:
    """Score `predict` (uint8 batch -> probabilities) on `data`, whose labels are in model order."""
    preds = []
    t0 = time.perf_counter()
    for i in range(0, len(data), batch):
        preds.append(np.argmax(predict(data.images[i:i + batch]), axis=1))
    elapsed = time.perf_counter() - t0
    result = score(data.labels, np.concatenate(preds), data.classes)
    result.seconds_per_face = elapsed / max(1, len(data))
    return result


def detect_largest_faces(data: LabelledImages, detector: FaceDetector, size: tuple[int, int], color: str,
                         margin: float) -> tuple[LabelledImages, int]:
    """Crops of the largest detected face of each image (through the detector's crop
    transform, then `margin`), and how many images had none."""
    keep, crops = [], []
    for i, img in enumerate(data.images):
        faces = detector.detect(img)
        if faces:
            keep.append(i)
            crops.append(crop_detected(img, faces[0].box, faces[0].landmarks, detector.crop, size,
                                       color, margin))
    idx = np.asarray(keep, dtype=np.int64)
    images = np.stack(crops) if crops else np.zeros((0, size[1], size[0]), np.uint8)
    return (LabelledImages(images, data.labels[idx], data.classes, [data.paths[i] for i in keep]),
            len(data) - len(keep))
