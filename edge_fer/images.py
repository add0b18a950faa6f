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


# -- images from memory (uploads): the size is checked from the header, before decoding --------

#: What `decode_image` reads: formats whose header gives the size before anything is decoded.
DECODED_FORMATS = "JPEG, PNG, BMP, WebP or PNM"


class ImageTooLarge(InputError):
    """The image's header declares more pixels than allowed (a decompression bomb, or simply a
    photo too large for the device): refused before decoding."""

    def __init__(self, message: str, width: int, height: int, limit: int):
        super().__init__(message)
        self.width, self.height, self.limit = width, height, limit


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h = int.from_bytes(data[i + 5:i + 7], "big")
            w = int.from_bytes(data[i + 7:i + 9], "big")
            return w, h
        if length < 2:
            return None
        i += 2 + length
    return None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    fields: list[int] = []
    for line in data[2:512].split(b"\n"):
        for word in line.split(b"#", 1)[0].split():
            if not word.isdigit():
                return None
            fields.append(int(word))
            if len(fields) == 2:
                return fields[0], fields[1]
    return None


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) from the header of an encoded image, or None when `data` is not
    one of `DECODED_FORMATS`. Reads a few bytes; decodes nothing."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return "png", int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:3] == b"\xff\xd8\xff":
        size = _jpeg_size(data)
        return ("jpeg", *size) if size else None
    if data[:2] == b"BM" and len(data) >= 26:
        header = int.from_bytes(data[14:18], "little")
        if header == 12:
            return "bmp", int.from_bytes(data[18:20], "little"), int.from_bytes(data[20:22], "little")
        w = int.from_bytes(data[18:22], "little", signed=True)
        h = int.from_bytes(data[22:26], "little", signed=True)
        return "bmp", abs(w), abs(h)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8 ":
            return ("webp", int.from_bytes(data[26:28], "little") & 0x3FFF,
                    int.from_bytes(data[28:30], "little") & 0x3FFF)
        if chunk == b"VP8L":
            b = int.from_bytes(data[21:25], "little")
            return "webp", (b & 0x3FFF) + 1, ((b >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return ("webp", int.from_bytes(data[24:27], "little") + 1,
                    int.from_bytes(data[27:30], "little") + 1)
        return None
    if data[:1] == b"P" and data[1:2] in (b"2", b"3", b"5", b"6"):
        size = _pnm_size(data)
        return ("pnm", *size) if size else None
    return None


def _complete(kind: str, data: bytes) -> bool:
    """Whether the file goes on to its end marker: OpenCV decodes a cut-off JPEG without an
    error, its missing part gray."""
    if kind == "jpeg":
        # Entropy-coded data never holds FF D9 or FF DA (an FF there is stuffed), so the last
        # end-of-image marker comes after the last start-of-scan unless the file was cut.
        return data.rfind(b"\xff\xd9") > data.rfind(b"\xff\xda")
    if kind == "png":
        return data.rfind(b"IEND") > data.rfind(b"IDAT")
    return True


def decode_image(data: bytes, max_pixels: int | None = None, name: str = "the image") -> np.ndarray:
    """An encoded image in memory (an upload) as a uint8 BGR H x W x 3 frame.

    The size is read from the header first: over `max_pixels` (None: no limit) raises
    ImageTooLarge before a byte is decoded, so a small file that declares a huge image (a
    decompression bomb) costs nothing. InputError for an empty body, a format that is not one
    of `DECODED_FORMATS`, and a truncated or corrupt image.
    """
    import cv2

    if not data:
        raise InputError(f"{name} is empty")
    info = image_size(data)
    if info is None:
        raise InputError(f"{name} is not a {DECODED_FORMATS} image")
    kind, w, h = info
    if w <= 0 or h <= 0:
        raise InputError(f"{name} declares a size of {w}x{h}: not a usable image")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageTooLarge(f"{name} is {w}x{h} = {w * h:,} pixels, over the limit of "
                            f"{max_pixels:,}", w, h, max_pixels)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) \
        if _complete(kind, data) else None
    if img is None:
        raise InputError(f"{name} is truncated or corrupt ({kind}, {w}x{h} declared)")
    return img
