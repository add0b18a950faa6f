"""MediaPipe's BlazeFace face detectors in a TFLite interpreter, decoded as MediaPipe does.

The frame is letterboxed into the model's square input (aspect kept, black bars), RGB scaled to
-1..1. The model regresses, for each SSD anchor, a box and six keypoints relative to the anchor
centre, and a logit; MediaPipe's graph (face_detection_short_range_common.pbtxt and
face_detection_full_range_common.pbtxt, through TensorsToDetectionsCalculator and
NonMaxSuppressionCalculator) turns them into faces with: anchors from SsdAnchorsCalculator with a
fixed anchor size, coordinates divided by the input size, scores clipped to +-100 then a sigmoid,
a score threshold, then *weighted* non-maximum suppression (IoU 0.3: overlapping candidates are
averaged, weighted by score, instead of dropped), and the letterbox removed. This module follows
those steps; `tests/runtime/test_detectors.py` checks them on real photos.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edge_fer.backends import load_backend
from edge_fer.detector.base import (CropTransform, DetectedFace, DetectorOptions, FaceDetector,
                                    as_uint8_frame, largest_first)
from edge_fer.detector.tiles import cut_by_inner_edge, tile_grid
from edge_fer.detector.weights import load_verified
from edge_fer.errors import ModelError

log = logging.getLogger(__name__)

SCORE_CLIP = 100.0
NMS_IOU = 0.3


@dataclass(frozen=True)
class BlazeFaceModel:
    """One BlazeFace variant: its file and the anchor layout MediaPipe's graph gives it."""

    weights: str
    input_size: int
    strides: tuple[int, ...]
    """Stride of each SSD layer (MediaPipe's `strides`)."""
    anchors_per_cell_per_layer: int
    """2 where the graph sets interpolated_scale_aspect_ratio 1.0 (an extra anchor per layer),
    1 where it sets 0."""
    min_score: float
    """MediaPipe's min_score_thresh for this graph."""
    smallest_tile: int = 256
    """Photos: side in photo pixels of the smallest tiles `detect_photo` looks at (faces of
    about a third of it and larger); 256 found every face Haar finds on the shared group photos
    with both models (tests/runtime/test_detectors.py)."""


