"""Loading the Keras models users bring: Keras 3 `.keras`, Keras 3 or legacy Keras 2 `.h5`,
SavedModel folders, and weights-only `.h5` files with an architecture name.

Keras 3 is tried first, then tf-keras (Keras 2); which one loaded is reported, because an old
notebook's `.h5` that only tf-keras reads is worth knowing about.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_fer.errors import InputError, ModelError
from edge_fer.metadata import ModelMetadata, normalize
from edge_fer_convert.architectures import get_architecture
from edge_fer_convert.keras_env import keras_module, tensorflow_module, tf_keras_module

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: object
    """A Keras model (Keras 3 or tf-keras), or a `SignatureModel` for a plain TF SavedModel."""
    flavor: str
    """`keras3`, `tf_keras`, `keras3+arch` (weights-only file) or `saved_model` (TF graph)."""
    path: Path
    signature: str | None = None
    """The serving signature used, for `saved_model`."""


class SignatureModel:
    """A plain TF SavedModel's serving signature behind the few Keras model attributes the
    converter uses (`inputs`, `outputs`, calling it), so it is checked and scored like Keras."""

    def __init__(self, fn, path: Path, key: str):
        _, kwargs = fn.structured_input_signature
        self._fn = fn
        self._in_names = sorted(kwargs)
        self.inputs = [kwargs[n] for n in self._in_names]
        outs = fn.structured_outputs
        self._out_names = sorted(outs) if isinstance(outs, dict) else None
        self.outputs = [outs[n] for n in self._out_names] if self._out_names else list(outs)
        self.input = self.inputs[0] if len(self.inputs) == 1 else self.inputs
        self.path, self.key = path, key

    def __call__(self, x, training=False):
        import tensorflow as tf

        x = x[0] if isinstance(x, (list, tuple)) else x
        spec = self.inputs[0]
        out = self._fn(**{self._in_names[0]: tf.constant(x, dtype=spec.dtype)})
        return out[self._out_names[0]] if self._out_names else out

    def count_params(self) -> int:
        return 0


def _load_saved_model(path: Path) -> LoadedModel:
    tf = tensorflow_module()
    try:
        obj = tf.saved_model.load(str(path))
    except Exception as exc:  # noqa: BLE001 - TF raises a variety for damaged graphs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path} cannot be loaded as a SavedModel ({first})") from None
    sigs = dict(getattr(obj, "signatures", {}) or {})
    if not sigs:
        raise ModelError(f"{path} is a SavedModel without a serving signature: export it with "
                         "model.export(DIR) (Keras 3) or tf.saved_model.save(m, DIR, signatures=...)")
    key = "serving_default" if "serving_default" in sigs else (next(iter(sigs)) if len(sigs) == 1 else None)
    if key is None:
        raise ModelError(f"{path} has several signatures ({', '.join(sorted(sigs))}) and none is "
                         "'serving_default': re-export it with one serving signature")
    log.info("loaded %s as a TF SavedModel (signature %s)", path, key)
    # Keep the loaded object alive: the signature's variables belong to it.
    model = SignatureModel(sigs[key], path, key)
    model._owner = obj
    return LoadedModel(model, "saved_model", path, signature=key)


def _unknown_object(exc: Exception) -> str | None:
    """'custom layer 'X'' or 'custom function 'f' (in layer 'conv2d')' from a Keras load error."""
    text = str(exc)
    where = re.search(r"Error when deserializing class '(\w+)' using config=\{'name': '([\w.]+)'", text)
    in_layer = f" (in layer {where.group(2)!r}, a {where.group(1)})" if where else ""
    # Keras 3 and tf-keras phrase it differently; registered names look like 'package>Name'.
    for pat, kind in ((r"Could not locate class '([\w.>]+)'", "layer"),
                      (r"Unknown layer: '?([\w.>]+)'?", "layer"),
                      (r"Could not locate function '([\w.>]+)'", "function"),
                      (r"Unknown (activation|object|loss|metric)(?: function)?: '?([\w.>]+)'?", None)):
        m = re.search(pat, text)
        if not m:
            continue
        name = m.group(m.lastindex).split(">")[-1]
        if name in ("function", "builtins"):
            continue  # tf-keras names a lost Python function only by its type
        label = kind or ("function" if m.group(1) == "activation" else m.group(1))
        return f"custom {label} {name!r}{in_layer if label != 'layer' else ''}"
    return None


def _h5_kind(path: Path) -> str:
    """`model`, `weights` or raises: what an `.h5` file holds."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "model_config" in f.attrs:
                return "model"
            if "model_weights" in f or "layer_names" in f.attrs or len(f.keys()):
                return "weights"
    except OSError:
        raise InputError(f"{path} is not an HDF5 file (damaged, or not a Keras model)") from None
    raise InputError(f"{path} is an HDF5 file without a Keras model or weights in it")


