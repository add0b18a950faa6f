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
import dataclasses
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence, Union

import numpy as np

from edge_fer import __version__
from edge_fer.classifier import ClassifierOptions, EmotionClassifier
from edge_fer.detector import DEFAULT_DETECTOR, DetectorOptions, FaceDetector, create_detector
from edge_fer.detector.base import as_uint8_frame
from edge_fer.errors import InputError, UsageError
from edge_fer.evaluate import Evaluation, evaluate_classifier
from edge_fer.images import DEFAULT_MAX_PIXELS, iter_image_paths, read_image
from edge_fer.pipeline import CaptureOptions, Pipeline, PipelineOptions, TrackerOptions, open_source
from edge_fer.pipeline.capture import Source
from edge_fer.pipeline.queues import LatestQueue
from edge_fer.pipeline.stage import POLL_S
from edge_fer.predict import Face, FacePredictor
from edge_fer.results import FrameResult, RunSummary, StatsSnapshot
from edge_fer.sinks.base import Sink
from edge_fer.sinks.display import DisplaySink, gui_problem
from edge_fer.sinks.jsonlines import JsonLinesSink
from edge_fer.sinks.recorder import RecorderSink
from edge_fer.sinks.results import ResultsSink
from edge_fer_models import DEFAULT_MODEL, resolve_model

log = logging.getLogger(__name__)

ImageInput = Union[str, os.PathLike, np.ndarray]
"""A path to an image file, or a uint8 numpy array: BGR H x W x 3 (as OpenCV reads it), gray
H x W (or H x W x 1), or BGRA H x W x 4."""


# -- loading: shared with the command line ---------------------------------------------------

def default_model_path() -> str:
    """The model used when none is named: $EDGE_FER_MODEL, else the shipped default model."""
    return resolve_model(os.environ.get("EDGE_FER_MODEL") or str(DEFAULT_MODEL))


def model_path(model: str | os.PathLike | None = None) -> str:
    """`model` as a file: a path as it is, a shipped model's short name (a key of
    `edge_fer_models.SHIPPED`: `default`, `lite`, ...) as its file; None: `default_model_path()`."""
    return resolve_model(str(model)) if model else default_model_path()


def load_classifier(model: str | os.PathLike | None = None, *, labels: Sequence[str] | None = None,
                    normalization: str | None = None, crop_margin: float | None = None,
                    threads: int | None = None, tta: bool = False,
                    backend: str | None = None) -> EmotionClassifier:
    """The `.tflite` emotion model at `model` (see `model_path`), loaded once.

    Raises InputError (no such file), ModelError (not a usable model) or BackendError (no
    interpreter installed).
    """
    return EmotionClassifier(model_path(model), ClassifierOptions(
        labels=list(labels) if labels else None, normalization=normalization,
        crop_margin=crop_margin, num_threads=threads, backend=backend, flip_tta=tta))


def load_detector(detector: str = DEFAULT_DETECTOR, *, detect_score: float | None = None,
                  cascade: str | os.PathLike | None = None, scale_factor: float = 1.1,
                  min_neighbors: int = 5, min_face: int = 30, detect_width: int = 640,
                  backend: str | None = None) -> FaceDetector:
    """The face detector called `detector` (`haar`, `blazeface`, `blazeface-full`), with the
    options `edge-fer predict` has. Raises UsageError (unknown name), ModelError (weights not
    fetched: the message names `edge-fer detectors fetch`) or InputError (bad cascade file)."""
    return create_detector(detector, DetectorOptions(
        cascade=os.fspath(cascade) if cascade else None, scale_factor=scale_factor,
        min_neighbors=min_neighbors, min_size=min_face, detect_width=detect_width,
        min_score=detect_score, backend=None if backend in (None, "auto") else backend))



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

def load_image(image: ImageInput) -> np.ndarray:
    """`image` as a uint8 frame a detector takes (BGR H x W x 3 or gray H x W).

    A path is read as `edge-fer predict` reads it (InputError: missing, a folder, not an
    image); an array is checked, not copied (InputError: not uint8, or not an image's shape).
    """
    if isinstance(image, np.ndarray):
        return as_uint8_frame(image)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_dir():
            # The check `predict` makes on its arguments, so a missing file reads the same here.
            path = next(iter(iter_image_paths([path])))
        return read_image(path)
    raise InputError(f"an image must be a path or a numpy array, got {type(image).__name__}")


