"""Keras -> TFLite conversion: full-INT8 calibrated on representative faces, verified, reported.

The float model and the converted one are scored on the same validation faces with the same
preprocessing (colour, size, normalization from the model's metadata or options, written into
the output's metadata), so the reported accuracy cost of quantization is the real one.

With `max_drop`, a full-INT8 conversion that loses more than that many points is not the end:
calibration on `MORE_SAMPLES` times the faces, the converter's per-tensor weight scales
(`VARIANTS`) and quantization-aware fine-tuning (`edge_fer_convert.qat`) are tried in that
order, stopping at the first step that meets it; the most accurate model that meets it is kept,
or the error lists every attempt's drop.

The written model is loaded in every installed interpreter backend, its outputs compared with
the float model's on sample faces (`TOLERANCES`: mean absolute probability difference), and for
int8 every tensor checked to be integer. The output is written to a temporary name and renamed
only when complete, and removed again if verification fails, so a failed conversion or a full
disk never leaves a half-written or unverified model behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_fer.backends import BACKENDS, available_backends, load_backend
from edge_fer.classifier import ClassifierOptions, EmotionClassifier
from edge_fer.datasets import LabelledImages, load_labelled, remap_labels, stratified_indices
from edge_fer.errors import InputError, ModelError, UsageError
from edge_fer.evaluate import Scores, evaluate_probs, votes_of
from edge_fer.files import write_atomically
from edge_fer.metadata import ModelMetadata, embed
from edge_fer_convert.keras_env import tensorflow_module
from edge_fer_convert.loader import (KerasClassifier, image_input_shape, keras_sidecar,
                                     load_keras_model, model_metadata)
from edge_fer_convert.logit_adjust import adjust as adjust_logits
from edge_fer_convert.plots import confusion_png
from edge_fer_convert.qat import QatOptions, run_qat
from edge_fer_convert.tflite_export import convert_bytes

log = logging.getLogger(__name__)

QUANTIZATIONS = ("int8", "dynamic", "float16", "none")

#: Verification: the largest mean |p_float - p_converted| over the probe faces that is accepted,
#: per quantization (probabilities, so 0.05 is five points of probability mass on average).
TOLERANCES = {"none": 1e-4, "float16": 5e-3, "dynamic": 0.05, "int8": 0.05}

#: With `--max-drop`, the second attempt calibrates on this many times the samples.
MORE_SAMPLES = 4


@dataclass
class ConvertOptions:
    """What `edge-fer convert` does."""

    output: str | None = None
    """Output `.tflite`; default: the model's name with `.tflite`."""
    quantization: str = "int8"
    """`int8` (full integer, int8 in and out), `dynamic` (int8 weights), `float16`, `none`."""
    calibration: str | None = None
    """Representative faces (folder of class subfolders, FER2013 CSV or `.npz`); needed for int8."""
    samples: int = 300
    """Calibration images, drawn across classes."""
    validation: str | None = None
    """Labelled faces to compare float and converted accuracy on."""
    validation_limit: int | None = None
    """Score a stratified sample of this many validation images."""
    labels: list[str] | None = None
    """Class names in output order, for models without edge-fer metadata."""
    normalization: str | None = None
    """Pixel normalization, for models without edge-fer metadata."""
    crop_margin: float | None = None
    """Face-box margin the model was trained with."""
    arch: str | None = None
    """Architecture for weights-only `.h5` files."""
    usage: str | None = None
    """With CSV data: the split for calibration and fine-tuning (Training, PublicTest, PrivateTest)."""
    validation_usage: str | None = None
    """With a validation CSV: its split; default `usage`."""
    report: str | None = None
    """Write the report as JSON here."""
    plot: str | None = None
    """Write the confusion matrices here (PNG); default: beside the report, when there is one."""
    max_drop: float | None = None
    """Largest accepted accuracy loss in points on the validation data (int8: try harder first)."""
    qat_epochs: int = 1
    """Quantization-aware fine-tuning epochs, the last resort of `max_drop`; 0 skips it."""
    qat_data: str | None = None
    """Labelled faces to fine-tune on; default: the calibration data."""
    qat_limit: int | None = None
    """Fine-tune on a stratified sample of this many images."""
    seed: int = 0
    """Seed for sampling and fine-tuning."""
    logit_adjust: float | None = None
    """Post-hoc logit adjustment strength tau: subtract tau x log(training class share) from the
    logits before converting (rarer classes predicted more often); None or 0 leaves them."""


