"""Reading images from disk with errors a user can act on, and a cap on their decoded size."""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from edge_fer.errors import InputError
from edge_fer.imagesize import FORMATS, image_size

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"})

#: Largest image decoded by default, in pixels. A 950 KB PNG can decode to 30000 x 30000 (2.7 GB
#: as BGR): too much for a Pi with 1-8 GB. 50 MP (150 MB as BGR) takes the largest photos a user
#: is likely to have, from 48/50 MP phone sensors (8160 x 6120) and 45 MP cameras, with room left
#: on a 1 GB Pi.
DEFAULT_MAX_PIXELS = 50_000_000


class ImageTooLarge(InputError):
    """An image whose header states more pixels than allowed: refused before decoding (the
    server answers 413 where other input errors get 400)."""


def _cut_short(fmt: str, data) -> bool:
    """Whether a JPEG lacks its end: OpenCV decodes a cut-off JPEG without an error, the missing
    part gray, and that must not pass for the picture (a cut PNG fails in OpenCV itself)."""
    if fmt != "JPEG":
        return False
    # Entropy-coded data never holds FF D9 or FF DA (an FF there is stuffed), so the last
    # end-of-image marker comes after the last start-of-scan unless the file was cut.
    return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


def decode_image(data, color: str = "bgr", max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 name: str = "image") -> np.ndarray:
    """Decode encoded image bytes (bytes, bytearray or an mmap) as uint8: `gray` gives H x W,
    `bgr`/`rgb` give H x W x 3.

    The size is read from the header first and an image over `max_pixels` (None: no cap) is
    refused before anything is allocated for it (ImageTooLarge); a format whose header states no
    size that can be read is refused too, and so is a JPEG that was cut short. InputError names `name` (a path, an upload) in every case.
    """
    import cv2

    if len(data) == 0:
        raise InputError(f"not a readable image: {name} (the file is empty)")
    size = image_size(data)
    if size is None:
        raise InputError(f"not a readable image: {name} (not {', '.join(FORMATS[:-1])} or "
                         f"{FORMATS[-1]}, or its header is damaged)")
    if max_pixels is not None and size.pixels > max_pixels:
        raise ImageTooLarge(f"image too large: {name} is {size.width}x{size.height} = "
                         f"{size.pixels:,} pixels, over the limit of {max_pixels:,}: shrink it, "
                         f"or raise --max-pixels")
    if _cut_short(size.format, data):
        raise InputError(f"not a readable image: {name} (truncated: the end of the "
                         f"{size.format} is missing)")
    flag = cv2.IMREAD_GRAYSCALE if color == "gray" else cv2.IMREAD_COLOR
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, flag)
    except cv2.error:
        img = None
    finally:
        del buf  # an mmap cannot be closed while an array still points into it
    if img is None:
        raise InputError(f"not a readable image: {name}")
    if color == "rgb":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def read_image(path: str | os.PathLike, color: str = "bgr",
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as `decode_image` decodes bytes, with the same size cap."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"image not found: {path}")
    if path.is_dir():
        raise InputError(f"expected an image file, got a folder: {path}")
    # Decoding from memory, not imread: imread cannot tell a missing file from a corrupt one and
    # chokes on some non-ASCII paths. The file is mapped, not read, so an image refused by its
    # header costs a page or two, not its whole size.
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise InputError(f"not a readable image: {path} (the file is empty)")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return decode_image(data, color, max_pixels, str(path))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


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

