"""The Python API: emotions from an image, from face crops, or from a camera, in a few lines.

    import edge_fer
    faces = edge_fer.analyze("photo.jpg")             # list[Face]
    with edge_fer.stream("usb:0") as results:         # the real-time pipeline's FrameResults
        for result in results: ...

`analyze` loads the model for each call; `Analyzer` loads it once for many frames. Errors are
`edge_fer.errors` classes (`EdgeFerError` and subclasses) carrying the one-line message the
command line prints; nothing here prints or exits, and logging goes through the `edge_fer`
loggers. The command line's `predict` and `run` are built on the same functions.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator

from edge_fer.analyzer import (Analyzer, ImageInput, default_model_path, load_classifier,
                               load_detector, load_image, model_path)
from edge_fer.assemble import BUILD_OPTIONS, build_run, capture_for
from edge_fer.detector import DEFAULT_DETECTOR, FaceDetector
from edge_fer.errors import UsageError
from edge_fer.evaluate import Evaluation, evaluate_classifier
from edge_fer.images import DEFAULT_MAX_PIXELS
from edge_fer.pipeline import Pipeline
from edge_fer.pipeline.queues import LatestQueue
from edge_fer.pipeline.sources import Source
from edge_fer.pipeline.stage import POLL_S
from edge_fer.results import Face, FrameResult, RunSummary, StatsSnapshot
from edge_fer.sinks.base import Sink

STREAM_OPTIONS: frozenset[str] = (BUILD_OPTIONS - {"camera", "source"}) | {"queue_size"}
"""The keywords `stream` takes: every `edge-fer run` option (with `_` for `-`), plus the fields
of `CaptureOptions`, `TrackerOptions` and `OutputOptions` the command line leaves at their
defaults, plus `queue_size`. Declared in `edge_fer.options` (`RUN_OPTIONS`)."""


# -- still images ----------------------------------------------------------------------------

def analyze(image: ImageInput, *, model: str | os.PathLike | None = None,
            detector: str | FaceDetector | None = DEFAULT_DETECTOR, tta: bool = False) -> list[Face]:
    """The faces in one image, largest first; the same faces `edge-fer predict --json` prints.

    Loads the model and detector for this call: for many images make one `Analyzer`.
    """
    return Analyzer(model, detector, tta=tta).analyze(image)


def evaluate_model(data: str | os.PathLike, *, model: str | os.PathLike | None = None,
             votes: str | os.PathLike | None = None, usage: str | None = None,
             limit: int | None = None, detector: str | None = None,
             max_pixels: int | None = DEFAULT_MAX_PIXELS, **classifier: Any) -> Evaluation:
    """`edge-fer evaluate` (named so because `edge_fer.evaluate` is the scoring module): the `.tflite` model (see `model_path`) scored on the labelled faces
    at `data` (a folder of class subfolders, the FER2013 CSV with `usage`, an `.npz`), against
    their labels and, where there are FER+ votes (`votes`, else `ferplus.csv` beside the
    folder), against the FER+ majority (`Evaluation.ferplus`; `Evaluation.note` says why not).
    `detector` (a name) scores each image's largest detected face; `classifier` takes
    `load_classifier`'s keywords."""
    clf = load_classifier(model, **classifier)
    det = load_detector(detector, backend=classifier.get("backend")) if detector else None
    result, _ = evaluate_classifier(clf, data, usage=usage, limit=limit, detector=det,
                                    max_pixels=max_pixels, votes=votes)
    return result


# -- the real-time pipeline ------------------------------------------------------------------

class _ResultSink(Sink):
    """Hands each FrameResult to the thread iterating a `Stream`, through a bounded queue.

    A live source drops the stalest result when the caller falls behind (counted in
    `dropped`), as every queue of the pipeline does; a file read offline waits for the caller,
    so no frame is lost.
    """

    def __init__(self, size: int, lossless: bool):
        self.queue: LatestQueue[FrameResult] = LatestQueue(size, "sinks->caller")
        self.lossless = lossless
        self.released = threading.Event()
        """Set when the caller has stopped reading: results are no longer waited on."""

    def on_result(self, result: FrameResult, stats: StatsSnapshot) -> None:
        if not self.lossless:
            self.queue.put(result)
            return
        while not self.queue.put_wait(result, POLL_S):
            if self.released.is_set():
                return


