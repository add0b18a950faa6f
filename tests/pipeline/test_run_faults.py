"""Faults around `edge-fer run`, each reproduced for real: a stream server that goes away or comes
up late, a real signal, files that yield nothing or end early, a really full disk (a small
tmpfs, or a file-size limit), a real SIGKILL during a recording."""

from __future__ import annotations

import signal
import time
import urllib.request

import pytest

from clips import clip_jpegs, make_clip, mjpeg_server, stop_server
from conftest import assert_one_line_error, invoke, run_cli, small_disk
from kiosk_helpers import alive, free_port, get_json, read_records, spawn_run, stop_run, wait_for


#: This module's clip (conftest's `clip` fixture).
CLIP = {"frames": 120, "n_faces": 1}


@pytest.fixture(scope="module")
def jpegs(clip):
    return clip_jpegs(clip)


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
    r = invoke("run", "--headless", "--source", f"http://127.0.0.1:{port}/",
               "--model", default_model, "--source-timeout", 1.5)
    took = time.monotonic() - started
    assert_one_line_error(r, "did not come up within 1.5 s (--source-timeout): cannot open stream", code=6)
    assert 1.5 <= took < 20
    assert "stopped: error in capture" in r.stdout


# -- 11: files that yield no frames, or fewer than they hold --------------------------------------

