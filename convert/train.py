"""`edge-fer train`: build an architecture, train it on an image folder, keep the best on validation.

Training resumes where it stopped: Keras' BackupAndRestore keeps the last finished epoch (weights,
optimizer, schedule position) in `OUT.backup/`, so a long run can span several sittings by
re-running the same command. The best model on the validation data is written to OUT as it
improves; the final file carries edge-fer metadata (labels, colour, normalization, recipe).
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_fer.datasets import LabelledImages, load_labelled
from edge_fer.errors import InputError, ModelError, UsageError
from edge_fer.ferplus import (PROTOCOL, TARGETS, default_votes_file, folder_votes, read_votes,
                              training_targets)
from edge_fer.metadata import ModelMetadata
from edge_fer_convert.architectures import count_macs, get_architecture
from edge_fer_convert.distill import (check_teacher, distillation_loss, label_accuracy, teacher_targets,
                                     teacher_views, tempered)
from edge_fer_convert.keras_env import keras_module

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    """Everything that decides a training run (recorded in the model's provenance)."""

    arch: str = "edgenet"
    """Architecture name (see `edge-fer train --help`)."""
    data: str = ""
    """Training data: a folder of class subfolders or the FER2013 CSV."""
    val: str = ""
    """Validation data used to select the best epoch (never the test set)."""
    epochs: int = 40
    """Epochs to run (early stopping may end sooner)."""
    batch_size: int = 128
    """Images per step."""
    lr: float = 2e-3
    """Peak learning rate (Adam)."""
    schedule: str = "cosine"
    """`cosine` (warm-up then cosine decay to zero) or `plateau` (halve when validation stalls)."""
    warmup_epochs: int = 2
    """Linear warm-up epochs for the cosine schedule."""
    weight_decay: float = 1e-4
    """Decoupled weight decay (AdamW)."""
    label_smoothing: float = 0.1
    """Label smoothing of the cross-entropy target."""
    class_weight: str = "none"
    """`none`, `balanced` (inverse frequency) or `sqrt` (inverse square root of frequency)."""
    augment: str = "standard"
    """`none`, `light` (flip, small shift) or `standard` (flip, shift, rotation, zoom, contrast, erase)."""
    mixup: float = 0.0
    """Mixup alpha; 0 turns it off."""
    patience: int = 0
    """Early-stopping patience in epochs on validation accuracy; 0 turns it off."""
    width: int | None = None
    """Base width for architectures that take one (edgenet)."""
    weights: str | None = None
    """Pretrained backbone weights file for transfer architectures."""
    seed: int = 1234
    """Random seed for weights, shuffling and augmentation."""
    limit: int | None = None
    """Train on a stratified sample of this many images (smoke tests)."""
    teacher: tuple[str, ...] = ()
    """Trained models (`.tflite` or `.keras`) whose probabilities the student also learns from
    (knowledge distillation; several act as one, the mean of their probabilities); empty trains
    on the labels alone."""
    distill_alpha: float = 0.5
    """Weight of the distillation term: alpha * KL(teacher_T || student_T) * T^2 +
    (1 - alpha) * cross-entropy with the (smoothed) label."""
    distill_temperature: float = 3.0
    """Temperature T that softens both distributions in the distillation term."""
    teacher_views: int = 0
    """With a teacher: make this many views of each training face once (the face and
    `teacher_views - 1` copies augmented as `augment` says), run the teacher on each, and train on
    those views with their own targets, flipped at random (consistent distillation; cached in
    `OUT.views.npz`). 0 trains on freshly augmented faces with the unaugmented face's target."""
    init: str | None = None
    """A trained `.keras` model of the same architecture to start from (fine-tuning, e.g. a
    second, shorter cosine cycle at a lower `lr`); None starts from random weights."""
    targets: str = "labels"
    """What each training face is learnt as: `labels` (the folder's, FER2013's), `votes` (its
    normalised FER+ 7-class vote distribution) or `majority` (its FER+ majority); with votes or
    majority, faces without votes keep their label and the best epoch is chosen on the
    validation faces' FER+ majority (see `edge_fer.ferplus`)."""
    votes: str | None = None
    """FER+ votes file for `targets` votes or majority (default: `ferplus.csv` beside the
    `data` folder, as in the shared layout)."""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        # One model file is one teacher, not a sequence of one-letter paths.
        self.teacher = (self.teacher,) if isinstance(self.teacher, str) else tuple(self.teacher or ())


@dataclass
class TrainResult:
    output: str
    best_val_accuracy: float
    best_epoch: int
    epochs_run: int
    seconds: float
    params: int
    classes: list[str]


def class_weights(labels: np.ndarray, n_classes: int, mode: str) -> dict[int, float] | None:
    if mode == "none":
        return None
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    counts = np.maximum(counts, 1)
    w = (counts.sum() / counts) if mode == "balanced" else np.sqrt(counts.sum() / counts)
    w = w / np.sum(w * counts) * counts.sum()
    return {i: float(v) for i, v in enumerate(w)}


def _augmenter(tf, size: int, channels: int, mode: str, seed: int):
    """A tf.data map function over float32 batches in 0..255."""
    if mode == "none":
        return None
    rng = tf.random.Generator.from_seed(seed)
    if mode == "flip":
        return lambda x, y: (tf.where(rng.uniform([tf.shape(x)[0], 1, 1, 1]) < 0.5,
                                      tf.reverse(x, axis=[2]), x), y)
    strong = mode == "standard"
    max_rot = math.radians(12) if strong else 0.0
    max_shift = 0.1 if strong else 0.06
    zoom = 0.12 if strong else 0.0

    def apply(x, y):
        n = tf.shape(x)[0]
        x = tf.where(rng.uniform([n, 1, 1, 1]) < 0.5, tf.reverse(x, axis=[2]), x)
        # One projective transform per image for rotation, zoom and shift (as Haar box jitter).
        ang = rng.uniform([n], -max_rot, max_rot)
        scale = rng.uniform([n], 1.0 - zoom, 1.0 + zoom)
        tx = rng.uniform([n], -max_shift, max_shift) * size
        ty = rng.uniform([n], -max_shift, max_shift) * size
        c = (size - 1) / 2.0
        cos, sin = tf.cos(ang) / scale, tf.sin(ang) / scale
        a0, a1 = cos, -sin
        b0, b1 = sin, cos
        a2 = c - a0 * c - a1 * c + tx
        b2 = c - b0 * c - b1 * c + ty
        zeros = tf.zeros_like(a0)
        transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        x = tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=transforms, output_shape=[size, size],
            interpolation="BILINEAR", fill_mode="REFLECT", fill_value=0.0)
        if strong:
            mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
            contrast = rng.uniform([n, 1, 1, 1], 0.7, 1.3)
            bright = rng.uniform([n, 1, 1, 1], -25.0, 25.0)
            x = tf.clip_by_value((x - mean) * contrast + mean + bright, 0.0, 255.0)
            # Random erasing of one square per image (occlusion by hands, glasses).
            side = tf.cast(size * 0.3, tf.int32)
            cy = rng.uniform([n], 0, size, dtype=tf.int32)
            cx = rng.uniform([n], 0, size, dtype=tf.int32)
            grid = tf.range(size)
            in_y = tf.abs(grid[None, :] - cy[:, None]) < side // 2
            in_x = tf.abs(grid[None, :] - cx[:, None]) < side // 2
            box = tf.logical_and(in_y[:, :, None], in_x[:, None, :])
            erase = tf.logical_and(box, (rng.uniform([n, 1, 1]) < 0.5))
            x = tf.where(erase[..., None], mean, x)
        return x, y

    return apply


