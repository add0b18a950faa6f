"""Which Keras to use, and loading TensorFlow with a clear error where it is missing."""

from __future__ import annotations

import functools
import logging
import os

from edge_fer.errors import BackendError
from edge_fer.quiet import native_output_filtered

log = logging.getLogger(__name__)

INSTALL_HINT = "install the host toolchain with: pip install 'edge-fer[convert]'"


def _quiet_tf() -> None:
    # TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) is noise on a CPU host.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@functools.cache
def tensorflow_module():
    """TensorFlow, imported with its start-up noise filtered (see `edge_fer.quiet`)."""
    _quiet_tf()
    with native_output_filtered():
        try:
            import tensorflow as tf
        except ImportError as exc:
            raise BackendError(f"TensorFlow is not installed ({exc}): {INSTALL_HINT}") from None
        # Device discovery is where a machine without a GPU gets its cuInit error: do it now,
        # filtered, rather than at the first layer built.
        tf.config.list_physical_devices()
    return tf


def keras_module():
    """Keras 3 (what TensorFlow 2.16+ ships)."""
    tensorflow_module()
    import keras

    return keras


def tf_keras_module():
    """Keras 2 (tf-keras), for legacy models and the model-optimization toolkit."""
    tensorflow_module()
    try:
        import tf_keras
    except ImportError as exc:
        raise BackendError(f"tf-keras is not installed ({exc}): {INSTALL_HINT}") from None
    return tf_keras
