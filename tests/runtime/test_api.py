"""The Python API (`edge_fer.analyze`, `Analyzer`, `stream`) on the shipped model, the shared
photos and real clips: the same answers as the command line, the same one-line errors, threads
that end when the caller is done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import edge_fer
from clips import TEST_IMAGE_FACES
from conftest import REPO, run_cli
from edge_fer import (Analyzer, EdgeFerError, Face, InputError, ModelError, SourceError,
                      UsageError)

PHOTOS = ("test_image.jpg", "12_angry_men.jpg", "solvay_conference.jpg")


def cli_error(*args, env=None) -> str:
    """The message of the one `edge-fer: error:` line a failing command prints."""
    proc = run_cli(*args, env=env)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("edge-fer: error: ")]
    return line[len("edge-fer: error: "):]


def predict_json(paths, *args, env=None) -> dict[str, list[dict]]:
    proc = run_cli("predict", "--json", *paths, *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return {Path(d["path"]).name: d["faces"] for d in map(json.loads, proc.stdout.splitlines())}


def edge_fer_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("edge-fer-")]


@pytest.fixture(scope="module")
def clip_frames(clip):
    cap = cv2.VideoCapture(str(clip.path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == clip.frames
    return frames


@pytest.fixture(scope="module")
def analyzer(default_model):
    return Analyzer(default_model)


# -- analyze and Analyzer ---------------------------------------------------------------------

def test_analyze_equals_predict_json_on_the_shared_photos(images_dir, default_model):
    paths = [images_dir / p for p in PHOTOS]
    expected = predict_json(paths, "-m", default_model)
    for path in paths:
        faces = edge_fer.analyze(path, model=default_model)
        assert all(isinstance(f, Face) for f in faces)
        assert [f.to_dict() for f in faces] == expected[path.name], path.name
    assert len(expected["test_image.jpg"]) >= 5


def test_analyze_with_blazeface_and_tta_equals_predict_json(images_dir, default_model,
                                                            detector_weights):
    path = images_dir / "12_angry_men.jpg"
    expected = predict_json([path], "-m", default_model, "--detector", "blazeface-full", "--tta")
    faces = edge_fer.analyze(str(path), model=default_model, detector="blazeface-full", tta=True)
    assert [f.to_dict() for f in faces] == expected[path.name]
    assert faces and all(len(f.landmarks) == 6 for f in faces)
    x, y, w, h = faces[0].box
    for lx, ly in faces[0].landmarks[:4]:  # eyes, nose and mouth lie inside the face box
        assert x <= lx <= x + w and y <= ly <= y + h


def test_a_face_is_typed_frozen_and_its_scores_are_probabilities(images_dir, default_model):
    faces = edge_fer.analyze(images_dir / "test_image.jpg", model=default_model)
    face = faces[0]
    assert face.box[2] == max(f.box[2] for f in faces)  # largest first: the close face
    assert abs(face.box[0] - TEST_IMAGE_FACES[0][0]) < 60 and abs(face.box[2] - TEST_IMAGE_FACES[0][2]) < 80
    assert all(isinstance(v, int) for v in face.box)
    assert face.label == max(face.scores, key=face.scores.get)
    assert face.score == face.scores[face.label]
    assert sum(face.scores.values()) == pytest.approx(1.0, abs=0.03)
    assert face.landmarks == ()  # Haar has none
    assert "landmarks" not in face.to_dict()
    with pytest.raises(AttributeError):
        face.label = "happy"
    hash(face)  # usable in sets and as dict keys


def test_arrays_bgr_gray_and_bgra_give_the_faces_of_the_file(images_dir, analyzer):
    path = images_dir / "12_angry_men.jpg"
    from_file = analyzer.analyze(path)
    bgr = cv2.imread(str(path))
    assert analyzer.analyze(bgr) == from_file
    assert analyzer.analyze(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)) == from_file
    gray = analyzer.analyze(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    # The model is gray and Haar detects on gray: the same faces, the same emotions.
    assert [f.box for f in gray] == [f.box for f in from_file]
    assert [f.label for f in gray] == [f.label for f in from_file]


def test_analyzer_over_the_frames_of_a_clip(clip, clip_frames, analyzer):
    results = [analyzer.analyze(frame) for frame in clip_frames]
    found = 0
    for faces, truth in zip(results, clip.boxes):
        for box in filter(None, truth):
            cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
            found += any(abs(f.box[0] + f.box[2] / 2 - cx) < box[2] / 3
                         and abs(f.box[1] + f.box[3] / 2 - cy) < box[3] / 3 for f in faces)
    total = sum(1 for row in clip.boxes for b in row if b)
    assert found / total > 0.8, f"found {found} of {total} faces"
    # Loaded once, the answers do not drift from frame to frame: a fresh load agrees.
    again = Analyzer(analyzer.classifier.path)
    for i in (0, len(clip_frames) // 2, len(clip_frames) - 1):
        assert again.analyze(clip_frames[i]) == results[i]


def test_classify_face_crops_equals_predict_no_detect(fer_dir, analyzer, default_model):
    paths = sorted((fer_dir / "privatetest" / "happy").glob("*.jpg"))[:6] \
        + sorted((fer_dir / "privatetest" / "surprise").glob("*.jpg"))[:6]
    expected = predict_json(paths, "-m", default_model, "--no-detect")
    faces = analyzer.classify([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths])
    assert [f.to_dict() for f in faces] == [expected[p.name][0] for p in paths]
    assert [f.box for f in faces] == [(0, 0, 48, 48)] * len(paths)
    assert sum(f.label in ("happy", "surprise") for f in faces) >= 9
    assert analyzer.classify([]) == []


def test_one_analyzer_shared_by_threads_gives_the_sequential_answers(clip_frames, analyzer):
    """Documented: calls on one Analyzer from several threads are serialized by its lock, so
    each thread gets exactly what a single thread would."""
    frames = clip_frames[::3]
    expected = [analyzer.analyze(f) for f in frames]
    crops = [f[100:300, 100:300] for f in frames]
    expected_crops = analyzer.classify(crops)
    got: dict[int, list] = {}
    errors = []

    def work(k):
        try:
            order = list(range(len(frames)))
            order = order[k * 4:] + order[:k * 4]  # each thread starts elsewhere
            got[k] = {i: analyzer.analyze(frames[i]) for i in order}
            got[k]["crops"] = analyzer.classify(crops)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for k in range(4):
        assert [got[k][i] for i in range(len(frames))] == expected
        assert got[k]["crops"] == expected_crops


def test_importing_edge_fer_is_cheap_and_never_loads_tensorflow(images_dir, default_model):
    code = ("import sys, edge_fer\n"
            "heavy = [m for m in ('numpy', 'cv2', 'tensorflow') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            f"faces = edge_fer.analyze({str(images_dir / '12_angry_men.jpg')!r}, model={str(default_model)!r})\n"
            "assert faces\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
            "import logging; assert not logging.getLogger().handlers  # no handler configured\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # nothing printed


def test_public_names_are_exported_and_typed():
    assert set(edge_fer.__all__) <= set(dir(edge_fer))
    for name in edge_fer.__all__:
        assert getattr(edge_fer, name) is not None
    assert issubclass(InputError, EdgeFerError) and issubclass(SourceError, EdgeFerError)
    assert (REPO / "edge_fer" / "py.typed").is_file()
    with pytest.raises(AttributeError):
        edge_fer.no_such_name  # noqa: B018


# -- bad input: the documented exception, with the line the command line prints ---------------

def test_missing_path_and_not_an_image(tmp_path, default_model):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(InputError) as err:
        edge_fer.analyze(missing, model=default_model)
    assert str(err.value) == cli_error("predict", missing, "-m", default_model)
    notes = tmp_path / "notes.jpg"
    notes.write_text("not an image")
    with pytest.raises(InputError) as err:
        edge_fer.analyze(str(notes), model=default_model)
    assert str(err.value) == cli_error("predict", notes, "-m", default_model)
    with pytest.raises(InputError, match="got a folder"):
        edge_fer.analyze(tmp_path, model=default_model)


@pytest.mark.parametrize("bad, words", [
    (np.zeros((40, 40, 3), np.float32), "uint8"),
    (np.zeros((40, 40, 3), np.int64), "uint8"),
    (np.zeros((40, 40, 2), np.uint8), "shape (40, 40, 2)"),
    (np.zeros((2, 40, 40, 3), np.uint8), "shape (2, 40, 40, 3)"),
    (np.zeros((0, 40), np.uint8), "shape (0, 40)"),
    ([[0, 1], [2, 3]], "a path or a numpy array"),
])
def test_arrays_that_are_no_image(analyzer, bad, words):
    with pytest.raises(InputError) as err:
        analyzer.analyze(bad)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_classify_rejects_bad_crops(analyzer):
    with pytest.raises(InputError, match="uint8"):
        analyzer.classify([np.zeros((48, 48), np.float64)])
    with pytest.raises(InputError, match="a list of face crops"):
        analyzer.classify(np.zeros((48, 48), np.uint8))


def test_models_and_detectors_that_cannot_load(tmp_path, images_dir, mini_xception, monkeypatch):
    photo = images_dir / "12_angry_men.jpg"
    corrupt = tmp_path / "model.tflite"
    corrupt.write_bytes(b"TFL3" * 10)
    for model, kind in ((tmp_path / "x.tflite", InputError), (corrupt, ModelError),
                        (mini_xception, ModelError)):
        with pytest.raises(kind) as err:
            edge_fer.analyze(photo, model=model)
        assert str(err.value) == cli_error("predict", photo, "-m", model)
    with pytest.raises(UsageError, match="unknown detector 'yolo': choose one of haar"):
        Analyzer(detector="yolo")
    empty = tmp_path / "no-weights"
    empty.mkdir()
    # No weights anywhere: not in $EDGE_FER_DETECTOR_DIR, nor in the user's data folder (a
    # developer may have fetched them there).
    no_weights = {"EDGE_FER_DETECTOR_DIR": str(empty), "XDG_DATA_HOME": str(empty)}
    for key, value in no_weights.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ModelError) as err:
        Analyzer(detector="blazeface")
    assert "edge-fer detectors fetch blazeface" in str(err.value)
    assert str(err.value) == cli_error("predict", photo, "--detector", "blazeface", env=no_weights)


# -- stream ----------------------------------------------------------------------------------

def test_stream_gives_every_frame_of_a_clip_with_tracked_faces(clip, default_model, tmp_path):
    log = tmp_path / "run.jsonl"
    with edge_fer.stream(clip.path, model=default_model, detect_every=2, min_face=40,
                         log_json=str(log), log_interval=0.1) as results:
        got = list(results)
        summary = results.summary()
    assert [r.index for r in got] == list(range(clip.frames))  # a file offline: lossless
    assert all(isinstance(r, edge_fer.FrameResult) for r in got)
    assert sum(len(r.faces) for r in got) >= 2 * clip.frames
    assert {f.track_id for r in got[:20] for f in r.faces} <= {1, 2, 3, 4}
    assert summary.stop_reason == "end of source" and summary.error is None
    assert summary.frames_processed == clip.frames and results.stats().frames_dropped == 0
    lines = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert lines[0]["type"] == "start" and lines[0]["tracking"]["detect_every"] == 2
    assert lines[0]["detector"]["min_size"] == 40 and lines[-1]["type"] == "summary"
    assert not edge_fer_threads()


def test_leaving_the_loop_early_stops_the_pipeline_and_its_threads(clip, default_model):
    before = set(threading.enumerate())
    seen = 0
    for result in edge_fer.stream(str(clip.path), model=default_model, realtime=True):
        seen += 1
        assert edge_fer_threads()  # running
        if seen == 5:
            break
    assert seen == 5
    assert set(threading.enumerate()) <= before, "threads left behind after break"

    with edge_fer.stream(clip.path, model=default_model) as results:
        first = next(iter(results))
        assert first.index == 0
    assert set(threading.enumerate()) <= before, "threads left behind after the with block"

    # Entered but never iterated: the with block still stops it.
    with edge_fer.stream(clip.path, model=default_model) as results:
        time.sleep(0.3)
    assert set(threading.enumerate()) <= before
    with pytest.raises(UsageError, match="closed"):
        iter(results)


def test_a_source_that_cannot_open_raises_the_line_the_cli_prints(tmp_path, default_model):
    missing = tmp_path / "gone.mp4"
    with pytest.raises(SourceError) as err:
        with edge_fer.stream(missing, model=default_model) as results:
            for _ in results:
                pass
    assert str(err.value) == cli_error("run", "--source", missing, "-m", default_model,
                                       "--headless")
    assert not edge_fer_threads()


def test_a_stream_that_dies_mid_run_raises_source_error_in_the_callers_thread(clip_frames,
                                                                            default_model):
    from clips import mjpeg_server, stop_server

    server = mjpeg_server([cv2.imencode(".jpg", f)[1].tobytes() for f in clip_frames[:20]])
    url = f"http://127.0.0.1:{server.server_address[1]}/cam.mjpg"
    got = 0
    try:
        with pytest.raises(SourceError, match="did not come back within 1 s") as err:
            with edge_fer.stream(url, model=default_model, reconnect_initial_s=0.05,
                                 reconnect_max_s=0.2, reconnect_timeout_s=1.0,
                                 open_timeout_s=2.0) as results:
                for _ in results:
                    got += 1
                    if got == 10:
                        stop_server(server)  # the camera goes away for good
    finally:
        stop_server(server)
    assert got >= 10
    assert "http://127.0.0.1" in str(err.value) and "\n" not in str(err.value)
    assert not edge_fer_threads()


def test_unknown_option_lists_the_allowed_ones_and_every_run_option_is_one(clip, default_model):
    from edge_fer.cli import run

    with pytest.raises(UsageError) as err:
        edge_fer.stream(clip.path, model=default_model, min_faces=3)
    assert "unknown stream option min_faces: allowed" in str(err.value)
    assert "min_face," in str(err.value) and "detect_every" in str(err.value)
    with pytest.raises(UsageError, match="queue_size must be a whole number"):
        edge_fer.stream(clip.path, model=default_model, queue_size=0)
    options = {p.name for p in run.params if p.expose_value} - {"camera", "source", "config_path"}
    assert options <= edge_fer.STREAM_OPTIONS, options - edge_fer.STREAM_OPTIONS


def test_stream_defaults_are_runs_defaults():
    import dataclasses

    from edge_fer.options import RUN_DETECT_WIDTH, OutputOptions
    from edge_fer.cli import run
    from edge_fer.pipeline import CaptureOptions, TrackerOptions

    # What the command gets when an option is not given (click marks "no default" its own way).
    given = run.make_context("run", [], resilient_parsing=True).params
    defaults = {p.name: given.get(p.name) for p in run.params}
    assert defaults["detect_width"] == RUN_DETECT_WIDTH
    compared = 0
    for cls in (OutputOptions, CaptureOptions, TrackerOptions):
        for f in dataclasses.fields(cls):
            # run opens a window when it can (a library never by default); its detect_every
            # default is the detector's own.
            if f.name in defaults and f.name not in ("display", "detect_every"):
                assert defaults[f.name] == f.default, f.name
                compared += 1
    assert compared >= 14


# -- README ----------------------------------------------------------------------------------

def python_blocks(text: str) -> list[str]:
    blocks, rest = [], text
    while "```python\n" in rest:
        rest = rest[rest.index("```python\n") + len("```python\n"):]
        blocks.append(rest[:rest.index("```")])
    return blocks


def readme_blocks() -> list[str]:
    """The python blocks of README's "Python API" section, then those of docs/python-api.md
    (where the README's longer examples moved)."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API"):]
    section = section[:section.index("\n## ", 1)]
    readme = python_blocks(section)
    assert readme, "README's Python API section has no python block"
    return readme + python_blocks((REPO / "docs" / "python-api.md").read_text())


def test_readme_python_examples_run(tmp_path, images_dir, clip, default_model):
    """Each python block of README's "Python API" section and of docs/python-api.md, run as
    written except that the
    example image is a shared photo and the camera a real clip."""
    blocks = readme_blocks()
    assert len(blocks) >= 3
    photo = images_dir / "test_image.jpg"
    for i, block in enumerate(blocks):
        assert "photo.jpg" in block or '"usb:0"' in block, block
        code = block.replace('"photo.jpg"', repr(str(photo))).replace('"usb:0"', repr(str(clip.path)))
        script = tmp_path / f"readme_{i}.py"
        script.write_text(code)
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=180, cwd=tmp_path, env={**os.environ,
                                                              "EDGE_FER_MODEL": str(default_model)})
        assert proc.returncode == 0, f"README block {i}:\n{block}\n{proc.stderr[-3000:]}"
        assert proc.stdout.strip(), f"README block {i} printed nothing"
