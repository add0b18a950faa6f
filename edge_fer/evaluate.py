"""Scoring a classifier on labelled faces: accuracy, macro recall, per-class recall, confusion."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edge_fer.datasets import LabelledImages, load_labelled, remap_labels
from edge_fer.detector import FaceDetector, crop_detected
from edge_fer.errors import InputError
from edge_fer.ferplus import (PROTOCOL, FolderVotes, VoteCounts, VotesDoNotFit, default_votes_file,
                              load_folder_votes)
from edge_fer.images import DEFAULT_MAX_PIXELS

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


def predict_labels(predict: Callable[[np.ndarray], np.ndarray], data: LabelledImages,
                   batch: int = 64) -> tuple[np.ndarray, float]:
    """`predict`'s (uint8 batch -> probabilities) top class of each face of `data`, and the
    seconds per face it took."""
    preds = [np.zeros(0, dtype=np.int64)]
    t0 = time.perf_counter()
    for i in range(0, len(data), batch):
        preds.append(np.argmax(predict(data.images[i:i + batch]), axis=1))
    return np.concatenate(preds), (time.perf_counter() - t0) / max(1, len(data))


def evaluate_probs(predict: Callable[[np.ndarray], np.ndarray], data: LabelledImages,
                   batch: int = 64) -> Scores:
    """Score `predict` (uint8 batch -> probabilities) on `data`, whose labels are in model order."""
    preds, seconds = predict_labels(predict, data, batch)
    result = score(data.labels, preds, data.classes)
    result.seconds_per_face = seconds
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


@dataclass
class VotesScores:
    """Scores against the FER+ majority, beside the data's own (FER2013) labels."""

    scores: Scores
    """Over the faces the protocol keeps (`counts.kept`)."""
    counts: VoteCounts
    """How many faces were kept and left out, and why."""
    votes_file: str
    """The votes file read."""

    def to_dict(self) -> dict:
        return {**self.scores.to_dict(), "protocol": PROTOCOL, "faces": self.counts.to_dict(),
                "votes_file": self.votes_file}


@dataclass
class Evaluation:
    """A model scored on labelled faces: against their labels, and against the FER+ majority
    where the data has votes."""

    scores: Scores
    """Against the data's labels (a FER2013 folder's: FER2013's labels)."""
    ferplus: VotesScores | None = None
    """Against the FER+ majority; None without votes (`note` says why)."""
    note: str | None = None
    """Why there are no FER+ figures, when there are none."""

    def to_dict(self) -> dict:
        return {**self.scores.to_dict(),
                "ferplus": self.ferplus.to_dict() if self.ferplus else None,
                **({"ferplus_note": self.note} if self.note else {})}

    def table(self) -> str:
        if self.ferplus is None:
            return f"{self.scores.table()}\n{self.note}"
        return (f"FER2013 labels\n{self.scores.table()}\n\nFER+ majority ({self.ferplus.votes_file}): "
                f"{self.ferplus.counts.summary()}\n{self.ferplus.scores.table()}")


def votes_for(data_source: str | os.PathLike, votes: str | os.PathLike | None) -> tuple[Path | None, str | None]:
    """The votes file for `data_source` (`votes`, else `ferplus.csv` beside a split folder),
    or None and the line that says why there are no FER+ figures."""
    if votes is not None:
        if not Path(votes).is_file():
            raise InputError(f"FER+ votes file not found: {votes}")
        if not Path(data_source).is_dir():
            raise InputError(f"--votes needs a folder of class subfolders as the data, not {data_source}")
        return Path(votes), None
    found = default_votes_file(data_source) if Path(data_source).is_dir() else None
    if found is None:
        return None, ("FER+ figures need the votes file and a folder of FER2013 files (ferplus.csv "
                      "beside it, or --votes FILE): votes are matched by file name, not CSV or .npz rows")
    if not found.is_file():
        return None, f"FER+ figures need the votes file: none at {found}; give one with --votes FILE"
    return found, None


def votes_of(data: LabelledImages, data_source: str | os.PathLike,
             votes: str | os.PathLike | None = None) -> tuple[FolderVotes | None, str | None]:
    """The FER+ votes of `data` (loaded from the folder `data_source`, classes in model order),
    from `votes` or else the file found beside the folder (`votes_for`); or None and the line
    that says why there are none. A file found beside the folder that names none of its files
    is None with a note; one named by `votes` must fit the folder (VotesDoNotFit otherwise)."""
    path, note = votes_for(data_source, votes)
    if path is None:
        return None, note
    try:
        return load_folder_votes(path, data_source, data.paths, data.classes), None
    except VotesDoNotFit as exc:
        if votes is not None:
            raise
        return None, f"no FER+ figures: {exc}"


def evaluate_with_votes(predict: Callable[[np.ndarray], np.ndarray], data: LabelledImages,
                        data_source: str | os.PathLike, votes: str | os.PathLike | None = None,
                        batch: int = 64) -> Evaluation:
    """Score `predict` on `data` (loaded from the folder `data_source`, labels in model order)
    against its labels and, where it has votes (`votes_of`), its FER+ majority; without them,
    the FER2013 figures and the note that says why.
    """
    preds, seconds = predict_labels(predict, data, batch)
    own = score(data.labels, preds, data.classes)
    own.seconds_per_face = seconds
    fv, note = votes_of(data, data_source, votes)
    if fv is None:
        return Evaluation(own, note=note)
    kept = fv.kept
    ferplus = score(fv.majority[kept], preds[kept], data.classes)
    ferplus.seconds_per_face = seconds
    return Evaluation(own, VotesScores(ferplus, fv.counts, fv.votes_file))


def evaluate_classifier(clf, data: str | os.PathLike, *, usage: str | None = None,
                        limit: int | None = None, detector: FaceDetector | None = None,
                        max_pixels: int | None = DEFAULT_MAX_PIXELS,
                        votes: str | os.PathLike | None = None) -> tuple[Evaluation, dict]:
    """Score the classifier `clf` (`.tflite` or Keras: `predict_proba`, `labels`, `input_size`,
    `color`, `crop_margin`) on the labelled faces at `data`, and against their FER+ majority
    where there are votes (`evaluate_with_votes`).

    With `detector`, each image's largest detected face is scored (images without one are left
    out); the second value then says how many images had a face (`detected`, `undetected`).
    """
    extra: dict = {}
    if detector is not None:
        ds = remap_labels(load_labelled(data, usage=usage, size=None, color="bgr", limit=limit,
                                        max_pixels=max_pixels), clf.labels)
        ds, missed = detect_largest_faces(ds, detector, clf.input_size, clf.color, clf.crop_margin)
        extra = {"detected": len(ds), "undetected": missed}
        if len(ds) == 0:
            raise InputError(f"the detector found no face in any image of {data}: "
                             "try --no-detect for face crops, or a smaller --min-face")
    else:
        ds = remap_labels(load_labelled(data, usage=usage, size=clf.input_size, color=clf.color,
                                        limit=limit, classes=clf.labels, max_pixels=max_pixels),
                          clf.labels)
    return evaluate_with_votes(lambda x: clf.predict_proba(list(x)), ds, data, votes), extra