@dataclass
class ModelSummary:
    path: str
    size_bytes: int
    ms_per_face: float
    """Batch-1 latency with one interpreter thread (Keras: as it runs)."""
    scores: dict | None = None
    ms_per_face_threads: dict[str, float] = field(default_factory=dict)
    """Batch-1 latency by interpreter thread count (TFLite only)."""


@dataclass
class Attempt:
    """One conversion tried on the way to a model within `max_drop`."""

    method: str
    """`ptq` (post-training calibration) or `qat` (quantization-aware fine-tuning, then convert)."""
    variant: str
    """A key of `VARIANTS` (int8) or the quantization."""
    calibration_samples: int
    accuracy: float | None = None
    drop_points: float | None = None
    seconds: float = 0.0
    """Wall time of the attempt: conversion (and fine-tuning) plus scoring."""
    convert_seconds: float = 0.0
    """Wall time of producing the flatbuffer alone (calibration, conversion, fine-tuning)."""
    error: str | None = None
    """Why the attempt produced no model."""
    same_as: str | None = None
    """The earlier attempt whose flatbuffer this one reproduced byte for byte."""
    details: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        if self.method == "qat":
            return f"qat {self.details.get('epochs', '?')} epoch(s) + {self.variant}"
        samples = f" {self.calibration_samples} samples" if self.calibration_samples else ""
        return f"ptq {self.variant}{samples}"

    def summary(self) -> str:
        if self.error:
            return f"{self.name}: failed ({self.error})"
        same = f" (same model as {self.same_as})" if self.same_as else ""
        if self.drop_points is None:
            return f"{self.name}: not scored{same}"
        return f"{self.name}: drop {self.drop_points:+.2f}{same}"


@dataclass
class ConvertReport:
    source: str
    loaded_with: str
    output: str
    quantization: str
    calibration_samples: int
    float_model: ModelSummary
    converted: ModelSummary
    accuracy_drop_points: float | None
    agreement: dict
    verification: dict
    sha256: str
    seconds: float
    labels: list[str] = field(default_factory=list)
    method: str = ""
    """The attempt that was kept (see `attempts`)."""
    max_drop: float | None = None
    attempts: list[dict] = field(default_factory=list)
    qat: dict | None = None
    """Fine-tuning details when QAT was tried: plan (layers left float), epochs, samples, history."""
    preprocessing: dict = field(default_factory=dict)
    """Colour, size and normalization used for calibration and scoring (and written to the model)."""
    plot: str | None = None
    logit_adjustment: dict | None = None
    """tau, class prior and layer of `--logit-adjust`; both columns include it."""
    validation_labels: str | None = None
    """What the validation faces were scored against: for a model trained on the FER+ votes,
    their FER+ majority (with the protocol's tallies) where the votes file sits beside the
    folder; else the data's own labels."""

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        f, q = self.float_model, self.converted
        rows = [f"source: {self.source} (loaded with {self.loaded_with})"]
        if self.logit_adjustment:
            la = self.logit_adjustment
            rows.append(f"logit adjustment: tau {la['tau']:g} on {la['layer']}'s bias, prior from "
                        f"{la['prior_from']} (in both columns)")
        if self.validation_labels:
            rows.append(f"validation scored against {self.validation_labels}")
        rows.append(f"{'':<18}{'float (Keras)':>16}{self.quantization + ' (TFLite)':>18}")
        if f.scores and q.scores:
            rows.append(f"{'accuracy %':<18}{f.scores['accuracy'] * 100:>16.2f}{q.scores['accuracy'] * 100:>18.2f}")
            rows.append(f"{'macro recall':<18}{f.scores['macro_recall']:>16.4f}{q.scores['macro_recall']:>18.4f}")
            for lab in self.labels:
                if lab in f.scores["per_class_recall"]:
                    rows.append(f"{'  recall ' + lab:<18}{f.scores['per_class_recall'][lab]:>16.3f}"
                                f"{q.scores['per_class_recall'].get(lab, float('nan')):>18.3f}")
        rows.append(f"{'size KiB':<18}{f.size_bytes / 1024:>16.1f}{q.size_bytes / 1024:>18.1f}")
        rows.append(f"{'ms / face':<18}{f.ms_per_face:>16.3f}{q.ms_per_face:>18.3f}")
        for t, ms in q.ms_per_face_threads.items():
            rows.append(f"{'  ' + t + ' thread(s)':<18}{'':>16}{ms:>18.3f}")
        if self.accuracy_drop_points is not None:
            rows.append(f"accuracy change: {-self.accuracy_drop_points:+.2f} points "
                        f"(on {q.scores['count']} validation faces)")
        rows.append(f"method: {self.method}; calibration samples: {self.calibration_samples}")
        if len(self.attempts) > 1 or self.max_drop is not None:
            limit = f" (max drop {self.max_drop:.2f})" if self.max_drop is not None else ""
            rows.append(f"attempts{limit}: " + "; ".join(a["summary"] for a in self.attempts))
        if self.qat and self.qat.get("plan", {}).get("unquantized"):
            rows.append(f"QAT left float: {', '.join(self.qat['plan']['unquantized'])}")
        rows.append(f"on {self.agreement['samples']} probe faces: top-1 agreement with float "
                    f"{self.agreement['top1'] * 100:.2f} %   "
                    f"mean |dp|: {self.agreement['mean_abs_prob_diff']:.4f} "
                    f"(tolerance {self.verification['tolerance']})   "
                    f"max |dp|: {self.agreement['max_abs_prob_diff']:.4f}")
        rows.append(f"verified with: {', '.join(self.verification['backends'])}; "
                    f"all-integer ops: {self.verification.get('integer_only')}")
        if self.plot:
            rows.append(f"confusion matrices: {self.plot}")
        rows.append(f"wrote {self.output}  sha256 {self.sha256[:16]}")
        return "\n".join(rows)


