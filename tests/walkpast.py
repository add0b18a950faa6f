"""A walk-past clip: real faces crossing a 640x480 view at walking pace, for scoring tracking.

Six people (face crops of the shared group photo, found once with OpenCV's frontal-face
cascade) walk across the view, left to right or right to left, at 3 to 12 px per frame, each on
a lane of their own with a slight bob, entering and leaving, at most three at once, passing
each other (one partly in front of another). Generated at test or benchmark time, so no video
and no shared image is committed; the truth is every person's box on every frame.
`score_tracks` scores a run's tracks against it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clips import Clip, textured_background

#: (photo in ../shared/images, face box (x, y, w, h) in it): the six people of the group
#: photo (the other shared photos carry drawn boxes and labels).
WALKER_FACES = [
    ("test_image.jpg", (306, 347, 116, 116)),
    ("test_image.jpg", (768, 848, 571, 571)),
    ("test_image.jpg", (574, 419, 111, 111)),
    ("test_image.jpg", (845, 374, 105, 105)),
    ("test_image.jpg", (1188, 402, 101, 101)),
    ("test_image.jpg", (1535, 383, 92, 92)),
]


@dataclass(frozen=True)
class Walker:
    """One person's walk: when they enter, which way, how fast, on which lane, how big."""

    enter: int
    """Frame on which their sprite starts to come in."""
    direction: int
    """+1 left to right, -1 right to left."""
    speed: float
    """Pixels per frame."""
    lane: float
    """Centre height of their face, in pixels."""
    face_px: int


#: The walks: up to three people in view at once (frames 60-105 and 230-260), two pairs passing
#: each other on neighbouring lanes, speeds over the whole 3-12 px range.
WALKS = [
    Walker(0, +1, 4.0, 150, 120),
    Walker(20, -1, 9.0, 340, 110),
    Walker(60, +1, 12.0, 250, 100),
    Walker(130, -1, 6.0, 230, 124),
    Walker(180, +1, 5.0, 350, 116),
    Walker(225, -1, 10.0, 120, 106),
]


#: A camera panning across a group: everyone moving the same way at 13 px per frame (the panned
#: clip of issue 29, where the tracker before motion made 40 tracks of six people).
PAN = [
    Walker(0, -1, 13.0, 140, 110),
    Walker(8, -1, 13.0, 330, 110),
    Walker(30, -1, 13.0, 230, 100),
    Walker(50, -1, 13.0, 120, 120),
    Walker(65, -1, 13.0, 350, 104),
    Walker(85, -1, 13.0, 240, 116),
]
#: Clips by name: their walks and frame counts.
CLIPS = {"walk-past": (WALKS, 330), "pan": (PAN, 150)}


@dataclass
class WalkClip(Clip):
    walkers: list[Walker] = field(default_factory=list)


