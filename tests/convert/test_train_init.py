"""`edge-fer train --init MODEL.keras`: fine-tuning starts from a trained model's weights (the lite
model's second cosine cycle, models/lite.md), and refuses a model it cannot start from."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import QUIET_TF, assert_one_line_error, needs_tf, run_cli

pytestmark = needs_tf


def tiny_run(fer_dir, out, *extra, arch="edgenet-s"):
    return run_cli("train", "--arch", arch, "--data", fer_dir / "train", "--val", fer_dir / "publictest",
                   "--epochs", 1, "--limit", 200, "--batch-size", 50, "-o", out, *extra, env=QUIET_TF)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fer_dir):
    out = tmp_path_factory.mktemp("init") / "first.keras"
    proc = tiny_run(fer_dir, out, "--seed", 1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def kernels(path):
    from edge_fer_convert.keras_env import keras_module

    model = keras_module().models.load_model(path, compile=False)
    return [w.numpy() for w in model.weights if "kernel" in w.path]


def test_init_starts_from_the_trained_weights(tmp_path, fer_dir, trained):
    # At a learning rate of 1e-9 an epoch moves no kernel measurably: the result is the start.
    # (Batch norm's moving statistics still follow the data, so kernels are what is compared.)
    tuned = tmp_path / "tuned.keras"
    proc = tiny_run(fer_dir, tuned, "--init", trained, "--lr", 1e-9, "--warmup-epochs", 0, "--seed", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = tmp_path / "fresh.keras"
    proc = tiny_run(fer_dir, fresh, "--lr", 1e-9, "--warmup-epochs", 0, "--seed", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    start, after, scratch = kernels(trained), kernels(tuned), kernels(fresh)
    assert len(start) == len(after) > 5
    for a, b in zip(start, after):
        np.testing.assert_allclose(b, a, atol=1e-6)
    assert max(np.abs(a - c).max() for a, c in zip(start, scratch)) > 0.01, \
        "without --init the same run starts elsewhere"


def test_init_from_another_architecture_fails_in_one_line(tmp_path, fer_dir, trained):
    proc = tiny_run(fer_dir, tmp_path / "x.keras", "--init", trained, arch="edgenet")
    assert_one_line_error(proc, "does not fit --arch edgenet with these options", "other shapes")
    assert not (tmp_path / "x.keras").exists()


def test_init_from_a_missing_or_broken_file_fails_in_one_line(tmp_path, fer_dir):
    proc = tiny_run(fer_dir, tmp_path / "x.keras", "--init", tmp_path / "nope.keras")
    assert_one_line_error(proc, "--init model not found")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    proc = tiny_run(fer_dir, tmp_path / "y.keras", "--init", bad)
    assert_one_line_error(proc, "cannot be loaded as a Keras model")
