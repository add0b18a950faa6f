"""The Pi camera path as a Pi takes it: picamera2's API (the fake in clips.py, written from
picamera2's source), both ways of reading the two streams, the constructor's failures as
picamera2 wraps them, and a busy camera waited for within --source-timeout."""

from __future__ import annotations

import configparser
import logging
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from clips import (LIBCAMERA_BUSY, PICAMERA2_INIT_FAILED, FakePicamera2,
                   FakePicamera2WithoutCaptureArrays)
from conftest import REPO, assert_one_line_error, run_cli
from edge_fer.errors import SourceError
from edge_fer.pipeline.capture import CaptureStage
from edge_fer.pipeline.sources import CaptureOptions, PiCameraSource
from edge_fer.pipeline.sources.picamera import PICAMERA_BUSY_CLEARS_S
from edge_fer.pipeline.queues import LatestQueue
from edge_fer.pipeline.stats import PipelineStats

#: Frame i of the steps clip is a flat gray of STEP * i: which frame a plane came from can be read
#: off its level.
STEP, STEPS = 20, 12


@pytest.fixture(scope="module")
def steps_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("steps") / "steps.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (320, 240))
    for i in range(STEPS):
        writer.write(np.full((240, 320, 3), STEP * i + 10, np.uint8))
    writer.release()
    return path


def _level(plane: np.ndarray) -> int:
    """Which frame of the steps clip `plane` shows."""
    return int(round((float(np.median(plane)) - 10) / STEP))


# -- the fake is picamera2's API ------------------------------------------------------------------


def test_the_fake_constructor_fails_as_picamera2s_does(steps_clip):
    # No camera detected: picamera2 indexes its list of cameras outside any try.
    with pytest.raises(IndexError):
        FakePicamera2(steps_clip, cameras=0)
    with pytest.raises(IndexError):
        FakePicamera2(steps_clip, camera_num=1)
    # Found but not opened: wrapped, the cause only as __context__ (picamera2 0.3.x).
    with pytest.raises(RuntimeError) as info:
        FakePicamera2(steps_clip, open_error=RuntimeError(LIBCAMERA_BUSY))
    assert str(info.value) == PICAMERA2_INIT_FAILED
    assert info.value.__cause__ is None and str(info.value.__context__) == LIBCAMERA_BUSY


def test_the_fake_configures_and_starts_as_picamera2_does(steps_clip):
    cam = FakePicamera2(steps_clip)
    with pytest.raises(ValueError, match="Bad key 'fmt'"):
        cam.create_video_configuration(main={"fmt": "RGB888"})
    with pytest.raises(RuntimeError, match="Camera has not been configured"):
        cam.start()
    too_big = cam.create_video_configuration(main={"size": (320, 240), "format": "RGB888"},
                                             lores={"size": (640, 480), "format": "YUV420"})
    with pytest.raises(RuntimeError, match="lores stream dimensions may not exceed main stream"):
        cam.configure(too_big)
    config = cam.create_video_configuration(main={"size": (321, 241), "format": "RGB888"})
    assert config["main"]["size"] == (320, 240) and config["lores"] is None
    cam.configure(config)
    cam.start()
    with pytest.raises(RuntimeError, match="Stream 'lores' is not defined"):
        cam.capture_array("lores")
    cam.close()
    assert not cam.started and not cam.is_open


def _started(cls, clip, **kw):
    cam = cls(clip, fps=1000, **kw)
    cam.configure(cam.create_video_configuration(main={"size": (320, 240), "format": "RGB888"},
                                                 lores={"size": (160, 120), "format": "YUV420"}))
    cam.start()
    return cam


def test_capture_arrays_gives_both_streams_of_one_request_and_capture_array_one_each(steps_clip):
    cam = _started(FakePicamera2, steps_clip)
    (main, lores), metadata = cam.capture_arrays(["main", "lores"])
    assert main.shape == (240, 320, 3) and lores.shape == (180, 160 + 64)
    assert _level(main) == _level(lores[:120, :160]) == 0 and cam.requests == 1
    assert metadata["SensorTimestamp"] > 0
    # Two calls are two requests: the lores plane is the next frame's.
    main, lores = cam.capture_array("main"), cam.capture_array("lores")
    assert (_level(main), _level(lores[:120, :160])) == (1, 2) and cam.requests == 3
    cam.stop()


