"""The images of a folder, in name order, as frames."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from edge_fer.errors import InputError, SourceError
from edge_fer.images import DEFAULT_MAX_PIXELS, iter_image_paths, read_image
from edge_fer.pipeline.sources.base import Source

log = logging.getLogger(__name__)


class ImageFolderSource(Source):
    """The images of a folder, in name order, as frames; unreadable files are skipped."""

    def __init__(self, path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.path = Path(path)
        self.max_pixels = max_pixels
        self._paths: list[Path] = []
        self._next = 0
        self.skipped = 0

    @property
    def description(self) -> str:
        return f"image folder {self.path}"

    def open(self) -> None:
        try:
            self._paths = list(iter_image_paths([self.path]))
        except InputError as exc:
            raise SourceError(str(exc)) from None
        self._next = 0

    def read(self):
        while self._next < len(self._paths):
            path = self._paths[self._next]
            self._next += 1
            try:
                return read_image(path, max_pixels=self.max_pixels), None
            except InputError as exc:
                # One bad file in a folder of frames must not end the run.
                self.skipped += 1
                log.warning("skipping %s", exc)
        return None


__all__ = ["ImageFolderSource"]