SHORT_RANGE = BlazeFaceModel("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 2, 0.5)
FULL_RANGE = BlazeFaceModel("face_detection_full_range.tflite", 192, (4,), 1, 0.6)


def ssd_anchors(model: BlazeFaceModel) -> np.ndarray:
    """Anchor centres (N x 2, normalized x, y) in the order of the model's outputs, as
    SsdAnchorsCalculator makes them: layers of equal stride share one feature map whose cells
    each get the anchors of all those layers; with fixed_anchor_size every anchor is 1 x 1."""
    centres = []
    layer = 0
    strides = model.strides
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        per_cell = (last - layer) * model.anchors_per_cell_per_layer
        side = int(np.ceil(model.input_size / strides[layer]))
        ys, xs = np.meshgrid((np.arange(side) + 0.5) / side, (np.arange(side) + 0.5) / side,
                             indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cells, per_cell, axis=0))
        layer = last
    return np.concatenate(centres).astype(np.float32)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray,
                 iou_threshold: float = NMS_IOU) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's WEIGHTED non-maximum suppression: take the best remaining candidate, gather
    every remaining one that overlaps it by more than `iou_threshold` (itself included), and
    output their score-weighted mean box and keypoints with the best score.

    `boxes` are N x 4 (xmin, ymin, xmax, ymax), `keypoints` N x K x 2."""
    order = np.argsort(-scores, kind="stable")
    remaining = list(order)
    out = []
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    while remaining:
        best = remaining[0]
        rest = np.asarray(remaining)
        ix = np.clip(np.minimum(boxes[rest, 2], boxes[best, 2]) - np.maximum(boxes[rest, 0], boxes[best, 0]), 0, None)
        iy = np.clip(np.minimum(boxes[rest, 3], boxes[best, 3]) - np.maximum(boxes[rest, 1], boxes[best, 1]), 0, None)
        inter = ix * iy
        union = areas[rest] + areas[best] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        group = rest[iou > iou_threshold]
        if group.size == 0:  # a degenerate box overlaps nothing, not even itself
            group = np.asarray([best])
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(axis=0) / w.sum()
        kps = (keypoints[group] * w[:, :, None]).sum(axis=0) / w.sum()
        out.append((box, float(scores[best]), kps))
        grouped = set(group.tolist()) | {best}
        remaining = [i for i in remaining if i not in grouped]
    return out


class BlazeFaceDetector(FaceDetector):
    """A BlazeFace variant; subclasses name the variant and carry its measured settings."""

    model: BlazeFaceModel
    accepts_gray = False

    def __init__(self, options: DetectorOptions | None = None):
        super().__init__(options)
        path, content = load_verified(self.model.weights, self.name)
        self.weights_path = path
        backend = load_backend(self.options.backend)
        self.backend = backend
        self._interp = backend.make_interpreter(content, self.options.threads, str(path))
        inputs = self._interp.get_input_details()
        size = self.model.input_size
        if len(inputs) != 1 or list(inputs[0]["shape"]) != [1, size, size, 3]:
            raise ModelError(f"{path}: expected a 1x{size}x{size}x3 input, found "
                             f"{[list(map(int, d['shape'])) for d in inputs]}")
        self._in = inputs[0]["index"]
        outs = {int(d["shape"][-1]): d["index"] for d in self._interp.get_output_details()}
        if set(outs) != {16, 1}:
            raise ModelError(f"{path}: expected box (16 values) and score outputs")
        self._boxes_out, self._scores_out = outs[16], outs[1]
        self._anchors = ssd_anchors(self.model)
        self.min_score = self.options.min_score if self.options.min_score is not None else self.model.min_score
        self._canvas = np.zeros((size, size, 3), np.uint8)

    def _letterbox(self, frame: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """The frame fitted into the square input with black bars; returns the input tensor, the
        scale from frame pixels to input pixels and the (x, y) offset of the image in the input."""
        import cv2

        size = self.model.input_size
        h, w = frame.shape[:2]
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        ox, oy = (size - nw) // 2, (size - nh) // 2
        small = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        canvas = self._canvas
        canvas[:] = 0
        if small.ndim == 2:
            canvas[oy:oy + nh, ox:ox + nw] = small[:, :, None]
        else:
            cv2.cvtColor(small, cv2.COLOR_BGR2RGB, dst=canvas[oy:oy + nh, ox:ox + nw])
        tensor = canvas.astype(np.float32)[None] * (2.0 / 255.0) - 1.0
        return tensor, scale, ox, oy

    def _decode(self, tensor: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Faces as (box xmin, ymin, xmax, ymax; score; keypoints K x 2) in input pixels of the
        letterboxed frame, after thresholding and weighted NMS."""
        self._interp.set_tensor(self._in, tensor)
        self._interp.invoke()
        raw = self._interp.get_tensor(self._boxes_out)[0]
        logits = self._interp.get_tensor(self._scores_out)[0, :, 0]
        # float64: exp(100) overflows float32, and MediaPipe clips at 100.
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
        keep = np.nonzero(scores >= self.min_score)[0]
        if keep.size == 0:
            return []
        size = float(self.model.input_size)
        a = self._anchors[keep]
        r = raw[keep] / size
        cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
        bw, bh = r[:, 2], r[:, 3]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1) * size
        kps = (r[:, 4:].reshape(len(keep), -1, 2) + a[:, None, :]) * size
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return weighted_nms(boxes[valid], scores[keep][valid], kps[valid])

    def detect(self, frame: np.ndarray, full_size: tuple[int, int] | None = None) -> list[DetectedFace]:
        frame = as_uint8_frame(frame)
        h, w = frame.shape[:2]
        full_w, full_h = full_size or (w, h)
        tensor, scale, ox, oy = self._letterbox(frame)
        # Input pixels -> frame pixels -> full-frame pixels.
        fx, fy = full_w / w / scale, full_h / h / scale
        found = [(np.array([(box[0] - ox) * fx, (box[1] - oy) * fy, (box[2] - ox) * fx,
                            (box[3] - oy) * fy]), score, (kps - (ox, oy)) * (fx, fy))
                 for box, score, kps in self._decode(tensor)]
        return self._faces(found, full_w, full_h)

    def detect_photo(self, frame: np.ndarray) -> list[DetectedFace]:
        """`detect` over overlapping tiles from `smallest_tile` pixels up to the whole photo
        (see `edge_fer.detector.tiles`), merged with the model's own weighted NMS: a group photo
        shrunk whole into the model's 128 or 192 pixels shows its faces a few pixels wide."""
        frame = as_uint8_frame(frame)
        h, w = frame.shape[:2]
        if max(w, h) <= self.model.smallest_tile:
            return self.detect(frame)
        boxes, scores, points = [], [], []
        for tile in tile_grid(w, h, self.model.smallest_tile):
            x, y, tw, th = tile
            tensor, scale, ox, oy = self._letterbox(frame[y:y + th, x:x + tw])
            for box, score, kps in self._decode(tensor):
                box = (box - (ox, oy, ox, oy)) / scale + (x, y, x, y)
                # Two input pixels: a face that reaches the tile's edge is cut by it.
                if not cut_by_inner_edge(box, tile, w, h, margin=2 / scale):
                    boxes.append(box)
                    scores.append(score)
                    points.append((kps - (ox, oy)) / scale + (x, y))
        if not boxes:
            return []
        merged = weighted_nms(np.array(boxes), np.array(scores), np.array(points))
        while True:
            # One face seen at several tile sizes gives boxes of different sizes; their averages
            # can still overlap past the threshold: merged again until no two do.
            again = weighted_nms(np.array([m[0] for m in merged]), np.array([m[1] for m in merged]),
                                 np.array([m[2] for m in merged]))
            if len(again) == len(merged):
                return self._faces(merged, w, h)
            merged = again

    def _faces(self, found, full_w: int, full_h: int) -> list[DetectedFace]:
        """DetectedFaces from (box x0, y0, x1, y1; score; keypoints) in full-frame pixels:
        clipped to the frame, smaller than `min_size` dropped, largest first."""
        faces = []
        for box, score, kps in found:
            x0, y0 = max(0.0, float(box[0])), max(0.0, float(box[1]))
            x1, y1 = min(float(full_w), float(box[2])), min(float(full_h), float(box[3]))
            bw, bh = int(round(x1 - x0)), int(round(y1 - y0))
            if bw < self.options.min_size or bh < 1:
                continue
            landmarks = tuple((float(kx), float(ky)) for kx, ky in kps)
            faces.append(DetectedFace((int(round(x0)), int(round(y0)), bw, bh), round(score, 4),
                                      landmarks))
        return largest_first(faces)


