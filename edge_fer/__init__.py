"""edge-fer: facial-emotion recognition for Raspberry-Pi-class devices.

The Python API (see README, "Python API"):

    import edge_fer
    for face in edge_fer.analyze("photo.jpg"):
        print(face.label, face.score, face.box)

`analyze(image)` for one image, `Analyzer(...)` to load once for many frames, `stream(source)`
for the real-time pipeline's results; errors are `EdgeFerError` and its subclasses, each with
the one-line message the command line prints.

Importing this package is cheap: the API (numpy, OpenCV, the interpreter) loads on first use of
one of its names, so `edge-fer --help` does not pay for it. The runtime never imports
TensorFlow: it loads a TFLite interpreter from ai-edge-litert, tflite-runtime or
tensorflow.lite, in that order.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edge_fer.errors import (BackendError, EdgeFerError, InputError, ModelError, SourceError,
                             UsageError)

__version__ = "0.1.0"

#: Public name -> the module that defines it, imported on first access.
_LAZY = {
    "analyze": "edge_fer.api",
    "Analyzer": "edge_fer.api",
    "stream": "edge_fer.api",
    "Stream": "edge_fer.api",
    "STREAM_OPTIONS": "edge_fer.api",
    "Face": "edge_fer.results",
    "evaluate_model": "edge_fer.api",
    "Evaluation": "edge_fer.evaluate",
    "FrameResult": "edge_fer.results",
    "TrackedFace": "edge_fer.results",
    "TrackEvent": "edge_fer.results",
}

__all__ = ["Analyzer", "BackendError", "EdgeFerError", "Face", "FrameResult", "InputError",
           "ModelError", "STREAM_OPTIONS", "SourceError", "Stream", "TrackEvent", "TrackedFace",
           "UsageError", "__version__", "analyze", "stream", "evaluate_model", "Evaluation"]

if TYPE_CHECKING:
    from edge_fer.api import STREAM_OPTIONS, Analyzer, Stream, analyze, stream
    from edge_fer.api import evaluate_model
    from edge_fer.evaluate import Evaluation
    from edge_fer.results import Face, FrameResult, TrackedFace, TrackEvent


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edge_fer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
