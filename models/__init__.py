"""Models shipped with edge-fer (import name `edge_fer_models`); see the model cards here."""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = MODELS_DIR / "default.tflite"