# -- still images ----------------------------------------------------------------------------

class Analyzer:
    """A loaded model and face detector, for many frames.

    Thread use: one Analyzer may be shared by several threads. The interpreter and the detector
    are not thread-safe, so calls on one Analyzer run one at a time under a lock: sharing is
    safe but not parallel. For parallel work give each thread its own Analyzer (each loads its
    own interpreter; `threads=1` keeps them from competing for cores).

    `detector` is a registry name (`haar`, `blazeface`, `blazeface-full`), a `FaceDetector`
    you built, or None to take every image as one face that is already cropped (as
    `predict --no-detect`). The other keywords are `edge-fer predict`'s options.
    """

    def __init__(self, model: str | os.PathLike | None = None,
                 detector: str | FaceDetector | None = DEFAULT_DETECTOR,
                 threads: int | None = None, *, tta: bool = False, backend: str | None = None,
                 labels: Sequence[str] | None = None, normalization: str | None = None,
                 crop_margin: float | None = None, detect_score: float | None = None,
                 cascade: str | os.PathLike | None = None, scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_face: int = 30, detect_width: int = 640):
        self.classifier = load_classifier(model, labels=labels, normalization=normalization,
                                          crop_margin=crop_margin, threads=threads, tta=tta,
                                          backend=backend)
        if isinstance(detector, str):
            detector = load_detector(detector, detect_score=detect_score, cascade=cascade,
                                     scale_factor=scale_factor, min_neighbors=min_neighbors,
                                     min_face=min_face, detect_width=detect_width, backend=backend)
        elif detector is not None and not isinstance(detector, FaceDetector):
            raise UsageError(f"detector must be a name, a FaceDetector or None, got "
                             f"{type(detector).__name__}")
        self.detector: FaceDetector | None = detector
        self._predictor = FacePredictor(self.classifier, detector)
        self._lock = threading.Lock()

    @property
    def labels(self) -> list[str]:
        """The model's emotions, in the order of its outputs."""
        return list(self.classifier.labels)

    def analyze(self, image: ImageInput) -> list[Face]:
        """The faces in `image` (see `ImageInput`), largest first."""
        frame = load_image(image)
        with self._lock:
            return self._predictor.predict_frame(frame)

    def classify(self, face_crops: Sequence[np.ndarray]) -> list[Face]:
        """One `Face` per crop, for faces found some other way: each crop (uint8 BGR or gray,
        any size) is taken whole, and its `box` is the whole crop."""
        if isinstance(face_crops, np.ndarray) and face_crops.ndim in (2, 3) \
                and not (face_crops.ndim == 3 and face_crops.shape[2] > 4):
            raise InputError("classify takes a list of face crops, not one image: wrap it in a list")
        crops = [as_uint8_frame(c) for c in face_crops]
        with self._lock:
            return self._predictor.classify_whole(crops)


def analyze(image: ImageInput, *, model: str | os.PathLike | None = None,
            detector: str | FaceDetector | None = DEFAULT_DETECTOR, tta: bool = False) -> list[Face]:
    """The faces in one image, largest first; the same faces `edge-fer predict --json` prints.

    Loads the model and detector for this call: for many images make one `Analyzer`.
    """
    return Analyzer(model, detector, tta=tta).analyze(image)


# -- the real-time pipeline ------------------------------------------------------------------

