"""Quantization-aware fine-tuning (QAT) with tensorflow-model-optimization (tfmot).

tfmot 0.8 works on tf-keras (Keras 2) models only. A model that loaded with Keras 3 is rebuilt
in tf-keras first: from its `.h5` where tf-keras reads it, else by translating its functional
config (built-in layers only). Fine-tuning runs in a child process (`run_qat`), whose
environment selects tf-keras and turns oneDNN off (see `QAT_ENV`).

Two things make `quantize_model` fail on real models, and both are handled here rather than
passed on as a crash:

* Name clashes. tfmot splits each SeparableConv2D into new DepthwiseConv2D + Conv2D layers with
  automatic names (`conv2d_1`, ...). Legacy `.h5` files already use those names (the shared
  mini-Xception has `conv2d_1`..`conv2d_7`), and tfmot's graph rewrite connects layers by name,
  so the rebuilt model wires the wrong tensors together: "Inputs have incompatible shapes.
  Received shapes (31, 31, 8) and (30, 30, 16)". The model is cloned with prefixed layer names
  before it is annotated.
* Layers tfmot cannot wrap. Every layer is annotated (`quantize_annotate_layer`), as
  `quantize_model` does, so tfmot's own transforms apply; a layer that `quantize_apply` reports
  as unsupported is left unannotated and the model annotated again. Should the graph rewrite
  still fail, the separable convs are left unannotated too. Layers left out stay float in the
  QAT model and the TFLite converter calibrates them from the representative faces, so the
  written model is full INT8 all the same; the plan lists them with the reason.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_fer.errors import EdgeFerError, ModelError
from edge_fer.metadata import ModelMetadata
from edge_fer_convert.keras_env import INSTALL_HINT, tf_keras_module
from edge_fer_convert.loader import KerasClassifier, LoadedModel, load_keras_model
from edge_fer_convert.logit_adjust import shift_logits
from edge_fer_convert.tflite_export import convert_bytes

log = logging.getLogger(__name__)

#: Prefix given to every layer of the model before annotation (see the module docstring).
NAME_PREFIX = "src_"
#: Layers that tfmot replaces by new layers during `quantize_apply` rather than wrapping.
REWRITTEN_LAYERS = ("SeparableConv1D", "SeparableConv2D")


@dataclass
class QatOptions:
    """How quantization-aware fine-tuning runs."""

    epochs: int = 1
    """Passes over the fine-tuning data."""
    batch_size: int = 64
    """Images per step."""
    learning_rate: float = 1e-4
    """Adam learning rate: small, the weights are already trained."""
    seed: int = 0
    """Shuffling and initialisation seed."""
    rename: bool = True
    """Prefix layer names before annotation (avoids tfmot's name clashes; off only for tests)."""


@dataclass
class QatPlan:
    """Which layers QAT quantizes and which it leaves float, and why."""

    quantized: list[str] = field(default_factory=list)
    """Source layer names wrapped with fake quantization."""
    unquantized: dict[str, str] = field(default_factory=dict)
    """Source layer name -> why it was left float."""
    renamed: bool = False
    """Whether layers were renamed to avoid tfmot's name clashes."""
    fallback: str | None = None
    """The `quantize_apply` error that made the plan leave rewritten layers out, if any."""

    def to_dict(self) -> dict:
        return {"quantized_layers": len(self.quantized), "unquantized": self.unquantized,
                "renamed": self.renamed, "fallback_after": self.fallback}


@dataclass
class QatResult:
    model: object
    """The fine-tuned tf-keras QAT model (fake-quant ops in place), ready for the converter."""
    plan: QatPlan
    epochs: int
    samples: int
    seconds: float
    history: dict = field(default_factory=dict)
    """Per-epoch loss and accuracy on the fine-tuning data."""


def tfmot_module():
    if not _legacy_wanted:
        # Resolve `tf.keras` (a lazy module) to Keras 3 before tfmot's import sets
        # TF_USE_LEGACY_KERAS, which would otherwise make it tf-keras for the whole process.
        import tensorflow as tf

        getattr(tf.keras, "__version__", None)
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError as exc:
        raise ModelError(f"tensorflow-model-optimization is not installed ({exc}): {INSTALL_HINT}") from None
    finally:
        # tfmot sets TF_USE_LEGACY_KERAS=1 for the whole process as an import side effect; keep
        # Keras 3 what `tf.keras` means for everything else (and for child processes).
        if os.environ.get("TF_USE_LEGACY_KERAS") == "1" and not _legacy_wanted:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
    return tfmot


_legacy_wanted = os.environ.get("TF_USE_LEGACY_KERAS") == "1"


# -- Keras 3 -> tf-keras ------------------------------------------------------------------------

def _plain(obj):
    """A Keras 3 serialized object as tf-keras expects it: no module/registered_name, plain dtypes."""
    if isinstance(obj, dict):
        if "class_name" in obj and "config" in obj and ("module" in obj or "registered_name" in obj):
            if obj["class_name"] in ("DTypePolicy", "FloatDTypePolicy"):
                return obj["config"]["name"]
            return {"class_name": obj["class_name"], "config": _plain(obj["config"])}
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def _accepted(cls) -> set[str]:
    """Constructor keywords a tf-keras layer class takes, its own and the base Layer's."""
    names = set()
    for klass in cls.__mro__:
        if klass.__name__ in ("Layer", "Module", "AutoTrackable", "Trackable", "object"):
            break
        params = inspect.signature(klass.__init__).parameters
        names |= {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    # Base Layer keywords every layer accepts.
    return names | {"name", "trainable", "dtype", "dynamic", "input_dim", "input_shape",
                    "batch_input_shape", "batch_size", "weights", "activity_regularizer", "autocast"}


def _refs(args) -> list:
    out = []
    if isinstance(args, dict) and args.get("class_name") == "__keras_tensor__":
        out.append(list(args["config"]["keras_history"]) + [{}])
    elif isinstance(args, (list, tuple)):
        for a in args:
            out.extend(_refs(a))
    return out


def keras3_to_tf_keras(model):
    """Rebuild a Keras 3 functional model of built-in layers in tf-keras, with its weights."""
    tfk = tf_keras_module()
    cfg = model.get_config()
    if "layers" not in cfg:
        raise ModelError(f"{model.name} is not a functional model; QAT needs one")
    layers = []
    for entry in cfg["layers"]:
        cls_name = entry["class_name"]
        conf = _plain(dict(entry["config"]))
        if cls_name == "InputLayer":
            conf["batch_input_shape"] = conf.pop("batch_shape", conf.pop("batch_input_shape", None))
            conf.pop("optional", None)
        cls = getattr(tfk.layers, cls_name, None)
        if cls is None:
            raise ModelError(f"layer {entry['name']!r} ({cls_name}) has no tf-keras equivalent")
        accepted = _accepted(cls)
        dropped = sorted(k for k in conf if k not in accepted or k.endswith("_initializer"))
        for k in dropped:
            # Initializers do not matter (weights are copied); other Keras 3-only keys are off
            # by default (lora_rank, quantization_config...).
            conf.pop(k)
        if dropped:
            log.debug("%s: dropped Keras 3-only config %s", entry["name"], dropped)
        nodes = []
        for node in entry.get("inbound_nodes", []):
            refs = _refs(node.get("args", []))
            kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if v is not None}
            if refs and kwargs:
                refs[0][3] = _plain(kwargs)
            nodes.append(refs)
        layers.append({"class_name": cls_name, "config": conf, "name": entry["name"],
                       "inbound_nodes": nodes})

    def io(spec):
        spec = spec if spec and isinstance(spec[0], list) else [spec]
        return [list(s) for s in spec]

    tk_cfg = {"name": cfg.get("name", "model"), "layers": layers,
              "input_layers": io(cfg["input_layers"]), "output_layers": io(cfg["output_layers"])}
    try:
        rebuilt = tfk.Model.from_config(tk_cfg)
        for layer in model.layers:
            weights = layer.get_weights()
            if weights:
                rebuilt.get_layer(layer.name).set_weights(weights)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - tf-keras refuses configs in many ways
        raise ModelError(f"tf-keras cannot rebuild {model.name}: {str(exc).splitlines()[0][:200]}") from None
    return rebuilt


def tf_keras_model(loaded):
    """The loaded model as a tf-keras model (what tfmot needs)."""
    tfk = tf_keras_module()
    if loaded.flavor == "tf_keras":
        return loaded.model
    if loaded.flavor == "saved_model":
        raise ModelError("QAT needs a Keras model; a plain TF SavedModel has only its graph")
    path = Path(loaded.path)
    if loaded.flavor == "keras3" and path.suffix.lower() in (".h5", ".hdf5"):
        try:
            return tfk.models.load_model(path, compile=False)
        except Exception as exc:  # noqa: BLE001 - Keras 3 .h5 files are not tf-keras ones
            log.info("tf-keras cannot read %s (%s); translating the Keras 3 model", path, exc)
    return keras3_to_tf_keras(loaded.model)


# -- annotation ---------------------------------------------------------------------------------

def _renamed(tfk, model, prefix: str):
    def clone(layer):
        conf = layer.get_config()
        conf["name"] = prefix + layer.name
        return layer.__class__.from_config(conf)

    clone_model = tfk.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            clone_model.get_layer(prefix + layer.name).set_weights(weights)
    return clone_model


def _annotated(tfk, tfmot, model, skip: dict[str, str], prefix: str):
    def annotate(layer):
        source = layer.name[len(prefix):] if prefix and layer.name.startswith(prefix) else layer.name
        if source in skip or layer.__class__.__name__ == "InputLayer":
            return layer
        return tfmot.quantization.keras.quantize_annotate_layer(layer)

    # Layers are returned as they are (not copied), so annotation keeps the weights.
    return tfk.models.clone_model(model, clone_function=annotate)


_UNSUPPORTED = re.compile(r"Layer (\S+?):<class '(?:[\w.]*\.)?(\w+)'> is not supported")


def quantize_plan(model, rename: bool = True):
    """(QAT model, plan): tfmot fake-quant on every layer it can take, the rest left float.

    Every layer is annotated, as `quantize_model` does, so tfmot's own transforms (Conv+BN,
    SeparableConv splitting) apply; a layer `quantize_apply` reports as unsupported is left
    unannotated and the model is annotated again, as is each separable conv when tfmot's rewrite
    of them breaks the graph.
    """
    tfk = tf_keras_module()
    tfmot = tfmot_module()
    prefix = NAME_PREFIX if rename else ""
    base = _renamed(tfk, model, prefix) if rename else model
    skip: dict[str, str] = {}
    plan = QatPlan(renamed=rename)
    errors = []
    for _ in range(len(model.layers) + 2):
        try:
            qat = tfmot.quantization.keras.quantize_apply(_annotated(tfk, tfmot, base, skip, prefix))
            break
        except Exception as exc:  # noqa: BLE001 - tfmot's graph rewrite fails in assorted ways
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            errors.append(first)
            m = _UNSUPPORTED.search(text)
            if m:
                name = m.group(1)[len(prefix):] if prefix and m.group(1).startswith(prefix) else m.group(1)
                if name not in skip and name in {la.name for la in model.layers}:
                    skip[name] = (f"tfmot has no 8-bit quantize config for {m.group(2)}"
                                  + (" (it folds one only into the conv before it)"
                                     if m.group(2) == "BatchNormalization" else ""))
                    continue
            rewritten = [la.name for la in model.layers
                         if la.__class__.__name__ in REWRITTEN_LAYERS and la.name not in skip]
            if rewritten and plan.fallback is None:
                log.warning("quantize_apply failed (%s); leaving %d separable conv layer(s) float",
                            first, len(rewritten))
                for name in rewritten:
                    skip[name] = f"tfmot's SeparableConv2D rewrite broke the graph ({first})"
                plan.fallback = first
                continue
            raise ModelError(f"tfmot cannot make {model.name} quantization-aware: "
                             f"{'; then: '.join(errors)}") from None
    else:
        raise ModelError(f"tfmot cannot make {model.name} quantization-aware: {errors[-1]}")
    plan.unquantized = skip
    plan.quantized = [la.name for la in model.layers
                      if la.name not in skip and la.__class__.__name__ != "InputLayer"]
    log.info("QAT: %d layers quantized, %d left float", len(plan.quantized), len(plan.unquantized))
    return qat, plan


def _outputs_probabilities(model, x: np.ndarray) -> bool:
    out = np.asarray(model(x[:8], training=False))
    return bool(np.all(out >= -1e-3) and np.allclose(out.sum(axis=1), 1.0, atol=0.05))


def fine_tune(model, x: np.ndarray, y: np.ndarray, n_classes: int, options: QatOptions) -> QatResult:
    """Make `model` (tf-keras) quantization-aware and fine-tune it on normalized inputs `x`."""
    tfk = tf_keras_module()
    qat, plan = quantize_plan(model, rename=options.rename)
    tfk.utils.set_random_seed(options.seed)
    probs = _outputs_probabilities(model, x)
    qat.compile(optimizer=tfk.optimizers.Adam(options.learning_rate),
                loss=tfk.losses.CategoricalCrossentropy(from_logits=not probs),
                metrics=["accuracy"])
    onehot = np.eye(n_classes, dtype=np.float32)[y]
    t0 = time.monotonic()
    hist = qat.fit(x, onehot, batch_size=options.batch_size, epochs=options.epochs, shuffle=True,
                   verbose=0)
    seconds = time.monotonic() - t0
    history = {k: [round(float(v), 4) for v in vals] for k, vals in hist.history.items()}
    log.info("QAT: %d epoch(s) on %d images in %.0f s: %s", options.epochs, len(x), seconds, history)
    return QatResult(qat, plan, options.epochs, int(len(x)), round(seconds, 1), history)


# -- running QAT in its own process -------------------------------------------------------------

#: Environment of the QAT process. tf-keras for tfmot; oneDNN off because its strided 1x1
#: convolution gradient corrupts memory when a layer has fewer input channels than its block
#: (mini-Xception's first shortcut conv has 8): training aborts with "corrupted size vs.
#: prev_size" or a segfault. Inference is unaffected, so only this process turns it off.
QAT_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}


