"""Faults around `edge-fer run`, each reproduced for real: a stream server that goes away or comes
up late, a real signal, files that yield nothing or end early."""

from __future__ import annotations

import signal
import time
import urllib.request

import pytest
from click.testing import CliRunner

from clips import clip_jpegs, make_clip, mjpeg_server, stop_server
from conftest import assert_one_line_error
from edge_fer.cli import cli
from kiosk_helpers import alive, free_port, get_json, read_records, spawn_run, stop_run, wait_for


@pytest.fixture(scope="module")
def clip(tmp_path_factory, images_dir):
    return make_clip(tmp_path_factory.mktemp("faults") / "faces.mp4", images_dir, frames=120, n_faces=1)


@pytest.fixture(scope="module")
def jpegs(clip):
    return clip_jpegs(clip)


def invoke(*args):
    return CliRunner().invoke(cli, ["run", "--headless", *map(str, args)])


def _last_stats(log):
    stats = [r for r in read_records(log) if r["type"] == "stats"] if log.exists() else []
    return stats[-1] if stats else None


# -- 5: a stop signal while a lost stream is being reconnected -------------------------------------

def test_sigterm_during_stream_reconnect_backoff_is_a_clean_stop(jpegs, default_model, tmp_path):
    server = mjpeg_server(jpegs, fps=30)
    log = tmp_path / "run.jsonl"
    try:
        with spawn_run(["--source", f"http://127.0.0.1:{server.server_address[1]}/", "--headless",
                        "--model", default_model, "--log-json", log, "--log-interval", 0.2],
                       cwd=tmp_path) as proc:
            wait_for(lambda: alive(proc) and (_last_stats(log) or {}).get("frames_processed", 0) > 10,
                     60, "frames from the stream")
            stop_server(server)
            # Connections are refused at once, so after 2 s the capture waits between attempts.
            time.sleep(2.0)
            out, err = stop_run(proc, signal.SIGTERM)
    finally:
        stop_server(server)
    assert "reconnect failed" in err, err[-2000:]
    assert proc.returncode == 0, err[-2000:]
    assert "edge-fer: error" not in err and "Traceback" not in err
    summary = read_records(log)[-1]
    assert summary["type"] == "summary" and summary["stop_reason"] == "signal SIGTERM"
    assert summary["error"] is None and "stopped: signal SIGTERM" in out


# -- 6: a live source that is down at the start ------------------------------------------------------

def test_a_stream_that_comes_up_after_the_run_started_is_picked_up(jpegs, default_model, tmp_path):
    port = free_port()
    log = tmp_path / "run.jsonl"
    server = None
    try:
        with spawn_run(["--source", f"http://127.0.0.1:{port}/", "--headless", "--model", default_model,
                        "--max-frames", 15, "--log-json", log], cwd=tmp_path) as proc:
            # The log's start record comes just before capture opens the (absent) stream.
            wait_for(lambda: alive(proc) and log.exists() and log.stat().st_size > 0, 60, "the run to start")
            time.sleep(1.0)
            alive(proc)
            server = mjpeg_server(jpegs, port, fps=30)
            out, err = proc.communicate(timeout=60)
    finally:
        if server is not None:
            stop_server(server)
    assert proc.returncode == 0, err[-2000:]
    assert "retrying for up to 30 s" in err and "open failed" in err and "is up after" in err, err[-2000:]
    summary = read_records(log)[-1]
    assert summary["frames_processed"] == 15 and summary["stop_reason"] == "max frames"
    assert summary["reconnects"] == 0  # never lost once it was there


def test_a_live_source_that_never_comes_up_fails_after_the_source_timeout(default_model, tmp_path):
    port = free_port()
    started = time.monotonic()
    r = invoke("--source", f"http://127.0.0.1:{port}/", "--model", default_model, "--source-timeout", 1.5)
    took = time.monotonic() - started
    assert_one_line_error(r, f"did not come up within 1.5 s (--source-timeout): cannot open stream", code=6)
    assert 1.5 <= took < 20
    assert "stopped: error in capture" in r.stdout


# -- 11: files that yield no frames, or fewer than they hold --------------------------------------

@pytest.mark.parametrize("content", [b"these are notes, not a photo\n", b""], ids=["text", "empty"])
def test_a_file_that_yields_no_frames_is_an_error(content, default_model, tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    r = invoke("--source", path, "--model", default_model)
    assert_one_line_error(r, str(path), code=6)


def test_a_folder_of_unreadable_images_is_an_error(default_model, tmp_path):
    for name in ("a.jpg", "b.png"):
        (tmp_path / name).write_text("not an image")
    r = invoke("--source", tmp_path, "--model", default_model)
    assert_one_line_error(r, "gave no frames", code=6)


def test_a_video_corrupted_in_the_middle_is_reported_as_ending_early(clip, default_model, tmp_path):
    import cv2

    data = bytearray(clip.path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 65536] = bytes(65536)  # a stretch of the card that reads back as zeros
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    cap = cv2.VideoCapture(str(damaged))
    held = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    decodable = 0
    while cap.read()[0]:
        decodable += 1
    assert held == clip.frames and 0 < decodable < held * 0.9  # the damage is real
    log = tmp_path / "run.jsonl"
    r = invoke("--source", damaged, "--model", default_model, "--log-json", log)
    assert_one_line_error(r, f"ended early: {decodable} of {held} frames decoded", code=6)
    summary = read_records(log)[-1]
    # Nothing read is lost: every decoded frame was processed and the summary says why it ended.
    assert summary["frames_processed"] == decodable and summary["stop_reason"] == "error in capture"
    assert "ended early" in summary["error"]


def test_an_intact_video_still_ends_cleanly(clip, default_model):
    r = invoke("--source", clip.path, "--model", default_model)
    assert r.exit_code == 0, r.output
    assert f"{clip.frames} frames processed" in r.stdout and "stopped: end of source" in r.stdout


# -- 12: /api/stats through a source outage ----------------------------------------------------------

def test_api_stats_fps_falls_to_zero_while_the_source_is_down(jpegs, default_model, tmp_path):
    server = mjpeg_server(jpegs, fps=30)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/stats"
    try:
        with spawn_run(["--source", f"http://127.0.0.1:{server.server_address[1]}/", "--headless",
                        "--model", default_model, "--serve", f"127.0.0.1:{port}"], cwd=tmp_path) as proc:
            before = wait_for(lambda: alive(proc) and (s := get_json(url)) and s["processed_fps"] > 5 and s,
                              60, "a frame rate from the stream")
            stop_server(server)
            lost_at = time.monotonic()
            during = wait_for(lambda: alive(proc) and (s := get_json(url)) and s["processed_fps"] == 0 and s,
                              15, "the frame rate to fall to 0")
            assert time.monotonic() - lost_at < 8  # the rate window is 5 s
            assert during["captured_fps"] == 0 and during["uptime_s"] > before["uptime_s"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                metrics = resp.read().decode()
            assert 'edge_fer_fps{stage="processed"} 0.0' in metrics
            stop_run(proc)
    finally:
        stop_server(server)
    assert proc.returncode == 0
