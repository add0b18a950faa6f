"""Overlapping tiles over a photo, for detectors whose input is a small fixed square.

BlazeFace sees a whole photo letterboxed into 128 or 192 pixels, where the faces of a group photo
are a few pixels wide and go unseen. Detecting over tiles at several sizes, from `smallest` up to
the whole photo in steps of `STEP`, shows every face at some size the model finds: with tiles
overlapping by half, a face up to half a tile's side lies wholly inside some tile of that size.
"""

from __future__ import annotations

import math
from typing import Iterator

#: Ratio between one tile size and the next: x2 left faces between two sizes that neither
#: model found on the shared group photos; sqrt(2) finds every face Haar finds there.
STEP = math.sqrt(2)
#: Share of a tile's side that its neighbour covers too.
OVERLAP = 0.5


def tile_grid(width: int, height: int, smallest: int, step: float = STEP,
              overlap: float = OVERLAP) -> Iterator[tuple[int, int, int, int]]:
    """(x, y, w, h) of square tiles of side `smallest`, `smallest * step`, ... over a
    `width` x `height` image, each size overlapping by `overlap`, ending with the whole image
    (a tile is cut to the image where the image is narrower)."""
    longest = max(width, height)
    side = float(smallest)
    while True:
        s = min(int(round(side)), longest)
        tw, th = min(s, width), min(s, height)
        stride = max(1, int(s * (1 - overlap)))
        for y in _starts(height, th, stride):
            for x in _starts(width, tw, stride):
                yield x, y, tw, th
        if s >= longest:
            return
        side *= step


def _starts(length: int, tile: int, stride: int) -> list[int]:
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)  # the last tile flush with the far edge
    return starts


def cut_by_inner_edge(box, tile: tuple[int, int, int, int], width: int, height: int,
                      margin: float) -> bool:
    """Whether `box` (x0, y0, x1, y1) touches an edge of `tile` that is not the image's own:
    a face cut there is found whole in an overlapping tile, and the cut part would survive
    non-maximum suppression beside it as a second, wrong face."""
    x, y, tw, th = tile
    x0, y0, x1, y1 = box
    return bool((x > 0 and x0 < x + margin) or (y > 0 and y0 < y + margin)
                or (x + tw < width and x1 > x + tw - margin)
                or (y + th < height and y1 > y + th - margin))
