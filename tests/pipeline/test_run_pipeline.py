"""The real pipeline over real clips: real model, real detector, faces from the shared photos."""

from __future__ import annotations

import json
import threading

import pytest

from clips import FakePicamera2
from edge_fer.errors import ModelError
from edge_fer.pipeline import (CaptureOptions, PiCameraSource, Pipeline, PipelineOptions,
                               TrackerOptions, open_source)
from edge_fer.sinks.base import Sink
from edge_fer.sinks.jsonlines import JsonLinesSink
from edge_fer.pipeline.tracking import iou_matrix

FRAMES = 90


#: This module's clip (conftest's `clip` fixture).
CLIP = {"frames": FRAMES}


@pytest.fixture(scope="module")
def classifier(default_model):
    from edge_fer.classifier import EmotionClassifier

    return EmotionClassifier(default_model)


def _detector(detect_width=320):
    from edge_fer.detector import DetectorOptions, HaarFaceDetector

    return HaarFaceDetector(DetectorOptions(detect_width=detect_width))


class Collect(Sink):
    """A sink that keeps everything it is given."""

    def __init__(self):
        self.results, self.stats, self.events = [], [], []
        self.summary = None
        self.closed = False

    def on_result(self, result, stats):
        assert threading.current_thread().name == "edge-fer-sinks"
        self.results.append(result)
        self.stats.append(stats)

    def on_event(self, event):
        self.events.append(event)

    def on_summary(self, summary):
        self.summary = summary

    def close(self):
        self.closed = True


def _run(source, classifier, capture=None, sinks=(), tracking=None, detector=None):
    pipeline = Pipeline(source, detector or _detector(), classifier,
                        PipelineOptions(capture or CaptureOptions(), tracking or TrackerOptions()))
    collect = Collect()
    for sink in (collect, *sinks):
        pipeline.add_sink(sink)
    pipeline.start()
    pipeline.wait()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("edge-fer-")], \
        "pipeline threads left running"
    return pipeline, collect


def _matched_fraction(clip, results, min_iou=0.5):
    """Fraction of the true faces (after the first detection) covered by an output box."""
    hits = total = 0
    for r in results:
        truth = [b for b in clip.boxes[r.index] if b is not None]
        total += len(truth)
        if r.faces and truth:
            iou = iou_matrix(truth, [f.box for f in r.faces])
            hits += int((iou.max(axis=1) >= min_iou).sum())
    return hits / max(total, 1)


def test_pipeline_over_a_clip_finds_tracks_and_labels_faces(clip, classifier, tmp_path):
    log_path = tmp_path / "run.jsonl"
    json_sink = JsonLinesSink(log_path, interval=0.2, header={"test": True})
    pipeline, got = _run(open_source(CaptureOptions(source=str(clip.path))), classifier,
                         sinks=[json_sink])
    assert pipeline.error is None and pipeline.stop_reason == "end of source"
    # Offline, a file loses nothing: every frame comes out, in order.
    assert [r.index for r in got.results] == list(range(FRAMES))
    s = pipeline.summary()
    assert s.frames_processed == s.frames_captured == FRAMES and s.frames_dropped == 0
    assert got.summary is not None and got.summary.frames_processed == FRAMES and got.closed

    later = got.results[5:]  # the first detection takes a frame or two to land
    assert _matched_fraction(clip, later) >= 0.9
    assert max(len(r.faces) for r in later) == 3
    labels = set(classifier.labels)
    for r in later:
        for f in r.faces:
            assert f.label in labels and f.raw_label in labels
            assert 0.0 < f.score <= 1.0 and abs(sum(f.scores.values()) - 1.0) < 0.02
            assert f.scores[f.label] == pytest.approx(f.score, abs=1e-3)
        assert r.finished_at >= r.captured_at

    # Three faces appear; the third leaves (at 60 % of the clip), the others at the end of the run.
    appear = [e for e in got.events if e.kind == "appear"]
    leave = [e for e in got.events if e.kind == "leave"]
    assert len(appear) == 3 and sorted(e.track_id for e in leave) == sorted(e.track_id for e in appear)
    gone = int(0.6 * FRAMES)
    early = [e for e in leave if e.frame_index < FRAMES - 1]
    assert len(early) == 1 and gone <= early[0].last_frame <= gone + 20
    # It vanished mid-picture: its track is kept a while in case the face comes back.
    assert early[0].last_frame < early[0].frame_index <= gone + 20 + TrackerOptions().keep_lost
    assert early[0].first_frame == 0 and sum(early[0].labels.values()) >= gone - 10

    stats = got.stats[-1]
    assert stats.detect_p50_ms > 0 and stats.classify_p50_ms > 0
    assert stats.latency_p95_ms >= stats.latency_p50_ms > 0
    assert s.detections >= FRAMES // TrackerOptions().detect_every
    assert 0 < stats.first_result_s <= stats.first_face_s < s.uptime_s

    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    kinds = [r["type"] for r in records]
    assert kinds[0] == "start" and kinds[-1] == "summary"
    assert kinds.count("event") == len(got.events)
    for r in records:
        if r["type"] == "event":  # what the log keeps of a face: its box and scores, no pixels
            assert set(r["scores"]) == labels and len(r["box"]) == 4
    assert records[-1]["stop_reason"] == "end of source" and records[-1]["frames_processed"] == FRAMES


