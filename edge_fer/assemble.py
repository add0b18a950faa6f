"""The real-time loop assembled from `edge-fer run`'s options: source, detector, classifier,
tracking and the output sinks, in one place (`build_run`), for both `edge-fer run` and
`edge_fer.stream`. Which option goes to which part is declared in `edge_fer.options`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from edge_fer import __version__
from edge_fer.analyzer import Analyzer, load_classifier, load_detector
from edge_fer.detector import DEFAULT_DETECTOR
from edge_fer.errors import UsageError
from edge_fer.images import DEFAULT_MAX_PIXELS
from edge_fer.options import (CAPTURE, CLASSIFIER, DETECTOR, DETECTOR_OPTIONS, MODEL_OPTIONS, OUTPUT,
                              RUN, RUN_OPTIONS, TRACKING, OutputOptions, names)
from edge_fer.pipeline import CaptureOptions, Pipeline, PipelineOptions, TrackerOptions, open_source
from edge_fer.pipeline.sources import Source
from edge_fer.sinks.base import Sink
from edge_fer.sinks.display import DisplaySink, gui_problem
from edge_fer.sinks.jsonlines import JsonLinesSink
from edge_fer.sinks.recorder import RecorderSink
from edge_fer.sinks.results import ResultsSink

log = logging.getLogger(__name__)

#: `run`'s interpreter threads when `threads` is not given (at most the machine's cores).
RUN_INTERPRETER_THREADS = 2


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
        privacy=out.privacy, max_pixels=max_pixels)))


#: The detection width of `predict` and of the server's `POST /api/predict`: uploads are
#: photos, analysed as `edge-fer predict` analyses them.
PREDICT_DETECT_WIDTH = 640


def upload_analyzer(**options: Any) -> Analyzer:
    """The `Analyzer` that answers a run's `POST /api/predict` (`ServerSink.serve_predictions`):
    the run's model and detector options (`model`, `labels`, ..., `detector`, `min_face`, ...;
    others are ignored), with a model instance and a detector of its own, one interpreter thread,
    and `predict`'s detection width, so it answers what `edge-fer predict` would."""
    kw = {k: options[k] for k in names(MODEL_OPTIONS) + names(DETECTOR_OPTIONS)
          if options.get(k) is not None and k not in ("model", "detector", "threads")}
    kw["detect_width"] = PREDICT_DETECT_WIDTH
    return Analyzer(options.get("model"), options.get("detector") or DEFAULT_DETECTOR, 1, **kw)


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


#: Fields of the consumers' options that `run` leaves at their defaults; `stream()` takes them.
_CAPTURE_EXTRA = tuple(n for n in _fields(CaptureOptions) if n not in RUN)
_TRACKING_EXTRA = tuple(n for n in _fields(TrackerOptions) if n not in RUN)
_OUTPUT_EXTRA = tuple(n for n in _fields(OutputOptions) if n not in RUN)
BUILD_OPTIONS: frozenset[str] = frozenset(RUN).union(_CAPTURE_EXTRA, _TRACKING_EXTRA, _OUTPUT_EXTRA)
"""What `build_run` takes: every `run` option, and the fields of `CaptureOptions`,
`TrackerOptions` and `OutputOptions` the command line leaves at their defaults."""

_CAMERA = re.compile(r"^(pi|(usb:)?\d+)$", re.IGNORECASE)


def capture_for(source: str | os.PathLike) -> dict[str, str | None]:
    """`camera` or `source` for `CaptureOptions`: `pi`, `usb:N` and `N` name cameras, anything
    else is a video file, an image folder or a stream URL."""
    text = os.fspath(source)
    if _CAMERA.match(text.strip()):
        return {"camera": text.strip(), "source": None}
    return {"camera": None, "source": text}