def walker_sprites(images_dir: Path, walks: list[Walker] = WALKS,
                   margin: float = 0.35) -> list[np.ndarray]:
    """Per walker: their face with `margin` of the photo around it, at their face size."""
    import cv2

    from edge_fer.images import read_image

    photos: dict[str, np.ndarray] = {}
    sprites = []
    for (name, (x, y, w, h)), walk in zip(WALKER_FACES, walks):
        photo = photos.get(name)
        if photo is None:
            photo = photos[name] = read_image(Path(images_dir) / name)
        m = int(round(w * margin))
        crop = photo[max(0, y - m):y + h + m, max(0, x - m):x + w + m]
        scale = walk.face_px / w
        sprites.append(cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    return sprites


def make_walk_past(path: str | os.PathLike, images_dir: Path, frames: int = 330,
                   fps: float = 30.0, size: tuple[int, int] = (640, 480),
                   walks: list[Walker] | None = None) -> WalkClip:
    """Write the walk-past clip to `path` (.mp4); boxes[frame][person] is the person's face box
    clipped to the frame while at least half of the face is in view, else None. `walks` (one
    per face of `WALKER_FACES`, at most six) replaces `WALKS`."""
    walks = list(WALKS if walks is None else walks)
    import cv2

    w, h = size
    background = textured_background(size, seed=29)
    sprites = walker_sprites(images_dir, walks)
    writer = cv2.VideoWriter(os.fspath(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    boxes = []
    for i in range(frames):
        frame = background.copy()
        row: list = []
        for k, (walk, sprite) in enumerate(zip(walks, sprites)):
            sh, sw = sprite.shape[:2]
            t = i - walk.enter
            travel = w + sw
            if t < 0 or t * walk.speed > travel:
                row.append(None)
                continue
            left = -sw + t * walk.speed if walk.direction > 0 else w - t * walk.speed
            cy = walk.lane + 6 * math.sin(2 * math.pi * t / 40 + k)
            x0, y0 = int(round(left)), int(round(cy - sh / 2))
            # Paste the part of the sprite inside the frame.
            fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + sw, w), min(y0 + sh, h)
            if fx1 > fx0 and fy1 > fy0:
                frame[fy0:fy1, fx0:fx1] = sprite[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
            off = (sw - walk.face_px) / 2
            bx, by = x0 + off, y0 + (sh - walk.face_px) / 2
            cx0, cx1 = max(bx, 0), min(bx + walk.face_px, w)
            if cx1 - cx0 < walk.face_px / 2:
                row.append(None)
                continue
            row.append((int(round(cx0)), int(round(by)), int(round(cx1 - cx0)), walk.face_px))
        boxes.append(row)
        writer.write(frame)
    writer.release()
    return WalkClip(Path(path), frames, fps, size, boxes, walks)


@dataclass
class TrackScore:
    """How a run's tracks follow the clip's people."""

    people: int
    tracks: int
    """Tracks that covered some person (IoU >= 0.3 on some frame)."""
    tracks_per_person: float
    """Mean over people of the distinct tracks that covered them (1.0: each person one track)."""
    tracks_covering_two: int
    """Tracks that covered more than one person (identity switches)."""
    stray_tracks: int
    """Tracks that never covered anybody (false detections)."""
    between_iou: float
    """Mean IoU of each person's box with the output box that overlaps it most, on frames
    where that box was carried by the tracker (no detection on the frame found it)."""
    between_frames: int
    missed: float
    """Fraction of (frame, person) with the person in view and no output box on them."""


def score_tracks(clip: Clip, results: list[list[tuple[int, tuple, int]]],
                 min_iou: float = 0.3) -> TrackScore:
    """Score `results` (per frame: (track id, box, frames since a detection found it) per
    face) against `clip`'s truth, frame by frame: each true box is matched to the output box
    that overlaps it most (greedy, IoU >= `min_iou`)."""
    from edge_fer.pipeline.tracking import greedy_match, iou_matrix

    covered: dict[int, set[int]] = {}
    seen: set[int] = set()
    between: list[float] = []
    visible = missed = 0
    for row, faces in zip(clip.boxes, results):
        people = [(p, b) for p, b in enumerate(row) if b is not None]
        seen.update(t for t, _, _ in faces)
        visible += len(people)
        iou = iou_matrix([b for _, b in people], [b for _, b, _ in faces])
        pairs = greedy_match(iou, min_iou)
        missed += len(people) - len(pairs)
        for r, c in pairs:
            covered.setdefault(faces[c][0], set()).add(people[r][0])
        # A carried box is scored however far off it is, as long as it touches its person.
        for r, c in greedy_match(iou, 1e-6):
            if faces[c][2] > 0:
                between.append(float(iou[r, c]))
    per_person: dict[int, set[int]] = {}
    for track, persons in covered.items():
        for p in persons:
            per_person.setdefault(p, set()).add(track)
    people = sum(1 for p in range(len(clip.boxes[0])) if any(r[p] is not None for r in clip.boxes))
    return TrackScore(
        people=people, tracks=len(covered),
        tracks_per_person=round(sum(len(v) for v in per_person.values()) / max(people, 1), 3),
        tracks_covering_two=sum(1 for v in covered.values() if len(v) > 1),
        stray_tracks=len(seen - set(covered)),
        between_iou=round(float(np.mean(between)) if between else float("nan"), 3),
        between_frames=len(between), missed=round(missed / max(visible, 1), 3))
