"""Face crops for the classifier: the detector's box, transformed, optionally levelled, resized."""

from __future__ import annotations

import math

import numpy as np

from edge_fer.detector.base import Box, CropTransform, LANDMARK_NAMES
from edge_fer.images import resize_to


def expand_box(box: Box, margin: float, frame_w: int, frame_h: int) -> Box:
    """`box` grown by `margin` x its size on each side, clipped to the frame."""
    x, y, w, h = box
    dx, dy = int(round(w * margin)), int(round(h * margin))
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(frame_w, x + w + dx), min(frame_h, y + h + dy)
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def _to_color(crop: np.ndarray, color: str) -> np.ndarray:
    import cv2

    if color == "gray" and crop.ndim == 3:
        return cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    if color == "rgb":
        return cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB if crop.ndim == 2 else cv2.COLOR_BGR2RGB)
    return crop


def crop_face(frame: np.ndarray, box: Box, size: tuple[int, int], color: str,
              margin: float = 0.0) -> np.ndarray:
    """The face at `box` as a uint8 crop of `size` (w, h) in `color` (`gray` or `rgb`)."""
    fh, fw = frame.shape[:2]
    x, y, w, h = expand_box(box, margin, fw, fh)
    return resize_to(_to_color(frame[y:y + h, x:x + w], color), size)


def roll_degrees(right_eye: tuple[float, float], left_eye: tuple[float, float]) -> float:
    """The face's in-plane tilt: the angle of the line from the subject's right eye (image left)
    to the left eye, in degrees, positive when the left eye is lower in the image."""
    return math.degrees(math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]))


def crop_face_levelled(frame: np.ndarray, box: Box, eyes: tuple[tuple[float, float], tuple[float, float]],
                       size: tuple[int, int], color: str, margin: float = 0.0,
                       min_degrees: float = 1.0) -> np.ndarray:
    """Like `crop_face`, with the face first rotated about the box centre so the eyes are level
    when they tilt by at least `min_degrees`.

    The rotation runs at the frame's own resolution on a region around the face and the result
    is resized with `resize_to`, so a levelled crop is interpolated like every other crop.
    """
    import cv2

    angle = roll_degrees(*eyes)
    if abs(angle) < max(min_degrees, 1.0):
        return crop_face(frame, box, size, color, margin)
    x, y, w, h = box
    mw, mh = w * (1 + 2 * margin), h * (1 + 2 * margin)
    # The region that holds the rotated crop whatever the angle: the crop's diagonal.
    half = int(math.ceil(math.hypot(mw, mh) / 2)) + 1
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(math.floor(cx)) - half, int(math.floor(cy)) - half
    region = cv2.copyMakeBorder(
        frame[max(0, y0):max(0, y0 + 2 * half), max(0, x0):max(0, x0 + 2 * half)],
        max(0, -y0), max(0, y0 + 2 * half - frame.shape[0]),
        max(0, -x0), max(0, x0 + 2 * half - frame.shape[1]), cv2.BORDER_REPLICATE)
    centre = (cx - x0, cy - y0)
    rot = cv2.getRotationMatrix2D(centre, angle, 1.0)
    levelled = cv2.warpAffine(region, rot, (region.shape[1], region.shape[0]),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    rx0, ry0 = int(round(centre[0] - mw / 2)), int(round(centre[1] - mh / 2))
    crop = levelled[max(0, ry0):ry0 + max(1, int(round(mh))), max(0, rx0):rx0 + max(1, int(round(mw)))]
    return resize_to(_to_color(crop, color), size)


_EYES = (LANDMARK_NAMES.index("right_eye"), LANDMARK_NAMES.index("left_eye"))


def crop_detected(frame: np.ndarray, box: Box, landmarks: tuple, transform: CropTransform,
                  size: tuple[int, int], color: str, margin: float = 0.0) -> np.ndarray:
    """The crop the classifier sees for a face a detector found at `box`: the detector's
    transform, levelled when its eyes tilt past the transform's threshold, then the model's
    `margin`."""
    fh, fw = frame.shape[:2]
    region = transform.apply(box, fw, fh)
    if transform.level_above is not None and len(landmarks) > max(_EYES):
        eyes = (landmarks[_EYES[0]], landmarks[_EYES[1]])
        return crop_face_levelled(frame, region, eyes, size, color, margin, transform.level_above)
    return crop_face(frame, region, size, color, margin)
