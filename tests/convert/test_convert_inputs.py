"""Every model format and data source `edge-fer convert` takes, and the bad ones it refuses.

Conversions run in this process through the library (TensorFlow is imported once); the one-line
errors go through the CLI in-process with click's runner, which is what a user sees minus the
interpreter start-up.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import FACE_CLASSIFICATION_LABELS, assert_one_line_error, invoke, needs_tf, tiny_classifier

pytestmark = needs_tf

LABELS = FACE_CLASSIFICATION_LABELS.split(",")
FOLDER_LABELS = sorted(LABELS)


@pytest.fixture(scope="module")
def faces(fer_dir):
    """A stratified sample of PublicTest faces at 48x48 (labels in folder order)."""
    from edge_fer.datasets import load_folder

    return load_folder(fer_dir / "publictest", size=(48, 48), limit=140, seed=3)


@pytest.fixture(scope="module")
def faces_npz(tmp_path_factory, faces):
    path = tmp_path_factory.mktemp("npz") / "faces.npz"
    np.savez(path, images=faces.images, labels=faces.labels, classes=np.array(faces.classes))
    return path


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """The same kind of model in every format a notebook produces."""
    import keras
    import tf_keras

    d = tmp_path_factory.mktemp("formats")
    k3, k2 = tiny_classifier(keras), tiny_classifier(tf_keras)
    k3.save(d / "k3.keras")
    k3.save(d / "k3.h5")
    k3.export(str(d / "k3_export"), format="tf_saved_model", verbose=False)
    k2.save(d / "k2.h5")
    k2.save(d / "k2_savedmodel", save_format="tf")
    return {"keras3 .keras": (d / "k3.keras", "keras3"), "keras3 .h5": (d / "k3.h5", "keras3"),
            # Keras 3 reads Keras 2 .h5 files too, and it is tried first.
            "tf-keras .h5": (d / "k2.h5", "keras3"),
            "Keras 2 SavedModel": (d / "k2_savedmodel", "tf_keras"),
            "plain TF SavedModel": (d / "k3_export", "saved_model")}


def _convert(model, tmp_path, **kw):
    from edge_fer_convert.converter import ConvertOptions, convert

    opts = dict(output=str(tmp_path / "out.tflite"), labels=LABELS, normalization="unit", samples=20)
    opts.update(kw)
    return convert(model, ConvertOptions(**opts))


@pytest.mark.parametrize("kind", ["keras3 .keras", "keras3 .h5", "tf-keras .h5", "Keras 2 SavedModel",
                                  "plain TF SavedModel"])
def test_every_model_format_converts_to_verified_int8(kind, model_files, faces_npz, tmp_path):
    path, flavor = model_files[kind]
    report = _convert(path, tmp_path, calibration=str(faces_npz))
    assert report.loaded_with == flavor
    assert report.verification["integer_only"] is True
    assert set(report.verification["backends"]) >= {"litert", "tensorflow"}
    # Same model in every format: the TFLite matches its float source closely on real faces.
    assert report.agreement["mean_abs_prob_diff"] < 0.01
    assert report.calibration_samples == 20


def test_weights_only_h5_with_arch_is_the_shared_model(mini_xception, tmp_path, fer_dir):
    """Weights saved from the shared mini-Xception, rebuilt with the project's minixception."""
    import tf_keras

    from edge_fer_convert.loader import KerasClassifier

    weights = tmp_path / "mini_weights.h5"
    tf_keras.models.load_model(mini_xception, compile=False).save_weights(weights)
    whole = KerasClassifier.load(mini_xception, labels=LABELS, normalization="symmetric")
    rebuilt = KerasClassifier.load(weights, labels=LABELS, normalization="symmetric", arch="minixception")
    assert rebuilt.loaded.flavor == "keras3+arch"
    from edge_fer.datasets import load_folder

    sample = load_folder(fer_dir / "privatetest", size=(64, 64), limit=64, seed=1).images
    np.testing.assert_allclose(rebuilt.predict_proba(sample), whole.predict_proba(sample), atol=1e-5)
    report = _convert(weights, tmp_path, arch="minixception", normalization="symmetric",
                      calibration=str(fer_dir / "train"))
    assert report.loaded_with == "keras3+arch" and report.verification["integer_only"]


def test_big_xception_converts(big_xception, fer_dir, tmp_path):
    report = _convert(big_xception, tmp_path, normalization="symmetric", calibration=str(fer_dir / "train"),
                      samples=50, validation=str(fer_dir / "privatetest"), validation_limit=300)
    assert report.loaded_with == "keras3"
    assert report.verification["integer_only"] is True
    f, q = report.float_model.scores, report.converted.scores
    assert f["count"] == q["count"] == 300
    # A 0.66-validation-accuracy model (file name): well above chance on the test split, and
    # INT8 within a few points of it on this sample.
    assert f["accuracy"] > 0.5
    assert abs(report.accuracy_drop_points) < 4.0


