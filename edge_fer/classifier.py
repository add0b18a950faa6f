"""Quantized emotion classification: everything about the input is read from the model.

The interpreter is built once per classifier (never per frame). Input shape (gray or RGB, any
H x W), dtype (float32, int8, uint8) with scale and zero point, output dequantization and whether
the outputs are logits all come from the model; labels, normalization and crop margin come from
its metadata or from options.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_fer.backends import Backend, BackendInfo, load_backend
from edge_fer.errors import InputError, ModelError
from edge_fer.metadata import ModelMetadata, load_metadata, normalize, verify_checksum

log = logging.getLogger(__name__)


@dataclass
class ClassifierOptions:
    """How to load and run a classification model."""

    labels: list[str] | None = None
    """Class names in output order; overrides the model's metadata."""
    normalization: str | None = None
    """Pixel normalization (`unit`, `symmetric`, `raw`); overrides the metadata."""
    crop_margin: float | None = None
    """Face-box margin on each side as a fraction of its width; overrides the metadata."""
    num_threads: int | None = None
    """Interpreter threads; None lets the backend choose."""
    backend: str | None = None
    """`litert`, `tflite-runtime`, `tensorflow` or None/`auto` for the first that loads."""
    flip_tta: bool = False
    """Average each face with its mirror image (test-time augmentation): about twice the
    classification time for a point or so of accuracy."""


@dataclass
class InputSpec:
    """The model's image input as the interpreter reports it."""

    height: int
    width: int
    channels: int
    dtype: str
    scale: float
    zero_point: int
    batchable: bool
    """True when the batch dimension is dynamic, so several faces go through in one call."""

    @property
    def color(self) -> str:
        return "gray" if self.channels == 1 else "rgb"


