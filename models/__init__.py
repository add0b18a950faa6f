"""Models shipped with edge-fer (import name `edge_fer_models`); see the model cards here."""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = MODELS_DIR / "default.tflite"

#: Short names for `--model NAME` (and `model = "NAME"` in the config file): the shipped files.
SHIPPED = {
    "default": DEFAULT_MODEL,
    "lite": MODELS_DIR / "lite.tflite",
    # Earlier defaults, kept for comparison (their cards say when and why each was replaced).
    "fer2013": MODELS_DIR / "fer2013.tflite",
    "edgenet-l": MODELS_DIR / "edgenet-l.tflite",
    "edgenet16": MODELS_DIR / "edgenet16.tflite",
}


def resolve_model(value: str) -> str:
    """A shipped model's short name -> its file; anything else (a path) unchanged. A file of that
    name in the current folder wins, so a name never hides a user's own model."""
    if value in SHIPPED and not Path(value).exists():
        return str(SHIPPED[value])
    return value
