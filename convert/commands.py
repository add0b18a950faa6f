"""The host commands of `edge-fer`: `train`, `ensemble` and `convert`.

They register themselves with the runtime's command line through the `edge_fer.commands`
entry-point group (setup.cfg), so `edge_fer` never names the toolchain; the group adds its error
handling. TensorFlow is imported when a command runs, not here: `edge-fer --help` lists them
without loading it, and without the [convert] extra a command fails in one line naming it.
"""

from __future__ import annotations

import click

from edge_fer.options import LabelsType


@click.command()
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
@click.option("--targets", type=click.Choice(["labels", "votes", "majority"]), default="labels",
              show_default=True,
              help="Learn each face's folder label, its FER+ vote distribution, or its FER+ "
                   "majority; with votes or majority, faces without votes keep their label and "
                   "the best epoch is the best FER+ majority accuracy on --val.")
@click.option("--votes", type=click.Path(dir_okay=False),
              help="FER+ votes file for --targets votes/majority (default: ferplus.csv beside "
                   "the --data folder).")
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
    which = "" if kw["targets"] == "labels" else " (FER+ majority)"
    click.echo(f"wrote {result.output}: best validation accuracy{which} {result.best_val_accuracy:.4f} "
               f"at epoch {result.best_epoch} ({result.params} params, {result.seconds:.0f} s)")


@click.command()
@click.argument("models", nargs=-1, required=True)
@click.option("-o", "--output", required=True, help="Output .keras (metadata goes to OUT.json).")
@click.option("--val", help="Labelled faces to score the members on (and to balance on).")
@click.option("--usage", help="With a CSV --val: its split.")
@click.option("--balance", is_flag=True,
              help="Add per-class logit offsets, chosen on --val, that maximise the mean of "
                   "accuracy and macro recall.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def ensemble(models, output, val, usage, balance, as_json):
    """Average trained Keras models into one model, to convert like any other."""
    import json

    from edge_fer_convert.ensemble import EnsembleOptions, build_ensemble
    from edge_fer_convert.train import command_line

    report = build_ensemble(list(models), output, EnsembleOptions(val=val, usage=usage, balance=balance),
                            command=command_line())
    click.echo(json.dumps(report.to_dict()) if as_json else report.table())


@click.command()
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
def convert(model, as_json, **kw):
    """Convert a Keras model (.keras, .h5, SavedModel) to TFLite, verify it and report the cost."""
    import json

    from edge_fer_convert.converter import ConvertOptions, convert as run_convert

    report = run_convert(model, ConvertOptions(**kw))
    click.echo(json.dumps(report.to_dict()) if as_json else report.table())
