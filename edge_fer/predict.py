"""Detect and classify the faces of still images (drawing them is `edge_fer.draw`)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np

from edge_fer.classifier import EmotionClassifier
from edge_fer.detector import Box, HaarFaceDetector, crop_face

log = logging.getLogger(__name__)


@dataclass
class FaceResult:
    """One face: where it is and what it shows."""

    box: list[int]
    """[x, y, w, h] in image pixels."""
    label: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class ImageResult:
    path: str
    faces: list[FaceResult]

    def to_dict(self) -> dict:
        return asdict(self)


class FacePredictor:
    """Detector plus classifier for whole frames; `detector=None` treats a frame as one face."""

    def __init__(self, classifier: EmotionClassifier, detector: HaarFaceDetector | None):
        self.classifier = classifier
        self.detector = detector

    def crops(self, frame: np.ndarray, boxes: list[Box]) -> list[np.ndarray]:
        c = self.classifier
        return [crop_face(frame, b, c.input_size, c.color, c.crop_margin) for b in boxes]

    def predict_frame(self, frame: np.ndarray) -> list[FaceResult]:
        if self.detector is None:
            h, w = frame.shape[:2]
            boxes: list[Box] = [(0, 0, w, h)]
            faces = [crop_face(frame, boxes[0], self.classifier.input_size, self.classifier.color)]
        else:
            boxes = self.detector.detect(frame)
            faces = self.crops(frame, boxes)
        preds = self.classifier.classify(faces)
        return [FaceResult(list(map(int, b)), p.label, round(p.score, 4),
                           {k: round(v, 4) for k, v in p.scores.items()})
                for b, p in zip(boxes, preds)]
