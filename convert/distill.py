"""Knowledge distillation for `edge-fer train --teacher MODEL`: the student learns from the
teacher's probabilities as well as from the labels.

The teacher (a `.tflite` run through the runtime's own classifier, or a Keras model) is run once
over the *unaugmented* training images; its probabilities are cached beside the output
(`OUT.teacher.npz`, keyed by the teacher file's sha256 and the training images' paths), so a
resumed run does not pay for them again. The teacher's probabilities for a face are the mean over
the face and its mirror image, as `edge-fer evaluate --tta` scores a model: that teacher is the
stronger one (`edgenet-l.tflite`, the default until issue 15: 69.91 % on PrivateTest against
68.29 % for the face alone), and its target is the same for a face and its mirror, which the
student's flip augmentation needs.
Several teachers (`--teacher A --teacher B`) act as one: the mean of their probabilities, as the
`ensemble` command averages models, without building and converting that ensemble first.
Training then applies augmentation to the image only: the soft target of a shifted or rotated
face is taken to be that of the original, the usual approximation of offline distillation.
With `--teacher-views K` the targets are consistent instead ("a good teacher is consistent",
Beyer et al. 2022): each face is augmented K-1 times once, before training, the teacher is run
on every view, and the student trains on those views with their own targets (view 0 is the face
itself). It costs K times the teacher's pass over the data once (cached in `OUT.views.npz`), not
a teacher in the training step.

Targets travel as one array: the one-hot label in the first `n` columns, the teacher's
tempered probabilities in the next `n`, so mixup and class weights apply to both unchanged.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_fer.classifier import ClassifierOptions, EmotionClassifier
from edge_fer.datasets import LabelledImages, load_labelled
from edge_fer.errors import InputError, ModelError, UsageError
from edge_fer_convert.loader import KerasClassifier

log = logging.getLogger(__name__)

TEACHER_SUFFIXES = (".tflite", ".keras", ".h5")

#: Floor for the teacher's probabilities before tempering: an int8 output has steps of 1/256,
#: so a class it rounds to 0 is taken as half a step instead of impossible.
PROB_FLOOR = 1.0 / 512


@dataclass
class TeacherFile:
    path: str
    sha256: str


@dataclass
class TeacherTargets:
    probs: np.ndarray
    """N x classes, the teacher's probabilities (untempered), in the student's class order; with
    several teachers, the mean of theirs."""
    teachers: list[TeacherFile]
    """The teacher files, in the order given."""
    train_accuracy: float
    """Teacher's top-1 agreement with the training labels (a sanity figure for provenance)."""
    cached: bool


def check_teacher(path: str) -> Path:
    """Fail fast, before any data is loaded, on a teacher that cannot be one."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"teacher model not found: {p}")
    if p.is_dir() or p.suffix.lower() not in TEACHER_SUFFIXES:
        raise UsageError(f"the teacher must be a .tflite, .keras or .h5 model file (got {p})")
    return p


def _key(teacher_shas: Sequence[str], data: LabelledImages) -> str:
    # One teacher's key is the same as before several were allowed: its caches stay valid.
    h = hashlib.sha256("\n".join(teacher_shas).encode() + b"\nmirror-mean\n")
    for path in data.paths:
        h.update(path.encode() + b"\n")
    return h.hexdigest()


def _load_teacher(path: Path):
    if path.suffix.lower() == ".tflite":
        return EmotionClassifier(path, ClassifierOptions(num_threads=2))
    return KerasClassifier.load(path)


def teacher_targets(teachers: str | Sequence[str], data: LabelledImages, *, source: str,
                    limit: int | None, seed: int, cache: Path) -> TeacherTargets:
    """The teacher's probabilities over `data` (the mean over several teachers; cached in `cache`)."""
    paths, files = _teacher_files(teachers)
    key = _key([f.sha256 for f in files], data)
    found = _read_cache(cache, key, (len(data), len(data.classes)))
    if found is not None:
        probs = found["probs"]
        return TeacherTargets(probs, files, _agreement(probs, data), cached=True)
    each = [_one_teacher(p, data, source=source, limit=limit, seed=seed) for p in paths]
    if len(each) > 1:
        # The caller logs the mean's agreement; each member's shows what the mean adds.
        for p, member in zip(paths, each):
            log.info("teacher %s alone agrees with %.1f %% of the training labels", p,
                     100 * _agreement(member, data))
    probs = np.mean(each, axis=0).astype(np.float32)
    _write_cache(cache, key, probs=probs)
    return TeacherTargets(probs, files, _agreement(probs, data), cached=False)