def load_keras_model(path: str | os.PathLike, arch: str | None = None) -> LoadedModel:
    """Load any supported Keras model format; clear errors for what cannot load."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"model not found: {path}")
    tensorflow_module()
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise InputError(f"{path} is a folder but not a SavedModel (no saved_model.pb)")
        if (path / "keras_metadata.pb").exists():
            try:
                return LoadedModel(tf_keras_module().models.load_model(path, compile=False), "tf_keras", path)
            except Exception as exc:  # noqa: BLE001 - fall back to the graph, which may still convert
                unknown = _unknown_object(exc)
                if unknown:
                    log.warning("%s: %s is not known to tf-keras; using the SavedModel's serving "
                                "signature instead", path, unknown)
                else:
                    log.info("Keras SavedModel %s did not load as Keras (%s); using its signature", path, exc)
        return _load_saved_model(path)
    suffix = path.suffix.lower()
    if suffix not in (".h5", ".hdf5", ".keras"):
        raise InputError(f"{path}: expected a .keras or .h5 file, or a SavedModel folder")
    if suffix in (".h5", ".hdf5") and _h5_kind(path) == "weights":
        if not arch:
            raise ModelError(f"{path} holds only weights: give --arch NAME to build the model first")
        model = get_architecture(arch).build(_weights_classes(path))
        try:
            model.load_weights(path)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"the weights in {path} do not fit --arch {arch}: {str(exc).splitlines()[0]}") from None
        return LoadedModel(model, "keras3+arch", path)

    errors, unknown = [], []
    for flavor, mod in (("keras3", keras_module), ("tf_keras", tf_keras_module)):
        if suffix == ".keras" and flavor == "tf_keras":
            break
        try:
            model = mod().models.load_model(path, compile=False)
            log.info("loaded %s with %s", path, flavor)
            return LoadedModel(model, flavor, path)
        except Exception as exc:  # noqa: BLE001 - each Keras raises its own zoo of errors
            what = _unknown_object(exc)
            if what:
                unknown.append(what)
            text = str(exc).strip()
            errors.append(f"{flavor}: {text.splitlines()[0][:200] if text else type(exc).__name__}")
    if unknown:
        raise ModelError(f"{path}: {unknown[0]} is not a built-in Keras one, so the model cannot be "
                         "rebuilt here: load it in the code that defines it and save it with built-in "
                         "layers, or give the weights with a project architecture (--arch)")
    raise ModelError(f"{path} cannot be loaded by Keras 3 or tf-keras ({'; '.join(errors)})")


def _weights_classes(path: Path) -> int:
    """Number of classes from the last 2-D kernel in a weights file (for --arch builds)."""
    import h5py

    last = None
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            nonlocal last
            if isinstance(obj, h5py.Dataset) and obj.ndim == 2:
                last = obj.shape[-1]
        f.visititems(visit)
    return int(last or 7)


def keras_sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def model_metadata(path: Path, *, labels=None, normalization=None, color=None,
                   crop_margin=None, input_channels: int | None = None) -> ModelMetadata:
    """Metadata for a Keras model: its sidecar (`MODEL.keras.json`) plus options, or options alone."""
    side = keras_sidecar(path)
    if side.is_file():
        try:
            meta = ModelMetadata.from_mapping(json.loads(side.read_text()), str(side))
        except json.JSONDecodeError as exc:
            raise ModelError(f"{side}: not valid JSON ({exc})") from None
        return meta.with_overrides(labels=labels, normalization=normalization, color=color,
                                   crop_margin=crop_margin)
    if not labels or not normalization:
        raise ModelError(
            f"{path} carries no edge-fer metadata: give --labels (class names in output order) and "
            f"--normalization (unit, symmetric or raw)"
        )
    if color is None and input_channels is not None:
        color = "gray" if input_channels == 1 else "rgb"
    return ModelMetadata(labels=list(labels), color=color or "gray", normalization=normalization,
                         crop_margin=crop_margin or 0.0,
                         provenance={"source": path.name}).validate("options")


def image_input_shape(model, path: Path) -> tuple[int, int, int]:
    """(height, width, channels) of a single-input image model, or a clear error."""
    inputs = model.inputs
    if len(inputs) != 1:
        raise ModelError(f"{path}: the model has {len(inputs)} inputs; edge-fer needs one image input")
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or shape[3] not in (1, 3) or shape[1] is None or shape[2] is None:
        raise ModelError(f"{path}: the model's input {list(shape)} is not an image "
                         f"(expected [batch, height, width, 1 or 3])")
    outputs = model.outputs
    if len(outputs) != 1:
        raise ModelError(f"{path}: the model has {len(outputs)} outputs; edge-fer needs one "
                         f"(the class scores)")
    if len(outputs[0].shape) != 2:
        raise ModelError(f"{path}: the output {list(outputs[0].shape)} is not [batch, classes]")
    return int(shape[1]), int(shape[2]), int(shape[3])


class KerasClassifier:
    """A float Keras model behind the same interface as the TFLite classifier, for comparisons."""

    def __init__(self, loaded: LoadedModel, metadata: ModelMetadata):
        self.loaded = loaded
        self.model = loaded.model
        self.metadata = metadata
        h, w, c = image_input_shape(self.model, loaded.path)
        self.input_size = (w, h)
        self.color = "gray" if c == 1 else "rgb"
        n_out = int(self.model.outputs[0].shape[-1])
        if n_out != len(metadata.labels):
            raise ModelError(f"{loaded.path}: the model has {n_out} outputs but {len(metadata.labels)} "
                             f"labels are given ({', '.join(metadata.labels)})")
        if metadata.color != self.color:
            raise ModelError(f"{loaded.path}: metadata says {metadata.color} but the model takes {c} channel(s)")

    @classmethod
    def load(cls, path, *, labels=None, normalization=None, arch=None, crop_margin=None) -> "KerasClassifier":
        loaded = load_keras_model(path, arch)
        _, _, c = image_input_shape(loaded.model, loaded.path)
        meta = model_metadata(loaded.path, labels=labels, normalization=normalization,
                              crop_margin=crop_margin, input_channels=c)
        return cls(loaded, meta)

    @property
    def labels(self) -> list[str]:
        return self.metadata.labels

    @property
    def crop_margin(self) -> float:
        return float(self.metadata.crop_margin)

    def to_input(self, faces) -> np.ndarray:
        x = normalize(np.stack([np.asarray(f) for f in faces]), self.metadata.normalization)
        return x[..., None] if x.ndim == 3 else x

    def predict_proba(self, faces) -> np.ndarray:
        x = self.to_input(faces)
        # Legacy functional models declare their input as a one-element list; match it, or Keras 3
        # warns on every call.
        x = [x] if isinstance(self.model.input, (list, tuple)) else x
        out = np.asarray(self.model(x, training=False), dtype=np.float32)
        if np.any(out < -1e-3) or not np.allclose(out.sum(axis=1), 1.0, atol=0.05):
            z = out - out.max(axis=1, keepdims=True)
            out = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return out
