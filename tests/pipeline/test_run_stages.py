"""Stage-level tests of the pipeline: queues, stats, tracking, smoothing, capture faults."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import threading
import time
from dataclasses import FrozenInstanceError, fields

import numpy as np
import pytest

from conftest import REPO
from edge_fer.errors import SourceError, UsageError
from edge_fer.pipeline.capture import CaptureStage
from edge_fer.pipeline.sources import (CaptureOptions, PiCameraSource, Source, StreamSource, as_bgr,
                                       open_source, parse_camera, redact_url)
from edge_fer.pipeline.queues import LatestQueue
from edge_fer.pipeline.runner import Pipeline
from edge_fer.pipeline.stats import PipelineStats, RateMeter, Rolling
from edge_fer.pipeline.tracking import (IouTracker, ScoreSmoother, TrackerOptions, greedy_match,
                                        iou_matrix)
from edge_fer.results import RunSummary, StatsSnapshot

# -- queues -------------------------------------------------------------------------------------


def test_full_queue_drops_the_stalest_and_counts():
    q = LatestQueue(2)
    assert q.put(1) is None and q.put(2) is None
    assert q.put(3) == 1 and q.put(4) == 2
    assert q.dropped == 2
    assert [q.get(0.01), q.get(0.01)] == [3, 4]
    assert q.get(0.01) is None


def test_put_wait_times_out_instead_of_dropping():
    q = LatestQueue(1)
    q.put("a")
    t0 = time.monotonic()
    assert q.put_wait("b", 0.05) is False
    assert time.monotonic() - t0 >= 0.04
    assert q.dropped == 0 and q.get(0.01) == "a"
    assert q.put_wait("b", 0.05) is True and q.get(0.01) == "b"


def test_slow_consumer_sees_the_latest_items_and_every_item_is_accounted_for():
    q = LatestQueue(1)
    got = []
    done = threading.Event()

    def consume():
        while not done.is_set() or len(q):
            item = q.get(0.01)
            if item is not None:
                got.append(item)
                time.sleep(0.005)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(200):
        q.put(i)
        time.sleep(0.0005)
    done.set()
    t.join(5)
    assert got[-1] == 199
    assert got == sorted(got)
    assert q.dropped > 0 and q.dropped + len(got) == 200


# -- stats ---------------------------------------------------------------------------------------


def test_rolling_percentiles_and_empty_window():
    r = Rolling(size=100)
    assert r.percentiles(50, 95) == [None, None]
    for v in range(1, 201):
        r.add(float(v))
    # Only the last 100 samples (101..200) count.
    assert r.percentiles(50, 95) == [150.5, 195.05]
    assert r.count == 200


def test_rate_meter_counts_the_recent_window():
    now = [100.0]
    m = RateMeter(window=2.0, clock=lambda: now[0])
    for i in range(30):
        m.tick(100.0 + i / 30)
    now[0] = 101.0
    assert m.rate() == pytest.approx(30.0, rel=0.05)
    now[0] = 103.5
    assert m.rate() == 0.0


def test_stats_snapshot_is_the_typed_figures():
    s = PipelineStats()
    s.start()
    snap = s.snapshot(dropped=3, source_fps=25.0)
    assert isinstance(snap, StatsSnapshot)
    assert snap.first_result_s is None and snap.latency_p50_ms is None
    assert snap.frames_dropped == 3 and snap.source_fps == 25.0
    with pytest.raises(FrozenInstanceError):
        snap.fps = 1.0  # shared by every sink: nobody may change it
    s.processed(s.started_at, s.started_at + 0.012, faces=2)
    snap = s.snapshot()
    assert snap.latency_p50_ms == pytest.approx(12.0)
    assert snap.first_result_s == pytest.approx(0.012, abs=1e-3) and snap.faces == 2
    assert list(snap.to_dict()) == [f.name for f in fields(StatsSnapshot)]
    # Every figure says what it measures (Prometheus help texts and docs/run.md come from these).
    assert all(f.metadata["doc"] for f in fields(RunSummary))


def test_docs_define_every_figure():
    run_doc = (REPO / "docs" / "run.md").read_text(encoding="utf-8")
    table = run_doc.split("\n## Figures\n", 1)[1].split("\n#", 1)[0]
    missing = [f.name for f in fields(StatsSnapshot) if f"`{f.name}`" not in table]
    assert not missing and "`fps_mean`" in table, f"docs/run.md's Figures table lacks {missing}"


@pytest.mark.parametrize("module", ["edge_fer.sinks", "edge_fer.sinks.base", "edge_fer.sinks.log",
                                    "edge_fer.sinks.jsonlines", "edge_fer.sinks.display",
                                    "edge_fer.sinks.recorder", "edge_fer.sinks.server",
                                    "edge_fer.sinks.systemd", "edge_fer.pipeline.output",
                                    "edge_fer.pipeline.stats", "edge_fer.draw", "edge_fer.results"])
def test_each_module_imports_first_without_a_cycle(module):
    # In a fresh interpreter, so that no earlier import hides a cycle.
    r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_only_sinks_can_be_added():
    pipeline = Pipeline(None, None, None)
    with pytest.raises(TypeError, match="not an edge_fer.sinks.Sink"):
        pipeline.add_sink(object())


# -- tracking -----------------------------------------------------------------------------------


def test_iou_matrix_and_greedy_match():
    a = [(0, 0, 10, 10), (100, 100, 20, 20)]
    b = [(100, 100, 20, 20), (5, 0, 10, 10), (300, 300, 5, 5)]
    iou = iou_matrix(a, b)
    assert iou[0, 1] == pytest.approx(50 / 150)
    assert iou[1, 0] == pytest.approx(1.0)
    assert iou[0, 2] == 0.0
    assert greedy_match(iou, 0.3) == [(1, 0), (0, 1)]
    assert greedy_match(iou, 0.5) == [(1, 0)]
    assert iou_matrix([], b).shape == (0, 3)


def test_tracker_keeps_identity_of_moving_faces_and_ends_lost_ones():
    tr = IouTracker(TrackerOptions(iou_threshold=0.3, max_misses=2, keep_lost=0))
    started, ended = tr.update([(100, 100, 80, 80), (400, 120, 80, 80)])
    assert [t.track_id for t in started] == [1, 2] and not ended
    # Both drift a few pixels per detection, listed in the other order: identities follow boxes.
    for step in range(1, 6):
        started, ended = tr.update([(400 - 4 * step, 120, 80, 80), (100 + 6 * step, 100 + 2 * step, 80, 80)])
        assert not started and not ended
    by_id = {t.track_id: t.box for t in tr.tracks}
    assert by_id == {1: (130, 110, 80, 80), 2: (380, 120, 80, 80)}
    # Face 2 is missed once: the track stays and the tracker asks for a detection soon.
    started, ended = tr.update([(130, 110, 80, 80)])
    assert not ended and tr.losing
    started, ended = tr.update([(130, 110, 80, 80), (600, 300, 60, 60)])
    assert [t.track_id for t in ended] == [2] and [t.track_id for t in started] == [3]
    assert sorted(t.track_id for t in tr.tracks) == [1, 3] and not tr.losing


def test_far_jump_starts_a_new_track():
    tr = IouTracker(TrackerOptions(iou_threshold=0.3, max_misses=1, keep_lost=0))
    tr.update([(0, 0, 50, 50)])
    started, ended = tr.update([(200, 200, 50, 50)])
    assert [t.track_id for t in started] == [2] and [t.track_id for t in ended] == [1]


# -- smoothing -----------------------------------------------------------------------------------

LABELS = ["angry", "happy", "neutral"]


def _p(angry, happy, neutral):
    return np.array([angry, happy, neutral], dtype=np.float32)


def test_smoothing_does_not_flicker_between_close_labels():
    sm = ScoreSmoother(LABELS, window=8, switch_margin=0.1)
    raw, shown = [], []
    for i in range(60):
        # The raw top label flips every frame between happy and neutral.
        p = _p(0.1, 0.48, 0.42) if i % 2 == 0 else _p(0.1, 0.40, 0.50)
        s = sm.update(7, p)
        raw.append(s.raw_label)
        shown.append(s.label)
    assert len(set(raw)) == 2 and sum(a != b for a, b in zip(raw, raw[1:])) == 59
    assert set(shown) == {"happy"}


def test_smoothing_follows_a_real_change_within_the_window():
    sm = ScoreSmoother(LABELS, window=8, switch_margin=0.1)
    for _ in range(20):
        assert sm.update(1, _p(0.05, 0.9, 0.05)).label == "happy"
    changed_at = None
    for i in range(20):
        s = sm.update(1, _p(0.85, 0.1, 0.05))
        if s.changed_from is not None:
            changed_at = i
            assert (s.changed_from, s.label) == ("happy", "angry")
    assert changed_at is not None and changed_at < 8
    assert sm.update(1, _p(0.85, 0.1, 0.05)).label == "angry"


def test_smoothing_is_per_track_and_window_one_is_off():
    sm = ScoreSmoother(LABELS, window=1, switch_margin=0.0)
    assert sm.update(1, _p(0.6, 0.3, 0.1)).label == "angry"
    assert sm.update(2, _p(0.1, 0.3, 0.6)).label == "neutral"
    assert sm.update(1, _p(0.1, 0.8, 0.1)).label == "happy"
    sm.forget(1)
    assert 1 not in sm and 2 in sm


# -- detection on a smaller plane ------------------------------------------------------------------


def test_detection_on_a_downscaled_plane_reports_full_frame_boxes(images_dir):
    import cv2

    from edge_fer.detector import DetectorOptions, HaarFaceDetector
    from edge_fer.images import read_image

    frame = cv2.resize(read_image(images_dir / "12_angry_men.jpg"), (640, 360))
    det = HaarFaceDetector(DetectorOptions(detect_width=320, min_size=40))
    full = det.detect(frame)
    small = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (320, 180), interpolation=cv2.INTER_AREA)
    from_plane = det.detect(small, full_size=(640, 360))
    assert len(full) >= 3 and len(from_plane) == len(full)
    # The same faces, in full-frame pixels; not the same pixels to the letter (a colour frame is
    # shrunk then converted, the plane converted then shrunk, and aarch64 rounds differently).
    m = iou_matrix([f.box for f in full], [f.box for f in from_plane])
    assert (m.max(axis=1) > 0.8).all(), m


# -- capture: sources, faults, reconnecting --------------------------------------------------------


def test_as_bgr_normalises_and_rejects():
    gray = np.zeros((4, 6), np.uint8)
    assert as_bgr(gray, "x").shape == (4, 6, 3)
    assert as_bgr(np.zeros((4, 6, 4), np.uint8), "x").shape == (4, 6, 3)
    with pytest.raises(SourceError, match="not an 8-bit image"):
        as_bgr(np.zeros((4, 6, 3), np.float32), "camera usb:0")
    with pytest.raises(SourceError, match="not an image"):
        as_bgr(np.zeros((4, 6, 2), np.uint8), "camera usb:0")


def test_source_specs():
    assert parse_camera("pi") == "pi" and parse_camera("usb:2") == 2 and parse_camera("1") == 1
    with pytest.raises(UsageError, match="expected pi, usb:N"):
        parse_camera("webcam")
    with pytest.raises(UsageError):
        open_source(CaptureOptions())
    with pytest.raises(UsageError):
        open_source(CaptureOptions(camera="0", source="a.mp4"))
    assert type(open_source(CaptureOptions(source="rtsp://u:pw@cam/live"))).__name__ == "StreamSource"
    assert redact_url("rtsp://u:pw@cam:554/live") == "rtsp://u:***@cam:554/live"


class FlakyCamera(Source):
    """A live source that fails after a few frames, refuses to reopen `refusals` times, then
    comes back (or never does)."""

    live = True
    description = "flaky camera"

    def __init__(self, fail_after=5, refusals=2, comes_back=True):
        self.fail_after, self.refusals, self.comes_back = fail_after, refusals, comes_back
        self.reads = self.opens = 0

    def open(self):
        self.opens += 1
        if self.opens > 1 and (self.opens - 1 <= self.refusals or not self.comes_back):
            raise SourceError("flaky camera: device not found")

    def read(self):
        self.reads += 1
        if self.reads == self.fail_after:
            raise SourceError("flaky camera stopped delivering frames")
        return np.zeros((48, 64, 3), np.uint8), None


def _run_capture(source, options, seconds=3.0):
    stats = PipelineStats()
    stats.start()
    out = LatestQueue(1000)
    stop = threading.Event()
    errors, ends = [], []
    stage = CaptureStage(source, options, out, stats, stop, lambda n, e: errors.append(e),
                         lossless=False, on_end=ends.append)
    stage.start()
    assert stage.join(seconds), "the capture stage did not end"
    return stats, out, errors, ends


def test_live_source_reconnects_with_backoff_and_logs_it(caplog):
    cam = FlakyCamera(fail_after=5, refusals=2)
    opts = CaptureOptions(camera="0", max_frames=12, reconnect_initial_s=0.01, reconnect_max_s=0.05)
    with caplog.at_level(logging.WARNING, logger="edge_fer.pipeline.capture"):
        stats, out, errors, ends = _run_capture(cam, opts)
    assert not errors and ends == ["max frames"]
    assert stats.frames_captured == 12 and stats.reconnects == 1
    assert cam.opens == 4  # the first open, two refused, one that worked
    text = caplog.text
    assert "reconnecting" in text and "reconnect failed" in text and "is back after" in text


def test_live_source_that_never_returns_gives_a_clear_error():
    cam = FlakyCamera(fail_after=3, comes_back=False)
    opts = CaptureOptions(camera="0", reconnect_initial_s=0.01, reconnect_max_s=0.02,
                          reconnect_timeout_s=0.1)
    stats, out, errors, ends = _run_capture(cam, opts)
    assert len(errors) == 1 and isinstance(errors[0], SourceError)
    assert "did not come back within 0.1 s" in str(errors[0])
    assert stats.frames_captured == 2


def test_live_source_down_at_the_start_is_retried_until_it_comes_up(caplog):
    class LateCamera(FlakyCamera):
        def open(self):
            self.opens += 1
            if self.opens <= 2:  # plugged in, or powered up, after the run started
                raise SourceError("late camera: device not found")

    cam = LateCamera(fail_after=0)
    opts = CaptureOptions(camera="0", max_frames=5, reconnect_initial_s=0.01, reconnect_max_s=0.05)
    with caplog.at_level(logging.WARNING, logger="edge_fer.pipeline.capture"):
        stats, out, errors, ends = _run_capture(cam, opts)
    assert not errors and ends == ["max frames"]
    assert stats.frames_captured == 5 and stats.reconnects == 0 and cam.opens == 3
    assert "retrying for up to 30 s" in caplog.text and "open failed" in caplog.text
    assert "is up after" in caplog.text


def test_a_fault_waiting_cannot_fix_is_not_retried():
    class NoLibrary(FlakyCamera):
        def open(self):
            self.opens += 1
            raise SourceError("picamera2 is not installed", permanent=True)

    cam = NoLibrary()
    stats, out, errors, ends = _run_capture(cam, CaptureOptions(camera="pi", reconnect_initial_s=0.01))
    assert cam.opens == 1 and len(errors) == 1 and "not installed" in str(errors[0])


def test_stop_while_a_live_source_is_down_is_a_stop_not_a_failure():
    cam = FlakyCamera(fail_after=3, comes_back=False)
    stats = PipelineStats()
    stats.start()
    stop, errors, ends = threading.Event(), [], []
    stage = CaptureStage(cam, CaptureOptions(camera="0", reconnect_initial_s=0.05), LatestQueue(10),
                         stats, stop, lambda n, e: errors.append(e), lossless=False, on_end=ends.append)
    stage.start()
    deadline = time.monotonic() + 5
    while cam.opens < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cam.opens >= 3  # in the backoff between refused attempts
    stop.set()
    assert stage.join(2)
    assert not errors and ends == ["stopped"]


class _BrokenCamera:
    """picamera2-like object whose start fails (a camera is busy or absent in picamera2's
    constructor instead: tests/pipeline/test_pi_camera.py)."""

    def __init__(self, message):
        self.message = message
        self.stopped = 0

    def create_video_configuration(self, **kw):
        return kw

    def configure(self, config):
        pass

    def start(self):
        raise RuntimeError(self.message)

    def stop(self):
        self.stopped += 1


def test_pi_camera_that_fails_to_start_is_explained():
    cam = _BrokenCamera("Camera frontend has timed out!")
    with pytest.raises(SourceError, match="the Pi camera failed to start: check the ribbon cable.*"
                                          "RuntimeError: Camera frontend has timed out!"):
        PiCameraSource(640, 480, 30, camera=cam).open()
    assert cam.stopped == 1


def test_pi_camera_without_picamera2_says_how_to_get_it():
    if importlib.util.find_spec("picamera2") is not None:
        pytest.skip("picamera2 is installed here")
    with pytest.raises(SourceError, match="sudo apt install python3-picamera2.*--system-site-packages"):
        PiCameraSource(640, 480, 30).open()


def test_pi_camera_rejects_a_lores_stream_of_the_wrong_shape(tmp_path):
    class WrongLores:
        def create_video_configuration(self, **kw):
            return kw

        def configure(self, c):
            pass

        def start(self):
            pass

        def stop(self):
            pass

        def capture_array(self, name="main"):
            if name == "main":
                return np.zeros((480, 640, 3), np.uint8)
            return np.zeros((240, 320, 3), np.uint8)  # RGB, not YUV420

    src = PiCameraSource(640, 480, 30, lores_width=320, camera=WrongLores())
    src.open()
    with pytest.raises(SourceError, match="expected YUV420 of 320x240"):
        src.read()


def test_http_stream_that_goes_away_mid_run_is_reconnected(images_dir, tmp_path, caplog):
    """A real FFmpeg stream over HTTP: the camera goes away mid-run and comes back."""
    from clips import clip_jpegs, make_clip, mjpeg_server, stop_server

    jpegs = clip_jpegs(make_clip(tmp_path / "live.mp4", images_dir, frames=20, n_faces=1))
    server = mjpeg_server(jpegs)
    port = server.server_address[1]
    source = StreamSource(f"http://user:secret@127.0.0.1:{port}/", timeout_s=2)
    stats = PipelineStats()
    stats.start()
    out, stop, errors = LatestQueue(1000), threading.Event(), []
    opts = CaptureOptions(source="x", max_frames=40, reconnect_initial_s=0.05, reconnect_max_s=0.2)
    stage = CaptureStage(source, opts, out, stats, stop, lambda n, e: errors.append(e), False, lambda r: None)
    with caplog.at_level(logging.WARNING, logger="edge_fer.pipeline.capture"):
        stage.start()
        try:
            deadline = time.monotonic() + 20
            while stats.frames_captured < 10 and time.monotonic() < deadline:
                time.sleep(0.02)
            stop_server(server)
            while "reconnect failed" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.02)
            server = mjpeg_server(jpegs, port)
            assert stage.join(20), "capture did not finish after the stream came back"
        finally:
            stop.set()
            stop_server(server)
    assert not errors
    assert stats.frames_captured == 40 and stats.reconnects == 1
    assert out.get(0).image.shape == (480, 640, 3)
    assert "reconnect failed" in caplog.text and "is back after" in caplog.text
    assert "secret" not in caplog.text  # the password never reaches a log
