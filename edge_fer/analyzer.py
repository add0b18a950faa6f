"""Loading a model and a face detector, and `Analyzer`: both loaded once, for many frames.

The building blocks of `edge-fer predict`, of the server's `POST /api/predict` and of
`edge_fer.analyze`; `edge_fer.api` is the public front door to them.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from edge_fer.classifier import ClassifierOptions, EmotionClassifier
from edge_fer.detector import DEFAULT_DETECTOR, DetectorOptions, FaceDetector, create_detector
from edge_fer.detector.base import as_uint8_frame
from edge_fer.errors import InputError, UsageError
from edge_fer.images import iter_image_paths, read_image
from edge_fer.predict import FacePredictor
from edge_fer.results import Face
from edge_fer_models import DEFAULT_MODEL, resolve_model

ImageInput = Union[str, os.PathLike, np.ndarray]
"""A path to an image file, or a uint8 numpy array: BGR H x W x 3 (as OpenCV reads it), gray
H x W (or H x W x 1), or BGRA H x W x 4."""

#: The detection options' defaults, declared once (`DetectorOptions`).
_D = DetectorOptions


def default_model_path() -> str:
    """The model used when none is named: $EDGE_FER_MODEL, else the shipped default model."""
    return resolve_model(os.environ.get("EDGE_FER_MODEL") or str(DEFAULT_MODEL))


def model_path(model: str | os.PathLike | None = None) -> str:
    """`model` as a file: a path as it is, a shipped model's short name (a key of
    `edge_fer_models.SHIPPED`: `default`, `lite`, ...) as its file; None: `default_model_path()`."""
    return resolve_model(str(model)) if model else default_model_path()


def load_classifier(model: str | os.PathLike | None = None, *, labels: Sequence[str] | None = None,
                    normalization: str | None = None, crop_margin: float | None = None,
                    threads: int | None = None, tta: bool = False,
                    backend: str | None = None) -> EmotionClassifier:
    """The `.tflite` emotion model at `model` (see `model_path`), loaded once.

    Raises InputError (no such file), ModelError (not a usable model) or BackendError (no
    interpreter installed).
    """
    return EmotionClassifier(model_path(model), ClassifierOptions(
        labels=list(labels) if labels else None, normalization=normalization,
        crop_margin=crop_margin, num_threads=threads, backend=backend, flip_tta=tta))


def load_detector(detector: str = DEFAULT_DETECTOR, *, detect_score: float | None = None,
                  cascade: str | os.PathLike | None = None, scale_factor: float = _D.scale_factor,
                  min_neighbors: int = _D.min_neighbors, min_face: int = _D.min_size,
                  detect_width: int = _D.detect_width,
                  backend: str | None = None) -> FaceDetector:
    """The face detector called `detector` (`haar`, `blazeface`, `blazeface-full`), with the
    options `edge-fer predict` has. Raises UsageError (unknown name), ModelError (weights not
    fetched: the message names `edge-fer detectors fetch`) or InputError (bad cascade file)."""
    return create_detector(detector, DetectorOptions(
        cascade=os.fspath(cascade) if cascade else None, scale_factor=scale_factor,
        min_neighbors=min_neighbors, min_size=min_face, detect_width=detect_width,
        min_score=detect_score, backend=None if backend in (None, "auto") else backend))


def load_image(image: ImageInput) -> np.ndarray:
    """`image` as a uint8 frame a detector takes (BGR H x W x 3 or gray H x W).

    A path is read as `edge-fer predict` reads it (InputError: missing, a folder, not an
    image); an array is checked, not copied (InputError: not uint8, or not an image's shape).
    """
    if isinstance(image, np.ndarray):
        return as_uint8_frame(image)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_dir():
            # The check `predict` makes on its arguments, so a missing file reads the same here.
            path = next(iter(iter_image_paths([path])))
        return read_image(path)
    raise InputError(f"an image must be a path or a numpy array, got {type(image).__name__}")


class Analyzer:
    """A loaded model and face detector, for many frames.

    Thread use: one Analyzer may be shared by several threads. The interpreter and the detector
    are not thread-safe, so calls on one Analyzer run one at a time under a lock: sharing is
    safe but not parallel. For parallel work give each thread its own Analyzer (each loads its
    own interpreter; `threads=1` keeps them from competing for cores).

    `detector` is a registry name (`haar`, `blazeface`, `blazeface-full`), a `FaceDetector`
    you built, or None to take every image as one face that is already cropped (as
    `predict --no-detect`). The other keywords are `edge-fer predict`'s options.
    """

    def __init__(self, model: str | os.PathLike | None = None,
                 detector: str | FaceDetector | None = DEFAULT_DETECTOR,
                 threads: int | None = None, *, tta: bool = False, backend: str | None = None,
                 labels: Sequence[str] | None = None, normalization: str | None = None,
                 crop_margin: float | None = None, detect_score: float | None = None,
                 cascade: str | os.PathLike | None = None, scale_factor: float = _D.scale_factor,
                 min_neighbors: int = _D.min_neighbors, min_face: int = _D.min_size,
                 detect_width: int = _D.detect_width):
        self.classifier = load_classifier(model, labels=labels, normalization=normalization,
                                          crop_margin=crop_margin, threads=threads, tta=tta,
                                          backend=backend)
        if isinstance(detector, str):
            detector = load_detector(detector, detect_score=detect_score, cascade=cascade,
                                     scale_factor=scale_factor, min_neighbors=min_neighbors,
                                     min_face=min_face, detect_width=detect_width, backend=backend)
        elif detector is not None and not isinstance(detector, FaceDetector):
            raise UsageError(f"detector must be a name, a FaceDetector or None, got "
                             f"{type(detector).__name__}")
        self.detector: FaceDetector | None = detector
        self._predictor = FacePredictor(self.classifier, detector)
        self._lock = threading.Lock()

    @property
    def labels(self) -> list[str]:
        """The model's emotions, in the order of its outputs."""
        return list(self.classifier.labels)

    def analyze(self, image: ImageInput) -> list[Face]:
        """The faces in `image` (see `ImageInput`), largest first."""
        frame = load_image(image)
        with self._lock:
            return self._predictor.predict_frame(frame)

    def classify(self, face_crops: Sequence[np.ndarray]) -> list[Face]:
        """One `Face` per crop, for faces found some other way: each crop (uint8 BGR or gray,
        any size) is taken whole, and its `box` is the whole crop."""
        if isinstance(face_crops, np.ndarray) and face_crops.ndim in (2, 3) \
                and not (face_crops.ndim == 3 and face_crops.shape[2] > 4):
            raise InputError("classify takes a list of face crops, not one image: wrap it in a list")
        crops = [as_uint8_frame(c) for c in face_crops]
        with self._lock:
            return self._predictor.classify_whole(crops)
