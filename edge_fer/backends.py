"""TFLite interpreter backends, tried in order: ai-edge-litert, tflite-runtime, tensorflow.lite.

Each backend is a small class in a registry; `load_backend()` returns the first that imports (or
the one asked for) and says which it was, because a user chasing a numpy or a speed problem
needs to know.
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC
from dataclasses import dataclass

from edge_fer.errors import BackendError, ModelError
from edge_fer.quiet import native_output_filtered

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendInfo:
    name: str
    """Registry name: `litert`, `tflite-runtime` or `tensorflow`."""
    module: str
    """The module the interpreter class came from."""
    version: str
    """The distribution's version."""


class Backend(ABC):
    """One way to get a TFLite interpreter."""

    name: str
    module_name: str
    distribution: str

    def interpreter_class(self):
        """The Interpreter class; raises ImportError where the backend is missing."""
        return importlib.import_module(self.module_name).Interpreter

    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version(self.distribution)
        except PackageNotFoundError:
            return "unknown"

    def info(self) -> BackendInfo:
        return BackendInfo(self.name, self.module_name, self.version())

    def make_interpreter(self, model_content: bytes, num_threads: int | None = None,
                         source: str = "the model"):
        cls = self.interpreter_class()
        try:
            # Every runtime announces its XNNPACK delegate on stderr, before any output of ours.
            with native_output_filtered():
                interp = cls(model_content=model_content, num_threads=num_threads)
                interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{source} is not a valid TFLite model ({first}): the file is damaged "
                             "or not a model; re-convert it") from None
        return interp


class LiteRTBackend(Backend):
    name = "litert"
    module_name = "ai_edge_litert.interpreter"
    distribution = "ai-edge-litert"


class TfliteRuntimeBackend(Backend):
    name = "tflite-runtime"
    module_name = "tflite_runtime.interpreter"
    distribution = "tflite-runtime"


class TensorFlowBackend(Backend):
    name = "tensorflow"
    module_name = "tensorflow.lite"
    distribution = "tensorflow"

    def interpreter_class(self):
        import os

        import warnings

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # tf.lite.Interpreter warns that it is deprecated on every construction; being the last
        # fallback is exactly its role here, and `edge-fer info` says when it is in use.
        warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated")
        with native_output_filtered():
            return importlib.import_module("tensorflow").lite.Interpreter


BACKENDS: dict[str, type[Backend]] = {
    b.name: b for b in (LiteRTBackend, TfliteRuntimeBackend, TensorFlowBackend)
}

INSTALL_HINT = (
    "install one: pip install ai-edge-litert (Python 3.10-3.13, x86-64/aarch64), "
    "or pip install tflite-runtime 'numpy<2'"
)


def available_backends(probe: bool = True) -> list[str]:
    """Names of the backends installed here, in preference order.

    With `probe`, each is imported, so a broken install (tflite-runtime under numpy 2) counts as
    missing; without, only the presence of the module is checked, which spares a runtime-only
    listing the seconds TensorFlow takes to import.
    """
    import importlib.util

    names = []
    for name, cls in BACKENDS.items():
        if not probe:
            top = cls.module_name.split(".")[0]
            if importlib.util.find_spec(top) is not None:
                names.append(name)
            continue
        try:
            cls().interpreter_class()
        except Exception:  # noqa: BLE001 - a broken install (e.g. numpy ABI) counts as missing
            continue
        names.append(name)
    return names


def load_backend(name: str | None = None) -> Backend:
    """The backend called `name`, or the first that imports."""
    if name is not None and name != "auto":
        if name not in BACKENDS:
            raise BackendError(f"unknown backend {name!r}: choose one of auto, {', '.join(BACKENDS)}")
        backend = BACKENDS[name]()
        try:
            backend.interpreter_class()
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"backend {name} cannot be loaded ({exc}): {INSTALL_HINT}") from None
        return backend
    errors = []
    for cls in BACKENDS.values():
        backend = cls()
        try:
            backend.interpreter_class()
        except Exception as exc:  # noqa: BLE001 - tflite-runtime with numpy 2 raises at import
            errors.append(f"{backend.name}: {exc}")
            continue
        log.info("interpreter backend: %s %s", backend.name, backend.version())
        return backend
    raise BackendError(f"no TFLite interpreter can be loaded ({'; '.join(errors)}): {INSTALL_HINT}")
