"""Detect and classify the faces of still images (drawing them is `edge_fer.draw`)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np

from edge_fer.classifier import EmotionClassifier
from edge_fer.detector import Box, CropTransform, FaceDetector, crop_face

log = logging.getLogger(__name__)


@dataclass
class FaceResult:
    """One face: where it is and what it shows."""

    box: list[int]
    """[x, y, w, h] in image pixels."""
    label: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    landmarks: list[list[float]] = field(default_factory=list)
    """[x, y] per keypoint (see `edge_fer.detector.LANDMARK_NAMES`) when the detector has them."""


@dataclass
class ImageResult:
    path: str
    faces: list[FaceResult]

    def to_dict(self) -> dict:
        d = asdict(self)
        for face in d["faces"]:
            if not face["landmarks"]:
                del face["landmarks"]
        return d


class FacePredictor:
    """Detector plus classifier for whole frames; `detector=None` treats a frame as one face.

    Crops are taken from the detector's box through the detector's own `CropTransform` (or
    `crop`, for boxes from elsewhere), then the model's crop margin.
    """

    def __init__(self, classifier: EmotionClassifier, detector: FaceDetector | None,
                 crop: CropTransform | None = None):
        self.classifier = classifier
        self.detector = detector
        self.crop = crop or (detector.crop if detector is not None else CropTransform())

    def crops(self, frame: np.ndarray, boxes: list[Box]) -> list[np.ndarray]:
        c = self.classifier
        fh, fw = frame.shape[:2]
        return [crop_face(frame, self.crop.apply(b, fw, fh), c.input_size, c.color, c.crop_margin)
                for b in boxes]

    def predict_frame(self, frame: np.ndarray) -> list[FaceResult]:
        if self.detector is None:
            h, w = frame.shape[:2]
            boxes: list[Box] = [(0, 0, w, h)]
            landmarks: list = [()]
            faces = [crop_face(frame, boxes[0], self.classifier.input_size, self.classifier.color)]
        else:
            found = self.detector.detect(frame)
            boxes = [f.box for f in found]
            landmarks = [f.landmarks for f in found]
            faces = self.crops(frame, boxes)
        preds = self.classifier.classify(faces)
        return [FaceResult(list(map(int, b)), p.label, round(p.score, 4),
                           {k: round(v, 4) for k, v in p.scores.items()},
                           [[round(x, 1), round(y, 1)] for x, y in lm])
                for b, lm, p in zip(boxes, landmarks, preds)]