def _view_maker(tf, size: int, channels: int, mode: str, seed: int):
    """`_augmenter` as a function from a uint8 batch to a uint8 batch of the same shape, for
    the views the teacher labels once (`--teacher-views`)."""
    aug = _augmenter(tf, size, channels, mode, seed)

    def make(batch: np.ndarray) -> np.ndarray:
        x = batch[..., None] if batch.ndim == 3 else batch
        out, _ = aug(tf.constant(x, tf.float32), None)
        out = np.clip(np.rint(out.numpy()), 0, 255).astype(np.uint8)
        return out.reshape(batch.shape)

    return make


def _normalizer(tf, normalization: str):
    def apply(x, y):
        if normalization == "unit":
            x = x / 255.0
        elif normalization == "symmetric":
            x = (x / 255.0 - 0.5) * 2.0
        return x, y

    return apply


def _as_input(data: LabelledImages, channels: int) -> np.ndarray:
    x = data.images
    if x.ndim == 3:
        x = x[..., None]
    if channels == 3 and x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return x


def make_dataset(tf, data: LabelledImages, spec, *, batch: int, n_classes: int, training: bool,
                 augment: str, seed: int, mixup: float = 0.0, label_smoothing: float = 0.0,
                 soft: np.ndarray | None = None, repeat: bool = False,
                 targets: np.ndarray | None = None):
    """Batches of (normalized image, target). The target is the one-hot label, or `targets`
    (N x classes, e.g. FER+ vote distributions) when given; with `soft` (N x classes, a
    teacher's tempered probabilities) `soft` follows it (see `distill`). `repeat` makes a
    training set endless (for epochs shorter than one pass over it: `steps_per_epoch`)."""
    channels = 3 if spec.color == "rgb" else 1
    x = _as_input(data, channels)
    y = tf.one_hot(data.labels, n_classes).numpy() if targets is None else targets.astype(np.float32)
    if soft is not None:
        y = np.concatenate([y, soft.astype(y.dtype)], axis=1)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
    ds = ds.batch(batch).map(lambda a, b: (tf.cast(a, tf.float32), b))
    if training:
        aug = _augmenter(tf, spec.size, channels, augment, seed)
        if aug is not None:
            ds = ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE)
        if mixup > 0:
            gen = tf.random.Generator.from_seed(seed + 1)

            def mix(a, b):
                n = tf.shape(a)[0]
                g1 = gen.gamma([n], mixup)
                g2 = gen.gamma([n], mixup)
                lam = g1 / (g1 + g2)
                perm = tf.random.shuffle(tf.range(n), seed=seed)
                lx = tf.reshape(lam, [-1, 1, 1, 1])
                ly = tf.reshape(lam, [-1, 1])
                return a * lx + tf.gather(a, perm) * (1 - lx), b * ly + tf.gather(b, perm) * (1 - ly)

            ds = ds.map(mix)
    ds = ds.map(_normalizer(tf, spec.normalization))
    return ds.prefetch(tf.data.AUTOTUNE)


