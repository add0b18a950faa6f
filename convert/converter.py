"""Keras -> TFLite conversion: full-INT8 calibrated on representative faces, verified, reported.

The float model and the converted one are scored on the same validation faces with the same
preprocessing, so the reported accuracy cost of quantization is the real one. The output file is
written to a temporary name and renamed only when complete, so a failed conversion or a full disk
never leaves a half-written model behind.
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

from edge_fer.classifier import ClassifierOptions, EmotionClassifier
from edge_fer.datasets import LabelledImages, load_labelled, remap_labels
from edge_fer.errors import EdgeFerError, InputError, ModelError, UsageError
from edge_fer.evaluate import Scores, evaluate_probs
from edge_fer.metadata import ModelMetadata, embed
from edge_fer_convert.keras_env import tensorflow_module
from edge_fer_convert.loader import KerasClassifier, image_input_shape, load_keras_model, model_metadata

log = logging.getLogger(__name__)

QUANTIZATIONS = ("int8", "dynamic", "float16", "none")


@dataclass
class ConvertOptions:
    """What `edge-fer convert` does."""

    output: str | None = None
    """Output `.tflite`; default: the model's name with `.tflite`."""
    quantization: str = "int8"
    """`int8` (full integer, int8 in and out), `dynamic` (int8 weights), `float16`, `none`."""
    calibration: str | None = None
    """Representative faces (folder of class subfolders or FER2013 CSV); needed for int8."""
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
    """With CSV data: the split (Training, PublicTest, PrivateTest)."""
    report: str | None = None
    """Write the report as JSON here."""
    seed: int = 0


@dataclass
class ModelSummary:
    path: str
    size_bytes: int
    ms_per_face: float
    scores: dict | None = None


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

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        f, q = self.float_model, self.converted
        rows = [f"{'':<18}{'float (Keras)':>16}{self.quantization + ' (TFLite)':>18}"]
        if f.scores and q.scores:
            rows.append(f"{'accuracy %':<18}{f.scores['accuracy'] * 100:>16.2f}{q.scores['accuracy'] * 100:>18.2f}")
            rows.append(f"{'macro recall':<18}{f.scores['macro_recall']:>16.4f}{q.scores['macro_recall']:>18.4f}")
        rows.append(f"{'size KiB':<18}{f.size_bytes / 1024:>16.1f}{q.size_bytes / 1024:>18.1f}")
        rows.append(f"{'ms / face':<18}{f.ms_per_face:>16.3f}{q.ms_per_face:>18.3f}")
        if self.accuracy_drop_points is not None:
            rows.append(f"accuracy change: {-self.accuracy_drop_points:+.2f} points "
                        f"(on {q.scores['count']} validation faces)")
        rows.append(f"top-1 agreement with float: {self.agreement['top1'] * 100:.2f} %   "
                    f"max |dp|: {self.agreement['max_abs_prob_diff']:.4f}")
        rows.append(f"verified with: {', '.join(self.verification['backends'])}; "
                    f"all-integer ops: {self.verification.get('integer_only')}")
        rows.append(f"wrote {self.output}  sha256 {self.sha256[:16]}")
        return "\n".join(rows)


def _load_data(source: str, size, color, limit, usage, seed, classes=None) -> LabelledImages:
    data = load_labelled(source, usage=usage, size=size, color=color, limit=limit, seed=seed)
    return remap_labels(data, classes) if classes else data


