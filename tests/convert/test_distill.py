"""`edge-fer train --teacher`: knowledge distillation from a trained model, and the lite model's
architecture budget."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import QUIET_TF, REPO, assert_one_line_error, needs_tf, run_cli

pytestmark = needs_tf


def test_a_tiny_run_with_a_teacher_records_it(tmp_path, fer_dir, default_model):
    import hashlib

    out = tmp_path / "student.keras"
    proc = run_cli("train", "--arch", "edgenet-lite", "--data", fer_dir / "train",
                   "--val", fer_dir / "publictest", "--epochs", 1, "--limit", 300,
                   "--batch-size", 64, "--teacher", default_model, "--distill-alpha", 0.7,
                   "--distill-temperature", 2, "-o", out, env=QUIET_TF)
    assert proc.returncode == 0, proc.stderr[-3000:]
    prov = json.loads((tmp_path / "student.keras.json").read_text())["provenance"]
    d = prov["distillation"]
    assert d["teachers"] == [{"path": str(default_model),
                              "sha256": hashlib.sha256(default_model.read_bytes()).hexdigest()}]
    assert d["alpha"] == 0.7 and d["temperature"] == 2.0
    # The shipped default agrees with most training labels (it was trained on them): a teacher
    # run on wrongly ordered classes or other pixels would sit near chance (1/7).
    assert 0.6 < d["teacher_train_agreement"] <= 1.0
    assert prov["architecture"] == "edgenet-lite" and prov["macs"] > 0
    with np.load(tmp_path / "student.teacher.npz") as z:
        probs = z["probs"]
    assert probs.shape == (300, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)


def test_teacher_targets_are_cached_and_keyed_by_teacher_and_data(tmp_path, fer_dir, default_model):
    from edge_fer.datasets import load_labelled
    from edge_fer_convert.distill import teacher_targets

    data = load_labelled(fer_dir / "train", size=(48, 48), color="gray", limit=40, seed=3)
    cache = tmp_path / "t.teacher.npz"
    first = teacher_targets(str(default_model), data, source=str(fer_dir / "train"), limit=40,
                            seed=3, cache=cache)
    again = teacher_targets(str(default_model), data, source=str(fer_dir / "train"), limit=40,
                            seed=3, cache=cache)
    assert not first.cached and again.cached
    np.testing.assert_array_equal(first.probs, again.probs)
    other = load_labelled(fer_dir / "train", size=(48, 48), color="gray", limit=40, seed=4)
    third = teacher_targets(str(default_model), other, source=str(fer_dir / "train"), limit=40,
                            seed=4, cache=cache)
    assert not third.cached, "other faces must not reuse the cached probabilities"


def test_the_teacher_target_is_the_mean_of_face_and_mirror(tmp_path, fer_dir, default_model):
    """The student is trained on mirrored faces too: a face and its mirror get one target, and
    it is the mean that `evaluate --tta` scores, not the face alone."""
    from dataclasses import replace

    from edge_fer.classifier import EmotionClassifier
    from edge_fer.datasets import load_labelled
    from edge_fer_convert.distill import teacher_targets

    data = load_labelled(fer_dir / "train", size=(48, 48), color="gray", limit=40, seed=3)
    mirrored = replace(data, images=np.ascontiguousarray(data.images[:, :, ::-1]))
    src = str(fer_dir / "train")
    a = teacher_targets(str(default_model), data, source=src, limit=40, seed=3, cache=tmp_path / "a.npz")
    b = teacher_targets(str(default_model), mirrored, source=src, limit=40, seed=3, cache=tmp_path / "b.npz")
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
    clf = EmotionClassifier(default_model)
    alone = clf.predict_proba(list(data.images))
    assert np.abs(alone - a.probs).max() > 0.01, "the face alone is not the mirror mean"
    both = (alone + clf.predict_proba(list(mirrored.images))) / 2
    np.testing.assert_allclose(a.probs, both / both.sum(axis=1, keepdims=True), atol=1e-6)


def test_several_teachers_act_as_the_mean_of_their_probabilities(tmp_path, fer_dir, default_model):
    """`--teacher A --teacher B`: each teacher's mirror-mean probabilities, averaged; the mean is
    cached under a key of both files, which one of them alone does not reuse."""
    from edge_fer.datasets import load_labelled
    from edge_fer_convert.distill import teacher_targets

    lite = REPO / "models" / "lite.tflite"
    data = load_labelled(fer_dir / "train", size=(48, 48), color="gray", limit=40, seed=3)
    kw = dict(source=str(fer_dir / "train"), limit=40, seed=3)
    a = teacher_targets(str(default_model), data, cache=tmp_path / "a.npz", **kw)
    b = teacher_targets(str(lite), data, cache=tmp_path / "b.npz", **kw)
    assert np.abs(a.probs - b.probs).max() > 0.05, "two different teachers are needed here"
    both = teacher_targets([str(default_model), str(lite)], data, cache=tmp_path / "ab.npz", **kw)
    np.testing.assert_allclose(both.probs, (a.probs + b.probs) / 2, atol=1e-6)
    assert [t.path for t in both.teachers] == [str(default_model), str(lite)]
    assert not both.cached
    again = teacher_targets([str(default_model), str(lite)], data, cache=tmp_path / "ab.npz", **kw)
    assert again.cached
    np.testing.assert_array_equal(again.probs, both.probs)
    # The cache of the pair is not the cache of one of them.
    one = teacher_targets([str(default_model)], data, cache=tmp_path / "ab.npz", **kw)
    assert not one.cached
    np.testing.assert_allclose(one.probs, a.probs, atol=1e-6)


def test_a_keras_teacher_and_one_with_other_input_pixels(tmp_path, fer_dir):
    """A .keras teacher runs through the host's Keras classifier; a teacher taking 64 px input
    gets the same faces read at its size, in the student's order."""
    from edge_fer.datasets import load_labelled
    from edge_fer.metadata import ModelMetadata
    from edge_fer_convert.architectures import get_architecture
    from edge_fer.errors import UsageError
    from edge_fer_convert.distill import teacher_targets, teacher_views
    from edge_fer_convert.train import save_keras_with_metadata

    data = load_labelled(fer_dir / "train", size=(48, 48), color="gray", limit=30, seed=1)
    arch = get_architecture("minixception")  # 64x64 gray
    path = tmp_path / "teacher.keras"
    save_keras_with_metadata(arch.build(len(data.classes)), path, ModelMetadata(
        labels=data.classes, color="gray", normalization="symmetric", crop_margin=0.0,
        input_size=[64, 64]))
    got = teacher_targets(str(path), data, source=str(fer_dir / "train"), limit=30, seed=1,
                          cache=tmp_path / "t.teacher.npz")
    assert got.probs.shape == (30, len(data.classes)) and not got.cached
    np.testing.assert_allclose(got.probs.sum(axis=1), 1.0, atol=1e-4)
    # Views are made at the student's size: a teacher of other pixels cannot label them.
    with pytest.raises(UsageError, match="take the student's input"):
        teacher_views(str(path), data, count=2, augment=lambda b: b, recipe="r",
                      cache=tmp_path / "t.views.npz")


