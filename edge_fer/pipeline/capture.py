"""The capture stage: reads a frame source (`edge_fer.pipeline.sources`) on its own thread.

Sources only know how to open, read and close; this stage owns pacing, bounds (`--max-frames`,
`--duration`) and reconnecting live sources with backoff, so every source behaves the same way
in those respects.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable

from edge_fer.errors import SourceError
from edge_fer.pipeline.queues import LatestQueue
from edge_fer.pipeline.sources import FALLBACK_FPS, CaptureOptions, Frame, Source, as_bgr
from edge_fer.pipeline.stage import Stage
from edge_fer.pipeline.stats import PipelineStats

log = logging.getLogger(__name__)


class CaptureStage(Stage):
    """Reads the source on its own thread and hands frames to detection."""

    name = "capture"

    def __init__(self, source: Source, options: CaptureOptions, outbox: LatestQueue[Frame],
                 stats: PipelineStats, stop: threading.Event,
                 on_error: Callable[[str, BaseException], None], lossless: bool,
                 on_end: Callable[[str], None]):
        super().__init__(stop, on_error, lossless)
        self.source = source
        self.options = options
        self.outbox = outbox
        self.stats = stats
        self._on_end = on_end

    def run_loop(self) -> None:
        o, src = self.options, self.source
        started = time.monotonic()
        try:
            self._open_within(o.reconnect_timeout_s if src.live else None)
        except SourceError as exc:
            if not src.live or exc.permanent:
                raise
            if not self._retry(exc, at_start=True, since=started):
                return self._on_end("stopped")
        log.info("capturing from %s%s", src.description, f" at {src.fps:g} fps" if src.fps else "")
        pace = o.realtime and not src.live
        period = 1.0 / (o.fps or src.fps or FALLBACK_FPS) if pace else 0.0
        anchor = None
        index = 0
        pass_start, passes = 0, 1  # `index` at the start of this pass over a looped file
        while not self.stop_event.is_set():
            if o.max_frames is not None and index >= o.max_frames:
                return self._on_end("max frames")
            if o.duration is not None and self.stats.clock() - self.stats.started_at >= o.duration:
                return self._on_end("duration")
            try:
                got = src.read()
                if got is None and src.live:
                    raise SourceError(f"{src.description} ended")
            except SourceError as exc:
                if not src.live:
                    raise
                if self.stop_event.is_set() or not self._retry(exc):
                    break  # stopped while the source was down: a stop, not a capture failure
                continue
            if got is None:
                if index == pass_start:
                    raise SourceError(f"{src.description} gave no frames")
                if not o.loop:
                    return self._on_end("end of source")
                # Reopened rather than rewound: a folder is listed again and a file's checks
                # (frames it holds against frames decoded) apply to every pass.
                src.close()
                src.open()
                pass_start, passes = index, passes + 1
                log.info("%s: from the start again (pass %d)", src.description, passes)
                continue
            image = as_bgr(got[0], src.description)
            if pace:
                # A camera delivers frame i at anchor + i * period whether or not anyone is ready.
                now = time.monotonic()
                anchor = now if anchor is None else anchor
                due = anchor + index * period
                if due > now:
                    if self.stop_event.wait(due - now):
                        break
                elif now - due > period:
                    anchor = now - index * period  # decoding fell behind: do not burst to catch up
            at = time.monotonic()
            self.stats.captured(at)
            self.emit(self.outbox, Frame(index, at, image, got[1]))
            index += 1
        self._on_end("stopped")

    def _open_within(self, seconds: float | None) -> None:
        """Open the source, letting the open block for at most `seconds` (None: its own bound)."""
        if seconds is not None:
            self.source.limit_open(max(seconds, 0.0))
        try:
            self.source.open()
        finally:
            if seconds is not None:
                self.source.limit_open(None)

    def _retry(self, exc: SourceError, at_start: bool = False, since: float | None = None) -> bool:
        """Open a live source that is down (at the start) or was lost (during the run), with
        exponential backoff; True once it is open, False when stopped meanwhile. Raises
        SourceError once `reconnect_timeout_s` have passed since `since` (default: now), or at
        once for a fault waiting cannot fix. The deadline bounds the whole wait: the last
        backoff is cut short and an open that blocks is given only the time left."""
        o, src = self.options, self.source
        limit = o.reconnect_timeout_s
        for_how_long = f"for up to {limit:g} s" if limit else "until it is back"
        log.warning("%s; %s %s", exc, "retrying" if at_start else "reconnecting", for_how_long)
        lost_at = time.monotonic() if since is None else since
        deadline = lost_at + limit if limit else None
        delay = o.reconnect_initial_s
        while True:
            src.close()
            left = math.inf if deadline is None else deadline - time.monotonic()
            if left <= 0:
                what = "did not come up" if at_start else "did not come back"
                raise SourceError(f"{src.description} {what} within {limit:g} s "
                                  f"(--source-timeout): {exc}") from None
            if self.stop_event.wait(min(delay, left)):
                return False
            try:
                self._open_within(None if deadline is None else deadline - time.monotonic())
            except SourceError as err:
                if err.permanent:
                    raise
                exc = err
                delay = min(delay * 2, o.reconnect_max_s)
                left = math.inf if deadline is None else deadline - time.monotonic()
                if left > 0:
                    log.warning("%s failed: %s; next try in %.1f s",
                                "open" if at_start else "reconnect", err, min(delay, left))
                continue
            if not at_start:
                self.stats.reconnects += 1
            log.warning("%s is %s after %.1f s", src.description, "up" if at_start else "back",
                        time.monotonic() - lost_at)
            return True

    def close(self) -> None:
        self.source.close()

