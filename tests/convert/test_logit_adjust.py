"""`edge-fer convert --logit-adjust`: the training prior taken out of the logits, on real models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FACE_CLASSIFICATION_LABELS, assert_one_line_error, needs_tf, run_cli

pytestmark = needs_tf

LABELS = FACE_CLASSIFICATION_LABELS.split(",")
COUNTS = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "sad": 4830, "surprise": 3171,
          "neutral": 4965}


def _faces(n=32, seed=0, size=48):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, size, size, 1)).astype(np.float32)


def _expected(p, prior, tau):
    """The adjusted probabilities by the formula: p * prior^-tau, renormalized."""
    q = p * prior[None, :] ** -tau
    return q / q.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("tau", [0.5, 1.0])
def test_keras3_dense_head_follows_the_formula(tau):
    from edge_fer_convert.architectures import build_edgenet_s
    from edge_fer_convert.logit_adjust import adjust, shifted

    model = build_edgenet_s(7)
    x = _faces()
    before = np.asarray(model(x, training=False), np.float64)
    done = adjust(model, LABELS, tau, {"train_counts": COUNTS}, None)
    after = np.asarray(model(x, training=False), np.float64)
    prior = np.array([COUNTS[k] for k in LABELS], float) / sum(COUNTS.values())
    np.testing.assert_allclose(after, _expected(before, prior, tau), atol=1e-5)
    # The formula benchmarks/logit_adjust.py and `ensemble --balance` score offsets with.
    np.testing.assert_allclose(shifted(before, -tau * np.log(prior)), after, atol=1e-5)
    assert done.layer == "emotion" and done.prior_from.startswith("the model's training metadata")
    assert done.prior["disgust"] == pytest.approx(436 / 28709)


def test_tf_keras_conv_pool_softmax_head_follows_the_formula(mini_xception):
    """mini-Xception's logits come from a 7-filter convolution, global pooling, then a softmax
    activation layer: the shift goes into the convolution's bias and passes through pooling."""
    from edge_fer_convert.loader import load_keras_model
    from edge_fer_convert.logit_adjust import adjust

    model = load_keras_model(mini_xception).model
    x = _faces(16, size=64)
    before = np.asarray(model(x, training=False), np.float64)
    calib = np.repeat(np.arange(7), [10, 2, 10, 20, 12, 8, 12])
    done = adjust(model, LABELS, 1.0, {}, calib)
    after = np.asarray(model(x, training=False), np.float64)
    prior = np.bincount(calib, minlength=7) / len(calib)
    np.testing.assert_allclose(after, _expected(before, prior, 1.0), atol=1e-5)
    assert type(model.get_layer(done.layer)).__name__ == "Conv2D"
    assert done.prior_from == "the calibration faces' labels"