def test_teacher_views_give_each_augmented_view_its_own_target(tmp_path, fer_dir, default_model):
    """Consistent distillation: view 0 is the face itself, the others are augmented copies, and
    each view's target is the teacher's mirror mean of that very view, not of the plain face."""
    import tensorflow as tf

    from edge_fer.classifier import EmotionClassifier
    from edge_fer.datasets import load_labelled
    from edge_fer_convert.distill import teacher_views
    from edge_fer_convert.train import _view_maker

    data = load_labelled(fer_dir / "train", size=(48, 48), color="gray", limit=40, seed=3)
    cache = tmp_path / "s.views.npz"

    def make(recipe, seed=7):
        return teacher_views(str(default_model), data, count=3,
                             augment=_view_maker(tf, 48, 1, "standard", seed), recipe=recipe,
                             cache=cache)

    got = make("standard 7")
    n = len(data)
    assert got.views.images.shape == (3 * n, 48, 48) and got.views.images.dtype == np.uint8
    assert not got.cached and got.count == 3
    np.testing.assert_array_equal(got.views.labels, np.tile(data.labels, 3))
    np.testing.assert_array_equal(got.views.images[:n], data.images)
    first, second = got.views.images[n:2 * n], got.views.images[2 * n:]
    for view in (first, second):
        # Every copy is changed (rotation, zoom, shift, contrast): none is the face again.
        diff = np.abs(view.astype(int) - data.images).reshape(n, -1).mean(axis=1)
        assert diff.min() > 1.0, diff.min()
    assert np.abs(first.astype(int) - second).mean() > 5, "two views drew the same augmentation"
    clf = EmotionClassifier(default_model)
    mean = (clf.predict_proba(list(first)) + clf.predict_proba(list(first[:, :, ::-1]))) / 2
    np.testing.assert_allclose(got.probs[n:2 * n], mean / mean.sum(axis=1, keepdims=True), atol=1e-6)
    assert np.abs(got.probs[n:2 * n] - got.probs[:n]).max() > 0.05
    assert 0.4 < got.train_accuracy <= 1.0

    again = make("standard 7")
    assert again.cached
    np.testing.assert_array_equal(again.views.images, got.views.images)
    np.testing.assert_array_equal(again.probs, got.probs)
    other = make("standard 8", seed=8)
    assert not other.cached, "another augmentation recipe must not reuse the cached views"
    assert np.abs(other.views.images[n:].astype(int) - got.views.images[n:]).mean() > 5