def _lr_schedule(keras, opts: TrainOptions, steps_per_epoch: int):
    if opts.schedule == "plateau":
        return opts.lr
    total = max(1, opts.epochs * steps_per_epoch)
    warm = min(total - 1, opts.warmup_epochs * steps_per_epoch)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=opts.lr * 0.05 if warm else opts.lr,
        decay_steps=total - warm,
        warmup_target=opts.lr if warm else None,
        warmup_steps=warm,
    )


def _start_from(keras, model, arch: str, path: Path) -> None:
    """Copy the weights of the trained model at `path` (checked to exist before the data was
    loaded) into `model` (`arch`, same options)."""
    try:
        trained = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a file that is not its model
        raise ModelError(f"--init {path} cannot be loaded as a Keras model: {exc}") from None
    ours = [tuple(w.shape) for w in model.weights]
    theirs = [tuple(w.shape) for w in trained.weights]
    if ours != theirs:
        raise UsageError(f"--init {path} does not fit --arch {arch} with these options: its weights "
                         f"have other shapes ({len(theirs)} tensors against {len(ours)})")
    model.set_weights(trained.get_weights())
    log.info("starting from the weights of %s", path)


def train(opts: TrainOptions, output: str | os.PathLike, *, command: str | None = None,
          verbose: int | None = None) -> TrainResult:
    """Train `opts.arch` and write the best validation model to `output` (`.keras`)."""
    output = Path(output)
    if output.suffix != ".keras":
        raise UsageError(f"the output must end in .keras (got {output.name})")
    if opts.schedule not in ("cosine", "plateau"):
        raise UsageError(f"unknown schedule {opts.schedule!r}: choose cosine or plateau")
    if opts.class_weight not in ("none", "balanced", "sqrt"):
        raise UsageError(f"unknown class weighting {opts.class_weight!r}: choose none, balanced or sqrt")
    arch = get_architecture(opts.arch)
    spec = arch.spec
    if opts.teacher:
        for t in opts.teacher:
            check_teacher(t)
        if not 0.0 <= opts.distill_alpha <= 1.0:
            raise UsageError(f"--distill-alpha must be between 0 and 1 (got {opts.distill_alpha})")
        if opts.distill_temperature <= 0:
            raise UsageError(f"--distill-temperature must be positive (got {opts.distill_temperature})")
        if opts.teacher_views > 1 and opts.augment == "none":
            raise UsageError("--teacher-views makes augmented views: it needs --augment light or standard")
    elif opts.teacher_views:
        raise UsageError("--teacher-views needs --teacher")
    if opts.teacher_views < 0:
        raise UsageError(f"--teacher-views must be 0 or more (got {opts.teacher_views})")
    if opts.init and not Path(opts.init).is_file():
        raise InputError(f"--init model not found: {opts.init}")
    if opts.targets not in TARGETS:
        raise UsageError(f"unknown targets {opts.targets!r}: choose {', '.join(TARGETS)}")
    if opts.votes and opts.targets == "labels":
        raise UsageError("--votes is for --targets votes or majority")
    votes_files = _votes_files(opts) if opts.targets != "labels" else None
    output.parent.mkdir(parents=True, exist_ok=True)

    size = (spec.size, spec.size)
    train_data = load_labelled(opts.data, size=size, color=spec.color, limit=opts.limit, seed=opts.seed)
    val_data = load_labelled(opts.val, size=size, color=spec.color, classes=train_data.classes)
    if len(train_data.classes) < 2:
        raise InputError(f"training data in {opts.data} has fewer than two classes")
    targets = None
    if votes_files:
        targets, keep, val_data, vote_record = _vote_targets(opts, votes_files, train_data, val_data)

    keras = keras_module()
    import tensorflow as tf

    keras.utils.set_random_seed(opts.seed)
    n_classes = len(train_data.classes)
    build_kwargs = {"weights": opts.weights}
    if opts.width:
        build_kwargs["width"] = opts.width
    model = arch.build(n_classes, **build_kwargs)
    if opts.init:
        _start_from(keras, model, arch.name, Path(opts.init))
    steps = math.ceil(len(train_data) / opts.batch_size)
    teacher = soft = val_soft = None
    fit_data, augment, steps_per_epoch = train_data, opts.augment, None
    channels = 3 if spec.color == "rgb" else 1
    if opts.teacher and opts.teacher_views:
        teacher = teacher_views(opts.teacher, train_data, count=opts.teacher_views,
                                augment=_view_maker(tf, spec.size, channels, opts.augment, opts.seed + 2),
                                recipe=f"augment {opts.augment} seed {opts.seed}",
                                cache=output.with_name(output.stem + ".views.npz"))
        # The views are the augmentation; a flip keeps each one's (mirror-mean) target.
        fit_data, augment, steps_per_epoch = teacher.views, "flip", steps
        if targets is not None:
            # View-major: view v of face i is row v * N + i.
            targets, keep = np.tile(targets, (opts.teacher_views, 1)), np.tile(keep, opts.teacher_views)
    elif opts.teacher:
        teacher = teacher_targets(opts.teacher, train_data, source=opts.data, limit=opts.limit,
                                  seed=opts.seed, cache=output.with_name(output.stem + ".teacher.npz"))
    if teacher is not None:
        log.info("teacher %s agrees with %.1f %% of the training labels%s%s", " + ".join(opts.teacher),
                 100 * teacher.train_accuracy,
                 f" over {opts.teacher_views} views of each face" if opts.teacher_views else "",
                 " (cached)" if teacher.cached else "")
        soft = tempered(teacher.probs, opts.distill_temperature)
        if targets is not None:
            soft = soft[keep]
        # Validation is scored on labels only; its soft part is the label itself.
        val_soft = np.eye(n_classes, dtype=np.float32)[val_data.labels]
        loss = distillation_loss(keras, n_classes, alpha=opts.distill_alpha,
                                 temperature=opts.distill_temperature,
                                 label_smoothing=opts.label_smoothing)
        metrics = [label_accuracy(keras, n_classes)]
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=opts.label_smoothing)
        metrics = ["accuracy"]
    if targets is not None:
        # Faces the protocol leaves out (majority contempt, unknown, not a face) are not trained on.
        index = np.flatnonzero(keep)
        fit_data, targets = fit_data.subset(index), targets[index]
        fit_data.labels = np.argmax(targets, axis=1)
        steps = math.ceil(len(fit_data) / max(1, opts.teacher_views) / opts.batch_size)
        if steps_per_epoch is not None:
            steps_per_epoch = steps
        log.info("training on %d faces' %s (%d without votes on their own label), choosing the "
                 "epoch on %d validation faces' FER+ majority", len(fit_data),
                 "FER+ vote distributions" if opts.targets == "votes" else "FER+ majorities",
                 vote_record["train"]["unmatched"], len(val_data))
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=_lr_schedule(keras, opts, steps),
                                         weight_decay=opts.weight_decay),
        loss=loss,
        metrics=metrics,
    )
    train_ds = make_dataset(tf, fit_data, spec, batch=opts.batch_size, n_classes=n_classes,
                            training=True, augment=augment, seed=opts.seed, mixup=opts.mixup,
                            soft=soft, repeat=steps_per_epoch is not None, targets=targets)
    val_ds = make_dataset(tf, val_data, spec, batch=256, n_classes=n_classes, training=False,
                          augment="none", seed=opts.seed, soft=val_soft)

    best_path = output.with_name(output.stem + ".best.keras")
    backup = output.with_name(output.stem + ".backup")
    history_path = output.with_name(output.stem + ".history.csv")
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup)),
        keras.callbacks.ModelCheckpoint(str(best_path), monitor="val_accuracy", mode="max",
                                        save_best_only=True),
        keras.callbacks.CSVLogger(str(history_path), append=True),
    ]
    if opts.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", mode="max",
                                                           factor=0.5, patience=4, min_lr=1e-5))
    if opts.patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max",
                                                       patience=opts.patience))
    if verbose is None:
        verbose = 1 if sys.stderr.isatty() else 2
    log.info("training %s (%d params) on %d images, validating on %d", arch.name,
             model.count_params(), len(train_data), len(val_data))
    t0 = time.monotonic()
    # The dataset shuffles itself each epoch; Keras warns that its own `shuffle` (on by
    # default) cannot apply to a tf.data.Dataset.
    hist = model.fit(train_ds, validation_data=val_ds, epochs=opts.epochs, verbose=verbose,
                     shuffle=False, steps_per_epoch=steps_per_epoch,
                     class_weight=class_weights(fit_data.labels, n_classes, opts.class_weight),
                     callbacks=callbacks)
    seconds = time.monotonic() - t0

    rows = _read_history(history_path)
    best_epoch, best_acc = max(((int(r["epoch"]) + 1, float(r["val_accuracy"])) for r in rows),
                               key=lambda t: t[1], default=(0, float("nan")))
    best = keras.models.load_model(best_path, compile=False) if best_path.exists() else model
    meta = ModelMetadata(
        labels=train_data.classes,
        color=spec.color,
        normalization=spec.normalization,
        crop_margin=0.0,
        input_size=[spec.size, spec.size],
        provenance={
            "architecture": arch.name,
            "command": command,
            "train_data": str(opts.data),
            "val_data": str(opts.val),
            "train_counts": _train_counts(train_data, targets, opts.teacher_views),
            "options": asdict(opts),
            "best_epoch": best_epoch,
            "best_val_accuracy": round(best_acc, 4),
            "epochs_run": len(rows),
            "params": int(best.count_params()),
            "macs": count_macs(best),
            "distillation": None if teacher is None else {
                "teachers": [asdict(t) for t in teacher.teachers],
                "teacher_train_agreement": round(teacher.train_accuracy, 4),
                "alpha": opts.distill_alpha,
                "temperature": opts.distill_temperature,
                "soft_targets": (f"teacher probabilities of {opts.teacher_views} views of each training "
                                 "image (the image and augmented copies), mean of each view and its mirror"
                                 if opts.teacher_views else
                                 "teacher probabilities of the unaugmented training images, mean of each face and its mirror"),
            },
            "targets": opts.targets,
            "ferplus": vote_record if targets is not None else None,
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
        },
    )
    save_keras_with_metadata(best, output, meta)
    return TrainResult(str(output), best_acc, best_epoch, len(hist.epoch), seconds,
                       int(best.count_params()), train_data.classes)


