"""`edge-fer predict`, `evaluate` and `info` on real images and the shipped model, and bad input."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil

import cv2
import numpy as np
import pytest

from conftest import assert_one_line_error, invoke, needs_tf, run_cli, small_disk
from edge_fer_models import SHIPPED
from stated import privatetest


def test_predict_group_photo_finds_the_faces(images_dir, default_model):
    r = invoke("predict", images_dir / "test_image.jpg", "--json", "-m", default_model)
    assert r.exit_code == 0, r.output
    (line,) = r.output.strip().splitlines()
    result = json.loads(line)
    assert result["path"].endswith("test_image.jpg")
    assert len(result["faces"]) >= 5
    face = result["faces"][0]
    x, y, w, h = face["box"]
    assert 0 <= x < 2048 and 0 <= y < 1536 and w >= 30 and h >= 30
    assert face["label"] in face["scores"] and face["score"] == max(face["scores"].values())
    assert sum(face["scores"].values()) == pytest.approx(1.0, abs=0.03)


def test_predict_folder_recurses_and_annotates(images_dir, default_model, tmp_path):
    src = tmp_path / "in" / "nested"
    src.mkdir(parents=True)
    shutil.copy(images_dir / "12_angry_men.jpg", src)
    shutil.copy(images_dir / "solvay_conference.jpg", tmp_path / "in")
    out = tmp_path / "out"
    r = invoke("predict", tmp_path / "in", "--annotate", out, "-m", default_model)
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 2 and all("face(s)" in ln for ln in lines)
    drawn = sorted(p.name for p in out.iterdir())
    assert drawn == ["12_angry_men_annotated.jpg", "solvay_conference_annotated.jpg"]
    original = cv2.imread(str(images_dir / "12_angry_men.jpg"))
    annotated = cv2.imread(str(out / "12_angry_men_annotated.jpg"))
    assert annotated.shape == original.shape
    assert np.mean(np.abs(annotated.astype(int) - original.astype(int))) > 0.5, "boxes were drawn"


def test_annotate_on_a_full_disk_leaves_no_partial_image(images_dir, default_model, tmp_path):
    """A group photo's annotated copy (~140 kB) cannot fit under a 20 kB write cap, as on a
    full disk: one line naming the target, a non-zero exit, and no truncated JPEG left behind
    that would pass for a result."""
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli("predict", images_dir / "12_angry_men.jpg", "--annotate", out, "-m", default_model,
                   preexec_fn=small_disk)
    assert_one_line_error(proc, "File too large", "12_angry_men_annotated.jpg", code=7)
    assert list(out.iterdir()) == []


def test_predict_no_detect_on_face_crops(fer_dir, default_model):
    happy = sorted((fer_dir / "privatetest" / "happy").iterdir())[:20]
    r = invoke("predict", *happy, "--no-detect", "--json", "-m", default_model)
    assert r.exit_code == 0, r.output
    results = [json.loads(x) for x in r.output.strip().splitlines()]
    assert len(results) == 20
    assert all(len(x["faces"]) == 1 and x["faces"][0]["box"] == [0, 0, 48, 48] for x in results)
    # Happy is the class every FER model gets best; most of 20 must come out happy.
    assert sum(x["faces"][0]["label"] == "happy" for x in results) >= 14


def test_evaluate_on_a_privatetest_sample(fer_dir, default_model):
    r = invoke("evaluate", "--data", fer_dir / "privatetest", "--limit", 700, "--json", "-m", default_model)
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["count"] == 700
    # The full PrivateTest accuracy is the model card's; a 700-face sample stays within 3
    # standard errors of it (about 5 points).
    # ($EDGE_FER_MODEL may name a model without a card: then only better than chance.)
    name = next((n for n, path in SHIPPED.items() if path == default_model), None)
    p = privatetest(name)["accuracy"] if name else None
    assert s["accuracy"] >= (p - 3 * math.sqrt(p * (1 - p) / 700) if p else 1 / 7), (name, p)
    assert set(s["per_class_recall"]) == set(s["labels"])
    assert sum(map(sum, s["confusion"])) == 700


def test_evaluate_table(fer_dir, default_model):
    r = invoke("evaluate", "--data", fer_dir / "publictest", "--limit", 100, "-m", default_model)
    assert r.exit_code == 0, r.output
    assert "accuracy:" in r.output and "macro recall" in r.output and "confusion" in r.output


def test_evaluate_draws_the_confusion_matrix(fer_dir, default_model, tmp_path):
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib: pip install '.[convert]'")
    png = tmp_path / "sub" / "confusion.png"
    r = invoke("evaluate", "--data", fer_dir / "publictest", "--limit", 100, "-m", default_model,
               "--plot", png)
    assert r.exit_code == 0, r.output
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 200
    # A row-normalised matrix in blues: some cells are dark (the diagonal), most are light.
    blue = (img[..., 0].astype(int) - img[..., 2].astype(int)) > 60
    assert 0.02 < blue.mean() < 0.6


def test_info_names_the_backend_and_input(default_model):
    r = invoke("info", "-m", default_model)
    assert r.exit_code == 0, r.output
    assert "backend: litert (ai_edge_litert.interpreter" in r.output
    assert "int8 scale=" in r.output and "labels: " in r.output
    size = default_model.stat().st_size
    assert f"({size:,} bytes, {size / 1024:.1f} KiB)" in r.output  # one unit, binary, everywhere


def test_no_runtime_chatter_before_the_output_or_an_error(default_model, tmp_path):
    # TFLite prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." from C++ for every
    # interpreter; edge-fer filters it (and keeps it, as a log record, with -v).
    proc = run_cli("info", "-m", default_model)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    proc = run_cli("predict", tmp_path / "gone.jpg", "-m", default_model)
    assert proc.returncode != 0 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("edge-fer: error:")
    proc = run_cli("-v", "info", "-m", default_model)
    assert proc.returncode == 0
    assert "INFO edge_fer.quiet: INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in proc.stderr


@needs_tf
def test_the_tensorflow_backend_is_quiet_too(default_model):
    env = {k: "" for k in os.environ if k.startswith("TF_CPP_")}
    proc = run_cli("info", "-m", default_model, "--backend", "tensorflow", env=env)
    assert proc.returncode == 0 and "backend: tensorflow" in proc.stdout
    assert proc.stderr == "", proc.stderr


def test_native_output_filter_drops_known_noise_and_keeps_the_rest(capfd, caplog):
    from edge_fer.quiet import native_output_filtered

    with caplog.at_level(logging.INFO, logger="edge_fer.quiet"):
        with native_output_filtered():
            # From C, as the runtimes write: straight to file descriptor 2.
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
            os.write(2, b"E0000 00:00:1795920541.155450    5937 cuda_platform.cc:52] failed call "
                        b"to cuInit: INTERNAL: CUDA error\n")
            os.write(2, b"something the user must see\n")
            with native_output_filtered():  # nested: the outer one filters
                os.write(2, b"fully_quantize: 0, inference_type: 6, input_inference_type: INT8, "
                            b"output_inference_type: INT8\n")
    assert capfd.readouterr().err == "something the user must see\n"
    assert [r.getMessage()[:20] for r in caplog.records] == [
        "INFO: Created Tensor", "E0000 00:00:17959205", "fully_quantize: 0, i"]


def test_shipped_models_by_short_name(tmp_path, monkeypatch):
    from edge_fer_models import SHIPPED

    r = invoke("info", "--model", "edgenet16")
    assert r.exit_code == 0, r.output
    assert str(SHIPPED["edgenet16"]) in r.output
    r = invoke("info", "--model", "default")
    assert r.exit_code == 0 and str(SHIPPED["default"]) in r.output
    # A file of that name in the current folder is the user's own model and wins.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "edgenet16").write_bytes(b"not a model")
    proc = run_cli("info", "--model", "edgenet16")
    assert_one_line_error(proc, "edgenet16 is not a .tflite model")


# -- bad input: one line, non-zero exit, no traceback, through the real entry point ----------

def test_missing_image(tmp_path, default_model):
    assert_one_line_error(run_cli("predict", tmp_path / "nope.jpg", "-m", default_model), "path not found")


def test_not_an_image_does_not_lose_the_others(tmp_path, images_dir, default_model):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    proc = run_cli("predict", bad, images_dir / "12_angry_men.jpg", "-m", default_model)
    assert_one_line_error(proc, "not a readable image", "notes.jpg")
    assert "12_angry_men.jpg:" in proc.stdout, "the good image is still reported"


def test_corrupt_model(tmp_path, images_dir):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"TFL3" * 10)
    assert_one_line_error(run_cli("predict", images_dir / "12_angry_men.jpg", "-m", bad), "model.tflite")


def test_keras_file_given_to_the_runtime(images_dir, mini_xception):
    assert_one_line_error(run_cli("predict", images_dir / "12_angry_men.jpg", "-m", mini_xception),
                           "not a .tflite model", "edge-fer convert")


def test_missing_model(images_dir, tmp_path):
    assert_one_line_error(run_cli("predict", images_dir / "12_angry_men.jpg", "-m", tmp_path / "x.tflite"),
                           "model not found")


def test_empty_data_folder(tmp_path, default_model):
    (tmp_path / "happy").mkdir()
    assert_one_line_error(run_cli("evaluate", "--data", tmp_path, "-m", default_model),
                           "no labelled images")


def test_unknown_class_folder(tmp_path, fer_dir, default_model):
    d = tmp_path / "contempt"
    d.mkdir()
    shutil.copy(next((fer_dir / "privatetest" / "happy").iterdir()), d)
    assert_one_line_error(run_cli("evaluate", "--data", tmp_path, "-m", default_model),
                           "contempt", "that the model does not know")


def test_model_input_not_an_image(tmp_path, default_model):
    # A model whose input is a flat vector: built with the converter so the file is a real model.
    pytest.importorskip("tensorflow")
    import tensorflow as tf

    class Flat(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 10], tf.float32)])
        def __call__(self, x):
            return tf.nn.softmax(x[:, :7])

    m = Flat()
    content = tf.lite.TFLiteConverter.from_concrete_functions([m.__call__.get_concrete_function()], m).convert()
    p = tmp_path / "flat.tflite"
    p.write_bytes(content)
    line = assert_one_line_error(run_cli("predict", "x.jpg", "-m", p, "--no-detect"), "not an image")
    # The shape as a user writes it (issue 13): numpy 2 printed [np.int32(1), np.int32(10)].
    assert "input [1, 10] is not an image" in line and "np." not in line


def test_evaluate_with_the_runtime_detector_on_larger_frames(fer_dir, default_model, tmp_path):
    """Faces found by the runtime's own detector in larger frames, not only 48x48 crops."""
    rng = np.random.default_rng(0)
    n = 0
    for cls in ("happy", "surprise"):
        (tmp_path / cls).mkdir()
        for src in sorted((fer_dir / "privatetest" / cls).iterdir())[:15]:
            face = cv2.resize(cv2.imread(str(src), cv2.IMREAD_GRAYSCALE), None, fx=3, fy=3)
            frame = cv2.GaussianBlur(rng.normal(110, 25, (240, 320)).clip(0, 255).astype(np.uint8), (0, 0), 3)
            y, x = int(rng.integers(0, 240 - 144)), int(rng.integers(0, 320 - 144))
            frame[y:y + 144, x:x + 144] = face
            cv2.imwrite(str(tmp_path / cls / src.name), frame)
            n += 1
    r = invoke("evaluate", "--data", tmp_path, "--detect", "--json", "-m", default_model)
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["detected"] + s["undetected"] == n
    # Haar finds about three in four FER2013 faces (benchmarks/crop_margin.py measures it).
    assert s["detected"] >= n // 2
    assert s["count"] == s["detected"]
    assert s["accuracy"] >= 0.5, "happy and surprise are the easy classes"