@dataclass
class QatOutcome:
    """What the QAT process hands back."""

    content: bytes
    """The full-INT8 TFLite flatbuffer converted from the fine-tuned QAT model."""
    reference: np.ndarray
    """The QAT Keras model's probabilities on the probe faces (what the TFLite should match)."""
    plan: QatPlan
    epochs: int
    samples: int
    seconds: float
    history: dict


def run_qat(model_path: str, arch: str | None, metadata, train_images: np.ndarray,
            train_labels: np.ndarray, calib_images: np.ndarray, probe_images: np.ndarray,
            options: QatOptions, variant: str = "per-channel",
            logit_shift: list[float] | None = None) -> QatOutcome:
    """Fine-tune `model_path` with QAT and convert it to full INT8, in a child process;
    `logit_shift` is added to its logits first (`edge-fer convert --logit-adjust`)."""
    with tempfile.TemporaryDirectory(prefix="edge-fer-qat-") as tmp:
        work = Path(tmp)
        job = {"model": str(model_path), "arch": arch, "metadata": json.loads(metadata.to_json()),
               "options": options.__dict__, "variant": variant,
               "logit_shift": logit_shift}
        (work / "job.json").write_text(json.dumps(job))
        np.savez(work / "data.npz", train_images=train_images, train_labels=train_labels,
                 calib_images=calib_images, probe_images=probe_images)
        # The child's temporary files (TensorFlow's autograph modules, its SavedModels) go under
        # `work`, so they go with it even when the child is killed and cannot clean up itself.
        (work / "tmp").mkdir()
        env = {**os.environ, **QAT_ENV, "TMPDIR": str(work / "tmp")}
        log.info("QAT: fine-tuning %s for %d epoch(s) on %d images in a child process",
                 model_path, options.epochs, len(train_images))
        proc = subprocess.run([sys.executable, "-m", "edge_fer_convert.qat", str(work)], env=env,
                              capture_output=True, text=True)
        for line in proc.stderr.splitlines()[-40:]:
            log.debug("qat: %s", line)
        result_path = work / "result.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
        if proc.returncode != 0 or "error" in result:
            if result.get("error"):
                raise ModelError(result["error"])
            how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
            tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
            raise ModelError(f"the QAT process died ({how}): {tail[0][:200]}")
        plan = QatPlan(**result["plan"])
        return QatOutcome((work / "model.tflite").read_bytes(), np.load(work / "reference.npy"), plan,
                          result["epochs"], result["samples"], result["seconds"], result["history"])