def _train_counts(train_data, targets: np.ndarray | None, views: int) -> dict[str, float]:
    """Faces per class the model learned from: the folder's label counts, or with vote targets
    each class's share of the votes summed over the faces trained on (the prior that
    `convert --logit-adjust` removes is the one the model was trained towards, and FER+'s
    differs from FER2013's: 32 % neutral against 17 %)."""
    if targets is None:
        return train_data.counts()
    mass = targets.sum(axis=0) / max(1, views)
    return {c: round(float(v), 2) for c, v in zip(train_data.classes, mass)}


def _votes_files(opts: TrainOptions) -> tuple[Path, Path]:
    """The votes files of the training and validation folders (checked before any loading)."""
    files = []
    for flag, source in (("--data", opts.data), ("--val", opts.val)):
        if not Path(source).is_dir():
            raise UsageError(f"--targets {opts.targets} needs folders of FER2013 files: {flag} "
                             f"{source} is not a folder")
        path = Path(opts.votes) if opts.votes else default_votes_file(source)
        if not path.is_file():
            raise InputError(f"--targets {opts.targets} needs the FER+ votes file: "
                             f"{'not found' if opts.votes else 'none at'} {path}"
                             f"{'' if opts.votes else '; give one with --votes FILE'}")
        files.append(path)
    return files[0], files[1]