@dataclass
class Prediction:
    """One face's classification."""

    label: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class EmotionClassifier:
    """A loaded `.tflite` emotion model, ready to classify face crops."""

    def __init__(self, model_path: str | os.PathLike, options: ClassifierOptions | None = None,
                 backend: Backend | None = None):
        self.options = options or ClassifierOptions()
        self.path = Path(model_path)
        if not self.path.exists():
            raise InputError(f"model not found: {self.path}")
        if self.path.is_dir() or self.path.suffix.lower() != ".tflite":
            raise ModelError(
                f"{self.path} is not a .tflite model: convert Keras models first with "
                f"'edge-fer convert {self.path}'"
            )
        content = self.path.read_bytes()
        if len(content) < 16 or content[4:8] != b"TFL3":
            raise ModelError(f"{self.path} is not a valid TFLite model (no TFL3 header): "
                             "the file is damaged or not a model")
        self.size_bytes = len(content)
        # Checked before the interpreter sees the model: damaged weights load and answer, just
        # wrongly. None for a model written without a checksum (it runs, unverified).
        self.verified_sha256: str | None = verify_checksum(self.path, content)
        self.backend = backend or load_backend(self.options.backend)
        self._interp = self.backend.make_interpreter(content, self.options.num_threads,
                                                    str(self.path))
        self.input = self._read_input()
        self._out = self._read_output()
        self.metadata = self._resolve_metadata(content)
        if self.metadata.color != self.input.color:
            raise ModelError(
                f"{self.path}: metadata says {self.metadata.color} input but the model takes "
                f"{self.input.channels} channel(s)"
            )
        n_out = int(self._out["shape"][-1])
        if n_out != len(self.metadata.labels):
            raise ModelError(
                f"{self.path}: the model has {n_out} outputs but {len(self.metadata.labels)} labels "
                f"are given ({', '.join(self.metadata.labels)})"
            )
        self._lut = self._build_lut()
        self._batch = 1
        log.info("loaded %s (%d bytes, %s input %dx%dx%d, %d labels) with %s",
                 self.path, self.size_bytes, self.input.dtype, self.input.width, self.input.height,
                 self.input.channels, n_out, self.backend.name)

    # -- loading ----------------------------------------------------------------------------

    def _read_input(self) -> InputSpec:
        details = self._interp.get_input_details()
        if len(details) != 1:
            raise ModelError(f"{self.path}: expected one input tensor, found {len(details)}")
        d = details[0]
        # Plain ints: the error below shows the shape, and numpy 2 prints np.int32(1) otherwise.
        shape = [int(n) for n in d["shape"]]
        sig = [int(n) for n in d.get("shape_signature", shape)]
        if len(shape) != 4 or shape[3] not in (1, 3):
            raise ModelError(
                f"{self.path}: the model's input {shape} is not an image (expected "
                f"[batch, height, width, 1 or 3])"
            )
        dtype = np.dtype(d["dtype"]).name
        if dtype not in ("float32", "int8", "uint8"):
            raise ModelError(f"{self.path}: unsupported input type {dtype}")
        scale, zp = d.get("quantization", (0.0, 0))
        if dtype != "float32" and not scale:
            raise ModelError(f"{self.path}: {dtype} input without quantization parameters")
        self._in_index = d["index"]
        return InputSpec(int(shape[1]), int(shape[2]), int(shape[3]), dtype, float(scale),
                         int(zp), batchable=sig[0] == -1)

    def _read_output(self) -> dict:
        details = self._interp.get_output_details()
        if len(details) != 1:
            raise ModelError(f"{self.path}: expected one output tensor (class scores), found {len(details)}")
        d = details[0]
        if len(d["shape"]) != 2:
            raise ModelError(f"{self.path}: output shape {[int(n) for n in d['shape']]} is not "
                             "[batch, classes]")
        return d

    def _resolve_metadata(self, content: bytes) -> ModelMetadata:
        o = self.options
        meta = load_metadata(self.path, content)
        if meta is None:
            if not o.labels or not o.normalization:
                raise ModelError(
                    f"{self.path} carries no edge-fer metadata: give --labels (in output order) and "
                    f"--normalization, or re-convert it with 'edge-fer convert'"
                )
            meta = ModelMetadata(labels=list(o.labels), color=self.input.color,
                                 normalization=o.normalization, crop_margin=o.crop_margin or 0.0)
            return meta.validate("options")
        return meta.with_overrides(labels=o.labels, normalization=o.normalization,
                                   crop_margin=o.crop_margin)

    def _build_lut(self) -> np.ndarray:
        """Pixel value 0..255 -> model input value, so preprocessing is one table lookup."""
        x = normalize(np.arange(256, dtype=np.uint8), self.metadata.normalization)
        if self.input.dtype == "float32":
            return x.astype(np.float32)
        info = np.iinfo(self.input.dtype)
        q = np.round(x / self.input.scale + self.input.zero_point)
        return np.clip(q, info.min, info.max).astype(self.input.dtype)

    # -- properties -------------------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        return self.metadata.labels

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.input.width, self.input.height

    @property
    def color(self) -> str:
        return self.input.color

    @property
    def crop_margin(self) -> float:
        return float(self.metadata.crop_margin)

    @property
    def backend_info(self) -> BackendInfo:
        return self.backend.info()

    # -- running ----------------------------------------------------------------------------

    def prepare(self, faces: list[np.ndarray]) -> np.ndarray:
        """uint8 crops already at the input size and colour -> the input tensor."""
        h, w, c = self.input.height, self.input.width, self.input.channels
        batch = np.empty((len(faces), h, w, c), dtype=self._lut.dtype)
        for i, face in enumerate(faces):
            if face.dtype != np.uint8:
                raise InputError(f"face crops must be uint8 pixels, got {face.dtype}")
            if face.shape[:2] != (h, w):
                raise InputError(f"face crop is {face.shape[1]}x{face.shape[0]}, the model takes {w}x{h}")
            batch[i] = self._lut[face].reshape(h, w, c)
        return batch

    def _set_batch(self, n: int) -> None:
        if n != self._batch:
            self._interp.resize_tensor_input(self._in_index, [n, self.input.height, self.input.width,
                                                              self.input.channels])
            self._interp.allocate_tensors()
            self._batch = n

    def _invoke(self, tensor: np.ndarray) -> np.ndarray:
        self._interp.set_tensor(self._in_index, tensor)
        self._interp.invoke()
        return self._interp.get_tensor(self._out["index"]).copy()

    def predict_proba(self, faces: list[np.ndarray]) -> np.ndarray:
        """Probabilities, N x classes, for N face crops (uint8, at input size and colour)."""
        if len(faces) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        x = self.prepare(faces)
        if self.options.flip_tta:
            n = len(x)
            probs = self._run(np.concatenate([x, x[:, :, ::-1]]))
            return (probs[:n] + probs[n:]) / 2
        return self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self.input.batchable:
            self._set_batch(len(x))
            raw = self._invoke(x)
        else:
            raw = np.concatenate([self._invoke(x[i:i + 1]) for i in range(len(x))])
        out = raw.astype(np.float32)
        scale, zp = self._out.get("quantization", (0.0, 0))
        if np.dtype(self._out["dtype"]).name != "float32" and scale:
            out = (out - zp) * scale
        if np.any(out < -1e-3) or not np.allclose(out.sum(axis=1), 1.0, atol=0.05):
            out = _softmax(out)
        return out

    def to_predictions(self, probs: np.ndarray) -> list[Prediction]:
        preds = []
        for row in probs:
            k = int(np.argmax(row))
            preds.append(Prediction(self.labels[k], float(row[k]),
                                    {lab: float(p) for lab, p in zip(self.labels, row)}))
        return preds

    def classify(self, faces: list[np.ndarray]) -> list[Prediction]:
        return self.to_predictions(self.predict_proba(faces))
