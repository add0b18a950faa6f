"""Accuracy-aware conversion: `--max-drop`, its escalation to QAT, and tfmot on mini-Xception.

The escalation is driven by a real failure mode: calibration faces that do not represent the
data (here all black), which ruins post-training calibration (~17 points lost on mini-Xception)
whatever the sample count or weight scales. Quantization-aware fine-tuning on real faces learns
its own ranges and recovers most of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import FACE_CLASSIFICATION_LABELS, needs_tf

pytestmark = needs_tf

LABELS = FACE_CLASSIFICATION_LABELS.split(",")


@pytest.fixture(scope="module")
def black_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("black") / "black.npz"
    np.savez(path, images=np.zeros((40, 48, 48), np.uint8))
    return path


def test_qat_recovers_what_bad_calibration_lost(mini_xception, fer_dir, black_npz, tmp_path):
    from edge_fer.classifier import EmotionClassifier
    from edge_fer_convert.converter import ConvertOptions, convert

    out = tmp_path / "mini.tflite"
    report = convert(mini_xception, ConvertOptions(
        output=str(out), calibration=str(black_npz), samples=10, validation=str(fer_dir / "publictest"),
        validation_limit=300, labels=LABELS, normalization="symmetric", max_drop=8.0,
        qat_epochs=1, qat_data=str(fer_dir / "train"), qat_limit=300, report=str(tmp_path / "r.json")))
    attempts = report.attempts
    assert [a["method"] for a in attempts] == ["ptq"] * 4 + ["qat"]
    assert [a["variant"] for a in attempts[:4]] == ["per-channel", "per-channel", "per-tensor", "per-tensor-dense"]
    assert [a["calibration_samples"] for a in attempts[:2]] == [10, 40]
    # Measured: every post-training attempt loses ~17 points; QAT ~4 (300 PublicTest faces).
    assert all(a["drop_points"] > 8.0 for a in attempts[:4]), [a["summary"] for a in attempts]
    assert attempts[4]["drop_points"] <= 8.0 and report.method.startswith("qat 1 epoch")
    assert report.accuracy_drop_points == attempts[4]["drop_points"]
    # Renaming avoids tfmot's name clash, so every layer of mini-Xception is quantization-aware.
    assert report.qat["plan"]["unquantized"] == {} and report.qat["plan"]["renamed"] is True
    assert report.qat["samples"] == 300
    assert report.verification["integer_only"] is True
    assert report.verification["reference"] == "the fine-tuned QAT Keras model"
    assert report.agreement["mean_abs_prob_diff"] < 0.05
    clf = EmotionClassifier(out)
    assert clf.input.dtype == "int8"
    assert clf.metadata.provenance["method"] == report.method
    assert clf.metadata.provenance["qat"]["plan"]["unquantized"] == {}
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["method"] == report.method and (tmp_path / "r.png").exists()


def test_unreachable_max_drop_names_every_attempt(mini_xception, fer_dir, black_npz, tmp_path):
    out = tmp_path / "mini.tflite"
    proc = subprocess.run(
        [sys.executable, "-m", "edge_fer", "convert", str(mini_xception), "-o", str(out),
         "--calibration", str(black_npz), "--samples", "10", "--validation", str(fer_dir / "publictest"),
         "--validation-limit", "200", "--labels", FACE_CLASSIFICATION_LABELS,
         "--normalization", "symmetric", "--max-drop", "8", "--qat-epochs", "0"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 4, proc.stderr[-2000:]
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("edge-fer: error:")]
    assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    line = err[0]
    assert "--max-drop 8 points" in line and "200 validation faces" in line
    for name in ("ptq per-channel 10 samples: drop +", "ptq per-channel 40 samples: drop +",
                 "ptq per-tensor 10 samples: drop +", "ptq per-tensor-dense 10 samples: drop +",
                 "QAT not tried"):
        assert name in line, line
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def mini_tf_keras(mini_xception):
    import tf_keras

    return tf_keras.models.load_model(mini_xception, compile=False)


def test_tfmot_name_clash_on_mini_xception_is_handled(mini_tf_keras):
    import tf_keras

    from edge_fer_convert.qat import quantize_plan, tfmot_module

    tfmot = tfmot_module()
    # The real case: tfmot's SeparableConv2D split gives new layers automatic names (conv2d_N)
    # which the 2017 file already uses, and the rewired graph no longer fits together. Automatic
    # names count per session, so start each case from a fresh one, as a new process would.
    tf_keras.backend.clear_session()
    with pytest.raises(ValueError, match="incompatible shapes"):
        tfmot.quantization.keras.quantize_model(mini_tf_keras)
    # Without the renaming, the fallback leaves the eight separable convs float instead of crashing.
    tf_keras.backend.clear_session()
    qat_float_sep, plan_float_sep = quantize_plan(mini_tf_keras, rename=False)
    assert "incompatible shapes" in plan_float_sep.fallback
    # ... and the batch norms right after them, which tfmot only quantizes fused into a conv.
    float_layers = {la.name for la in mini_tf_keras.layers
                    if la.__class__.__name__ == "SeparableConv2D"
                    or la._inbound_nodes[0].inbound_layers.__class__.__name__ == "SeparableConv2D"}
    assert len(float_layers) == 16
    assert set(plan_float_sep.unquantized) == float_layers
    # With it (the default), every layer is quantization-aware.
    tf_keras.backend.clear_session()
    qat, plan = quantize_plan(mini_tf_keras)
    assert plan.unquantized == {} and plan.fallback is None
    assert len(plan.quantized) == len(mini_tf_keras.layers) - 1
    x = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 1)).astype(np.float32)
    for model in (qat, qat_float_sep):
        assert np.asarray(model(x, training=False)).shape == (4, 7)


@pytest.mark.parametrize("arch", ["edgenet", "minixception"])
def test_keras3_architectures_rebuild_in_tf_keras(arch):
    """QAT needs tf-keras; the project's own (Keras 3) models are translated with their weights."""
    from edge_fer_convert.architectures import get_architecture
    from edge_fer_convert.qat import keras3_to_tf_keras, quantize_plan

    model = get_architecture(arch).build(7)
    rebuilt = keras3_to_tf_keras(model)
    x = np.random.default_rng(0).uniform(-1, 1, (2,) + tuple(model.input_shape[1:])).astype(np.float32)
    np.testing.assert_allclose(rebuilt(x).numpy(), np.asarray(model(x)), atol=1e-5)
    _, plan = quantize_plan(rebuilt)
    assert plan.quantized