def test_pi_camera_pipeline_with_a_fake_picamera2(clip, classifier):
    # 30 FPS as a Pi camera delivers: a faster fake only measures how loaded the test machine is.
    cam = FakePicamera2(clip.path, fps=30)
    source = PiCameraSource(640, 480, 30, lores_width=320, camera=cam)
    pipeline, got = _run(source, classifier, CaptureOptions(camera="pi", max_frames=60))
    assert pipeline.error is None and pipeline.stop_reason == "max frames"
    main, lores = cam.camera_config["main"], cam.camera_config["lores"]
    assert (main["size"], main["format"]) == ((640, 480), "RGB888")
    assert (lores["size"], lores["format"]) == ((320, 240), "YUV420")
    assert cam.camera_config["controls"]["FrameRate"] == 30.0
    # One request per frame: both streams through capture_arrays, the same instant in each.
    assert cam.captures == {"main": 60, "lores": 60} and cam.requests == 60
    assert cam.stopped == 1 and not cam.started
    s = pipeline.summary()
    assert s.frames_captured == 60
    assert s.frames_processed + s.frames_dropped == 60
    # Frames are the main stream; boxes found on the lores plane are in main-frame pixels.
    assert all(r.frame.shape == (480, 640, 3) for r in got.results)
    # From the first detection on (how soon it lands depends on the machine's load).
    first = next((i for i, r in enumerate(got.results) if r.faces), None)
    assert first is not None, "no face found in 60 frames"
    assert _matched_fraction(clip, got.results[first:]) >= 0.85
    assert {f.label for r in got.results for f in r.faces} <= set(classifier.labels)


def test_detection_reads_the_lores_plane(clip, classifier):
    # Same main frames, flat Y plane: if detection read the main stream it would find faces.
    cam = FakePicamera2(clip.path, fps=120, blank_lores=True)
    pipeline, got = _run(PiCameraSource(640, 480, 120, camera=cam), classifier,
                         CaptureOptions(camera="pi", max_frames=20))
    assert pipeline.error is None
    assert pipeline.stats().detections > 0
    assert not any(r.faces for r in got.results)


def test_realtime_file_is_paced_like_a_camera(clip, classifier):
    pipeline, got = _run(open_source(CaptureOptions(source=str(clip.path), realtime=True)), classifier,
                         CaptureOptions(source=str(clip.path), realtime=True, max_frames=30))
    s = pipeline.summary()
    assert s.frames_captured == 30
    # 30 frames at the clip's 30 FPS take about a second, however fast the machine.
    assert s.uptime_s >= 0.9
    assert s.source_fps == 30.0


class FailingClassifier:
    """The real classifier, failing on chosen calls as a model can mid-run."""

    def __init__(self, real, fail_on):
        self.real, self.fail_on, self.calls = real, set(fail_on), 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def predict_proba(self, faces):
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError("tensor arena exhausted")
        return self.real.predict_proba(faces)


def test_a_model_failing_once_is_logged_and_the_run_goes_on(clip, classifier, caplog):
    flaky = FailingClassifier(classifier, fail_on={3})
    pipeline, got = _run(open_source(CaptureOptions(source=str(clip.path))), flaky,
                         CaptureOptions(source=str(clip.path), max_frames=30))
    assert pipeline.error is None and pipeline.stats().model_failures == 1
    assert len(got.results) == 30 and sum(bool(r.faces) for r in got.results) >= 25
    assert "the model failed on frame" in caplog.text


def test_a_model_failing_repeatedly_ends_the_run_with_a_summary(clip, classifier):
    broken = FailingClassifier(classifier, fail_on=range(1, 1000))
    pipeline, got = _run(open_source(CaptureOptions(source=str(clip.path))), broken)
    assert isinstance(pipeline.error, ModelError)
    assert "failed on 3 frames in a row" in str(pipeline.error)
    assert got.summary is not None and got.summary.stop_reason == "error in classify"
    assert got.summary.error == str(pipeline.error) and got.closed
    assert pipeline.summary().frames_captured < FRAMES


def test_stop_from_another_thread_ends_a_live_run(clip, classifier):
    cam = FakePicamera2(clip.path, fps=30)
    pipeline = Pipeline(PiCameraSource(640, 480, 30, camera=cam), _detector(), classifier)
    collect = Collect()
    pipeline.add_sink(collect)
    pipeline.start()
    threading.Timer(1.0, pipeline.stop).start()
    assert pipeline.join(10.0), "the pipeline did not stop"
    pipeline.wait()
    assert pipeline.stop_reason == "stopped" and pipeline.error is None
    assert collect.summary.stop_reason == "stopped" and collect.results
    assert cam.stopped == 1


def test_duration_bounds_a_live_run(clip, classifier):
    cam = FakePicamera2(clip.path, fps=30)
    pipeline, got = _run(PiCameraSource(640, 480, 30, camera=cam), classifier,
                         CaptureOptions(camera="pi", duration=2.0))
    assert pipeline.stop_reason == "duration" and pipeline.error is None
    s = pipeline.summary()
    # The run lasted its duration, however loaded the machine; a 30 FPS camera gave at most
    # 2 s of frames, and the live source never ended it.
    assert s.uptime_s >= 2.0
    assert 1 <= s.frames_captured <= 2.0 * 30 + 2 and cam.requests == s.frames_captured
    assert got.summary.stop_reason == "duration"
