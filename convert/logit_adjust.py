"""Post-hoc logit adjustment: trade a little accuracy for recall on rare classes.

A classifier trained on FER2013 learns its class shares along with the faces: disgust is 1.5 %
of the training set, so a face that looks as much like disgust as like anger is called angry.
Subtracting `tau * log(share)` from each class's logit (Menon et al., "Long-tail learning via
logit adjustment", ICLR 2021) removes `tau` of that prior; `tau = 1` aims at the best mean
per-class recall, `tau = 0` changes nothing. The shift is folded into the bias of the layer
that produces the logits, so the converted model carries it at no cost per face.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edge_fer.errors import ModelError, UsageError

log = logging.getLogger(__name__)

# Layers between the logits and the model's output that commute with adding a per-class
# constant: pooling averages it, dropout is off at inference, softmax is where it takes effect.
_PASS_THROUGH = {"GlobalAveragePooling2D", "GlobalAveragePooling1D", "Dropout", "Flatten",
                 "Reshape", "Softmax", "Activation"}


@dataclass(frozen=True)
class LogitAdjustment:
    """What was added to the logits, for the converted model's provenance."""

    tau: float
    """Strength: 0 keeps the model as trained, 1 removes the whole training prior."""
    prior: dict[str, float]
    """Each class's share of the training data, the prior being removed."""
    prior_from: str
    """Where the shares came from: the model's training metadata or the calibration labels."""
    layer: str
    """Name of the layer whose bias took the shift."""

    def shift(self, labels: Sequence[str]) -> np.ndarray:
        return -self.tau * np.log(np.array([self.prior[k] for k in labels], dtype=np.float64))

    def to_dict(self) -> dict:
        return {"tau": self.tau, "prior": {k: round(v, 5) for k, v in self.prior.items()},
                "prior_from": self.prior_from, "layer": self.layer}


def class_prior(labels: Sequence[str], provenance: dict, calibration_labels: np.ndarray | None,
                ) -> tuple[dict[str, float], str]:
    """Each class's training share: from `train_counts` in the model's metadata (written by
    `edge-fer train`), else from the labels of the calibration faces (drawn in proportion)."""
    counts = provenance.get("train_counts")
    if isinstance(counts, dict) and counts:
        missing = [k for k in labels if k not in counts]
        if missing:
            raise ModelError(f"the model's train_counts lack class(es) {', '.join(missing)}")
        where = "the model's training metadata (train_counts)"
        n = np.array([float(counts[k]) for k in labels])
    elif calibration_labels is not None and len(calibration_labels):
        where = "the calibration faces' labels"
        n = np.bincount(np.asarray(calibration_labels), minlength=len(labels)).astype(float)
    else:
        raise UsageError("--logit-adjust needs each class's share of the training data: the model "
                         "carries no train_counts, so give --calibration labelled faces drawn from "
                         "the training set")
    if np.any(n <= 0):
        empty = [k for k, v in zip(labels, n) if v <= 0]
        raise UsageError(f"--logit-adjust: no training faces of class(es) {', '.join(empty)} in "
                         f"{where}, so their share is unknown")
    return {k: float(v) for k, v in zip(labels, n / n.sum())}, where


def shifted(probs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """softmax(z + offsets) from softmax(z), for probabilities of shape (..., classes): what
    `shift_logits(model, offsets)` does to the model's output."""
    w = probs * np.exp(offsets)
    return w / w.sum(axis=-1, keepdims=True)


def logits_layer(model, num_classes: int, option: str = "--logit-adjust"):
    """The last layer with a bias whose output is the logits, walking back from the output
    through layers that leave a per-class constant unchanged; a ModelError naming `option`
    (the command-line option that needs it) when there is none."""
    for layer in reversed(model.layers):
        kind = type(layer).__name__
        if kind in ("Dense", "Conv2D") and int(layer.output.shape[-1]) == num_classes:
            # A shift before any other activation is not a shift of the logits.
            act = getattr(getattr(layer, "activation", None), "__name__", "linear")
            if not getattr(layer, "use_bias", False) or act not in ("softmax", "linear"):
                break
            return layer
        if kind == "Activation" and getattr(layer.activation, "__name__", "") not in ("softmax", "linear"):
            break
        if kind not in _PASS_THROUGH:
            break
    raise ModelError(f"{option}: cannot find the layer producing the logits in {model.name} "
                     f"(it must end in a Dense or Conv2D layer with a bias and {num_classes} outputs, "
                     f"then only pooling, dropout or softmax); leave out {option}")


def _add_to_bias(layer, shift: np.ndarray) -> None:
    weights = layer.get_weights()
    weights[1] = (weights[1].astype(np.float64) + shift).astype(weights[1].dtype)
    layer.set_weights(weights)


def shift_logits(model, shift: Sequence[float], option: str = "--logit-adjust") -> str:
    """Add `shift` (one value per class) to the logits of `model`, in place; the layer's name."""
    shift = np.asarray(shift, dtype=np.float64)
    layer = logits_layer(model, len(shift), option)
    _add_to_bias(layer, shift)
    return layer.name


def adjust(model, labels: Sequence[str], tau: float, provenance: dict,
           calibration_labels: np.ndarray | None) -> LogitAdjustment:
    """Fold `-tau * log(prior)` into the logits' bias of `model` (a Keras 3 or tf-keras model),
    in place, and say what was done."""
    # The layer first: a model that cannot take the shift is the error to report, whatever the data.
    layer = logits_layer(model, len(labels))
    prior, where = class_prior(labels, provenance, calibration_labels)
    done = LogitAdjustment(tau=float(tau), prior=prior, prior_from=where, layer=layer.name)
    _add_to_bias(layer, done.shift(labels))
    log.info("logit adjustment tau=%g folded into %s's bias (prior from %s)", tau, done.layer, where)
    return done