@dataclasses.dataclass
class Run:
    """An assembled loop, not yet started: close it (or leave its `with`) to release what it
    opened (the server's port, the MQTT connection, the output files)."""

    pipeline: Pipeline
    """The loop: `start()`, `wait()`, `stop()`, `summary()`."""
    capture: CaptureOptions
    """The capture options it runs with."""
    server: Any
    """The page server (`edge_fer.sinks.server.ServerSink`), or None."""
    mqtt: Any
    """The MQTT sink (`edge_fer.sinks.mqtt.MqttSink`), or None."""
    cleanup: contextlib.ExitStack
    """Closes what the assembly opened."""

    def close(self) -> None:
        self.cleanup.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_run(options: Mapping[str, Any], extra_sinks: Sequence[Sink] = (), *,
              source: Source | None = None, systemd: bool = False) -> Run:
    """The loop of `edge-fer run` with `options` (`BUILD_OPTIONS`; what is not given takes
    `run`'s default), its results going to `extra_sinks` as well as to the outputs the options
    ask for. `source`: a `Source` to read instead of the `camera` or `source` option. `systemd`:
    report to systemd (readiness, watchdog, status) when started as a service ($NOTIFY_SOCKET).

    The server's port and token and the MQTT URL are checked before the model loads: what
    cannot serve fails at once, not after a minute of warm-up. Raises the errors of each part;
    on an error everything opened so far is closed.
    """
    unknown = sorted(set(options) - BUILD_OPTIONS)
    if unknown:
        raise UsageError(f"unknown run options {', '.join(unknown)}: allowed "
                         f"{', '.join(sorted(BUILD_OPTIONS))}")
    o = {**{n: opt.default for n, opt in RUN.items()}, **options}
    capture_kw = {k: o[k] for k in names(RUN_OPTIONS, CAPTURE) if k != "source_timeout"}
    capture_kw["lores_width"] = o["detect_width"]
    capture_kw.update((k, options[k]) for k in _CAPTURE_EXTRA if k in options)
    if "source_timeout" in options or "reconnect_timeout_s" not in options:
        capture_kw["reconnect_timeout_s"] = o["source_timeout"] or None  # 0 waits for ever
    if source is not None:
        capture_kw.update(camera=None, source=None)
    capture = CaptureOptions(**capture_kw)
    src = source if source is not None else open_source(capture)
    out = OutputOptions(**{k: o[k] for k in names(RUN_OPTIONS, OUTPUT) + _OUTPUT_EXTRA if k in o})
    cleanup = contextlib.ExitStack()
    with _closing_on_error(cleanup):
        server = open_server(out, cleanup, capture.max_pixels)
        mqtt = open_mqtt(out, cleanup)
        first: list[Sink] = [server] if server is not None else []
        monitor = None
        if systemd and os.environ.get("NOTIFY_SOCKET"):
            # Imported here: only a service started by systemd loads the watchdog's package.
            from edge_fer.sinks.systemd import ServiceMonitor, SystemdNotifier

            monitor = ServiceMonitor(SystemdNotifier()).start()
            cleanup.callback(monitor.close)
            first.append(monitor)
        detector = load_detector(**{k: o[k] for k in names(RUN_OPTIONS, DETECTOR)},
                                 backend=o["backend"])
        classifier_kw = {k: o[k] for k in names(RUN_OPTIONS, CLASSIFIER)}
        if classifier_kw["threads"] is None:
            # Capture and detection have a core each on a four-core Pi; two interpreter threads
            # are the rest. One is not enough for three faces at 30 fps on a Pi 4
            # (benchmarks/pi_budget.py); a single interpreter thread is LiteRT's own default.
            classifier_kw["threads"] = min(RUN_INTERPRETER_THREADS, os.cpu_count() or 1)
        classifier = load_classifier(**classifier_kw)
        if monitor is not None:
            monitor.model_loaded()
        tracking_kw = {k: o[k] for k in names(RUN_OPTIONS, TRACKING)}
        tracking_kw["detect_every"] = o["detect_every"] or detector.default_detect_every
        tracking_kw.update((k, options[k]) for k in _TRACKING_EXTRA if k in options)
        pipeline = Pipeline(src, detector, classifier,
                            PipelineOptions(capture, TrackerOptions(**tracking_kw)))
        if server is not None:
            server.follow(pipeline.stats)
            server.serve_predictions(upload_analyzer(**o).analyze)
        if mqtt is not None:
            attach_mqtt(mqtt, pipeline, server, monitor)
            first.append(mqtt)
        add_output_sinks(pipeline, out, cleanup, run_header(pipeline, server),
                         first=first + list(extra_sinks))
    return Run(pipeline, capture, server, mqtt, cleanup)


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