def test_a_tiny_run_with_teacher_views_trains_on_them(tmp_path, fer_dir, default_model):
    out = tmp_path / "student.keras"
    proc = run_cli("train", "--arch", "edgenet-lite", "--data", fer_dir / "train",
                   "--val", fer_dir / "publictest", "--epochs", 1, "--limit", 200,
                   "--batch-size", 64, "--teacher", default_model, "--teacher-views", 2, "-o", out,
                   env=QUIET_TF)
    assert proc.returncode == 0, proc.stderr[-3000:]
    prov = json.loads((tmp_path / "student.keras.json").read_text())["provenance"]
    assert prov["options"]["teacher_views"] == 2
    assert prov["distillation"]["soft_targets"].startswith("teacher probabilities of 2 views")
    with np.load(tmp_path / "student.views.npz") as z:
        assert z["images"].shape == (400, 48, 48) and z["probs"].shape == (400, 7)
    # One epoch is one pass over the faces (4 steps of 64 for 200), not over all their views (7).
    shown = proc.stdout + proc.stderr
    assert "4/4 - " in shown and "7/7 - " not in shown, shown[-2000:]
    assert not (tmp_path / "student.teacher.npz").exists()


def test_teacher_views_without_a_teacher_or_augmentation_fail_in_one_line(tmp_path, fer_dir, default_model):
    proc = run_cli("train", "--arch", "edgenet-lite", "--data", fer_dir / "train",
                   "--val", fer_dir / "publictest", "--epochs", 1, "--limit", 50,
                   "--teacher-views", 4, "-o", tmp_path / "s.keras", env=QUIET_TF)
    assert_one_line_error(proc, "--teacher-views needs --teacher")
    proc = run_cli("train", "--arch", "edgenet-lite", "--data", fer_dir / "train",
                   "--val", fer_dir / "publictest", "--epochs", 1, "--limit", 50, "--augment", "none",
                   "--teacher", default_model, "--teacher-views", 4, "-o", tmp_path / "s.keras", env=QUIET_TF)
    assert_one_line_error(proc, "--augment light or standard")
    assert not list(tmp_path.iterdir())


def test_a_missing_teacher_fails_in_one_line(tmp_path, fer_dir):
    proc = run_cli("train", "--arch", "edgenet-lite", "--data", fer_dir / "train",
                   "--val", fer_dir / "publictest", "--epochs", 1, "--limit", 50,
                   "--teacher", tmp_path / "gone.tflite", "-o", tmp_path / "s.keras", env=QUIET_TF)
    assert_one_line_error(proc, "teacher model not found", "gone.tflite")
    assert not (tmp_path / "s.keras").exists()


def test_a_missing_second_teacher_fails_in_one_line_before_any_work(tmp_path, fer_dir, default_model):
    proc = run_cli("train", "--arch", "edgenet-lite", "--data", fer_dir / "train",
                   "--val", fer_dir / "publictest", "--epochs", 1, "--limit", 50,
                   "--teacher", default_model, "--teacher", tmp_path / "gone.keras", "-o", tmp_path / "s.keras",
                   env=QUIET_TF)
    assert_one_line_error(proc, "teacher model not found", "gone.keras")
    assert not (tmp_path / "s.keras").exists() and not (tmp_path / "s.teacher.npz").exists()


def test_a_teacher_that_is_no_model_fails_in_one_line(tmp_path, fer_dir):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    proc = run_cli("train", "--arch", "edgenet-lite", "--data", fer_dir / "train",
                   "--val", fer_dir / "publictest", "--epochs", 1, "--limit", 50,
                   "--teacher", notes, "-o", tmp_path / "s.keras", env=QUIET_TF)
    assert_one_line_error(proc, "teacher must be a .tflite, .keras or .h5")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\0" * 64)
    proc = run_cli("train", "--arch", "edgenet-lite", "--data", fer_dir / "train",
                   "--val", fer_dir / "publictest", "--epochs", 1, "--limit", 50,
                   "--teacher", broken, "-o", tmp_path / "s.keras", env=QUIET_TF)
    assert_one_line_error(proc, "teacher", "broken.tflite")