def _load_data(source: str, size, color, limit, usage, seed, classes=None) -> LabelledImages:
    data = load_labelled(source, usage=usage, size=size, color=color, limit=limit, seed=seed,
                         classes=classes)
    if len(data) == 0:
        raise InputError(f"no images in {source}")
    # Unlabelled faces (an .npz without labels) calibrate fine; scoring refuses them later.
    return remap_labels(data, classes) if classes and data.classes else data


def _clean_labels(val: LabelledImages, source: str, provenance: dict) -> tuple[LabelledImages, str]:
    """The validation faces to score a model on, against what it was trained towards: for a
    model trained on the FER+ votes (`edge-fer train --targets votes|majority`), the faces with
    a single FER+ majority, labelled with it, where the votes file sits beside the folder (its
    epoch was chosen on them; FER2013's own labels would call its agreement with the annotators
    a quantization loss); else `val` as loaded."""
    if provenance.get("targets") not in ("votes", "majority"):
        return val, "the data's own labels"
    fv, note = votes_of(val, source)
    if fv is None:
        log.info("validation scored on the data's own labels: %s", note)
        return val, "the data's own labels"
    clean = val.subset(fv.kept)
    clean.labels = fv.majority[fv.kept]
    return clean, f"the FER+ majority ({fv.votes_file}: {fv.counts.summary()})"


def float_ops(model_content: bytes) -> list[str]:
    """Names of the ops that still compute in float (sorted, unique); empty for full integer.

    A float tensor alone would do (`integer_only`), but naming the op tells the user what to
    change: the converter leaves ops it has no int8 rule for (ELU, for one) between a
    DEQUANTIZE and a QUANTIZE instead of failing.
    """
    interp = load_backend().make_interpreter(model_content)
    float_kinds = {np.dtype(np.float32), np.dtype(np.float16)}
    is_float = {t["index"] for t in interp.get_tensor_details() if np.dtype(t["dtype"]) in float_kinds}
    if not is_float:
        return []
    ops = getattr(interp, "_get_ops_details", lambda: [])()
    names = {o["op_name"] for o in ops
             if o["op_name"] != "DEQUANTIZE" and any(int(i) in is_float for i in o["outputs"])}
    return sorted(names) or ["(float tensors)"]


def integer_only(model_content: bytes) -> bool:
    """True when every op runs on integer tensors (int8/int32 activations; no float kernels)."""
    return not float_ops(model_content)