@dataclasses.dataclass
class OutputOptions:
    """Where a run's results go besides the caller: `edge-fer run`'s output options."""

    log_json: str | None = None
    """Append JSON lines to this file: stats, face events, a summary (never pixels)."""
    log_interval: float = 5.0
    """Seconds between stats lines."""
    log_max_bytes: int = 10 * 1024 * 1024
    """Rotate the JSON log when it would grow past this size."""
    log_backups: int = 3
    """Rotated JSON logs kept."""
    display: bool | None = False
    """Show the annotated stream in a window (None: when a GUI is available)."""
    record: str | None = None
    """Save the annotated stream to a video (.avi or .mkv, which survive a crash); strftime
    fields (`%Y%m%d-%H%M%S`) give each run a file of its own."""
    results: str | None = None
    """Write every processed frame's faces to this file: `.jsonl` (JSON lines) or `.csv` (a
    row per face); strftime fields give each run a file of its own. See
    `edge_fer.sinks.results.ResultsSink`."""
    overwrite: bool = False
    """Replace an existing `record` or `results` file (otherwise it is refused)."""
    serve: str | None = None
    """Serve the live page, /api/stats, /api/faces and /metrics on HOST:PORT."""
    token: str | None = None
    """Access token for `serve`, required on a non-loopback address."""
    blur_faces: bool = False
    """Blur each face the detector found, and its tracked box between detections, in what is
    shown and kept (the served stream, the window, the recording); the model still sees the
    faces. A face the detector missed stays sharp: see `privacy`."""
    faces_api: str = "full"
    """What `serve`'s `/api/faces` tells: "full" (track ids, boxes, labels, scores) or
    "aggregate" (faces per label only). "aggregate" also keeps boxes and track ids out of the
    MQTT events."""
    privacy: str | None = None
    """What is hidden in what is shown and kept: "faces" (as `blur_faces`) or "frame" (the
    whole picture blurred, boxes and labels drawn on top: a face the detector missed is never
    shown)."""
    mqtt: str | None = None
    """Publish availability, state and face events to the MQTT broker at this URL
    (`mqtt://HOST[:PORT]`, `mqtts://HOST[:PORT]`), with Home Assistant discovery; see
    `edge_fer.sinks.mqtt` and docs/fleet.md."""
    mqtt_device: str | None = None
    """The device id in the MQTT topics and in Home Assistant (default: the host's name)."""
    mqtt_prefix: str = "homeassistant"
    """Home Assistant's MQTT discovery prefix."""
    mqtt_ca: str | None = None
    """CA certificate (PEM) to verify an `mqtts://` broker with (default: the system's CAs)."""
    mqtt_required: bool = False
    """Stop the run (exit 8) when the broker refuses the credentials or TLS fails; by default
    the run goes on without MQTT."""
    mqtt_username: str | None = None
    """The broker's user name; None: $EDGE_FER_MQTT_USERNAME (`edge-fer run` reads it from
    the environment or the config file only, never the command line)."""
    mqtt_password: str | None = dataclasses.field(default=None, repr=False)
    """The broker's password; None: $EDGE_FER_MQTT_PASSWORD (`edge-fer run`: the environment
    or the config file only); never logged."""


def add_output_sinks(pipeline: Pipeline, out: OutputOptions, cleanup: contextlib.ExitStack,
                     header: dict[str, Any] | None = None, first: Sequence[Sink] = ()) -> None:
    """Add `first`, then the JSON log, then the slow sinks (window, recorder) to `pipeline`:
    cheap sinks see each result first. Closing `cleanup` closes what needs closing."""
    sinks = list(first)
    if out.results:
        results = ResultsSink(_run_name(out.results), pipeline.classifier.labels,
                              started=lambda: pipeline.started_at, overwrite=out.overwrite)
        cleanup.callback(results.close)
        sinks.append(results)
    if out.log_json:
        json_log = JsonLinesSink(out.log_json, out.log_interval, header,
                                 max_bytes=out.log_max_bytes, backups=out.log_backups)
        cleanup.callback(json_log.close)
        sinks.append(json_log)
    if out.display or (out.display is None and gui_problem() is None):
        sinks.append(DisplaySink(pipeline.stop, blur_faces=out.blur_faces, privacy=out.privacy))
    if out.record:
        sinks.append(RecorderSink(_run_name(out.record), overwrite=out.overwrite,
                                  blur_faces=out.blur_faces, privacy=out.privacy))
    for sink in sinks:
        pipeline.add_sink(sink)


