"""Every option of `edge-fer run`, and the model and detector options `predict` and `evaluate`
share with it, declared once.

An `Option` is a row of a table: its name, type, default, help, its section of the config file
and the part of the loop that consumes it. From the tables come the click options of the commands
(`click_options`), the config file's sections (`SECTIONS`, read by `edge_fer.config`), and the
keywords of `edge_fer.stream` (`edge_fer.assemble.BUILD_OPTIONS`). Adding a `run` option is a row
in `RUN_OPTIONS` and the code of its consumer; the command line, the file and the API follow.
Defaults are read off the consumers' typed options (`CaptureOptions`, `TrackerOptions`,
`DetectorOptions`, `OutputOptions`), so each is written once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import click

from edge_fer.detector import DEFAULT_DETECTOR, DetectorOptions, detector_names
from edge_fer.errors import EdgeFerError
from edge_fer.exposure import FACES_API_MODES, PRIVACY_MODES
from edge_fer.pipeline.sources import CaptureOptions, parse_camera
from edge_fer.pipeline.tracking import TrackerOptions
from edge_fer.network import ADDRESS_WORDS, DEFAULT_SERVE, TOKEN_WORDS, check_token, parse_address
from edge_fer.sinks.mqtt import (DEFAULT_PREFIX, DEVICE_WORDS, PASSWORD_ENV, PREFIX_WORDS, URL_WORDS,
                                 USERNAME_ENV, check_device, check_prefix, parse_broker)
from edge_fer_models import SHIPPED

#: The consumers: which part of the loop an option configures.
CAPTURE, CLASSIFIER, DETECTOR, TRACKING, OUTPUT = "capture", "classifier", "detector", "tracking", "output"

#: `run`'s detection width: a smaller frame than `predict`'s photos (`DetectorOptions`' default),
#: the width of the low-resolution stream a Pi camera delivers for detection.
RUN_DETECT_WIDTH = CaptureOptions.lores_width


@dataclass
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
    mqtt_prefix: str = DEFAULT_PREFIX
    """Home Assistant's MQTT discovery prefix."""
    mqtt_ca: str | None = None
    """CA certificate (PEM) to verify an `mqtts://` broker with (default: the system's CAs)."""
    mqtt_required: bool = False
    """Stop the run (exit 8) when the broker refuses the credentials or TLS fails; by default
    the run goes on without MQTT."""
    mqtt_username: str | None = None
    """The broker's user name; None: $EDGE_FER_MQTT_USERNAME (`edge-fer run` reads it from
    the environment or the config file only, never the command line)."""
    mqtt_password: str | None = field(default=None, repr=False)
    """The broker's password; None: $EDGE_FER_MQTT_PASSWORD (`edge-fer run`: the environment
    or the config file only); never logged."""


