"""Detect and classify the faces of still images (drawing them is `edge_fer.draw`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edge_fer.classifier import EmotionClassifier, Prediction
from edge_fer.detector import Box, CropTransform, FaceDetector, crop_detected, crop_face
from edge_fer.results import Face

log = logging.getLogger(__name__)


@dataclass
class ImageResult:
    """The faces of one image file: one line of `predict --json`."""

    path: str
    faces: list[Face]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "faces": [f.to_dict() for f in self.faces]}

    def line(self) -> str:
        """The line `predict` prints without --json. Scores are taken as `to_dict` rounds them,
        so a result that came back as JSON (`predict --server`) prints the same line."""
        desc = ", ".join(f"{f.label} {round(float(f.score), 4):.2f} at {tuple(f.box)}"
                         for f in self.faces) or "no faces"
        return f"{self.path}: {len(self.faces)} face(s): {desc}"


class FacePredictor:
    """Detector plus classifier for whole frames; `detector=None` treats a frame as one face.

    Crops are taken from the detector's box through the detector's own `CropTransform` (or
    `crop`, for boxes from elsewhere), then the model's crop margin. Not thread-safe (neither is
    an interpreter): `edge_fer.Analyzer` adds the lock.
    """

    def __init__(self, classifier: EmotionClassifier, detector: FaceDetector | None,
                 crop: CropTransform | None = None):
        self.classifier = classifier
        self.detector = detector
        self.crop = crop or (detector.crop if detector is not None else CropTransform())

    def crops(self, frame: np.ndarray, boxes: list[Box],
              landmarks: list[tuple] | None = None) -> list[np.ndarray]:
        c = self.classifier
        landmarks = landmarks or [()] * len(boxes)
        return [crop_detected(frame, b, lm, self.crop, c.input_size, c.color, c.crop_margin)
                for b, lm in zip(boxes, landmarks)]

    def predict_frame(self, frame: np.ndarray) -> list[Face]:
        """The faces of `frame` (uint8 BGR H x W x 3 or gray H x W), largest first."""
        if self.detector is None:
            return self.classify_whole([frame])
        found = self.detector.detect_photo(frame)
        preds = self.classifier.classify(self.crops(frame, [f.box for f in found],
                                                    [f.landmarks for f in found]))
        return [_face(f.box, p, f.landmarks) for f, p in zip(found, preds)]

    def classify_whole(self, images: Sequence[np.ndarray]) -> list[Face]:
        """Each image taken as one face (already cropped), its box the whole image."""
        c = self.classifier
        boxes = [(0, 0, im.shape[1], im.shape[0]) for im in images]
        preds = c.classify([crop_face(im, b, c.input_size, c.color) for im, b in zip(images, boxes)])
        return [_face(b, p) for b, p in zip(boxes, preds)]


def _face(box: Box, p: Prediction, landmarks: tuple[tuple[float, float], ...] = ()) -> Face:
    return Face(tuple(int(v) for v in box), p.label, p.score, dict(p.scores),  # type: ignore[arg-type]
                landmarks=tuple((float(x), float(y)) for x, y in landmarks))