def teacher_probabilities(path: str, data: LabelledImages, *, source: str, limit: int | None = None,
                          seed: int = 0) -> np.ndarray:
    """One candidate teacher's probabilities over `data`, made exactly as `teacher_targets` makes
    a member's (mirror mean, the student's class order), uncached: to compare teachers, and the
    means of several, before paying for a training run (`benchmarks/teachers.py`)."""
    return _one_teacher(check_teacher(path), data, source=source, limit=limit, seed=seed)


def _teacher_files(teachers: str | Sequence[str]) -> tuple[list[Path], list[TeacherFile]]:
    paths = [check_teacher(t) for t in ([teachers] if isinstance(teachers, str) else teachers)]
    if not paths:
        raise UsageError("no teacher given")
    return paths, [TeacherFile(str(p), hashlib.sha256(p.read_bytes()).hexdigest()) for p in paths]


def _read_cache(cache: Path, key: str, probs_shape: tuple[int, int]) -> dict[str, np.ndarray] | None:
    """The arrays cached under `key` (probabilities as float32), or None when there are none
    for it; an unreadable cache is ignored with a warning, to be written again."""
    if not cache.exists():
        return None
    try:
        with np.load(cache) as z:
            if str(z["key"]) != key or z["probs"].shape != probs_shape:
                return None
            found = {k: z[k] for k in z.files if k != "key"}
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring unreadable teacher cache %s (%s)", cache, exc)
        return None
    found["probs"] = found["probs"].astype(np.float32)
    return found


def _write_cache(cache: Path, key: str, **arrays: np.ndarray) -> None:
    tmp = cache.with_name(cache.stem + ".tmp.npz")
    np.savez(tmp, key=np.array(key), **arrays)
    tmp.replace(cache)


@dataclass
class TeacherViews:
    views: LabelledImages
    """K x N faces, view-major (view v of face i at v * N + i; view 0 is the face itself), with
    the face's label; paths end in `#vV`."""
    probs: np.ndarray
    """K*N x classes, the teachers' mean mirror-mean probabilities of each view."""
    count: int
    """K, views per face."""
    teachers: list[TeacherFile]
    train_accuracy: float
    """Teacher's top-1 agreement with the labels over all views."""
    cached: bool


def teacher_views(teachers: str | Sequence[str], data: LabelledImages, *, count: int,
                  augment: Callable[[np.ndarray], np.ndarray], recipe: str,
                  cache: Path) -> TeacherViews:
    """`count` views of each face of `data` (the face, then `count - 1` made by `augment`, a
    deterministic function from a uint8 batch to a uint8 batch of the same shape) and the
    teachers' probabilities of each view; cached in `cache`, keyed by the teachers, the faces,
    `count` and `recipe` (what decides `augment`: its mode and seed)."""
    if count < 1:
        raise UsageError(f"--teacher-views must be at least 1 (got {count})")
    paths, files = _teacher_files(teachers)
    key = _key([f.sha256 for f in files], data) + f" views {count} {recipe}"
    n = len(data)
    found = _read_cache(cache, key, (count * n, len(data.classes)))
    if found is not None:
        views = _as_views(data, found["images"], count)
        return TeacherViews(views, found["probs"], count, files, _agreement(found["probs"], views),
                            cached=True)
    t0 = time.monotonic()
    models = [_view_teacher(p, data) for p in paths]
    images = [data.images] + [
        np.concatenate([augment(data.images[i:i + 512]) for i in range(0, n, 512)])
        for _ in range(count - 1)]
    images = np.concatenate(images)
    log.info("running %d teacher(s) over %d views of %d training faces", len(models), count, n)
    probs = np.mean([_probabilities(m, images, data.classes) for m in models], axis=0)
    probs = probs.astype(np.float32)
    _write_cache(cache, key, images=images, probs=probs)
    log.info("teacher views made in %.0f s", time.monotonic() - t0)
    views = _as_views(data, images, count)
    return TeacherViews(views, probs, count, files, _agreement(probs, views), cached=False)


def _as_views(data: LabelledImages, images: np.ndarray, count: int) -> LabelledImages:
    return LabelledImages(images, np.tile(data.labels, count), data.classes,
                          [f"{p}#v{v}" for v in range(count) for p in data.paths])


