"""Keras model -> TFLite flatbuffer: the one conversion step that both `convert` (post-training
quantization) and the QAT child process (`qat`, after fine-tuning) run, so neither imports the
other for it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edge_fer.errors import ModelError, UsageError, interruption
from edge_fer.quiet import native_output_filtered
from edge_fer_convert.keras_env import tensorflow_module

#: Full-INT8 converter choices, tried in this order when `--max-drop` asks for more.
VARIANTS = {
    "per-channel": "per-channel weight scales (the converter's default)",
    "per-tensor": "per-tensor weight scales everywhere (_experimental_disable_per_channel)",
    "per-tensor-dense": "per-tensor scales for fully-connected layers only "
                        "(_experimental_disable_per_channel_quantization_for_dense_layers)",
}


def _converter_for(tf, loaded, workdir: Path):
    """A TFLiteConverter for any loaded flavor, keeping the batch dimension dynamic."""
    if loaded.flavor == "saved_model":
        return tf.lite.TFLiteConverter.from_saved_model(str(loaded.path),
                                                       signature_keys=[loaded.signature])
    if loaded.flavor == "tf_keras":
        return tf.lite.TFLiteConverter.from_keras_model(loaded.model)
    # Keras 3 models: a concrete function over the live model keeps resource variables that the
    # converter cannot freeze (READ_VARIABLE at run time); Keras' own export freezes them.
    saved = Path(tempfile.mkdtemp(prefix="saved_model-", dir=workdir))
    loaded.model.export(str(saved), format="tf_saved_model", verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(str(saved))


def _configure(tf, conv, quantization: str, calib: np.ndarray | None, variant: str = "per-channel"):
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
        if variant == "per-tensor":
            conv._experimental_disable_per_channel = True
        elif variant == "per-tensor-dense":
            conv._experimental_disable_per_channel_quantization_for_dense_layers = True
        elif variant != "per-channel":
            raise UsageError(f"unknown int8 variant {variant!r}: choose {', '.join(VARIANTS)}")


def convert_bytes(loaded, quantization: str, calib: np.ndarray | None, variant: str,
                  workdir: Path) -> bytes:
    """The TFLite flatbuffer for `loaded`, or a ModelError naming the converter's complaint."""
    tf = tensorflow_module()
    try:
        conv = _converter_for(tf, loaded, workdir)
        _configure(tf, conv, quantization, calib, variant)
        with native_output_filtered():  # the MLIR quantizer prints its settings to stderr
            return conv.convert()
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds; all mean the same here
        interrupt = interruption(exc)
        if interrupt is not None:
            # Ctrl-C or SIGTERM mid-conversion that TensorFlow's unwinding turned into an error
            # of its own: stop, do not record a failed attempt and go on to the next one.
            raise interrupt from None
        msg = str(exc).strip().splitlines()
        raise ModelError(f"the TFLite converter failed on {loaded.path}: "
                         f"{msg[0] if msg else type(exc).__name__}") from None