def verify(path: Path, content: bytes, reference: np.ndarray, probe: np.ndarray,
           options: ClassifierOptions, quantization: str) -> tuple[dict, dict]:
    """Load the written model in every installed backend and compare its outputs on `probe`
    with `reference` (the float model's probabilities); a ModelError when they disagree."""
    outputs = {}
    for name in available_backends():
        clf = EmotionClassifier(path, ClassifierOptions(**{**asdict(options), "backend": name}),
                                backend=BACKENDS[name]())
        outputs[name] = clf.predict_proba(list(probe))
    names = list(outputs)
    first = outputs[names[0]]
    for name in names[1:]:
        if not np.allclose(outputs[name], first, atol=1e-5):
            raise ModelError(f"backends disagree on {path}: {names[0]} vs {name} "
                             f"(max |dp| {np.max(np.abs(outputs[name] - first)):.2g})")
    diff = np.abs(first - reference)
    agreement = {
        "samples": int(len(probe)),
        "top1": float(np.mean(first.argmax(1) == reference.argmax(1))),
        "max_abs_prob_diff": float(np.max(diff)),
        "mean_abs_prob_diff": float(np.mean(diff)),
    }
    tolerance = TOLERANCES[quantization]
    result = {"backends": names, "tolerance": tolerance, "measure": "mean |p_float - p_tflite|"}
    if agreement["mean_abs_prob_diff"] > tolerance:
        raise ModelError(f"{path} does not match its float model: mean |dp| "
                         f"{agreement['mean_abs_prob_diff']:.4f} > {tolerance} on {len(probe)} faces "
                         f"(top-1 agreement {agreement['top1'] * 100:.1f} %)")
    if quantization == "int8":
        left = float_ops(content)
        result["integer_only"] = not left
        if left:
            raise ModelError(f"{path} still computes {', '.join(left)} in float after full-integer "
                             "conversion (the converter has no int8 rule for it): change that layer "
                             "(e.g. ELU to ReLU), or use --quantization dynamic")
    return agreement, result


def _latency_ms(fn, face: np.ndarray, repeat: int = 50) -> float:
    """Median batch-1 latency (after warm-up): the figure that decides whether a Pi keeps up."""
    for _ in range(3):
        fn([face])
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn([face])
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def _score_tflite(path: Path, data: LabelledImages) -> Scores:
    clf = EmotionClassifier(path, ClassifierOptions())
    return evaluate_probs(lambda x: clf.predict_proba(list(x)), data, batch=64)


def _drop(float_scores: Scores, q_scores: Scores) -> float:
    return round((float_scores.accuracy - q_scores.accuracy) * 100, 3)


class _Attempts:
    """Runs conversions, scores them on the validation faces, remembers every result."""

    def __init__(self, loaded, meta: ModelMetadata, quantization: str, val, float_scores,
                 max_drop, work: Path):
        self.loaded, self.meta, self.quantization = loaded, meta, quantization
        self.val, self.float_scores, self.max_drop, self.work = val, float_scores, max_drop, work
        self.done: list[Attempt] = []
        self.results: dict[int, tuple[bytes, Scores | None, np.ndarray | None]] = {}
        self._by_hash: dict[str, int] = {}

    def meets(self, a: Attempt) -> bool:
        return (a.error is None and (self.max_drop is None
                                     or (a.drop_points is not None and a.drop_points <= self.max_drop)))

    def record(self, attempt: Attempt, make) -> Attempt:
        """Run `make()` -> (flatbuffer, reference probabilities or None) and score it."""
        t0 = time.monotonic()
        try:
            content, reference = make()
        except ModelError as exc:
            attempt.error = str(exc)
            attempt.seconds = round(time.monotonic() - t0, 1)
            log.warning("%s", attempt.summary())
            self.done.append(attempt)
            return attempt
        attempt.convert_seconds = round(time.monotonic() - t0, 2)
        digest = hashlib.sha256(content).hexdigest()
        index = len(self.done)
        if digest in self._by_hash:
            twin = self.done[self._by_hash[digest]]
            attempt.same_as, attempt.accuracy, attempt.drop_points = twin.name, twin.accuracy, twin.drop_points
            self.results[index] = self.results[self._by_hash[digest]]
        else:
            self._by_hash[digest] = index
            scores = None
            if self.val is not None:
                cand = self.work / f"candidate-{index}.tflite"
                cand.write_bytes(embed(content, self.meta))
                scores = _score_tflite(cand, self.val)
                attempt.accuracy = round(scores.accuracy, 4)
                attempt.drop_points = _drop(self.float_scores, scores)
            self.results[index] = (content, scores, reference)
        attempt.seconds = round(time.monotonic() - t0, 1)
        log.info("%s", attempt.summary())
        self.done.append(attempt)
        return attempt

    def ptq(self, calib_images, to_input, n: int, variant: str) -> Attempt:
        calib = to_input(list(calib_images)).astype(np.float32) if calib_images is not None else None
        return self.record(Attempt("ptq", variant if self.quantization == "int8" else self.quantization, n),
                           lambda: (convert_bytes(self.loaded, self.quantization, calib, variant, self.work), None))

    def best(self) -> int | None:
        """Index of the most accurate attempt that meets `max_drop` (the first, without scores)."""
        ok = [i for i, a in enumerate(self.done) if self.meets(a)]
        if not ok:
            return None
        return max(ok, key=lambda i: (self.done[i].accuracy or 0.0, -i))


