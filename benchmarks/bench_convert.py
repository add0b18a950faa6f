"""Conversion time and the float/INT8 accuracy gap for every trainable architecture and the
shared `.h5` models, as one markdown table.

    python benchmarks/bench_convert.py                        # everything, ~30 min on 2 busy cores
    python benchmarks/bench_convert.py --only edgenet minixception --train-limit 500

Each architecture is trained briefly (`--epochs` on a stratified `--train-limit` sample of
FER2013 train, no augmentation): enough for real, non-uniform outputs, far from converged, so
their accuracies say nothing about the architectures; the gap between the float model and its
full-INT8 conversion on the same faces is what is measured. The shared 2017 models are fully
trained. Every model goes through `edge_fer_convert.converter.convert` exactly as
`edge-fer convert` runs it: `--samples` calibration faces from train, scored on a stratified
`--val-limit` sample of PublicTest, verified in every installed backend.

"convert s" is the whole `convert()` call (load, calibrate, convert, score both models on the
validation faces, verify, time); "calibrate+convert s" is the TFLite converter alone. "mean abs
prob diff" is the verification measure (float vs INT8 probabilities on 64 validation faces): it
shows the quantization error even for a briefly trained model that still predicts one class
everywhere (macro recall 0.143), whose accuracy gap is 0 by construction.
"""

from __future__ import annotations

import os

# oneDNN's strided 1x1 convolution gradient corrupts memory for layers with few input channels
# (minixception's first shortcut has 8): training aborts. Inference does not use that kernel.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("EDGE_FER_DATA", REPO.parent / "shared"))
FER = SHARED / "datasets" / "fer2013"
SHARED_MODELS = [
    ("mini-Xception (shared, 2017)", SHARED / "models/face_classification/fer2013_mini_XCEPTION.102-0.66.hdf5"),
    ("big-Xception (shared, 2017)", SHARED / "models/face_classification/fer2013_big_XCEPTION.54-0.66.hdf5"),
]
SHARED_LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def _params(path: Path) -> int:
    from edge_fer_convert.loader import load_keras_model

    return int(load_keras_model(path).model.count_params())


def bench_one(name: str, model: Path, work: Path, args, train_s: float | None, **convert_kw) -> dict:
    from edge_fer_convert.converter import ConvertOptions, convert

    t0 = time.monotonic()
    report = convert(model, ConvertOptions(
        output=str(work / (model.stem + ".tflite")), calibration=str(FER / "train"),
        samples=args.samples, validation=str(FER / "publictest"), validation_limit=args.val_limit,
        seed=args.seed, **convert_kw))
    total = time.monotonic() - t0
    f, q = report.float_model.scores, report.converted.scores
    return {
        "model": name, "params": _params(model), "train_s": train_s,
        "input": "{}x{} {}".format(*report.preprocessing["size"], report.preprocessing["color"]),
        "float_accuracy": f["accuracy"], "int8_accuracy": q["accuracy"],
        "gap_points": report.accuracy_drop_points, "float_macro_recall": f["macro_recall"],
        "int8_macro_recall": q["macro_recall"], "float_kib": report.float_model.size_bytes / 1024,
        "int8_kib": report.converted.size_bytes / 1024, "convert_s": round(total, 1),
        "converter_s": report.attempts[0]["convert_seconds"], "ms_1": report.converted.ms_per_face_threads["1"],
        "ms_4": report.converted.ms_per_face_threads["4"], "top1_agreement": report.agreement["top1"],
        "mean_abs_prob_diff": report.agreement["mean_abs_prob_diff"],
        "integer_only": report.verification["integer_only"], "faces": q["count"],
    }


