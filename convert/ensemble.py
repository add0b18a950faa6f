"""Several trained models as one: the mean of their class probabilities in a single Keras graph,
which `edge-fer convert` turns into one INT8 file (one interpreter call per batch of faces).

Optionally the ensemble is *balanced*: a per-class offset is added to every member's logits
(baked into the bias of the layer that makes them, as `convert --logit-adjust` does, so the
converted graph has no extra op). The offsets are chosen on validation data, never on the test
split, to maximise the mean of accuracy and macro recall: FER2013's rare classes (disgust has
1.5 % of the faces) are otherwise almost never predicted, and a model that never says
"disgust" is worse to users than its accuracy shows.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_fer.datasets import load_labelled, remap_labels
from edge_fer.errors import ModelError, UsageError
from edge_fer.evaluate import Scores, score
from edge_fer.metadata import ModelMetadata
from edge_fer_convert.loader import KerasClassifier
from edge_fer_convert.logit_adjust import shift_logits, shifted
from edge_fer_convert.train import save_keras_with_metadata

log = logging.getLogger(__name__)

#: Candidate offsets (in logit units) tried for each class in turn.
OFFSET_GRID = np.round(np.arange(-1.0, 2.0001, 0.1), 2)


@dataclass
class EnsembleOptions:
    """How `build_ensemble` combines its members."""

    val: str | None = None
    """Labelled faces (folder, CSV or .npz) to score members and choose offsets on."""
    usage: str | None = None
    """With a CSV `val`: the split to use."""
    balance: bool = False
    """Choose per-class logit offsets on `val` that maximise (accuracy + macro recall) / 2."""
    passes: int = 3
    """Rounds of one-class-at-a-time search over `OFFSET_GRID` when balancing."""


@dataclass
class EnsembleReport:
    output: str
    members: list[str]
    member_scores: list[dict] = field(default_factory=list)
    mean_scores: dict | None = None
    """The plain mean of the members on `val`."""
    balanced_scores: dict | None = None
    """After the offsets, on `val` (the data they were chosen on: optimistic by construction)."""
    offsets: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def table(self) -> str:
        lines = [f"wrote {self.output}: mean of {len(self.members)} model(s)"]
        for path, s in zip(self.members, self.member_scores):
            lines.append(f"  {path}: accuracy {s['accuracy']:.4f}, macro recall {s['macro_recall']:.4f}")
        if self.mean_scores:
            s = self.mean_scores
            lines.append(f"  mean: accuracy {s['accuracy']:.4f}, macro recall {s['macro_recall']:.4f}")
        if self.balanced_scores:
            s = self.balanced_scores
            offs = ", ".join(f"{k} {v:+.1f}" for k, v in self.offsets.items())
            lines.append(f"  balanced (offsets chosen on this data): accuracy {s['accuracy']:.4f}, "
                         f"macro recall {s['macro_recall']:.4f}; offsets {offs}")
        return "\n".join(lines)


def _objective(probs_m: np.ndarray, y: np.ndarray, offsets: np.ndarray) -> float:
    s = _scores(shifted(probs_m, offsets).mean(axis=0), y, [str(c) for c in range(len(offsets))])
    return (s.accuracy + s.macro_recall) / 2


def choose_offsets(probs_m: np.ndarray, y: np.ndarray, passes: int = 3) -> np.ndarray:
    """Per-class logit offsets maximising (accuracy + macro recall) / 2 of the mean of members.

    `probs_m` is (members, faces, classes). Coordinate search, one class at a time over
    `OFFSET_GRID`, deterministic; offsets are relative, so class 0 stays at 0."""
    n = probs_m.shape[-1]
    offsets = np.zeros(n)
    best = _objective(probs_m, y, offsets)
    for _ in range(passes):
        improved = False
        for c in range(1, n):
            for v in OFFSET_GRID:
                trial = offsets.copy()
                trial[c] = v
                value = _objective(probs_m, y, trial)
                if value > best + 1e-9:
                    best, offsets, improved = value, trial, True
        if not improved:
            break
    return offsets


def build_ensemble(members: list[str], output: str | os.PathLike, options: EnsembleOptions,
                   *, command: str | None = None) -> EnsembleReport:
    """Write the mean-of-members model to `output` (.keras) with its metadata sidecar."""
    if not members:
        raise UsageError("give at least one model")
    output = Path(output)
    if output.suffix != ".keras":
        raise UsageError(f"{output}: the ensemble is written as a .keras file")
    if options.balance and not options.val:
        raise UsageError("--balance needs --val: offsets are chosen on validation data")
    clfs = [KerasClassifier.load(m) for m in members]
    first = clfs[0]
    for path, c in zip(members[1:], clfs[1:]):
        for what in ("labels", "color", "normalization", "crop_margin"):
            if getattr(c.metadata, what) != getattr(first.metadata, what):
                raise ModelError(f"{path}: its {what} ({getattr(c.metadata, what)}) differs from "
                                 f"{members[0]}'s ({getattr(first.metadata, what)}); members must "
                                 f"take the same input and give the same classes")
        if c.input_size != first.input_size:
            raise ModelError(f"{path}: input {c.input_size} differs from {members[0]}'s {first.input_size}")

    report = EnsembleReport(str(output), list(members))
    offsets = np.zeros(len(first.labels))
    if options.val:
        data = remap_labels(load_labelled(options.val, usage=options.usage, size=first.input_size,
                                          color=first.color, classes=first.labels), first.labels)
        probs_m = np.stack([predict_all(c, data.images) for c in clfs])
        y = data.labels
        report.member_scores = [_scores(p, y, first.labels).to_dict() for p in probs_m]
        report.mean_scores = _scores(probs_m.mean(axis=0), y, first.labels).to_dict()
        if options.balance:
            offsets = choose_offsets(probs_m, y, options.passes)
            report.offsets = {l: round(float(o), 2) + 0.0 for l, o in zip(first.labels, offsets)}
            report.balanced_scores = _scores(shifted(probs_m, offsets).mean(axis=0), y,
                                             first.labels).to_dict()
    model = _combine([c.model for c in clfs], members, offsets)
    meta = ModelMetadata(
        labels=list(first.labels), color=first.color, normalization=first.metadata.normalization,
        crop_margin=first.metadata.crop_margin, input_size=first.metadata.input_size,
        provenance={
            "architecture": "ensemble",
            "command": command,
            "members": [{"file": Path(m).name, **{k: v for k, v in c.metadata.provenance.items()
                                                    if k in ("architecture", "command", "params",
                                                             "best_val_accuracy")}}
                        for m, c in zip(members, clfs)],
            "offsets": report.offsets or None,
            "val_data": options.val,
            "params": int(model.count_params()),
        },
    ).validate("ensemble")
    save_keras_with_metadata(model, output, meta)
    log.info("wrote %s (%d members, %d params)", output, len(members), model.count_params())
    return report


def predict_all(clf, images: np.ndarray, batch: int = 512) -> np.ndarray:
    """Probabilities for every image, `batch` at a time (a whole split at once is gigabytes of
    activations for a Keras model)."""
    return np.concatenate([clf.predict_proba(list(images[i:i + batch]))
                           for i in range(0, len(images), batch)])


def _scores(probs: np.ndarray, y: np.ndarray, labels: list[str]) -> Scores:
    return score(y, probs.argmax(axis=1), labels)


def _combine(models: list, paths: list[str], offsets: np.ndarray):
    import keras

    if np.any(offsets != 0):
        for m, p in zip(models, paths):
            try:
                shift_logits(m, offsets, option="--balance")
            except ModelError as exc:
                raise ModelError(f"{p}: {exc}") from None
    inp = keras.Input(tuple(models[0].inputs[0].shape[1:]), name="image")
    outs = []
    for i, m in enumerate(models):
        # Layer names must be unique inside one functional graph, and members built by the same
        # builder share theirs.
        m.name = f"member{i}_{m.name}"
        outs.append(m(inp))
    out = outs[0] if len(outs) == 1 else keras.layers.Average(name="emotion_mean")(outs)
    return keras.Model(inp, out, name="ensemble")