def _converter_for(tf, loaded, workdir: Path):
    """A TFLiteConverter for any loaded flavor, keeping the batch dimension dynamic."""
    if loaded.model is None:
        return tf.lite.TFLiteConverter.from_saved_model(str(loaded.path))
    if loaded.flavor == "tf_keras":
        return tf.lite.TFLiteConverter.from_keras_model(loaded.model)
    # Keras 3 models: a concrete function over the live model keeps resource variables that the
    # converter cannot freeze (READ_VARIABLE at run time); Keras' own export freezes them.
    saved = workdir / "saved_model"
    loaded.model.export(str(saved), format="tf_saved_model", verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(str(saved))


def _configure(tf, conv, quantization: str, calib: np.ndarray | None):
    if quantization == "none":
        return
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        conv.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        def representative():
            for i in range(len(calib)):
                yield [calib[i:i + 1]]

        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file; nothing is left behind on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def integer_only(model_content: bytes) -> bool:
    """True when every op runs on integer tensors (int8/int32 activations; no float kernels)."""
    from edge_fer.backends import load_backend

    interp = load_backend().make_interpreter(model_content)
    float_kinds = {np.dtype(np.float32), np.dtype(np.float16)}
    return not any(np.dtype(t["dtype"]) in float_kinds for t in interp.get_tensor_details())


def verify(path: Path, content: bytes, float_clf: KerasClassifier, probe: np.ndarray,
           options: ClassifierOptions, quantization: str) -> tuple[dict, dict]:
    """Load the written model in every installed backend; compare outputs with the float model."""
    from edge_fer.backends import BACKENDS, available_backends

    ref = float_clf.predict_proba(list(probe))
    outputs = {}
    for name in available_backends():
        clf = EmotionClassifier(path, ClassifierOptions(**{**asdict(options), "backend": name}),
                                backend=BACKENDS[name]())
        outputs[name] = clf.predict_proba(list(probe))
    names = list(outputs)
    first = outputs[names[0]]
    for name in names[1:]:
        if not np.allclose(outputs[name], first, atol=1e-5):
            raise ModelError(f"backends disagree on {path}: {names[0]} vs {name}")
    agreement = {
        "samples": int(len(probe)),
        "top1": float(np.mean(first.argmax(1) == ref.argmax(1))),
        "max_abs_prob_diff": float(np.max(np.abs(first - ref))),
        "mean_abs_prob_diff": float(np.mean(np.abs(first - ref))),
    }
    result = {"backends": names}
    if quantization == "int8":
        result["integer_only"] = integer_only(content)
    return agreement, result


def _latency_ms(fn, face: np.ndarray, repeat: int = 50) -> float:
    fn([face])
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn([face])
    return (time.perf_counter() - t0) / repeat * 1000


def convert(model_path: str | os.PathLike, options: ConvertOptions) -> ConvertReport:
    """Convert, verify and score `model_path`; return the report (and write it where asked)."""
    t_start = time.monotonic()
    opts = options
    if opts.quantization not in QUANTIZATIONS:
        raise UsageError(f"unknown quantization {opts.quantization!r}: choose {', '.join(QUANTIZATIONS)}")
    if opts.quantization == "int8" and not opts.calibration:
        raise UsageError("full-integer (int8) conversion needs --calibration DIR with representative faces")
    src = Path(model_path)
    out = Path(opts.output) if opts.output else src.with_suffix(".tflite")
    if out.resolve() == src.resolve():
        raise UsageError(f"the output {out} would overwrite the input model")
    tf = tensorflow_module()

    loaded = load_keras_model(src, opts.arch)
    if loaded.model is None:
        raise ModelError(f"{src}: plain TF SavedModels without Keras metadata are not supported yet: "
                         "save the Keras model as .keras or .h5")
    shape = image_input_shape(loaded.model, src)
    meta = model_metadata(src, labels=opts.labels, normalization=opts.normalization,
                          crop_margin=opts.crop_margin, input_channels=shape[2])
    float_clf = KerasClassifier(loaded, meta)
    size = float_clf.input_size

    calib = None
    cal = None
    n_calib = 0
    if opts.calibration:
        cal = _load_data(opts.calibration, size, meta.color, opts.samples, opts.usage, opts.seed)
        if len(cal) == 0:
            raise InputError(f"no calibration images in {opts.calibration}")
        calib = float_clf.to_input(list(cal.images)).astype(np.float32)
        n_calib = len(cal)
    val = None
    if opts.validation:
        val = _load_data(opts.validation, size, meta.color, opts.validation_limit, opts.usage,
                         opts.seed, classes=meta.labels)

    log.info("converting %s (%s) with %s quantization", src, loaded.flavor, opts.quantization)
    with tempfile.TemporaryDirectory(prefix="edge-fer-convert-") as work:
        try:
            conv = _converter_for(tf, loaded, Path(work))
            _configure(tf, conv, opts.quantization, calib)
            content = conv.convert()
        except Exception as exc:  # noqa: BLE001 - the converter raises many kinds; all mean the same here
            msg = str(exc).strip().splitlines()
            raise ModelError(f"the TFLite converter failed on {src}: "
                             f"{msg[0] if msg else type(exc).__name__}") from None

    provenance = dict(meta.provenance)
    provenance.update({"converted_from": src.name, "loaded_with": loaded.flavor,
                       "quantization": opts.quantization, "calibration_samples": n_calib,
                       "calibration_data": str(opts.calibration) if opts.calibration else None,
                       "tensorflow": tf.__version__})
    final_meta = ModelMetadata(labels=meta.labels, color=meta.color, normalization=meta.normalization,
                               crop_margin=meta.crop_margin, input_size=[size[0], size[1]],
                               provenance=provenance)
    content = embed(content, final_meta)
    write_atomically(out, content)
    try:
        clf_opts = ClassifierOptions()
        if val is not None:
            probe = val.images[:64]
        elif cal is not None:
            probe = cal.images[:64]
        else:
            probe = np.full((8, size[1], size[0]) + ((3,) if meta.color == "rgb" else ()), 128, np.uint8)
        agreement, verification = verify(out, content, float_clf, probe, clf_opts, opts.quantization)
        q_clf = EmotionClassifier(out, ClassifierOptions(num_threads=1))
        f_sum = ModelSummary(str(src), src.stat().st_size if src.is_file() else 0,
                             _latency_ms(float_clf.predict_proba, probe[0]))
        q_sum = ModelSummary(str(out), len(content), _latency_ms(q_clf.predict_proba, probe[0]))
        drop = None
        if val is not None:
            f_scores = evaluate_probs(float_clf.predict_proba, val, batch=128)
            q_scores = evaluate_probs(q_clf.predict_proba, val, batch=64)
            f_sum.scores, q_sum.scores = f_scores.to_dict(), q_scores.to_dict()
            drop = round((f_scores.accuracy - q_scores.accuracy) * 100, 3)
    except EdgeFerError:
        out.unlink(missing_ok=True)
        raise
    report = ConvertReport(
        source=str(src), loaded_with=loaded.flavor, output=str(out), quantization=opts.quantization,
        calibration_samples=n_calib, float_model=f_sum, converted=q_sum, accuracy_drop_points=drop,
        agreement=agreement, verification=verification,
        sha256=hashlib.sha256(content).hexdigest(), seconds=round(time.monotonic() - t_start, 2),
        labels=meta.labels)
    if opts.report:
        write_atomically(Path(opts.report), json.dumps(report.to_dict(), indent=2).encode())
    return report
