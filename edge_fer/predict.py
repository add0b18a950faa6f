"""Detect and classify the faces of still images; draw the results."""

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


#: BGR colours per emotion for drawing, so a label reads at a glance.
LABEL_COLORS = {
    "angry": (40, 40, 230), "disgust": (60, 150, 60), "fear": (170, 60, 170),
    "happy": (40, 200, 240), "neutral": (200, 200, 200), "sad": (200, 120, 40),
    "surprise": (40, 160, 255),
}


def draw_faces(frame: np.ndarray, faces: list) -> np.ndarray:
    """`frame` (BGR, drawn on in place) with a box and `label score` for each face.

    Faces are `FaceResult`s or the pipeline's `TrackedFace`s, whose track number is shown too.
    """
    import cv2

    thick = max(1, frame.shape[1] // 400)
    for f in faces:
        x, y, w, h = f.box
        color = LABEL_COLORS.get(f.label, (0, 255, 0))
        cv2.rectangle(frame, (x, y), (x + w, y + h), color, thick)
        track = getattr(f, "track_id", None)
        text = (f"#{track} " if track is not None else "") + f"{f.label} {f.score:.2f}"
        # Readable on a small face in a large photo as on a close face in a small frame.
        fs = max(0.45, w / 250, frame.shape[1] / 2000)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, thick)
        ty = y - 4 if y - th - 6 > 0 else y + h + th + 4
        cv2.rectangle(frame, (x, ty - th - 4), (x + tw + 4, ty + base - 2), color, -1)
        cv2.putText(frame, text, (x + 2, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, fs, (0, 0, 0), thick,
                    cv2.LINE_AA)
    return frame


def draw_overlay(frame: np.ndarray, text: str) -> np.ndarray:
    """`frame` (drawn on in place) with `text` on a dark band at the top left (FPS, latency)."""
    import cv2

    fs = max(0.4, frame.shape[1] / 1400)
    thick = max(1, frame.shape[1] // 640)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, thick)
    cv2.rectangle(frame, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
    cv2.putText(frame, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), thick,
                cv2.LINE_AA)
    return frame