def test_the_loss_is_the_stated_mix_of_kl_and_cross_entropy():
    from edge_fer_convert.distill import distillation_loss, tempered
    from edge_fer_convert.keras_env import keras_module

    keras = keras_module()
    rng = np.random.default_rng(0)
    n = 7
    label = np.eye(n, dtype=np.float32)[rng.integers(0, n, 5)]
    # Above the floor put under an int8 teacher's zeros, so tempering is exactly softmax(log p / T).
    teacher = (0.9 * rng.dirichlet(np.ones(n), 5) + 0.1 / n).astype(np.float32)
    student = rng.dirichlet(np.ones(n), 5).astype(np.float32)
    t, ls = 3.0, 0.1
    soft = tempered(teacher, t)
    y = np.concatenate([label, soft], axis=1)

    def loss(alpha):
        fn = distillation_loss(keras, n, alpha=alpha, temperature=t, label_smoothing=ls)
        return np.asarray(fn(y, student))

    smoothed = label * (1 - ls) + ls / n
    ce = -(smoothed * np.log(student)).sum(axis=1)
    z = np.log(student) / t
    s_t = np.exp(z - z.max(axis=1, keepdims=True))
    s_t /= s_t.sum(axis=1, keepdims=True)
    kl = (soft * (np.log(soft) - np.log(s_t))).sum(axis=1)
    np.testing.assert_allclose(loss(0.0), ce, rtol=1e-4)
    np.testing.assert_allclose(loss(1.0), kl * t * t, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(loss(0.4), 0.4 * kl * t * t + 0.6 * ce, rtol=1e-4)
    # A student that already matches the teacher pays nothing for the teacher term.
    fn = distillation_loss(keras, n, alpha=1.0, temperature=t, label_smoothing=ls)
    np.testing.assert_allclose(np.asarray(fn(y, teacher)), 0.0, atol=1e-4)


def test_tempering_keeps_the_order_and_flattens():
    from edge_fer_convert.distill import tempered

    p = np.array([[0.7, 0.2, 0.1, 0.0]], dtype=np.float32)
    q = tempered(p, 3.0)
    assert list(np.argsort(q[0])) == list(np.argsort(p[0]))
    assert q[0, 0] < p[0, 0] and q[0, 3] > 0, "a class the int8 teacher rounded to 0 stays possible"
    np.testing.assert_allclose(tempered(p + 1e-9, 1.0)[0, :3], p[0, :3], atol=3e-3)


def test_edgenet_lite_is_built_for_the_pi4_budget():
    """Issue 15's lite model: at most a third of edgenet-l's Cortex-A72 instructions. Measured
    under emulation (models/lite.md): instructions ~ 0.34 x multiply-adds + 1.6 M, so the
    architecture must stay well under a sixth of edgenet-l's multiply-adds."""
    from edge_fer_convert.architectures import count_macs, get_architecture

    large = get_architecture("edgenet-l").build(7)
    lite = get_architecture("edgenet-lite").build(7)
    # The multiply-add counter agrees with the figures the model cards give.
    assert count_macs(large) == 72_045_312
    assert count_macs(get_architecture("edgenet").build(7)) == 29_547_904
    assert count_macs(lite) < count_macs(large) / 5
    # Separable convolutions (depthwise + pointwise) and nested backbones count too.
    mini = get_architecture("minixception").build(7)
    assert 5_000_000 < count_macs(mini) < 20_000_000
    assert count_macs(get_architecture("vgg16").build(7)) > 1_000_000_000
    assert lite.count_params() < 300_000
    kinds = {type(layer).__name__ for layer in lite.layers}
    assert "DepthwiseConv2D" in kinds and "SeparableConv2D" not in kinds


def test_edgenet_s_is_built_for_the_pi4_budget():
    """The previous lite model's architecture, as models/lite.md counts it: plain 3x3 convolutions
    (0.37 A72 instructions per multiply-add at these widths) at 22 % of edgenet-l's
    multiply-adds, so that even with the face crop's fixed cost it stays within a third of
    edgenet-l's instructions."""
    from edge_fer_convert.architectures import count_macs, get_architecture

    s = get_architecture("edgenet-s").build(7)
    assert count_macs(s) == 15_604_928
    assert s.count_params() == 116_631
    kinds = {type(layer).__name__ for layer in s.layers}
    assert "DepthwiseConv2D" not in kinds and "SeparableConv2D" not in kinds
    assert s.input_shape == (None, 48, 48, 1) and s.output_shape == (None, 7)


def test_edgenet_s80_is_edgenet_s_with_a_wider_6px_stage():
    """The shipped lite model's architecture: edgenet-s layer for layer, with 80 filters instead
    of 64 on the 6 px stage only (1.0M more multiply-adds, 28k more parameters)."""
    from edge_fer_convert.architectures import count_macs, get_architecture

    s = get_architecture("edgenet-s").build(7)
    w = get_architecture("edgenet-s80").build(7)
    assert count_macs(w) == 16_601_520
    assert w.count_params() == 145_113
    assert [type(x).__name__ for x in w.layers] == [type(x).__name__ for x in s.layers]
    changed = {x.output.shape[1] for x, y in zip(w.layers, s.layers)
               if x.output.shape != y.output.shape and len(x.output.shape) == 4}
    # (1 x 1 maps are the 6 px stage's squeeze-excitation, wider with it.)
    assert changed == {6, 1}, "only the 6 px stage is wider"
    assert w.output_shape == (None, 7)


def test_converter_and_qat_do_not_import_each_other_inside_functions():
    """The QAT child process converts through `tflite_export`, which both import at the top;
    neither hides an import of the other inside a function."""
    pairs = {"converter": {"edge_fer_convert.qat"},
             "qat": {"edge_fer_convert.converter"},
             "tflite_export": {"edge_fer_convert.converter", "edge_fer_convert.qat"}}
    for name, banned in pairs.items():
        tree = ast.parse((REPO / "convert" / f"{name}.py").read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom) and node.module in banned:
                        pytest.fail(f"convert/{name}.py: {fn.name}() imports {node.module} inside the function")
    proc = subprocess.run([sys.executable, "-c", "import sys, edge_fer_convert.qat; "
                           "print('edge_fer_convert.converter' in sys.modules)"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False", "the QAT child needs no part of the converter"


def test_teachers_benchmark_scores_a_teacher_as_evaluate_tta_does(fer_dir, default_model):
    """benchmarks/teachers.py's figure for one teacher is the mirror mean that `evaluate --tta`
    scores, on the same stratified sample; the mean of two is softer than the sharper one (entropy
    is concave)."""
    lite = REPO / "models" / "lite.tflite"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "teachers.py"), str(default_model),
                           str(lite), "--data", str(fer_dir / "publictest"), "--limit", "600"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout.split("teachers\n", 1)[1].split("top-1 agreement")[0]
    rows = {}
    for line in table.strip().splitlines():
        acc, recall, ent, name = line.split(maxsplit=3)
        rows[name] = (float(acc.rstrip("%")), float(recall), float(ent))
    pair = f"{default_model.name} + lite.tflite"
    assert set(rows) == {default_model.name, "lite.tflite", pair}, proc.stdout
    # When written, the mirror moved both models' scores on these 600 faces (default 63.44 % on
    # the face alone, 64.27 % with its mirror; lite 61.44 % and 60.60 %): a teacher run on the
    # face alone would not match.
    for model, name in ((default_model, default_model.name), (lite, "lite.tflite")):
        tta = run_cli("evaluate", "-m", model, "--tta", "--data", fer_dir / "publictest",
                      "--limit", 600, "--json", env=QUIET_TF)
        assert tta.returncode == 0, tta.stderr[-3000:]
        scores = json.loads(tta.stdout)
        assert rows[name][0] == pytest.approx(100 * scores["accuracy"], abs=0.005)
        assert rows[name][1] == pytest.approx(scores["macro_recall"], abs=5e-4)
    assert 0 < rows[default_model.name][2] < np.log(7)
    assert rows[pair][2] > min(rows[default_model.name][2], rows["lite.tflite"][2])
    assert "top-1 agreement" in proc.stdout


def test_teachers_benchmark_names_a_missing_teacher_in_one_line(tmp_path, fer_dir):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "teachers.py"),
                           str(tmp_path / "gone.tflite"), "--data", str(fer_dir / "publictest"),
                           "--limit", "20"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"teachers.py: teacher model not found: {tmp_path / 'gone.tflite'}"
