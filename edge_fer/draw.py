"""Drawing results on frames: boxes, labels and the stats overlay (predict --annotate, the
window, the recording and the kiosk stream)."""

from __future__ import annotations

import cv2
import numpy as np

from edge_fer.exposure import privacy_mode
from edge_fer.results import FrameResult, StatsSnapshot

#: BGR colours per emotion for drawing, so a label reads at a glance.
LABEL_COLORS = {
    "angry": (40, 40, 230), "disgust": (60, 150, 60), "fear": (170, 60, 170),
    "happy": (40, 200, 240), "neutral": (200, 200, 200), "sad": (200, 120, 40),
    "surprise": (40, 160, 255),
}


def draw_faces(frame: np.ndarray, faces: list) -> np.ndarray:
    """`frame` (BGR, drawn on in place) with a box and `label score` for each face.

    Faces are `edge_fer.Face`s or the pipeline's `TrackedFace`s, whose track number is shown too.
    """
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


#: Side of the grid a blurred face is reduced to: too coarse to recognise anyone, fine enough to
#: show that a face is there.
BLUR_GRID = 6
#: Margin blurred around a face box, per side, as a fraction of its size (hair, ears, jaw).
BLUR_MARGIN = 0.15


def _blur_region(frame: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    """Blur frame[y0:y1, x0:x1] beyond recognition, in place: shrunk to a `BLUR_GRID` grid
    along its shorter side and stretched back smoothly (no blocks, whose edges a viewer could
    read)."""
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    roi = frame[y0:y1, x0:x1]
    side = min(x1 - x0, y1 - y0)
    grid = (max(1, round(BLUR_GRID * (x1 - x0) / side)), max(1, round(BLUR_GRID * (y1 - y0) / side)))
    small = cv2.resize(roi, grid, interpolation=cv2.INTER_AREA)
    smooth = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    k = max(3, ((side // BLUR_GRID) | 1))
    frame[y0:y1, x0:x1] = cv2.GaussianBlur(smooth, (k, k), 0)


def blur_faces(frame: np.ndarray, faces: list) -> np.ndarray:
    """`frame` (changed in place) with each face box, plus a margin, blurred beyond recognition.
    Only the faces given: a face the detector missed, and the tracker did not carry, stays
    sharp (`privacy="frame"` hides those too). For what is shown or recorded, never for what
    the model sees."""
    fh, fw = frame.shape[:2]
    for f in faces:
        x, y, w, h = (int(v) for v in f.box)
        mx, my = int(w * BLUR_MARGIN), int(h * BLUR_MARGIN)
        _blur_region(frame, max(0, x - mx), max(0, y - my), min(fw, x + w + mx), min(fh, y + h + my))
    return frame


def hide(frame: np.ndarray, faces: list, mode: str | None) -> np.ndarray:
    """`frame` (changed in place) with what `mode` hides blurred beyond recognition: the faces
    ("faces"), the whole picture ("frame": faces the detector missed too) or nothing (None).
    The boxes and labels are drawn afterwards, on top."""
    if mode == "frame":
        # A grid of BLUR_GRID cells across the frame's height: even a face filling the picture
        # keeps no more detail than a blurred face box.
        _blur_region(frame, 0, 0, frame.shape[1], frame.shape[0])
    elif mode == "faces":
        blur_faces(frame, faces)
    return frame


def draw_overlay(frame: np.ndarray, text: str) -> np.ndarray:
    """`frame` (drawn on in place) with `text` on a dark band at the top left (FPS, latency)."""
    fs = max(0.4, frame.shape[1] / 1400)
    thick = max(1, frame.shape[1] // 640)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, thick)
    cv2.rectangle(frame, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
    cv2.putText(frame, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), thick,
                cv2.LINE_AA)
    return frame


def overlay_text(result: FrameResult, stats: StatsSnapshot) -> str:
    l95 = stats.latency_p95_ms
    return (f"{stats.fps:.1f} fps  latency p95 {'-' if l95 is None else f'{l95:.0f}'} ms"
            f"  faces {len(result.faces)}")


def annotate(result: FrameResult, stats: StatsSnapshot, out: np.ndarray | None = None, *,
             blur: bool = False, privacy: str | None = None) -> np.ndarray:
    """A copy of the result's frame (into `out` when it fits) with boxes, labels and overlay;
    with `blur`, the faces blurred first (`blur_faces`); with `privacy` what it hides (`hide`)."""
    frame = result.frame
    if out is None or out.shape != frame.shape:
        out = np.empty_like(frame)
    np.copyto(out, frame)
    hide(out, result.faces, privacy_mode(blur, privacy))
    draw_faces(out, result.faces)
    return draw_overlay(out, overlay_text(result, stats))
