"""edge-fer: facial-emotion recognition for Raspberry-Pi-class devices.

The runtime never imports TensorFlow at module level: it loads a TFLite interpreter from
ai-edge-litert, tflite-runtime or tensorflow.lite, in that order.
"""

__version__ = "0.1.0"