def open_mqtt(out: OutputOptions, cleanup: contextlib.ExitStack):
    """The MQTT sink `out.mqtt` asks for, closed by `cleanup`, or None. Made before the model
    loads, so a bad URL, a missing CA file or a missing paho-mqtt fails at once; it connects
    once `attach_mqtt` starts it, and a broker that is down is retried while the run goes on."""
    if not out.mqtt:
        return None
    # Imported here, not at the top: paho-mqtt is an optional extra ([mqtt]).
    from edge_fer.sinks.mqtt import PASSWORD_ENV, USERNAME_ENV, MqttOptions, MqttSink

    sink = MqttSink(MqttOptions(
        url=out.mqtt, device=out.mqtt_device, prefix=out.mqtt_prefix, ca_file=out.mqtt_ca,
        username=out.mqtt_username or os.environ.get(USERNAME_ENV),
        password=out.mqtt_password or os.environ.get(PASSWORD_ENV), required=out.mqtt_required,
        aggregate=out.faces_api == "aggregate"))
    cleanup.callback(sink.close)
    return sink


def attach_mqtt(mqtt, pipeline: Pipeline, server: Any = None, monitor: Any = None) -> None:
    """Start `mqtt` (an `open_mqtt` sink) with the pipeline's labels and model, and let the
    page server's `/api/stats` and `/metrics` and systemd's status report on it."""
    from edge_fer.sinks.mqtt import STATUS_METRICS

    mqtt.start(pipeline.classifier.labels, Path(str(pipeline.classifier.path)).stem)
    if server is not None:
        server.add_status("mqtt", mqtt.status, STATUS_METRICS)
    if monitor is not None:
        monitor.add_status(lambda: f"mqtt={mqtt.state}")


def _run_name(path: str) -> str:
    """`path` with its strftime fields filled in: each run (a service's restarts) gets a file
    of its own."""
    return time.strftime(path) if "%" in path else path