def _child(work: Path) -> None:
    job = json.loads((work / "job.json").read_text())
    meta = ModelMetadata.from_mapping(job["metadata"])
    loaded = load_keras_model(job["model"], job["arch"])
    model = tf_keras_model(loaded)
    if job.get("logit_shift"):
        # On the tf-keras model: for a Keras 3 .h5 that is a fresh load of the file.
        shift_logits(model, job["logit_shift"])
    prep = KerasClassifier(LoadedModel(model, "tf_keras", loaded.path), meta)
    with np.load(work / "data.npz") as data:
        x = prep.to_input(list(data["train_images"]))
        y = data["train_labels"]
        calib = prep.to_input(list(data["calib_images"]))
        probe = data["probe_images"]
    result = fine_tune(model, x, y, len(meta.labels), QatOptions(**job["options"]))
    tuned = KerasClassifier(LoadedModel(result.model, "tf_keras", loaded.path), meta)
    np.save(work / "reference.npy", tuned.predict_proba(list(probe)))
    content = convert_bytes(LoadedModel(result.model, "tf_keras", loaded.path), "int8", calib,
                            job["variant"], work)
    (work / "model.tflite").write_bytes(content)
    (work / "result.json").write_text(json.dumps({
        "plan": result.plan.__dict__, "epochs": result.epochs, "samples": result.samples,
        "seconds": result.seconds, "history": result.history}))


def main(argv: list[str] | None = None) -> int:
    """`python -m edge_fer_convert.qat WORKDIR`: the QAT child process (see `run_qat`)."""
    argv = sys.argv[1:] if argv is None else argv
    work = Path(argv[0])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        _child(work)
    except EdgeFerError as exc:
        (work / "result.json").write_text(json.dumps({"error": str(exc)}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
