"""Reading images from disk with errors a user can act on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from edge_fer.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"})


def read_image(path: str | os.PathLike, color: str = "bgr") -> np.ndarray:
    """Read an image as uint8: `gray` gives H x W, `bgr`/`rgb` give H x W x 3."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise InputError(f"image not found: {path}")
    if path.is_dir():
        raise InputError(f"expected an image file, got a folder: {path}")
    flag = cv2.IMREAD_GRAYSCALE if color == "gray" else cv2.IMREAD_COLOR
    # imdecode on bytes, not imread: imread cannot tell a missing file from a corrupt one and
    # chokes on some non-ASCII paths.
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    img = cv2.imdecode(data, flag) if data.size else None
    if img is None:
        raise InputError(f"not a readable image: {path}")
    if color == "rgb":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def iter_image_paths(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Expand files and folders (recursively, sorted) into image files.

    A path that does not exist is an error; a file given by name is yielded whatever its suffix
    (reading it says whether it is an image), files found in folders are filtered by suffix.
    """
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise InputError(f"path not found: {p}")
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"no images in folder: {p}")
            yield from found
        else:
            yield p


def resize_to(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to `size` (w, h): area averaging to shrink, bilinear to enlarge.

    Training data, calibration data and runtime crops all pass through here, so a model sees the
    same interpolation everywhere.
    """
    import cv2

    h, w = img.shape[:2]
    if (w, h) == tuple(size):
        return img
    interp = cv2.INTER_AREA if w > size[0] else cv2.INTER_LINEAR
    return cv2.resize(img, tuple(size), interpolation=interp)