def open_server(out: OutputOptions, cleanup: contextlib.ExitStack,
                max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """The page server `out.serve` asks for, entered on `cleanup`, or None. Made before the model
    loads, so a port in use or a missing token fails at once. `max_pixels` caps the images
    uploaded to its `/api/predict`, as it caps the run's frames."""
    if not out.serve:
        if out.token:
            log.warning("a token has no effect without serve")
        return None
    # Imported here, not at the top: the server's modules (http.server, prometheus_client, the
    # config parser) take about 60 ms to import, paid only by runs that serve.
    from edge_fer.sinks.server import ServerOptions, ServerSink

    return cleanup.enter_context(ServerSink(ServerOptions.from_serve(
        out.serve, out.token, blur_faces=out.blur_faces, faces_api=out.faces_api,
        privacy=out.privacy,
        max_pixels=max_pixels)))


#: The detection width of `predict` and of the server's `POST /api/predict`: uploads are
#: photos, analysed as `edge-fer predict` analyses them.
PREDICT_DETECT_WIDTH = 640


def upload_analyzer(**options: Any) -> Analyzer:
    """The `Analyzer` that answers a run's `POST /api/predict` (`ServerSink.serve_predictions`):
    the run's model and detector options (`model`, `labels`, ..., `detector`, `min_face`, ...;
    others are ignored), with a model instance and a detector of its own, one interpreter thread,
    and `predict`'s detection width, so it answers what `edge-fer predict` would."""
    kw = {k: options[k] for k in _CLASSIFIER_KEYS + _DETECTOR_KEYS
          if options.get(k) is not None and k not in ("model", "detector", "threads")}
    kw["detect_width"] = PREDICT_DETECT_WIDTH
    return Analyzer(options.get("model"), options.get("detector") or DEFAULT_DETECTOR, 1, **kw)


def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


_CLASSIFIER_KEYS = ("model", "labels", "normalization", "crop_margin", "threads", "tta", "backend")
_DETECTOR_KEYS = ("detector", "detect_score", "cascade", "scale_factor", "min_neighbors",
                  "min_face", "detect_width")
_CAPTURE_KEYS = tuple(n for n in _names(CaptureOptions) if n not in ("camera", "source"))
_TRACKING_KEYS = _names(TrackerOptions)
_OUTPUT_KEYS = _names(OutputOptions)
_SOURCE_KEYS = ("source_timeout",)
_STREAM_KEYS = ("queue_size",)
STREAM_OPTIONS: frozenset[str] = frozenset(_CLASSIFIER_KEYS + _DETECTOR_KEYS + _CAPTURE_KEYS
                                           + _TRACKING_KEYS + _OUTPUT_KEYS + _SOURCE_KEYS
                                           + _STREAM_KEYS)
"""The keywords `stream` takes: every `edge-fer run` option (with `_` for `-`), plus the fields
of `CaptureOptions` and `TrackerOptions` the command line leaves at their defaults, plus
`queue_size`."""

#: What `run` defaults differently from `predict`: detection on a smaller frame.
RUN_DETECT_WIDTH = 320

_CAMERA = re.compile(r"^(pi|(usb:)?\d+)$", re.IGNORECASE)


def _capture_for(source: str | os.PathLike) -> dict[str, str | None]:
    """`camera` or `source` for `CaptureOptions`: `pi`, `usb:N` and `N` name cameras, anything
    else is a video file, an image folder or a stream URL."""
    text = os.fspath(source)
    if _CAMERA.match(text.strip()):
        return {"camera": text.strip(), "source": None}
    return {"camera": None, "source": text}


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

    def pick(keys: Sequence[str]) -> dict[str, Any]:
        return {k: options[k] for k in keys if k in options}

    queue_size = options.get("queue_size", 2)
    if not isinstance(queue_size, int) or queue_size < 1:
        raise UsageError(f"queue_size must be a whole number of at least 1, got {queue_size!r}")

    detector_kw = {"detect_width": RUN_DETECT_WIDTH, **pick(_DETECTOR_KEYS)}
    capture_kw = {"lores_width": detector_kw["detect_width"], **pick(_CAPTURE_KEYS)}
    if "source_timeout" in options:  # run's --source-timeout: 0 waits for ever
        capture_kw["reconnect_timeout_s"] = options["source_timeout"] or None
    if isinstance(source, Source):
        src = source
        capture = CaptureOptions(**capture_kw)
    else:
        capture = CaptureOptions(**_capture_for(source), **capture_kw)
        src = open_source(capture)
    out = OutputOptions(**pick(_OUTPUT_KEYS))
    cleanup = contextlib.ExitStack()
    with _closing_on_error(cleanup):
        server = open_server(out, cleanup, capture.max_pixels)
        mqtt = open_mqtt(out, cleanup)
        classifier_kw = pick(_CLASSIFIER_KEYS)
        detector = load_detector(**detector_kw, backend=classifier_kw.get("backend"))
        classifier = load_classifier(**classifier_kw)
        tracking = TrackerOptions(**{"detect_every": detector.default_detect_every,
                                     **pick(_TRACKING_KEYS)})
        pipeline = Pipeline(src, detector, classifier, PipelineOptions(capture, tracking))
        sink = _ResultSink(queue_size, not (src.live or capture.realtime))
        add_output_sinks(pipeline, out, cleanup, run_header(pipeline, server),
                         first=[sink] + ([server] if server else []) + ([mqtt] if mqtt else []))
        if mqtt is not None:
            attach_mqtt(mqtt, pipeline, server)
        if server is not None:
            server.follow(pipeline.stats)
            server.serve_predictions(upload_analyzer(**classifier_kw, **detector_kw))
        return Stream(pipeline, sink, cleanup)


def run_header(pipeline: Pipeline, server: Any = None) -> dict[str, Any]:
    """The `start` record of a run's JSON log: version, source, model, detector, options."""
    return {"version": __version__, **pipeline.describe(),
            "serve": server.url if server is not None else None}


@contextlib.contextmanager
def _closing_on_error(cleanup: contextlib.ExitStack) -> Iterator[None]:
    try:
        yield
    except BaseException:
        cleanup.close()
        raise


__all__ = ["Analyzer", "Face", "ImageInput", "OutputOptions", "STREAM_OPTIONS", "Stream",
           "add_output_sinks", "analyze", "attach_mqtt", "default_model_path", "load_classifier",
           "model_path", "open_mqtt",
           "load_detector", "load_image", "open_server", "run_header", "stream", "upload_analyzer"]