def _view_teacher(path: Path, data: LabelledImages):
    """A teacher that takes the student's pixels (views are made at the student's size)."""
    model = _open_teacher(path, data)
    if not _takes_pixels_of(model, data):
        w, h = model.input_size
        raise UsageError(f"--teacher-views needs teachers that take the student's input "
                         f"({data.images.shape[2]}x{data.images.shape[1]} {_color(data)}); {path} "
                         f"takes {w}x{h} {model.color}")
    return model


def _open_teacher(path: Path, data: LabelledImages):
    """The teacher at `path`, checked to know every class of `data`."""
    try:
        model = _load_teacher(path)
    except ModelError as exc:
        raise ModelError(f"teacher: {exc}") from None
    missing = [c for c in data.classes if c not in model.labels]
    if missing:
        raise ModelError(f"the teacher {path} does not know the class(es) {', '.join(missing)} "
                         f"of the training data (teacher labels: {', '.join(model.labels)})")
    return model


def _color(data: LabelledImages) -> str:
    return "rgb" if data.images.ndim == 4 else "gray"


def _takes_pixels_of(model, data: LabelledImages) -> bool:
    w, h = model.input_size
    return (h, w) == data.images.shape[1:3] and model.color == _color(data)


def _probabilities(model, images: np.ndarray, classes: list[str]) -> np.ndarray:
    """The model's mirror-mean probabilities of `images`, in the order of `classes`."""
    out = np.concatenate([_mirror_mean(model, images[i:i + 256])
                          for i in range(0, len(images), 256)])
    order = [model.labels.index(c) for c in classes]
    probs = out[:, order].astype(np.float32)
    probs /= np.maximum(probs.sum(axis=1, keepdims=True), 1e-6)
    return probs


def _one_teacher(path: Path, data: LabelledImages, *, source: str, limit: int | None,
                 seed: int) -> np.ndarray:
    """One teacher's mirror-mean probabilities over `data`, in the student's class order."""
    model = _open_teacher(path, data)
    images = data
    w, h = model.input_size
    if not _takes_pixels_of(model, data):
        # The teacher takes other pixels than the student: read the same faces at its size.
        images = load_labelled(source, size=(w, h), color=model.color, limit=limit, seed=seed,
                               classes=data.classes)
        if images.paths != data.paths:
            raise InputError(f"{source} changed while it was read: reload it and try again")
    log.info("running the teacher %s over %d training faces", path, len(data))
    return _probabilities(model, images.images, data.classes)


def _mirror_mean(model, batch: np.ndarray) -> np.ndarray:
    """The teacher's probabilities averaged over each face (N x H x W[x C]) and its mirror."""
    return (model.predict_proba(list(batch)) + model.predict_proba(list(batch[:, :, ::-1]))) / 2


def _agreement(probs: np.ndarray, data: LabelledImages) -> float:
    return float(np.mean(np.argmax(probs, axis=1) == data.labels))


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T): the teacher's distribution at temperature T."""
    z = np.log(np.maximum(probs, PROB_FLOOR)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def distillation_loss(keras, n_classes: int, *, alpha: float, temperature: float,
                      label_smoothing: float):
    """alpha * KL(teacher_T || student_T) * T^2 + (1 - alpha) * CE(smoothed label, student).

    The student's models end in a softmax, so its logits are recovered as log(p) (equal to the
    logits up to a constant, which softmax ignores)."""
    ops = keras.ops
    t = float(temperature)

    def distill_loss(y_true, y_pred):
        label = y_true[:, :n_classes]
        soft = y_true[:, n_classes:]
        label = label * (1.0 - label_smoothing) + label_smoothing / n_classes
        logp = ops.log(ops.clip(y_pred, 1e-7, 1.0))
        ce = -ops.sum(label * logp, axis=-1)
        student_t = ops.log_softmax(logp / t, axis=-1)
        kl = ops.sum(soft * (ops.log(ops.clip(soft, 1e-7, 1.0)) - student_t), axis=-1)
        return alpha * kl * (t * t) + (1.0 - alpha) * ce

    return distill_loss


def label_accuracy(keras, n_classes: int):
    """Top-1 accuracy against the label part of the combined targets (named `accuracy` so the
    history and checkpoints read `val_accuracy` as without a teacher)."""
    ops = keras.ops

    def accuracy(y_true, y_pred):
        return ops.cast(ops.equal(ops.argmax(y_true[:, :n_classes], axis=-1),
                                  ops.argmax(y_pred, axis=-1)), "float32")

    return accuracy