# -- PiCameraSource reads them ---------------------------------------------------------------


def _read(source, n):
    source.open()
    try:
        return [source.read() for _ in range(n)]
    finally:
        source.close()


def test_the_source_reads_both_streams_from_one_request(steps_clip):
    cam = FakePicamera2(steps_clip, fps=1000)
    frames = _read(PiCameraSource(320, 240, 30, lores_width=160, camera=cam), 5)
    assert [(_level(m), _level(g)) for m, g in frames] == [(i, i) for i in range(5)]
    assert all(g.shape == (120, 160) for _, g in frames)
    assert cam.requests == 5 and cam.captures == {"main": 5, "lores": 5}
    assert cam.stopped == 1 and cam.is_open  # the caller owns an injected camera


def test_without_capture_arrays_the_source_takes_one_request_per_stream(steps_clip):
    cam = FakePicamera2WithoutCaptureArrays(steps_clip, fps=1000)
    assert not hasattr(cam, "capture_arrays")
    frames = _read(PiCameraSource(320, 240, 30, lores_width=160, camera=cam), 3)
    # Each plane a frame later than its main image: why capture_arrays is preferred.
    assert [(_level(m), _level(g)) for m, g in frames] == [(0, 1), (2, 3), (4, 5)]
    assert cam.requests == 6


class Factory:
    """Makes the camera as picamera2.Picamera2 would, failing the first `failures` times with
    `open_error` (or, without one, as a Pi with no camera)."""

    def __init__(self, clip, failures=0, open_error=None):
        self.clip, self.failures, self.open_error = clip, failures, open_error
        self.calls, self.made = 0, []

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            if self.open_error is None:
                return FakePicamera2(self.clip, cameras=0)
            return FakePicamera2(self.clip, open_error=self.open_error)
        self.made.append(FakePicamera2(self.clip, fps=1000))
        return self.made[-1]


@pytest.mark.parametrize("open_error, line", [
    (RuntimeError(LIBCAMERA_BUSY), "the Pi camera is busy: another program"),
    (None, "no Raspberry Pi camera found: enable it"),
    (RuntimeError("Failed to initialize camera"), "the Pi camera failed to start: check the ribbon"),
])
def test_a_failed_constructor_is_explained_from_its_cause(steps_clip, open_error, line):
    source = PiCameraSource(320, 240, 30, factory=Factory(steps_clip, failures=1, open_error=open_error))
    with pytest.raises(SourceError) as info:
        source.open()
    message = str(info.value)
    assert message.startswith(line) and not info.value.permanent
    if open_error is not None:  # what picamera2 said and what libcamera said under it
        assert f"RuntimeError: {PICAMERA2_INIT_FAILED} <- RuntimeError: {open_error}" in message
    # Busy is never called absent, nor absent busy.
    assert ("busy" in message) == ("busy" in line)
    assert ("no Raspberry Pi camera found" in message) == ("found" in line)


def test_explain_follows_a_cause_as_newer_picamera2_chains_it():
    try:
        try:
            raise OSError(16, "Device or resource busy")
        except OSError as exc:
            raise RuntimeError(PICAMERA2_INIT_FAILED) from exc
    except RuntimeError as exc:
        assert PiCameraSource._explain(exc).startswith("the Pi camera is busy")


def test_a_factory_made_camera_is_closed_with_the_source(steps_clip):
    factory = Factory(steps_clip)
    frames = _read(PiCameraSource(320, 240, 30, lores_width=160, factory=factory), 2)
    assert len(frames) == 2 and factory.made[0].stopped == 1 and not factory.made[0].is_open


def _capture(source, options, seconds=10.0):
    stats = PipelineStats()
    stats.start()
    stop, errors, ends = threading.Event(), [], []
    stage = CaptureStage(source, options, LatestQueue(100), stats, stop,
                         lambda n, e: errors.append(e), lossless=False, on_end=ends.append)
    stage.start()
    assert stage.join(seconds), "the capture stage did not end"
    return stats, errors, ends