def table(rows: list[dict]) -> str:
    out = ["| model | params | input | trained | float acc % | INT8 acc % | gap (points) | "
           "float / INT8 macro recall | mean abs prob diff | size float → INT8 KiB | convert s | "
           "calibrate+convert s | INT8 ms/face 1 / 4 thr |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            reason = r["error"].split(".tflite ", 1)[-1]  # drop the temporary path
            out.append(f"| {r['model']} | | | | | | failed: {reason[:110]} | | | | | | |")
            continue
        trained = "2017, fully" if r["train_s"] is None else f"{r['train_s']:.0f} s"
        out.append(
            f"| {r['model']} | {r['params'] / 1000:.0f} k | {r['input']} | {trained} | "
            f"{r['float_accuracy'] * 100:.1f} | {r['int8_accuracy'] * 100:.1f} | {r['gap_points']:+.2f} | "
            f"{r['float_macro_recall']:.3f} / {r['int8_macro_recall']:.3f} | "
            f"{r.get('mean_abs_prob_diff', float('nan')):.4f} | "
            f"{r['float_kib']:.0f} → {r['int8_kib']:.0f} | {r['convert_s']:.0f} | {r['converter_s']:.0f} | "
            f"{r['ms_1']:.2f} / {r['ms_4']:.2f} |")
    return "\n".join(out)


def qat_on_mini_xception(args, work: Path) -> str:
    """PTQ against QAT (with tfmot's name clash avoided, and with the fallback that leaves the
    separable convs float) on the shared mini-Xception, scored on all of PrivateTest."""
    from edge_fer.classifier import EmotionClassifier
    from edge_fer.datasets import load_labelled
    from edge_fer.evaluate import evaluate_probs
    from edge_fer.metadata import ModelMetadata, embed
    from edge_fer_convert.converter import ConvertOptions, convert, integer_only
    from edge_fer_convert.qat import QatOptions, run_qat

    mini = SHARED_MODELS[0][1]
    t0 = time.monotonic()
    ptq = convert(mini, ConvertOptions(
        output=str(work / "ptq.tflite"), calibration=str(FER / "train"), samples=args.samples,
        validation=str(FER / "privatetest"), labels=SHARED_LABELS, normalization="symmetric", seed=args.seed))
    float_acc = ptq.float_model.scores["accuracy"]
    rows = [("float (Keras)", "-", float_acc, None, None, "-"),
            (f"PTQ per-channel, {ptq.calibration_samples} calibration faces", "-",
             ptq.converted.scores["accuracy"], ptq.accuracy_drop_points, time.monotonic() - t0,
             ptq.verification["integer_only"])]
    meta = ModelMetadata(labels=SHARED_LABELS, color="gray", normalization="symmetric")
    train = load_labelled(FER / "train", size=(64, 64), limit=args.qat_limit, seed=args.seed, classes=SHARED_LABELS)
    val = load_labelled(FER / "privatetest", size=(64, 64), classes=SHARED_LABELS)
    for rename, label in ((True, "layers renamed"), (False, "tfmot's names: fallback")):
        t0 = time.monotonic()
        out = run_qat(str(mini), None, meta, train.images, train.labels, train.images[:args.samples],
                      val.images[:64], QatOptions(epochs=args.qat_epochs, seed=args.seed, rename=rename))
        path = work / f"qat-{rename}.tflite"
        path.write_bytes(embed(out.content, meta))
        clf = EmotionClassifier(path)
        acc = evaluate_probs(lambda x: clf.predict_proba(list(x)), val).accuracy
        left = out.plan.unquantized
        rows.append((f"QAT {args.qat_epochs} epoch on {len(train)} train faces, {label}",
                     f"{len(left)} ({', '.join(sorted({n.rstrip('0123456789_') for n in left})) or 'none'})",
                     acc, round((float_acc - acc) * 100, 2), time.monotonic() - t0,
                     integer_only(out.content)))
    lines = [f"mini-Xception on FER2013 PrivateTest ({ptq.float_model.scores['count']} faces)", "",
             "| model | layers left float in QAT | accuracy % | drop (points) | TFLite all-integer | wall s |",
             "|---|---|---|---|---|---|"]
    for name, left, acc, drop, secs, integer in rows:
        lines.append(f"| {name} | {left} | {acc * 100:.2f} | {'' if drop is None else f'{drop:+.2f}'} | "
                     f"{integer} | {'' if secs is None else f'{secs:.0f}'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="architecture names and/or 'shared' (default: all)")
    ap.add_argument("--train-limit", type=int, default=3000, help="training images per architecture")
    ap.add_argument("--heavy-limit", type=int, default=400,
                    help="training images for the RGB architectures (96 px and up: 10-60x the compute)")
    ap.add_argument("--epochs", type=int, default=2)
    # Small batches: batch-norm moving averages need a couple of hundred steps to be usable.
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--samples", type=int, default=200, help="calibration faces")
    ap.add_argument("--val-limit", type=int, default=500, help="PublicTest faces scored")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--table-from", metavar="JSON", help="only print the table of an earlier --json")
    ap.add_argument("--qat-mini", action="store_true",
                    help="instead: PTQ against QAT on the shared mini-Xception (all of PrivateTest)")
    ap.add_argument("--qat-limit", type=int, default=3000, help="with --qat-mini: fine-tuning faces")
    ap.add_argument("--qat-epochs", type=int, default=1, help="with --qat-mini: fine-tuning epochs")
    args = ap.parse_args(argv)

    from edge_fer.errors import EdgeFerError
    from edge_fer_convert.architectures import ARCHITECTURES
    from edge_fer_convert.train import TrainOptions, train

    if args.table_from:
        print(table(json.loads(Path(args.table_from).read_text())))
        return 0
    if args.qat_mini:
        with tempfile.TemporaryDirectory(prefix="bench-qat-") as tmp:
            print(qat_on_mini_xception(args, Path(tmp)))
        return 0
    wanted = set(args.only or list(ARCHITECTURES) + ["shared"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
        work = Path(tmp)
        # Epoch selection during training scores a PublicTest sample, not all 3589 faces.
        import numpy as np

        from edge_fer.datasets import load_folder

        val = load_folder(FER / "publictest", size=None, limit=args.val_limit, seed=args.seed + 1)
        val_npz = work / "val.npz"
        np.savez(val_npz, images=val.images, labels=val.labels, classes=np.array(val.classes))
        for name in ARCHITECTURES:
            if name not in wanted:
                continue
            limit = args.heavy_limit if ARCHITECTURES[name].spec.size >= 96 else args.train_limit
            print(f"# {name}: training on {limit} images", file=sys.stderr, flush=True)
            try:
                t0 = time.monotonic()
                result = train(TrainOptions(arch=name, data=str(FER / "train"), val=str(val_npz),
                                            epochs=args.epochs, batch_size=args.batch_size, augment="none",
                                            limit=limit, seed=args.seed, warmup_epochs=0),
                               work / f"{name}.keras", verbose=0)
                rows.append(bench_one(name + f" ({args.epochs} ep, {limit} img)",
                                      Path(result.output), work, args, time.monotonic() - t0))
            except EdgeFerError as exc:
                rows.append({"model": name, "error": str(exc)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        if "shared" in wanted:
            for label, path in SHARED_MODELS:
                if not path.exists():
                    print(f"# {path} is absent: skipped", file=sys.stderr)
                    continue
                rows.append(bench_one(label, path, work, args, None, labels=SHARED_LABELS,
                                      normalization="symmetric"))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