@dataclass(frozen=True)
class Option:
    """One option: what the command line, the config file and `stream()` take under its name."""

    name: str
    """The parameter name: `--min-face` is `min_face`, the config key and `stream()`'s keyword."""
    consumer: str
    """The part that takes it: CAPTURE, CLASSIFIER, DETECTOR, TRACKING or OUTPUT."""
    section: str
    """Its section of the config file (`[detection] min_face = 40`)."""
    help: str
    """What it does, for `--help`, `check-config --keys` and the docs."""
    default: Any = None
    """The value when it is not given anywhere."""
    type: Any = None
    """A click type, or a function making one (called when the command is built)."""
    flags: tuple[str, ...] = ()
    """The spellings on the command line; empty: `--name-with-dashes`."""
    show_default: bool = False
    """Whether `--help` shows the default."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """click.option's other keywords (`is_flag`, `metavar`, `envvar`, ...; `default` for None
    given to click as a default)."""

    def __post_init__(self):
        if self.extra.get("is_flag") and self.default is None:
            object.__setattr__(self, "default", False)  # what click gives a flag not given

    def click_option(self) -> Callable:
        """The click decorator of this option."""
        kw = dict(self.extra)
        if self.type is not None:
            kw["type"] = self.type if isinstance(self.type, click.ParamType) else self.type()
        if self.default is not None and not kw.get("is_flag"):
            kw["default"] = self.default
        if self.show_default:
            kw["show_default"] = True
        flags = self.flags or ("--" + self.name.replace("_", "-"),)
        return click.option(*flags, self.name, help=self.help, **kw)


def click_options(options: Iterable[Option]) -> Callable:
    """A decorator adding `options` to a command, in the order given."""
    options = list(options)

    def decorate(fn):
        for o in reversed(options):
            fn = o.click_option()(fn)
        return fn

    return decorate


def names(options: Iterable[Option], consumer: str | None = None) -> tuple[str, ...]:
    """The names of `options` (of one consumer)."""
    return tuple(o.name for o in options if consumer is None or o.consumer == consumer)


def replace(options: Iterable[Option], **defaults: Any) -> tuple[Option, ...]:
    """`options` with the defaults of some changed (`run`'s smaller detection width)."""
    return tuple(dataclasses.replace(o, default=defaults[o.name]) if o.name in defaults else o
                 for o in options)


# -- click types of the project's own values ------------------------------------------------------

class EarlyError(click.ClickException):
    """An EdgeFerError raised while click parses options (outside the command's error handling),
    shown as the one `edge-fer: error:` line."""

    def __init__(self, exc: EdgeFerError):
        super().__init__(str(exc))
        self.exit_code = exc.exit_code

    def show(self, file=None) -> None:
        click.echo(f"edge-fer: error: {self.message}", err=True)


class LabelsType(click.ParamType):
    """Class names in output order: `a,b,c` on the command line, an array in the config."""

    name = "labels"
    toml_kind = "array"
    allowed = "an array of at least two distinct names without commas, in output order"

    def convert(self, value, param, ctx):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
            self.fail("give class names separated by commas", param, ctx)
        labels = [v.strip() for v in items]
        if len(labels) < 2 or not all(labels) or len(set(labels)) != len(labels) \
                or any("," in v for v in labels):
            self.fail("give at least two distinct class names, separated by commas", param, ctx)
        return labels


class CameraType(click.ParamType):
    """`pi`, `usb:N` or `N`, checked by the sources' own parser."""

    name = "camera"
    allowed = '"pi", "usb:N" or "N" (a camera index)'

    def convert(self, value, param, ctx):
        try:
            parse_camera(value)
        except EdgeFerError as exc:
            raise EarlyError(exc) from None
        return value


class CheckedString(click.ParamType):
    """A string that `check` (raising ValueError with the reason) accepts; the message never
    repeats the value, which may be a secret."""

    def __init__(self, name: str, check, allowed: str):
        self.name, self.check, self.allowed = name, check, allowed

    def convert(self, value, param, ctx):
        try:
            self.check(value)
        except ValueError as exc:
            self.fail(f"{exc}: allowed {self.allowed}", param, ctx)
        return value.strip()


# -- the tables -----------------------------------------------------------------------------------

_FLAG = {"is_flag": True}

MODEL_OPTIONS: tuple[Option, ...] = (
    Option("model", CLASSIFIER, "model", type=click.Path(), flags=("-m", "--model"),
           extra={"default": None},
           help=f"Model file (.tflite), or a shipped model by name: {', '.join(SHIPPED)}; "
                "default: $EDGE_FER_MODEL or the shipped default."),
    Option("labels", CLASSIFIER, "model", type=LabelsType(),
           help="Comma-separated class names in output order (overrides metadata)."),
    Option("normalization", CLASSIFIER, "model", type=click.Choice(["unit", "symmetric", "raw"]),
           help="Pixel normalization (overrides metadata)."),
    Option("crop_margin", CLASSIFIER, "model", type=click.FloatRange(0, 1),
           help="Face-box margin per side, fraction of box width (overrides metadata)."),
    Option("threads", CLASSIFIER, "model", type=click.IntRange(1), help="Interpreter threads."),
    Option("tta", CLASSIFIER, "model", extra=_FLAG,
           help="Average each face with its mirror image."),
    Option("backend", CLASSIFIER, "model", default="auto", show_default=True,
           type=click.Choice(["auto", "litert", "tflite-runtime", "tensorflow"]),
           help="TFLite interpreter backend."),
)
"""Options of every command that loads a `.tflite` classifier."""

DETECTOR_OPTIONS: tuple[Option, ...] = (
    Option("detector", DETECTOR, "detection", default=DEFAULT_DETECTOR, show_default=True,
           type=lambda: click.Choice(detector_names()),
           help="Face detector (edge-fer detectors lists them and whether each is ready)."),
    Option("detect_score", DETECTOR, "detection", type=click.FloatRange(0, 1),
           help="CNN detectors: smallest face confidence (default: the detector's own)."),
    Option("cascade", DETECTOR, "detection", type=click.Path(dir_okay=False),
           help="Haar cascade XML (default: OpenCV's frontal-face cascade)."),
    Option("scale_factor", DETECTOR, "detection", default=DetectorOptions.scale_factor,
           show_default=True, type=click.FloatRange(1.01, 2.0),
           help="Image-pyramid step: larger is faster and misses more faces."),
    Option("min_neighbors", DETECTOR, "detection", default=DetectorOptions.min_neighbors,
           show_default=True, type=click.IntRange(0),
           help="Overlapping detections needed to keep a face: more, fewer false faces."),
    Option("min_face", DETECTOR, "detection", default=DetectorOptions.min_size, show_default=True,
           type=click.IntRange(8), help="Smallest face side in pixels."),
    Option("detect_width", DETECTOR, "detection", default=DetectorOptions.detect_width,
           show_default=True, type=click.IntRange(0),
           help="Haar: downscale frames to this width for detection (0 = full size); "
                "CNN detectors resize to their own input."),
)
"""Detection options, with `predict`'s defaults (`DetectorOptions`')."""

MAX_PIXELS = Option(
    "max_pixels", CAPTURE, "source", default=CaptureOptions.max_pixels, show_default=True,
    type=click.IntRange(1), extra={"metavar": "N"},
    help="Refuse images of more than N pixels (width x height), checked from the file's header "
         "before decoding.")
"""`--max-pixels N`: images larger than this are refused from their header, undecoded."""

MQTT_OPTIONS: tuple[Option, ...] = (
    Option("mqtt", OUTPUT, "mqtt", type=CheckedString("url", parse_broker, URL_WORDS),
           extra={"metavar": "URL"},
           help="Publish availability, state and face events to the MQTT broker at URL "
                "(mqtt://HOST[:PORT], or mqtts://HOST[:PORT] for TLS), with Home Assistant "
                "discovery (docs/fleet.md). User and password: [mqtt] username and password in "
                f"the config file, or ${USERNAME_ENV} and ${PASSWORD_ENV}; never on the command "
                "line."),
    Option("mqtt_device", OUTPUT, "mqtt", type=CheckedString("device", check_device, DEVICE_WORDS),
           extra={"metavar": "ID"},
           help="Device id in the MQTT topics (edge-fer/ID/...) and in Home Assistant (default: "
                "the host's name)."),
    Option("mqtt_prefix", OUTPUT, "mqtt", default=OutputOptions.mqtt_prefix, show_default=True,
           type=CheckedString("prefix", check_prefix, PREFIX_WORDS),
           help="Home Assistant's MQTT discovery prefix."),
    Option("mqtt_ca", OUTPUT, "mqtt", type=click.Path(dir_okay=False), extra={"metavar": "FILE"},
           help="CA certificate (PEM) to verify an mqtts:// broker with (default: the system's "
                "CAs)."),
    Option("mqtt_required", OUTPUT, "mqtt", extra=_FLAG,
           help="Stop the run (exit 8) when the broker refuses the user or password or the TLS "
                "handshake fails; by default the run goes on without MQTT and exits 7 at the end. "
                "A broker that cannot be reached is retried in any case."),
)
"""`run`'s MQTT options (`mqtt forget` takes them but `mqtt_required`). The user and password
are no options: the config file or the environment only (`edge_fer.config.FILE_ONLY`)."""

RUN_OPTIONS: tuple[Option, ...] = (
    Option("camera", CAPTURE, "source", type=CameraType(),
           help="Camera: pi (picamera2), usb:N or N (OpenCV)."),
    Option("source", CAPTURE, "source", type=click.Path(), extra={"metavar": "PATH|URL"},
           help="Video file, image folder, or stream URL (rtsp://, http://)."),
    Option("width", CAPTURE, "source", default=CaptureOptions.width, show_default=True, type=click.IntRange(16),
           help="Camera frame width."),
    Option("height", CAPTURE, "source", default=CaptureOptions.height, show_default=True, type=click.IntRange(16),
           help="Camera frame height."),
    Option("fps", CAPTURE, "source", type=click.FloatRange(1, 240),
           help="Camera frame rate (default 30); with --realtime, the pace of a file or folder "
                "(default: the file's own rate)."),
    Option("realtime", CAPTURE, "source", extra=_FLAG,
           help="Play a file or folder at its frame rate, dropping what cannot be kept up with, "
                "as a camera would."),
    Option("loop", CAPTURE, "source", extra=_FLAG,
           help="Files and folders: start again from the first frame at the end, until stopped "
                "or --max-frames/--duration (with --realtime, at the clip's pace: a page served "
                "from a clip)."),
    Option("source_timeout", CAPTURE, "source", default=CaptureOptions.reconnect_timeout_s, show_default=True,
           type=click.FloatRange(0), extra={"metavar": "SECONDS"},
           help="Cameras and streams: keep retrying one that is down at the start or lost during "
                "the run for this long (the whole wait, an open that hangs included), then fail; 0 "
                "retries until stopped."),
    MAX_PIXELS,
    *MODEL_OPTIONS,
    *replace(DETECTOR_OPTIONS, detect_width=RUN_DETECT_WIDTH),
    Option("detect_every", TRACKING, "tracking", type=click.IntRange(1),
           help="Full detection at least every N frames; faces are tracked in between (default: "
                "the detector's own: haar 5, blazeface 2, blazeface-full 3)."),
    Option("smoothing", TRACKING, "tracking", default=TrackerOptions.smoothing, show_default=True,
           type=click.IntRange(1), help="Frames of scores averaged per face (1 = off)."),
    Option("iou_threshold", TRACKING, "tracking", default=TrackerOptions.iou_threshold, show_default=True,
           type=click.FloatRange(0.01, 1.0),
           help="Box overlap for a detection to continue a track (with the track's box moved to "
                "the detection's frame by the face's speed)."),
    Option("log_json", OUTPUT, "logging", type=click.Path(dir_okay=False),
           help="Append JSON lines to FILE: stats every --log-interval, face events (time, track, "
                "box, label, scores; never pixels), a summary."),
    Option("log_interval", OUTPUT, "logging", default=OutputOptions.log_interval, show_default=True,
           type=click.FloatRange(0.1), help="Seconds between stats lines."),
    Option("log_max_bytes", OUTPUT, "logging", default=OutputOptions.log_max_bytes, show_default=True,
           type=click.IntRange(4096), help="Rotate the JSON log when it would grow past this size."),
    Option("log_backups", OUTPUT, "logging", default=OutputOptions.log_backups, show_default=True,
           type=click.IntRange(0, 100), help="Rotated JSON logs kept (FILE.1, FILE.2, ...)."),
    Option("display", OUTPUT, "output", flags=("--display/--headless",), extra={"default": None},
           help="Show the annotated stream in a window (default: when a GUI is available)."),
    Option("record", OUTPUT, "output", type=click.Path(dir_okay=False),
           help="Save the annotated stream to a video: .mkv (MPEG-4) or .avi (MJPEG), both "
                "readable if the run is cut short; the only way frames reach the disk. An "
                "existing file is refused; strftime fields (%Y%m%d-%H%M%S) name each run's own."),
    Option("results", OUTPUT, "output", type=click.Path(), extra={"metavar": "FILE"},
           help="Write every processed frame's faces (frame, time, track, box, smoothed and raw "
                "label, scores per label) to FILE: .jsonl (a JSON line per frame) or .csv (a row "
                "per face). Every frame of a file read offline; an existing file is refused; "
                "strftime fields name each run's own."),
    Option("overwrite", OUTPUT, "output", extra=_FLAG,
           help="Let --record and --results replace an existing file."),
    Option("blur_faces", OUTPUT, "output", extra=_FLAG,
           help="Blur the faces the detector finds, and their tracked boxes between detections, "
                "in what is shown or kept: the served stream, the window and --record (the model "
                "still sees the faces). A face the detector misses stays sharp: where that must "
                "never happen use --privacy frame."),
    Option("max_frames", CAPTURE, "output", type=click.IntRange(1),
           help="Stop after reading N frames."),
    Option("duration", CAPTURE, "output", type=click.FloatRange(0, min_open=True),
           help="Stop after S seconds."),
    Option("serve", OUTPUT, "server", type=CheckedString("address", parse_address, ADDRESS_WORDS),
           extra={"is_flag": False, "flag_value": DEFAULT_SERVE, "metavar": "[HOST:PORT]"},
           help=f"Serve the live page, /api/stats, /api/faces and /metrics on HOST:PORT "
                f"({DEFAULT_SERVE} when given alone)."),
    Option("token", OUTPUT, "server", type=CheckedString("token", check_token, TOKEN_WORDS),
           extra={"envvar": "EDGE_FER_TOKEN"},
           help="Access token for --serve, required on a non-loopback address (default: "
                "$EDGE_FER_TOKEN)."),
    Option("faces_api", OUTPUT, "server", default=OutputOptions.faces_api, show_default=True,
           type=click.Choice(FACES_API_MODES),
           help="What /api/faces tells: full (each face's track id, box, label, scores) or "
                "aggregate (how many faces show each label: no boxes, no track ids)."),
    Option("privacy", OUTPUT, "output", type=click.Choice(PRIVACY_MODES),
           help="What to hide in the served stream, the window and --record: faces (as "
                "--blur-faces) or frame (the whole picture blurred beyond recognition, boxes and "
                "labels drawn on top, so a face the detector misses is never shown)."),
    *MQTT_OPTIONS,
)
"""Every option of `edge-fer run`, in the order `--help` lists them (`--config` aside)."""

RUN: dict[str, Option] = {o.name: o for o in RUN_OPTIONS}
"""`RUN_OPTIONS` by name."""


def _sections(options: Iterable[Option]) -> dict[str, tuple[str, ...]]:
    sections: dict[str, tuple[str, ...]] = {}
    for o in options:
        sections[o.section] = sections.get(o.section, ()) + (o.name,)
    return sections


SECTIONS: dict[str, tuple[str, ...]] = _sections(RUN_OPTIONS)
"""The config file's sections and the `run` options each holds, in `--help`'s order."""
