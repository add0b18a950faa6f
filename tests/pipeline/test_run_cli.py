"""`edge-fer run` from the command line: a real clip, bad inputs, and stopping by signal."""

from __future__ import annotations

import importlib.util
import signal
import sys

import numpy as np
import pytest

from conftest import invoke
from kiosk_helpers import alive, read_records, spawn_run, stop_run, wait_for


#: This module's clip (conftest's `clip` fixture).
CLIP = {"frames": 90}


def test_run_on_a_clip_logs_stats_events_and_a_summary(clip, default_model, tmp_path):
    import cv2

    log = tmp_path / "stats.jsonl"
    video = tmp_path / "annotated.mkv"
    r = invoke("run", "--headless", "--source", clip.path, "--model", default_model, "--max-frames", 40,
               "--log-json", log, "--log-interval", 0.2, "--record", video)
    assert r.exit_code == 0, r.output
    assert "40 frames processed of 40 captured" in r.stdout and "stopped: max frames" in r.stdout
    records = read_records(log)
    kinds = [x["type"] for x in records]
    assert kinds[0] == "start" and kinds[-1] == "summary"
    assert records[0]["source"] == f"video {clip.path}" and records[0]["capture"]["max_frames"] == 40
    appear = [x for x in records if x["type"] == "event" and x["event"] == "appear"]
    assert len(appear) == 3 and all(len(x["box"]) == 4 for x in appear)
    summary = records[-1]
    assert summary["frames_processed"] == 40 and summary["frames_dropped"] == 0 and summary["error"] is None
    assert summary["latency_p95_ms"] > 0 and summary["detect_p50_ms"] > 0
    cap = cv2.VideoCapture(str(video))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 40
    ok, frame = cap.read()
    assert ok and frame.shape == (480, 640, 3)
    # Annotated: the overlay's dark band sits where the clip has its mid-gray canvas. The median,
    # because the band's white text (figures that change with the machine's speed) is thin.
    source_frame = cv2.VideoCapture(str(clip.path)).read()[1]
    assert np.median(source_frame[2:12, 2:60]) > 60 and np.median(frame[2:12, 2:60]) < 40


def test_run_logs_stats_every_log_interval(clip, default_model, tmp_path):
    """--realtime plays the clip at its 30 fps, so results arrive over at least 1.3 s on any
    machine and a stats record falls due every 0.2 s of them (a run at full speed can end
    before the first is due, so the test above does not count them)."""
    log = tmp_path / "stats.jsonl"
    r = invoke("run", "--headless", "--source", clip.path,
               "--model", default_model, "--max-frames", 40, "--realtime",
               "--log-json", log, "--log-interval", 0.2)
    assert r.exit_code == 0, r.output
    records = read_records(log)
    stats = [x for x in records if x["type"] == "stats"]
    assert len(stats) >= 4, [x["type"] for x in records]
    times = [x["time"] for x in stats]
    assert all(b - a >= 0.19 for a, b in zip(times, times[1:])), times
    assert stats[-1]["frames_processed"] > stats[0]["frames_processed"] > 0


def test_run_on_an_image_folder_skips_unreadable_files_and_takes_any_size(clip, default_model,
                                                                           tmp_path, caplog):
    import cv2

    cap = cv2.VideoCapture(str(clip.path))
    for i in range(6):
        ok, frame = cap.read()
        if i == 5:
            frame = cv2.resize(frame, (320, 240))
        cv2.imwrite(str(tmp_path / f"frame{i:02d}.jpg"), frame)
    (tmp_path / "frame03.jpg").write_bytes(b"not a jpeg")
    r = invoke("run", "--headless", "--source", tmp_path, "--model", default_model)
    assert r.exit_code == 0, r.output
    assert "5 frames processed of 5 captured" in r.stdout
    assert "frame03.jpg" in caplog.text
    assert "frame size changed from 640x480 to 320x240: tracking starts afresh" in caplog.text


def _not_a_video(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("these are notes, not a video\n")
    return p


def _empty_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


@pytest.mark.parametrize("args, code, message", [
    (lambda t: ["--source", t / "missing.mp4"], 6, "video file not found"),
    (lambda t: ["--source", _not_a_video(t)], 6, "is not a video OpenCV can read"),
    (lambda t: ["--source", _empty_dir(t)], 6, "no images in folder"),
    (lambda t: ["--camera", "usb:97", "--source-timeout", 0.3], 6,
     "did not come up within 0.3 s (--source-timeout): no camera at /dev/video97"),
    (lambda t: ["--camera", "webcam"], 2, "expected pi, usb:N"),
    (lambda t: ["--camera", "0", "--source", "a.mp4"], 2, "give one of --camera"),
    (lambda t: [], 2, "give one of --camera"),
    (lambda t: ["--source", "x.mp4", "--record", t / "out.gif"], 2, "--record"),
    (lambda t: ["--source", "x.mp4", "--log-json", t / "no" / "such" / "dir.jsonl"], 3, "cannot write the JSON log"),
], ids=["missing-file", "not-a-video", "empty-folder", "camera-missing", "bad-camera-spec",
        "two-sources", "no-source", "record-suffix", "log-dir-missing"])
def test_bad_input_gives_one_clear_line(args, code, message, default_model, tmp_path):
    args = args(tmp_path)
    if "usb:97" in args and not sys.platform.startswith("linux"):
        pytest.skip("device paths are checked on Linux")
    r = invoke("run", "--headless", *args, "--model", default_model)
    assert r.exit_code == code, r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("edge-fer: error:")]
    assert len(errors) == 1 and message in errors[0], r.output
    assert "Traceback" not in r.output


def test_pi_camera_without_picamera2(default_model):
    if importlib.util.find_spec("picamera2") is not None:
        pytest.skip("picamera2 is installed here")
    r = invoke("run", "--headless", "--camera", "pi", "--model", default_model)
    assert r.exit_code == 6
    assert "sudo apt install python3-picamera2" in r.stderr and "Traceback" not in r.output


def test_display_without_a_gui_is_refused(clip, default_model):
    from edge_fer.sinks.display import gui_problem

    if gui_problem() is None:
        pytest.skip("a GUI is available here")
    r = invoke("run", "--display", "--source", clip.path, "--model", default_model)
    assert r.exit_code == 2 and "--display:" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_a_realtime_run_cleanly(sig, clip, default_model, tmp_path):
    log = tmp_path / "run.jsonl"
    # --fps 10 makes the 90-frame clip a 9-second live source: the signal lands mid-run.
    with spawn_run(["--source", clip.path, "--realtime", "--fps", "10", "--model", default_model,
                    "--headless", "--log-json", log, "--log-interval", "0.5"], cwd=tmp_path) as proc:
        wait_for(lambda: alive(proc) and log.exists() and '"event": "appear"' in log.read_text(),
                 60, "a face to appear")
        out, err = stop_run(proc, sig)
    assert proc.returncode == 0, err
    name = signal.Signals(sig).name
    assert f"stopped: signal {name}" in out
    assert "Traceback" not in err
    records = read_records(log)
    summary = records[-1]
    assert summary["type"] == "summary" and summary["stop_reason"] == f"signal {name}"
    assert 0 < summary["frames_processed"] < 90
    # Faces still tracked when the run stops leave with it: every appear has its leave.
    events = [x for x in records if x["type"] == "event"]
    assert sorted(x["track"] for x in events if x["event"] == "appear") == \
        sorted(x["track"] for x in events if x["event"] == "leave")