def test_csv_calibration_and_validation_with_usage(tmp_path, faces, model_files):
    """The FER2013 CSV layout (emotion index in CSV order, pixels, Usage), split by --usage."""
    from edge_fer.datasets import FER2013_CSV_LABELS

    path = tmp_path / "fer2013.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["emotion", "pixels", "Usage"])
        for i, (img, lab) in enumerate(zip(faces.images, faces.labels)):
            emotion = FER2013_CSV_LABELS.index(faces.classes[lab])
            w.writerow([emotion, " ".join(map(str, img.ravel())), "Training" if i % 2 else "PublicTest"])
    model, _ = model_files["keras3 .keras"]
    report = _convert(model, tmp_path, calibration=str(path), usage="Training", validation=str(path),
                      validation_usage="PublicTest")
    assert report.calibration_samples == 20
    assert report.converted.scores["count"] == (len(faces) + 1) // 2
    assert report.converted.scores["labels"] == LABELS


def test_preprocessing_is_recorded_in_the_output(model_files, faces_npz, tmp_path):
    from edge_fer.classifier import EmotionClassifier

    model, _ = model_files["keras3 .keras"]
    report = _convert(model, tmp_path, calibration=str(faces_npz), crop_margin=0.1)
    clf = EmotionClassifier(report.output)
    assert clf.metadata.normalization == "unit" and clf.metadata.crop_margin == 0.1
    prov = clf.metadata.provenance
    assert prov["preprocessing"]["normalization"] == "unit"
    assert prov["preprocessing"]["size"] == [48, 48] and prov["preprocessing"]["color"] == "gray"
    assert prov["calibration_samples"] == 20 and prov["calibration_data"] == str(faces_npz)
    assert prov["method"] == "ptq per-channel 20 samples"


# -- custom layers --------------------------------------------------------------------------

def test_custom_layer_in_keras3_file_is_named(tmp_path):
    import keras

    class FaceScale(keras.layers.Layer):  # defined here, so nothing can find it when loading
        def call(self, x):
            return x * 2.0

    inp = keras.Input((48, 48, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(FaceScale()(inp)))
    model = keras.Model(inp, keras.layers.Dense(7, activation="softmax")(x))
    for name in ("custom.keras", "custom.h5"):
        model.save(tmp_path / name)
        assert_one_line_error(invoke("convert", tmp_path / name, "--quantization", "none", "--labels",
                              FACE_CLASSIFICATION_LABELS, "--normalization", "unit"),
                       "custom layer 'FaceScale'", code=4)


def test_custom_activation_in_legacy_h5_is_named(tmp_path):
    import tf_keras

    def squashed_relu(x):
        return tf_keras.activations.relu(x) * 0.5

    inp = tf_keras.Input((48, 48, 1))
    x = tf_keras.layers.Conv2D(4, 3, activation=squashed_relu, name="features")(inp)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    tf_keras.Model(inp, tf_keras.layers.Dense(7, activation="softmax")(x)).save(tmp_path / "act.h5")
    assert_one_line_error(invoke("convert", tmp_path / "act.h5", "--quantization", "none", "--labels",
                          FACE_CLASSIFICATION_LABELS, "--normalization", "unit"),
                   "custom function 'squashed_relu'", "'features'", code=4)


# -- bad data -------------------------------------------------------------------------------

@pytest.mark.parametrize("arrays, needle", [
    ({"pixels": np.zeros((4, 48, 48), np.uint8)}, "no 'images' array"),
    ({"images": np.zeros((4, 48, 48), np.float32)}, "'images' is float32"),
    ({"images": np.zeros((4, 48, 48, 2), np.uint8)}, "'images' is uint8 [4, 48, 48, 2]"),
    ({"images": np.zeros((4, 48, 48), np.uint8), "labels": np.zeros(3, np.int64),
      "classes": np.array(["happy"])}, "expected 4 integers"),
    # Without 'classes', labels index the model's own output order: 7 classes here.
    ({"images": np.zeros((4, 48, 48), np.uint8), "labels": np.array([0, 1, 2, 9])}, "run 0..9 but there are 7"),
])
def test_npz_with_the_wrong_arrays(tmp_path, model_files, arrays, needle):
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    model, _ = model_files["keras3 .keras"]
    assert_one_line_error(invoke("convert", model, "-o", tmp_path / "m.tflite", "--calibration", bad,
                          "--labels", FACE_CLASSIFICATION_LABELS, "--normalization", "unit"),
                   needle, code=3)
    assert not (tmp_path / "m.tflite").exists()


def test_csv_without_the_fer2013_columns(tmp_path, model_files):
    bad = tmp_path / "faces.csv"
    bad.write_text("label,image\n3,0 0 0 0\n")
    model, _ = model_files["keras3 .keras"]
    assert_one_line_error(invoke("convert", model, "--calibration", bad, "--labels", FACE_CLASSIFICATION_LABELS,
                          "--normalization", "unit"), "'emotion' and 'pixels' columns", code=3)


def test_calibration_classes_the_model_does_not_have(tmp_path, model_files, fer_dir):
    import shutil

    for cls in ("happy", "contempt"):
        (tmp_path / "cal" / cls).mkdir(parents=True)
        for p in sorted((fer_dir / "publictest" / "happy").iterdir())[:3]:
            shutil.copy(p, tmp_path / "cal" / cls)
    model, _ = model_files["keras3 .keras"]
    assert_one_line_error(invoke("convert", model, "-o", tmp_path / "m.tflite", "--calibration", tmp_path / "cal",
                          "--labels", FACE_CLASSIFICATION_LABELS, "--normalization", "unit"),
                   "contempt", "does not know", code=3)
    assert not (tmp_path / "m.tflite").exists()


def test_unlabelled_npz_calibrates_but_cannot_validate(tmp_path, model_files, faces):
    unlabelled = tmp_path / "faces.npz"
    np.savez(unlabelled, images=faces.images[:30])
    model, _ = model_files["keras3 .keras"]
    report = _convert(model, tmp_path, calibration=str(unlabelled))
    assert report.calibration_samples == 20
    assert_one_line_error(invoke("convert", model, "-o", tmp_path / "v.tflite", "--calibration", unlabelled,
                          "--validation", unlabelled, "--labels", FACE_CLASSIFICATION_LABELS,
                          "--normalization", "unit"), "no labels", code=3)


def test_max_drop_needs_validation(model_files, faces_npz):
    model, _ = model_files["keras3 .keras"]
    assert_one_line_error(invoke("convert", model, "--calibration", faces_npz, "--max-drop", 1,
                          "--labels", FACE_CLASSIFICATION_LABELS, "--normalization", "unit"),
                   "--max-drop needs --validation", code=2)


def test_plain_saved_model_without_a_signature(tmp_path):
    import tensorflow as tf

    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(tmp_path / "nosig"))
    assert_one_line_error(invoke("convert", tmp_path / "nosig", "--quantization", "none", "--labels",
                          FACE_CLASSIFICATION_LABELS, "--normalization", "unit"),
                   "without a serving signature", code=4)