def _subset(data: LabelledImages, n: int, seed: int) -> LabelledImages:
    return data.subset(stratified_indices(data.labels, n, seed)) if n < len(data) else data


def _preprocessing(src: Path, meta: ModelMetadata, size, opts: ConvertOptions) -> dict:
    from_options = [k for k in ("labels", "normalization", "crop_margin") if getattr(opts, k) is not None]
    return {"color": meta.color, "size": [size[0], size[1]], "normalization": meta.normalization,
            "crop_margin": meta.crop_margin, "resize": "edge_fer.images.resize_to (area down, bilinear up)",
            "from": ("sidecar " + keras_sidecar(src).name if keras_sidecar(src).is_file() else "options")
                    + (f" (overridden: {', '.join(from_options)})" if from_options and keras_sidecar(src).is_file() else "")}


def _check_options(opts: ConvertOptions) -> None:
    if opts.quantization not in QUANTIZATIONS:
        raise UsageError(f"unknown quantization {opts.quantization!r}: choose {', '.join(QUANTIZATIONS)}")
    if opts.quantization == "int8" and not opts.calibration:
        raise UsageError("full-integer (int8) conversion needs --calibration with representative faces "
                         "(a folder of class subfolders, the FER2013 CSV or an .npz)")
    if opts.max_drop is not None:
        if not opts.validation:
            raise UsageError("--max-drop needs --validation: labelled faces to measure the drop on")
        if opts.max_drop < 0:
            raise UsageError(f"--max-drop must be 0 or more points (got {opts.max_drop})")
    if opts.qat_epochs < 0:
        raise UsageError("--qat-epochs must be 0 or more")
    if opts.plot and not opts.validation:
        raise UsageError("--plot needs --validation: the confusion matrices come from labelled faces")