class Stream:
    """The running pipeline of `stream()`: iterate it for `FrameResult`s.

    Iterate it once. The pipeline starts on `with` (or the first iteration) and stops when the
    loop ends, is left early (`break`, an exception) or the `with` block ends, whichever comes
    first; its threads are joined before that returns. An error in any stage ends the loop by
    raising it here, as an `EdgeFerError`.
    """

    def __init__(self, pipeline: Pipeline, sink: _ResultSink, cleanup: contextlib.ExitStack):
        self.pipeline = pipeline
        self._sink = sink
        self._cleanup = cleanup
        self._started = False
        self._closed = False

    def start(self) -> "Stream":
        """Start the pipeline (done by `with` and by iterating); returns self."""
        if self._closed:
            raise UsageError("this stream is closed: call edge_fer.stream() again")
        if not self._started:
            self._started = True
            self.pipeline.start()
        return self

    def __enter__(self) -> "Stream":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[FrameResult]:
        self.start()
        return self._results()

    def _results(self) -> Iterator[FrameResult]:
        q = self._sink.queue
        try:
            while True:
                item = q.get(POLL_S)
                if item is not None:
                    yield item
                    continue
                # In this order: a result put just before the sinks ended is still read.
                if self.pipeline.join(0) and len(q) == 0:
                    break
            if self.pipeline.error is not None:
                raise self.pipeline.error
        finally:
            self.close()

    def close(self) -> None:
        """Stop the pipeline and wait for its threads; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._sink.released.set()
        try:
            if self._started:
                self.pipeline.stop("closed by the caller")
                self.pipeline.wait()
        finally:
            self._cleanup.close()

    @property
    def dropped(self) -> int:
        """Results dropped because the caller fell behind a live source."""
        return self._sink.queue.dropped

    def stats(self) -> StatsSnapshot:
        """The run's counters and rolling measurements now (as the sinks see them)."""
        return self.pipeline.stats()

    def summary(self) -> RunSummary:
        """`stats()` plus how the run ended (what `edge-fer run` prints at the end)."""
        return self.pipeline.summary()


def stream(source: str | os.PathLike | Source, **options: Any) -> Stream:
    """The real-time pipeline of `edge-fer run` over `source`, as an iterable of `FrameResult`s.

    `source`: a camera (`"pi"`, `"usb:0"`, `"0"`), a video file, a folder of images, a stream
    URL (rtsp://, http://), or a `Source` object. `options`: every `edge-fer run` option as a
    keyword, `-` written `_` (`min_face=40`, `detect_every=3`, `max_frames=100`,
    `log_json="run.jsonl"`, `serve="127.0.0.1:8080"`, ...) with `run`'s defaults, except
    `display` (no window unless asked); also every field of `CaptureOptions` and
    `TrackerOptions` (`reconnect_timeout_s`, ...), and `queue_size`: results held for the caller
    (default 2). See `STREAM_OPTIONS`.

    Loads the model and detector and opens the server (if `serve`) here, raising their errors
    at once; the source is opened by the capture thread once the stream starts, and its errors
    come out of the loop. Unknown keywords raise UsageError listing the allowed ones.
    """
    unknown = sorted(set(options) - STREAM_OPTIONS)
    if unknown:
        raise UsageError(f"unknown stream option{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)}: allowed {', '.join(sorted(STREAM_OPTIONS))}")
    queue_size = options.pop("queue_size", 2)
    if not isinstance(queue_size, int) or queue_size < 1:
        raise UsageError(f"queue_size must be a whole number of at least 1, got {queue_size!r}")
    options.setdefault("display", False)
    sink = _ResultSink(queue_size, lossless=False)
    if isinstance(source, Source):
        assembled = build_run(options, [sink], source=source)
    else:
        assembled = build_run({**options, **capture_for(source)}, [sink])
    # A live source drops what the caller cannot keep up with; a file waits for the caller.
    sink.lossless = not (assembled.pipeline.source.live or assembled.capture.realtime)
    return Stream(assembled.pipeline, sink, assembled.cleanup)


__all__ = ["Analyzer", "Face", "ImageInput", "STREAM_OPTIONS", "Stream", "analyze",
           "default_model_path", "evaluate_model", "load_classifier", "load_detector",
           "load_image", "model_path", "stream"]