def _vote_targets(opts: TrainOptions, votes_files: tuple[Path, Path], train_data: LabelledImages,
                  val_data: LabelledImages):
    """Training targets and faces kept (`edge_fer.ferplus.training_targets`), the validation
    faces with a FER+ majority labelled by it, and what to record in the provenance."""
    rows = {f: read_votes(f) for f in set(votes_files)}
    train_votes = folder_votes(rows[votes_files[0]], opts.data, train_data.paths, train_data.classes,
                               votes_files[0])
    val_votes = folder_votes(rows[votes_files[1]], opts.val, val_data.paths, val_data.classes,
                             votes_files[1])
    targets, keep = training_targets(train_votes, train_data.labels, opts.targets)
    kept = val_votes.kept
    val = LabelledImages(val_data.images[kept], val_votes.majority[kept], val_data.classes,
                         [val_data.paths[i] for i in kept])
    record = {"votes": [str(f) for f in votes_files], "protocol": PROTOCOL,
              "train": train_votes.counts.to_dict(), "train_faces_used": int(keep.sum()),
              "val": val_votes.counts.to_dict()}
    return targets, keep, val, record


def _read_history(path: Path) -> list[dict]:
    import csv

    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if r.get("val_accuracy")]


def metadata_sidecar(keras_path: Path) -> Path:
    return keras_path.with_name(keras_path.name + ".json")


def save_keras_with_metadata(model, path: Path, meta: ModelMetadata) -> None:
    """Write the model, then its metadata beside it (`MODEL.keras.json`), atomically each."""
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    model.save(tmp)
    os.replace(tmp, path)
    side = metadata_sidecar(path)
    side.with_suffix(".tmp").write_text(meta.to_json())
    os.replace(side.with_suffix(".tmp"), side)


def command_line() -> str:
    return "edge-fer " + " ".join(shlex.quote(a) for a in sys.argv[1:])
