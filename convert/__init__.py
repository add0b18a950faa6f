"""edge-fer's host-side toolchain (import name `edge_fer_convert`): training, conversion to
TFLite, evaluation of Keras models. Needs TensorFlow: `pip install edge-fer[convert]`."""
