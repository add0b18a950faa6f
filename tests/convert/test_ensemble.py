"""`edge-fer ensemble`: members averaged into one graph, offsets balanced on validation data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import assert_one_line_error, needs_tf, run_cli

pytestmark = needs_tf

FER = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def _save(model, path, labels=FER, normalization="symmetric"):
    from edge_fer.metadata import ModelMetadata
    from edge_fer_convert.train import save_keras_with_metadata

    save_keras_with_metadata(model, path, ModelMetadata(labels=list(labels), color="gray",
                                                        normalization=normalization,
                                                        provenance={"architecture": model.name}))
    return path


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Two real edgenets with different random weights (training them is not the point here:
    the ensemble's arithmetic is), saved the way `edge-fer train` saves them."""
    import keras

    from edge_fer_convert.architectures import get_architecture

    d = tmp_path_factory.mktemp("members")
    paths = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        m = get_architecture("edgenet").build(7, width=8)
        # Random final biases make the members disagree, as trained ones do.
        dense = m.layers[-1]
        dense.bias.assign(np.random.default_rng(seed).normal(0, 1, 7).astype(np.float32))
        paths.append(_save(m, d / f"m{seed}.keras"))
    return paths


@pytest.fixture(scope="module")
def val_npz(tmp_path_factory, fer_dir):
    from edge_fer.datasets import load_folder

    data = load_folder(fer_dir / "publictest", size=(48, 48), limit=300)
    path = tmp_path_factory.mktemp("val") / "val.npz"
    np.savez(path, images=data.images, labels=data.labels, classes=np.array(data.classes))
    return path, data


def _probs(path, images):
    from edge_fer_convert.loader import KerasClassifier

    return KerasClassifier.load(path).predict_proba(list(images))


def test_the_ensemble_is_the_mean_of_its_members(members, val_npz, tmp_path):
    from edge_fer_convert.ensemble import EnsembleOptions, build_ensemble

    _, data = val_npz
    out = tmp_path / "ens.keras"
    build_ensemble([str(m) for m in members], out, EnsembleOptions())
    faces = data.images[:40]
    expected = np.mean([_probs(m, faces) for m in members], axis=0)
    np.testing.assert_allclose(_probs(out, faces), expected, atol=1e-5)
    meta = json.loads((tmp_path / "ens.keras.json").read_text())
    assert meta["labels"] == FER and meta["normalization"] == "symmetric"
    assert [m["file"] for m in meta["provenance"]["members"]] == ["m1.keras", "m2.keras"]


def test_balanced_offsets_are_baked_into_every_member(members, val_npz, tmp_path):
    from edge_fer_convert.ensemble import EnsembleOptions, build_ensemble, shifted

    npz, data = val_npz
    out = tmp_path / "bal.keras"
    report = build_ensemble([str(m) for m in members], out, EnsembleOptions(val=str(npz), balance=True))
    offsets = np.array([report.offsets[c] for c in FER])
    assert np.any(offsets != 0), "random members are unbalanced; some offset must move"
    faces = data.images[:40]
    expected = shifted(np.stack([_probs(m, faces) for m in members]), offsets).mean(axis=0)
    np.testing.assert_allclose(_probs(out, faces), expected, atol=1e-5)
    b = report.balanced_scores
    assert (b["accuracy"] + b["macro_recall"]) > (report.mean_scores["accuracy"]
                                                  + report.mean_scores["macro_recall"])
    assert json.loads((tmp_path / "bal.keras.json").read_text())["provenance"]["offsets"] == report.offsets


def test_offset_search_recovers_a_suppressed_class():
    """Class 1 is always ranked second behind class 0 by a fixed margin: only an offset on
    class 1 larger than that margin lets it be predicted, and the search must find one."""
    from edge_fer_convert.ensemble import choose_offsets, shifted

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [200, 40, 200])
    logits = rng.normal(0, 0.3, (len(y), 3))
    logits[y == 0, 0] += 3
    logits[y == 2, 2] += 3
    logits[y == 1, 0] += 2.0
    logits[y == 1, 1] += 1.5  # class 1 faces still score class 0 highest, by 0.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.mean(p.argmax(1)[y == 1] == 1) < 0.2
    offsets = choose_offsets(p[None], y)
    assert offsets[0] == 0 and offsets[1] >= 0.4
    pred = shifted(p[None], offsets).mean(0).argmax(1)
    assert np.mean(pred[y == 1] == 1) > 0.7 and np.mean(pred[y == 0] == 0) > 0.9


def test_ensemble_converts_to_full_int8_and_runs(members, val_npz, tmp_path, fer_dir):
    npz, _ = val_npz
    ens = tmp_path / "ens.keras"
    proc = run_cli("ensemble", *members, "-o", ens, "--val", npz, "--balance", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(json.loads(proc.stdout)["member_scores"]) == 2
    tfl = tmp_path / "ens.tflite"
    proc = run_cli("convert", ens, "-o", tfl, "--calibration", fer_dir / "train", "--samples", 50,
                   "--validation", npz, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["verification"]["integer_only"] is True
    assert report["agreement"]["top1"] >= 0.9


def test_members_that_disagree_on_labels(members, tmp_path):
    import keras

    other = keras.models.load_model(members[0])
    odd = _save(other, tmp_path / "odd.keras", labels=FER[::-1])
    assert_one_line_error(run_cli("ensemble", members[0], odd, "-o", tmp_path / "e.keras"),
                          "odd.keras", "labels")


def test_balance_needs_validation_data(members, tmp_path):
    assert_one_line_error(run_cli("ensemble", *members, "-o", tmp_path / "e.keras", "--balance"), "--val")


def test_balance_needs_a_head_whose_logits_can_shift(val_npz, tmp_path):
    """Offsets go into the bias of the layer making the logits; behind a ReLU they would not be
    offsets of the logits, so such a member is refused (convolutional heads, as mini-Xception's,
    are fine: tests/convert/test_logit_adjust.py)."""
    import keras

    inp = keras.Input((48, 48, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(7, 3, activation="relu")(inp))
    odd = _save(keras.Model(inp, keras.layers.Activation("softmax")(x)), tmp_path / "act.keras")
    assert_one_line_error(run_cli("ensemble", odd, "-o", tmp_path / "e.keras", "--val", val_npz[0],
                                  "--balance"), "act.keras", "cannot find the layer producing the logits",
                          "leave out --balance")