def _tiny(head_activation, last=None):
    import keras

    inp = keras.Input((48, 48, 1))
    x = keras.layers.Conv2D(4, 3, strides=4)(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(7, activation=head_activation)(x)
    if last is not None:
        x = last(x)
    return keras.Model(inp, x)


@pytest.mark.parametrize("make", [
    lambda: _tiny("relu"),                                          # shift before a ReLU is no shift of logits
    lambda: _tiny(None, __import__("keras").layers.BatchNormalization()),  # an affine layer after the logits
], ids=["relu-head", "batchnorm-after"])
def test_models_whose_logits_cannot_take_the_shift_are_refused(make):
    from edge_fer.errors import ModelError
    from edge_fer_convert.logit_adjust import adjust

    model = make()
    kernel_before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ModelError, match="cannot find the layer producing the logits"):
        adjust(model, LABELS, 1.0, {"train_counts": COUNTS}, None)
    for a, b in zip(kernel_before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_prior_errors_name_the_fix():
    from edge_fer.errors import UsageError
    from edge_fer_convert.logit_adjust import class_prior

    with pytest.raises(UsageError, match="give --calibration labelled faces"):
        class_prior(LABELS, {}, None)
    with pytest.raises(UsageError, match="no training faces of class.*disgust"):
        class_prior(LABELS, {}, np.array([0, 2, 3, 4, 5, 6]))
    prior, where = class_prior(LABELS, {"train_counts": COUNTS}, np.array([0, 0]))
    assert where.startswith("the model's training metadata") and sum(prior.values()) == pytest.approx(1)


@pytest.fixture(scope="module")
def mini_pair(tmp_path_factory, mini_xception, fer_dir):
    """mini-Xception converted twice, the same way but for --logit-adjust 1, scored on the same
    700 PublicTest faces. Its file has no train_counts, so the prior is the calibration labels'."""
    folder = tmp_path_factory.mktemp("la")
    out = {}
    for name, extra in (("plain", []), ("adjusted", ["--logit-adjust", 1])):
        path = folder / f"{name}.tflite"
        proc = run_cli("convert", mini_xception, "-o", path, "--calibration", fer_dir / "train",
                       "--samples", 200, "--validation", fer_dir / "publictest", "--validation-limit", 700,
                       "--labels", FACE_CLASSIFICATION_LABELS, "--normalization", "symmetric",
                       "--report", path.with_suffix(".json"), *extra, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[name] = (path, json.loads(path.with_suffix(".json").read_text()), proc.stdout)
    return out


def test_convert_with_logit_adjust_raises_rare_class_recall(mini_pair):
    _, plain, plain_out = mini_pair["plain"]
    path, adjusted, stdout = mini_pair["adjusted"]
    assert plain["logit_adjustment"] is None and "logit adjustment" not in plain_out
    la = adjusted["logit_adjustment"]
    assert la["tau"] == 1.0 and la["prior_from"] == "the calibration faces' labels"
    assert la["prior"]["disgust"] == pytest.approx(3 / 200, abs=0.002)  # 436 of 28,709, drawn in proportion
    assert "logit adjustment: tau 1 on " in stdout
    for col in ("float_model", "converted"):
        p, a = plain[col]["scores"], adjusted[col]["scores"]
        assert p["count"] == a["count"] == 700
        # The prior's rarest class gains most: mini-Xception almost never says disgust unadjusted.
        assert a["per_class_recall"]["disgust"] > p["per_class_recall"]["disgust"], col
        assert a["macro_recall"] > p["macro_recall"], col
    assert adjusted["verification"]["integer_only"] is True


def test_logit_adjustment_is_recorded_in_the_model(mini_pair, images_dir):
    from edge_fer.classifier import EmotionClassifier

    path, report, _ = mini_pair["adjusted"]
    prov = EmotionClassifier(path).metadata.provenance
    assert prov["logit_adjustment"] == report["logit_adjustment"]


def test_logit_adjust_on_a_model_without_logits_layer_is_one_line(tmp_path, fer_dir):
    import keras

    inp = keras.Input((48, 48, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(7, 3, activation="relu")(inp))
    model = keras.Model(inp, keras.layers.Softmax()(x))
    src = tmp_path / "relu.keras"
    model.save(src)
    proc = run_cli("convert", src, "--calibration", fer_dir / "train", "--samples", 20,
                   "--labels", FACE_CLASSIFICATION_LABELS, "--normalization", "symmetric",
                   "--logit-adjust", 0.5, timeout=300)
    assert_one_line_error(proc, "cannot find the layer producing the logits")
    assert not (tmp_path / "relu.tflite").exists()


def test_qat_child_applies_the_shift(mini_xception, fer_dir):
    """The QAT fine-tuning runs in a child process that loads the model from its file: the shift
    must reach it. A shift of +30 on one class makes every reference prediction that class."""
    from edge_fer.datasets import load_labelled
    from edge_fer.metadata import ModelMetadata
    from edge_fer_convert.qat import QatOptions, run_qat

    data = load_labelled(fer_dir / "train", limit=64, classes=LABELS, seed=1, size=(64, 64))
    shift = [0.0] * 7
    shift[LABELS.index("fear")] = 30.0
    meta = ModelMetadata(labels=LABELS, color="gray", normalization="symmetric", crop_margin=0.0)
    outcome = run_qat(str(mini_xception), None, meta, data.images, data.labels, data.images[:32],
                      data.images[:16], QatOptions(epochs=1, seed=0), logit_shift=shift)
    assert (outcome.reference.argmax(axis=1) == LABELS.index("fear")).all()