def convert(model_path: str | os.PathLike, options: ConvertOptions) -> ConvertReport:
    """Convert, verify and score `model_path`; return the report (and write it where asked).

    With `max_drop` and int8, conversions are tried in order until one loses at most that many
    points on the validation faces: the default calibration, `MORE_SAMPLES` times the samples,
    the converter's per-tensor variants, then QAT fine-tuning; the best that meets it is kept.
    """
    t_start = time.monotonic()
    opts = options
    _check_options(opts)
    src = Path(model_path)
    out = Path(opts.output) if opts.output else src.with_suffix(".tflite")
    if out.resolve() == src.resolve():
        raise UsageError(f"the output {out} would overwrite the input model")
    tf = tensorflow_module()

    loaded = load_keras_model(src, opts.arch)
    shape = image_input_shape(loaded.model, src)
    meta = model_metadata(src, labels=opts.labels, normalization=opts.normalization,
                          crop_margin=opts.crop_margin, input_channels=shape[2])
    float_clf = KerasClassifier(loaded, meta)
    size = float_clf.input_size
    search = opts.max_drop is not None and opts.quantization == "int8"

    pool = None
    if opts.calibration:
        want = opts.samples * (MORE_SAMPLES if search else 1)
        pool = _load_data(opts.calibration, size, meta.color, want, opts.usage, opts.seed,
                          classes=meta.labels)
    adjusted = None
    if opts.logit_adjust:
        adjusted = adjust_logits(loaded.model, meta.labels, opts.logit_adjust, meta.provenance,
                                 pool.labels if pool is not None and pool.classes else None)
    val = None
    val_labels = None
    float_scores = None
    if opts.validation:
        val = _load_data(opts.validation, size, meta.color, opts.validation_limit,
                         opts.validation_usage or opts.usage, opts.seed, classes=meta.labels)
        if not val.classes:
            raise InputError(f"the validation data {opts.validation} has no labels: give labelled faces")
        val, val_labels = _clean_labels(val, opts.validation, meta.provenance)
        log.info("validation faces scored against %s", val_labels)
        float_scores = evaluate_probs(float_clf.predict_proba, val, batch=128)
    prep = _preprocessing(src, meta, size, opts)
    # The output's metadata while scoring candidates: preprocessing as the runtime will apply it.
    base_meta = ModelMetadata(labels=meta.labels, color=meta.color, normalization=meta.normalization,
                              crop_margin=meta.crop_margin, input_size=[size[0], size[1]],
                              provenance=dict(meta.provenance))
    probe = (val.images if val is not None else pool.images if pool is not None else
             np.full((8, size[1], size[0]) + ((3,) if meta.color == "rgb" else ()), 128, np.uint8))[:64]

    log.info("converting %s (%s) with %s quantization", src, loaded.flavor, opts.quantization)
    qat_info = None
    with tempfile.TemporaryDirectory(prefix="edge-fer-convert-") as tmp:
        work = Path(tmp)
        runs = _Attempts(loaded, base_meta, opts.quantization, val, float_scores, opts.max_drop, work)
        calib = _subset(pool, opts.samples, opts.seed) if pool is not None else None
        first = runs.ptq(calib.images if calib is not None else None, float_clf.to_input,
                         len(calib) if calib is not None else 0, "per-channel")
        if first.error and not search:
            raise ModelError(first.error)
        if search and runs.best() is None and len(pool) > len(calib):
            runs.ptq(pool.images, float_clf.to_input, len(pool), "per-channel")
        if search and runs.best() is None:
            scored = [a for a in runs.done if a.accuracy is not None] or runs.done
            n = max(scored, key=lambda a: a.accuracy or 0.0).calibration_samples
            chosen = pool if n == len(pool) else calib
            for variant in ("per-tensor", "per-tensor-dense"):
                runs.ptq(chosen.images, float_clf.to_input, len(chosen), variant)
        if search and runs.best() is None and opts.qat_epochs > 0:
            shift = adjusted.shift(meta.labels).tolist() if adjusted is not None else None
            qat_info = _qat_attempt(runs, src, opts, meta, size, pool, probe, shift)
        winner = runs.best()
        if winner is None:
            where = f"{len(val)} validation faces, float accuracy {float_scores.accuracy * 100:.2f} %"
            raise ModelError(f"no conversion of {src.name} stays within --max-drop {opts.max_drop:g} "
                             f"points ({where}): " + "; ".join(a.summary() for a in runs.done)
                             + ("; QAT not tried (--qat-epochs 0)" if search and not opts.qat_epochs else ""))
        chosen_attempt = runs.done[winner]
        content, q_scores, reference = runs.results[winner]

    provenance = dict(meta.provenance)
    provenance.update({
        "converted_from": src.name, "loaded_with": loaded.flavor, "quantization": opts.quantization,
        "method": chosen_attempt.name, "calibration_samples": chosen_attempt.calibration_samples,
        "calibration_data": str(opts.calibration) if opts.calibration else None,
        "calibration_usage": opts.usage, "preprocessing": prep, "max_drop": opts.max_drop,
        "attempts": [a.summary() for a in runs.done], "tensorflow": tf.__version__})
    if adjusted is not None:
        provenance["logit_adjustment"] = adjusted.to_dict()
    if qat_info and chosen_attempt.method == "qat":
        provenance["qat"] = {k: qat_info[k] for k in ("epochs", "samples", "data", "plan")}
    final_meta = ModelMetadata(labels=meta.labels, color=meta.color, normalization=meta.normalization,
                               crop_margin=meta.crop_margin, input_size=[size[0], size[1]],
                               provenance=provenance)
    content = embed(content, final_meta)
    write_atomically(out, content)
    try:
        if reference is None:
            reference = float_clf.predict_proba(list(probe))
        agreement, verification = verify(out, content, reference, probe, ClassifierOptions(),
                                         opts.quantization)
        verification["reference"] = "the fine-tuned QAT Keras model" if chosen_attempt.method == "qat" \
            else "the float source model"
        threads = {}
        for t in (1, 4):
            clf = EmotionClassifier(out, ClassifierOptions(num_threads=t))
            threads[str(t)] = round(_latency_ms(clf.predict_proba, probe[0]), 4)
        f_sum = ModelSummary(str(src), _size_of(src), round(_latency_ms(float_clf.predict_proba, probe[0], 20), 4))
        q_sum = ModelSummary(str(out), len(content), threads["1"], ms_per_face_threads=threads)
        drop = None
        if val is not None:
            f_sum.scores, q_sum.scores = float_scores.to_dict(), q_scores.to_dict()
            drop = _drop(float_scores, q_scores)
        report = ConvertReport(
            source=str(src), loaded_with=loaded.flavor, output=str(out), quantization=opts.quantization,
            calibration_samples=chosen_attempt.calibration_samples, float_model=f_sum, converted=q_sum,
            accuracy_drop_points=drop, agreement=agreement, verification=verification,
            sha256=hashlib.sha256(content).hexdigest(), seconds=0.0, labels=meta.labels,
            method=chosen_attempt.name, max_drop=opts.max_drop,
            attempts=[{**asdict(a), "name": a.name, "summary": a.summary()} for a in runs.done],
            qat=qat_info, preprocessing=prep,
            logit_adjustment=adjusted.to_dict() if adjusted is not None else None,
            validation_labels=val_labels)
        plot = Path(opts.plot) if opts.plot else (Path(opts.report).with_suffix(".png") if opts.report else None)
        if plot is not None and val is not None:
            png = confusion_png([("float (Keras)", f_sum.scores),
                                 (f"{opts.quantization} (TFLite, {chosen_attempt.name})", q_sum.scores)],
                                title=f"{src.name}: {len(val)} validation faces")
            write_atomically(plot, png)
            report.plot = str(plot)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    report.seconds = round(time.monotonic() - t_start, 2)
    if opts.report:
        write_atomically(Path(opts.report), json.dumps(report.to_dict(), indent=2).encode())
    return report