class BlazeFaceShort(BlazeFaceDetector):
    """MediaPipe BlazeFace short range (128x128): faces within about 2 m, a kiosk's distance."""

    name = "blazeface"
    model = SHORT_RANGE
    default_detect_every = 2
    no_face_hint = ("--detector blazeface-full (faces farther away), a lower --detect-score, "
                    "or a smaller --min-face")
    # benchmarks/crop_margin.py on PublicTest: its box is ~0.84 of a FER2013 crop; 1.15 and a
    # little upwards scored best (66.29 % against 65.45 % untransformed); levelling past 12
    # degrees gains 0.6 points on faces tilted up to 15 and costs nothing measurable upright.
    crop = CropTransform(scale=1.15, dy=-0.025, level_above=12.0)


class BlazeFaceFull(BlazeFaceDetector):
    """MediaPipe BlazeFace full range (192x192): faces up to about 5 m, rooms and group photos."""

    name = "blazeface-full"
    model = FULL_RANGE
    default_detect_every = 3
    no_face_hint = "a lower --detect-score, --detector haar, or a smaller --min-face"
    # Measured as for the short-range model (on the 1,337 PublicTest faces it finds in 320x240
    # frames): 1.1 scored 68.89 % against 67.46 % untransformed; levelling as above.
    crop = CropTransform(scale=1.1, level_above=12.0)