def test_a_busy_camera_is_waited_for_within_the_source_timeout(steps_clip, caplog):
    factory = Factory(steps_clip, failures=3, open_error=RuntimeError(LIBCAMERA_BUSY))
    source = PiCameraSource(320, 240, 30, lores_width=160, factory=factory)
    options = CaptureOptions(camera="pi", max_frames=4, reconnect_initial_s=0.01,
                             reconnect_max_s=0.02, reconnect_timeout_s=30)
    with caplog.at_level(logging.WARNING, logger="edge_fer.pipeline.capture"):
        stats, errors, ends = _capture(source, options)
    assert not errors and ends == ["max frames"] and stats.frames_captured == 4
    assert factory.calls == 4 and "the Pi camera is busy" in caplog.text
    assert "Pi camera is up after" in caplog.text


def test_a_camera_busy_past_the_source_timeout_fails_with_the_busy_line(steps_clip):
    factory = Factory(steps_clip, failures=10**6, open_error=RuntimeError(LIBCAMERA_BUSY))
    options = CaptureOptions(camera="pi", reconnect_initial_s=0.01, reconnect_max_s=0.02,
                             reconnect_timeout_s=0.2)
    stats, errors, ends = _capture(PiCameraSource(320, 240, 30, factory=factory), options)
    assert len(errors) == 1 and isinstance(errors[0], SourceError)
    assert str(errors[0]).startswith("Pi camera did not come up within 0.2 s (--source-timeout): "
                                     "the Pi camera is busy")
    assert factory.calls > 2


def _fake_picamera2_env(**env):
    tests = REPO / "tests"
    return {"PYTHONPATH": os.pathsep.join([str(tests / "fake_picamera2"), str(tests),
                                           os.environ.get("PYTHONPATH", "")]), **env}


def test_edge_fer_run_says_the_camera_is_busy_in_one_line(steps_clip, default_model):
    r = run_cli("run", "--camera", "pi", "--model", default_model, "--headless",
                "--source-timeout", "0.5",
                env=_fake_picamera2_env(EDGE_FER_FAKE_CAMERA_CLIP=str(steps_clip),
                                        EDGE_FER_FAKE_CAMERA_BUSY="1"))
    line = assert_one_line_error(r, "the Pi camera is busy", "Device or resource busy", code=6)
    assert "ribbon cable" not in line


def _unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(REPO / "systemd" / name)
    return unit


def test_the_service_outwaits_a_camera_left_busy_by_an_unclean_kill():
    """systemd restarts edge-fer RestartSec after a failure; the camera its killed predecessor
    held may stay busy PICAMERA_BUSY_CLEARS_S. The run's own retry window (--source-timeout's
    default, which the service's config keeps) must cover that, and the start timeout the retry."""

    service = _unit("edge-fer.service")
    restart_s = float(service["Service"]["RestartSec"])
    start_timeout_s = float(service["Service"]["TimeoutStartSec"])
    window_s = CaptureOptions().reconnect_timeout_s
    assert service["Service"]["Restart"] in ("on-failure", "always")
    assert service["Unit"]["StartLimitIntervalSec"] == "0", "a start limit would give up for good"
    # Busy at the restart, the camera is free before the new run gives up on it; busy for
    # another reason (a killed rpicam-hello), one run's retry still outwaits it.
    assert restart_s + window_s > PICAMERA_BUSY_CLEARS_S, (restart_s, window_s)
    assert window_s >= PICAMERA_BUSY_CLEARS_S
    # READY comes after the camera opened: the start timeout leaves the retry and a model load.
    assert start_timeout_s >= window_s + 60, (start_timeout_s, window_s)
    example = (REPO / "systemd" / "config.example.toml").read_text()
    assert f"# source_timeout = {window_s:g}" in example
    from edge_fer.cli import run

    assert next(p for p in run.params if p.name == "source_timeout").default == window_s