def _size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _qat_attempt(runs: _Attempts, src: Path, opts: ConvertOptions, meta: ModelMetadata, size,
                 pool: LabelledImages, probe: np.ndarray, logit_shift: list[float] | None) -> dict:
    """Fine-tune with QAT in a child process and score the result; returns what the report shows."""
    source = opts.qat_data or opts.calibration
    usage = opts.usage
    data = _load_data(source, size, meta.color, opts.qat_limit, usage, opts.seed, classes=meta.labels)
    if not data.classes:
        raise InputError(f"the fine-tuning data {source} has no labels: give --qat-data with labelled faces")
    best_ptq = max((a for a in runs.done if a.accuracy is not None),
                   key=lambda a: a.accuracy, default=runs.done[0])
    calib = pool if best_ptq.calibration_samples == len(pool) else _subset(pool, opts.samples, opts.seed)
    variant = best_ptq.variant
    qopts = QatOptions(epochs=opts.qat_epochs, seed=opts.seed)
    info: dict = {"data": str(source), "epochs": opts.qat_epochs, "samples": len(data)}
    meta_for_child = ModelMetadata(labels=meta.labels, color=meta.color, normalization=meta.normalization,
                                   crop_margin=meta.crop_margin)

    def make():
        outcome = run_qat(str(src), opts.arch, meta_for_child, data.images, data.labels,
                          calib.images, probe, qopts, variant, logit_shift=logit_shift)
        info.update({"plan": outcome.plan.to_dict(), "seconds": outcome.seconds,
                     "history": outcome.history, "samples": outcome.samples})
        return outcome.content, outcome.reference

    attempt = runs.record(Attempt("qat", variant, len(calib), details={"epochs": opts.qat_epochs}), make)
    if attempt.error:
        info["error"] = attempt.error
    attempt.details.update({k: info[k] for k in ("plan",) if k in info})
    return info
