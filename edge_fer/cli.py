"""The `edge-fer` command line. The only place that configures logging, prints and exits."""

from __future__ import annotations

import functools
import logging
import sys

import click

from edge_fer import __version__
from edge_fer.errors import EdgeFerError

log = logging.getLogger("edge_fer")


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def handle_errors(fn):
    """Turn the project's errors and the usual OS failures into one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgeFerError as exc:
            click.echo(f"edge-fer: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("edge-fer: interrupted", err=True)
            sys.exit(130)
        except OSError as exc:
            # Disk full, permission denied, a path that went away: name the file and the cause.
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            click.echo(f"edge-fer: error: {exc.strerror or exc}{where}", err=True)
            sys.exit(7)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge-fer")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Facial-emotion recognition on Raspberry-Pi-class devices."""
    _setup_logging(verbose)


def _default_model() -> str:
    import os

    from edge_fer_models import DEFAULT_MODEL

    return os.environ.get("EDGE_FER_MODEL") or str(DEFAULT_MODEL)


def _labels(value):
    if value is None:
        return None
    labels = [s.strip() for s in value.split(",") if s.strip()]
    if not labels:
        raise click.BadParameter("give class names separated by commas")
    return labels


def model_options(fn):
    """Options shared by every command that loads a `.tflite` classifier."""
    opts = [
        click.option("-m", "--model", default=None,
                     help="Model file (.tflite); default: $EDGE_FER_MODEL or the shipped model."),
        click.option("--labels", callback=lambda c, p, v: _labels(v),
                     help="Comma-separated class names in output order (overrides metadata)."),
        click.option("--normalization", type=click.Choice(["unit", "symmetric", "raw"]),
                     help="Pixel normalization (overrides metadata)."),
        click.option("--crop-margin", type=click.FloatRange(0, 1),
                     help="Face-box margin per side, fraction of box width (overrides metadata)."),
        click.option("--threads", type=click.IntRange(1), help="Interpreter threads."),
        click.option("--backend", type=click.Choice(["auto", "litert", "tflite-runtime", "tensorflow"]),
                     default="auto", show_default=True, help="TFLite interpreter backend."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def detector_options(fn):
    opts = [
        click.option("--cascade", type=click.Path(dir_okay=False),
                     help="Haar cascade XML (default: OpenCV's frontal-face cascade)."),
        click.option("--scale-factor", default=1.1, show_default=True, type=click.FloatRange(1.01, 2.0)),
        click.option("--min-neighbors", default=5, show_default=True, type=click.IntRange(0)),
        click.option("--min-face", default=30, show_default=True, type=click.IntRange(8),
                     help="Smallest face side in pixels."),
        click.option("--detect-width", default=640, show_default=True, type=click.IntRange(0),
                     help="Downscale frames to this width for detection (0 = full size)."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def load_classifier(model, labels, normalization, crop_margin, threads, backend):
    from edge_fer.classifier import ClassifierOptions, EmotionClassifier

    return EmotionClassifier(model or _default_model(), ClassifierOptions(
        labels=labels, normalization=normalization, crop_margin=crop_margin,
        num_threads=threads, backend=backend))


def load_detector(cascade, scale_factor, min_neighbors, min_face, detect_width):
    from edge_fer.detector import DetectorOptions, HaarFaceDetector

    return HaarFaceDetector(DetectorOptions(cascade=cascade, scale_factor=scale_factor,
                                            min_neighbors=min_neighbors, min_size=min_face,
                                            detect_width=detect_width))


@cli.command()
@model_options
@handle_errors
def info(model, labels, normalization, crop_margin, threads, backend):
    """Show the interpreter backend, versions and the model's input spec and labels."""
    import json
    import platform

    import cv2
    import numpy as np

    from edge_fer.backends import available_backends

    clf = load_classifier(model, labels, normalization, crop_margin, threads, backend)
    b = clf.backend_info
    i = clf.input
    click.echo(f"edge-fer {__version__}  python {platform.python_version()}  numpy {np.__version__}  "
               f"opencv {cv2.__version__}")
    click.echo(f"backend: {b.name} ({b.module} {b.version}); installed: {', '.join(available_backends())}")
    click.echo(f"model: {clf.path} ({clf.size_bytes / 1024:.1f} KiB)")
    quant = f" scale={i.scale:.6g} zero_point={i.zero_point}" if i.dtype != "float32" else ""
    click.echo(f"input: {i.width}x{i.height} {i.color} {i.dtype}{quant}  "
               f"batch={'dynamic' if i.batchable else 1}")
    click.echo(f"labels: {', '.join(clf.labels)}")
    click.echo(f"normalization: {clf.metadata.normalization}  crop margin: {clf.crop_margin}")
    if clf.metadata.provenance:
        click.echo("provenance: " + json.dumps(clf.metadata.provenance, sort_keys=True))


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@model_options
@detector_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image on stdout.")
@click.option("--no-detect", is_flag=True, help="Each image is an already-cropped face.")
@click.option("--annotate", type=click.Path(file_okay=False), help="Write annotated copies here.")
@handle_errors
def predict(paths, model, labels, normalization, crop_margin, threads, backend, cascade,
            scale_factor, min_neighbors, min_face, detect_width, as_json, no_detect, annotate):
    """Find faces in images (files or folders) and classify their emotion."""
    import json
    from pathlib import Path

    from edge_fer.errors import InputError
    from edge_fer.images import iter_image_paths, read_image
    from edge_fer.predict import FacePredictor, ImageResult, draw_faces

    clf = load_classifier(model, labels, normalization, crop_margin, threads, backend)
    det = None if no_detect else load_detector(cascade, scale_factor, min_neighbors, min_face,
                                               detect_width)
    predictor = FacePredictor(clf, det)
    out_dir = Path(annotate) if annotate else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in iter_image_paths(paths):
        try:
            frame = read_image(path)
        except InputError as exc:
            # One bad file among many must not lose the results of the others.
            click.echo(f"edge-fer: error: {exc}", err=True)
            failures += 1
            continue
        faces = predictor.predict_frame(frame)
        result = ImageResult(str(path), faces)
        if as_json:
            click.echo(json.dumps(result.to_dict()))
        else:
            desc = ", ".join(f"{f.label} {f.score:.2f} at {tuple(f.box)}" for f in faces) or "no faces"
            click.echo(f"{path}: {len(faces)} face(s): {desc}")
        if out_dir:
            import cv2

            target = out_dir / (path.stem + "_annotated" + (path.suffix if path.suffix.lower() in (".jpg", ".jpeg", ".png") else ".png"))
            if not cv2.imwrite(str(target), draw_faces(frame, faces)):
                raise InputError(f"cannot write {target}")
    if failures:
        sys.exit(3)


@cli.command()
@click.option("--data", required=True, help="Folder of class subfolders, or the FER2013 CSV.")
@click.option("--usage", help="With a CSV: the split to keep (Training, PublicTest, PrivateTest).")
@click.option("--limit", type=click.IntRange(1), help="Score a stratified sample of N images.")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
@click.option("--no-detect", is_flag=True, default=True, show_default=True,
              help="Images are face crops (FER2013); kept for symmetry with predict.")
@handle_errors
def evaluate(data, usage, limit, model, labels, normalization, crop_margin, threads, backend,
             as_json, no_detect):
    """Accuracy, macro recall, per-class recall and confusion of a .tflite or Keras model."""
    import json

    from edge_fer.datasets import load_labelled, remap_labels
    from edge_fer.evaluate import evaluate_probs

    path = model or _default_model()
    if path.endswith((".h5", ".hdf5", ".keras")) or _is_dir(path):
        from edge_fer_convert.loader import KerasClassifier

        clf = KerasClassifier.load(path, labels=labels, normalization=normalization)
    else:
        clf = load_classifier(path, labels, normalization, crop_margin, threads, backend)
    size = clf.input_size
    ds = load_labelled(data, usage=usage, size=size, color=clf.color, limit=limit, classes=clf.labels)
    ds = remap_labels(ds, clf.labels)
    scores = evaluate_probs(lambda x: clf.predict_proba(list(x)), ds)
    if as_json:
        click.echo(json.dumps({"model": path, "data": data, **scores.to_dict()}))
    else:
        click.echo(f"model: {path}")
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
@handle_errors
def train(output, **kw):
    """Train a FER architecture; re-run the same command to resume an interrupted run.

    Architectures: edgenet (default), cnn48, cnn96rgb, cnn224rgb, littlevgg, minixception,
    vgg16, efficientnetv2.
    """
    from edge_fer_convert.train import TrainOptions, command_line, train as run_training

    if kw["weights"] is None and kw["arch"] in ("vgg16", "efficientnetv2"):
        click.echo("edge-fer: no --weights given: ImageNet weights cannot be downloaded here, "
                   "training the backbone from scratch", err=True)
    result = run_training(TrainOptions(**kw), output, command=command_line())
    click.echo(f"wrote {result.output}: best validation accuracy {result.best_val_accuracy:.4f} "
               f"at epoch {result.best_epoch} ({result.params} params, {result.seconds:.0f} s)")


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
@click.option("--labels", callback=lambda c, p, v: _labels(v),
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
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def convert(model, as_json, **kw):
    """Convert a Keras model (.keras, .h5, SavedModel) to TFLite, verify it and report the cost."""
    import json

    from edge_fer_convert.converter import ConvertOptions, convert as run_convert

    report = run_convert(model, ConvertOptions(**kw))
    click.echo(json.dumps(report.to_dict()) if as_json else report.table())


def main() -> None:
    cli(prog_name="edge-fer")


if __name__ == "__main__":
    main()