@pytest.mark.parametrize("content", [b"these are notes, not a photo\n", b""], ids=["text", "empty"])
def test_a_file_that_yields_no_frames_is_an_error(content, default_model, tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    r = invoke("run", "--headless", "--source", path, "--model", default_model)
    assert_one_line_error(r, str(path), code=6)


def test_a_folder_of_unreadable_images_is_an_error(default_model, tmp_path):
    for name in ("a.jpg", "b.png"):
        (tmp_path / name).write_text("not an image")
    r = invoke("run", "--headless", "--source", tmp_path, "--model", default_model)
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
    r = invoke("run", "--headless", "--source", damaged, "--model", default_model, "--log-json", log)
    assert_one_line_error(r, f"ended early: {decodable} of {held} frames decoded", code=6)
    summary = read_records(log)[-1]
    # Nothing read is lost: every decoded frame was processed and the summary says why it ended.
    assert summary["frames_processed"] == decodable and summary["stop_reason"] == "error in capture"
    assert "ended early" in summary["error"]


def test_an_intact_video_still_ends_cleanly(clip, default_model):
    r = invoke("run", "--headless", "--source", clip.path, "--model", default_model)
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
            before = wait_for(lambda: alive(proc) and (s := get_json(url)) and s["fps"] > 5 and s,
                              60, "a frame rate from the stream")
            stop_server(server)
            # The rate window is 5 s; a loaded machine may take longer to notice.
            during = wait_for(lambda: alive(proc) and (s := get_json(url)) and s["fps"] == 0 and s,
                              60, "the frame rate to fall to 0")
            assert during["capture_fps"] == 0 and during["uptime_s"] > before["uptime_s"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                metrics = resp.read().decode()
            assert "\nedge_fer_fps 0.0\n" in metrics and "\nedge_fer_capture_fps 0.0\n" in metrics
            stop_run(proc)
    finally:
        stop_server(server)
    assert proc.returncode == 0


# -- 2, 3: a full disk under the JSON log and the recording ---------------------------------------

def _fill(disk, leave: int) -> None:
    """Take all but about `leave` bytes of `disk`, as the rest of a kiosk's data would."""
    import os

    st = os.statvfs(disk)
    (disk / "filler").write_bytes(bytes(max(0, st.f_bavail * st.f_frsize - leave)))


def _whole_lines(path) -> list[dict]:
    """Every line of the JSON log parses, the last one included: nothing half-written."""
    import json

    text = path.read_text()
    assert text == "" or text.endswith("\n"), f"the log ends in a partial line: {text[-200:]!r}"
    return [json.loads(line) for line in text.splitlines()]


def _no_flood(err: str) -> None:
    assert "Logging error" not in err and "Traceback" not in err, err[-3000:]
    assert "Failed to write frame" not in err, err[-3000:]  # OpenCV's per-frame warning


def test_a_full_disk_under_the_log_and_the_recording_loses_no_line_and_says_so(clip, default_model,
                                                                               small_tmpfs):
    disk = small_tmpfs(1024 * 1024)
    _fill(disk, leave=6000)
    log, video = disk / "run.jsonl", disk / "rec.mkv"
    r = run_cli("run", "--headless", "--source", clip.path, "--model", default_model,
                "--record", video, "--log-json", log, "--log-interval", 0.1)
    _no_flood(r.stderr)
    line = assert_one_line_error(r, "not everything asked for was written", "recording", code=7)
    assert "No space left on device" in line or "the disk is full" in line
    assert f"{clip.frames} frames processed" in r.stdout and "stopped: end of source" in r.stdout
    assert "NOT WRITTEN: recording" in r.stdout
    records = _whole_lines(log)
    assert records and records[0]["type"] == "start"
    # tmpfs hands out whole pages, so the log's last page may still hold its remaining lines
    # after the recording filled the disk: then the log is complete and says nothing. Either
    # way it holds whole lines only, and what it lost is said.
    lost_log = "NOT WRITTEN: the JSON log" in r.stdout
    assert lost_log == ("the JSON log" in line)
    assert (records[-1]["type"] != "summary") == lost_log
    # One notice per output as it stopped, naming it; the run went on to the end of the file.
    notices = [x for x in r.stderr.splitlines() if "WARNING" in x and "the run goes on without it" in x]
    assert len(notices) == 1 + lost_log, r.stderr[-3000:]


def test_the_log_on_a_file_size_limit_is_cut_back_to_whole_lines(clip, default_model, tmp_path):
    # The same fault without a mount: writes past 2.5 kB fail (EFBIG), as on a full disk. The
    # start record, the six face events and the summary alone take ~3.4 kB, however fast the
    # run (stats lines add more on a slow machine), so the limit is always reached.
    log = tmp_path / "run.jsonl"
    r = run_cli("run", "--headless", "--source", clip.path, "--model", default_model,
                "--log-json", log, "--log-interval", 0.1, preexec_fn=lambda: small_disk(2500))
    _no_flood(r.stderr)
    assert_one_line_error(r, f"the JSON log {log} stopped after", "File too large", code=7)
    records = _whole_lines(log)
    assert len(records) > 2 and log.stat().st_size <= 2500
    assert f"{clip.frames} frames processed" in r.stdout


def test_a_recording_stopped_by_a_full_disk_exits_non_zero_and_the_summary_says_so(
        images_dir, default_model, small_tmpfs, tmp_path):
    import cv2

    long_clip = make_clip(tmp_path / "long.mp4", images_dir, frames=300, n_faces=2)
    disk = small_tmpfs(3 * 1024 * 1024)
    log, video = disk / "run.jsonl", disk / "rec.mkv"
    r = run_cli("run", "--headless", "--source", long_clip.path, "--model", default_model,
                "--record", video, "--log-json", log)
    _no_flood(r.stderr)
    assert_one_line_error(r, f"recording {video} stopped after", "the disk is full", code=7)
    summary = _whole_lines(log)[-1]  # the log had room: the summary reached it
    assert summary["type"] == "summary" and summary["frames_processed"] == long_clip.frames
    (failure,) = summary["outputs_failed"]
    written = int(failure.split("stopped after ")[1].split()[0])
    assert 0 < written < long_clip.frames
    assert f"NOT WRITTEN: recording {video} stopped after {written} frames" in r.stdout
    assert f"{long_clip.frames} frames processed" in r.stdout
    # What was written is a whole, readable video.
    cap = cv2.VideoCapture(str(video))
    readable = 0
    while cap.read()[0]:
        readable += 1
    assert readable == written


# -- 4: recordings survive a kill and are never replaced silently ---------------------------------

@pytest.mark.parametrize("suffix, seconds, may_lose", [(".avi", 3, 10), (".mkv", 8, 5 * 30 + 15)],
                         ids=["avi", "mkv"])
def test_a_recording_killed_with_sigkill_keeps_its_frames(suffix, seconds, may_lose, images_dir,
                                                          default_model, tmp_path):
    """AVI (MJPEG): every frame is on disk as it comes. Matroska: whole clusters of up to 5 s
    (FFmpeg's default), so a kill loses at most the last 5 s; an .mp4 would lose everything."""
    import cv2

    long_clip = make_clip(tmp_path / "long.mp4", images_dir, frames=(seconds + 4) * 30, n_faces=1)
    video = tmp_path / f"rec{suffix}"
    log = tmp_path / "run.jsonl"
    with spawn_run(["--source", long_clip.path, "--realtime", "--headless", "--model", default_model,
                    "--record", video, "--log-json", log, "--log-interval", 0.2], cwd=tmp_path) as proc:
        wait_for(lambda: alive(proc) and (_last_stats(log) or {}).get("frames_processed", 0) >= seconds * 30,
                 60, f"{seconds} s recorded")
        processed = _last_stats(log)["frames_processed"]
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
    assert proc.returncode == -signal.SIGKILL
    cap = cv2.VideoCapture(str(video))
    readable = 0
    while cap.read()[0]:
        readable += 1
    assert readable >= processed - may_lose and readable > processed / 2, (readable, processed)


def test_an_existing_recording_is_never_replaced_without_overwrite(clip, default_model, tmp_path):
    video = tmp_path / "rec.mkv"
    video.write_bytes(b"yesterday's recording")
    r = invoke("run", "--headless", "--source", clip.path,
               "--model", default_model, "--record", video, "--max-frames", 5)
    assert_one_line_error(r, f"--record {video} already exists", "--overwrite", code=3)
    assert video.read_bytes() == b"yesterday's recording"
    r = invoke("run", "--headless", "--source", clip.path,
               "--model", default_model, "--record", video, "--max-frames", 5,
               "--overwrite")
    assert r.exit_code == 0, r.output
    assert video.stat().st_size > 1000


def test_a_container_that_a_crash_leaves_unreadable_is_refused(clip, default_model, tmp_path):
    r = invoke("run", "--headless", "--source", clip.path,
               "--model", default_model, "--record", tmp_path / "rec.mp4")
    assert_one_line_error(r, "use .mkv", "an .mp4 does not", code=2)
    assert not (tmp_path / "rec.mp4").exists()