def test_report_json_lists_what_the_cli_printed(tmp_path, model_files, faces_npz):
    model, _ = model_files["keras3 .keras"]
    report = tmp_path / "r.json"
    r = invoke("convert", model, "-o", tmp_path / "m.tflite", "--calibration", faces_npz, "--samples", 20,
               "--validation", faces_npz, "--labels", FACE_CLASSIFICATION_LABELS,
               "--normalization", "unit", "--report", report)
    assert r.exit_code == 0, r.output
    data = json.loads(report.read_text())
    assert data["plot"] == str(tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "recall happy" in r.stdout and "4 thread(s)" in r.stdout and data["sha256"][:16] in r.stdout


def test_verification_refuses_outputs_beyond_the_tolerance(model_files, faces_npz, faces, tmp_path):
    from edge_fer.classifier import ClassifierOptions
    from edge_fer.errors import ModelError
    from edge_fer_convert.converter import TOLERANCES, verify
    from edge_fer_convert.loader import KerasClassifier

    model, _ = model_files["keras3 .keras"]
    report = _convert(model, tmp_path, calibration=str(faces_npz))
    out = tmp_path / "out.tflite"
    probe = faces.images[:16]
    float_probs = KerasClassifier.load(model, labels=LABELS, normalization="unit").predict_proba(list(probe))
    agreement, checked = verify(out, out.read_bytes(), float_probs, probe, ClassifierOptions(), "int8")
    assert agreement["samples"] == 16 and checked["integer_only"] is True
    assert agreement["mean_abs_prob_diff"] < TOLERANCES["int8"] / 5, report.agreement
    # A reference that is sure of one class for every face: far outside the stated tolerance.
    wrong = np.tile(np.eye(7, dtype=np.float32)[0], (len(probe), 1))
    assert np.mean(np.abs(wrong - float_probs)) > TOLERANCES["int8"]
    with pytest.raises(ModelError, match="does not match its float model"):
        verify(out, out.read_bytes(), wrong, probe, ClassifierOptions(), "int8")


def test_an_op_the_converter_leaves_float_is_named(tmp_path, faces_npz):
    """littlevgg's ELU has no int8 rule in the converter: it stays float between DEQUANTIZE and
    QUANTIZE. An "int8" model that is not full integer is refused, not written."""
    from edge_fer_convert.architectures import get_architecture

    get_architecture("littlevgg").build(7).save(tmp_path / "littlevgg.keras")
    out = tmp_path / "littlevgg.tflite"
    assert_one_line_error(invoke("convert", tmp_path / "littlevgg.keras", "-o", out, "--calibration", faces_npz,
                          "--samples", 10, "--labels", FACE_CLASSIFICATION_LABELS, "--normalization", "unit"),
                   "still computes ELU in float", code=4)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["littlevgg.keras"]
