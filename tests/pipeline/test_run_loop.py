"""`--loop` (issue 29, item 2): a clip played again from its first frame at the end, so the page
served from a file stays up for longer than the file lasts; the config key and `stream()`'s
keyword are the same option."""

from __future__ import annotations

import signal
import time
import urllib.request

from conftest import invoke
from edge_fer.api import stream
from kiosk_helpers import alive, free_port, get_json, read_records, spawn_run, stop_run, wait_for

FPS = 15.0
FRAMES = 15  # one second at FPS


#: This module's clip (conftest's `clip` fixture): one face for one second.
CLIP = {"frames": FRAMES, "fps": FPS, "n_faces": 1}


def test_a_looped_clip_serves_the_page_for_longer_than_the_clip(clip, default_model, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "run.jsonl"
    clip_seconds = FRAMES / FPS
    with spawn_run(["--source", clip.path, "--loop", "--realtime", "--headless", "--model",
                    default_model, "--serve", f"127.0.0.1:{port}", "--log-json", log.name,
                    "--log-interval", "0.5", "-v"], cwd=tmp_path) as proc:
        wait_for(lambda: alive(proc) and (get_json(url + "api/stats") or {})
                 .get("frames_processed"), 60, "the first processed frame on /api/stats")
        served_from = time.monotonic()
        # Three times the clip's length, and the page and its numbers are still served.
        time.sleep(3 * clip_seconds)
        alive(proc)
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.status == 200 and "text/html" in r.headers["Content-Type"]
            assert b"<html" in r.read().lower()
        processed = wait_for(lambda: get_json(url + "api/stats")["frames_processed"]
                             > 2 * FRAMES and get_json(url + "api/stats")["frames_processed"],
                             30, "more frames than two passes over the clip")
        assert time.monotonic() - served_from > 2 * clip_seconds
        out, err = stop_run(proc, signal.SIGTERM)
    assert proc.returncode == 0, err[-2000:]
    assert "from the start again (pass 3)" in err, err[-2000:]
    summary = read_records(log)[-1]
    assert summary["stop_reason"] == "signal SIGTERM" and summary["error"] is None
    assert summary["frames_processed"] >= processed > 2 * FRAMES
    # Paced at the clip's rate across the passes: no burst at each new start.
    assert summary["frames_processed"] <= FPS * (summary["uptime_s"] + 1)


def test_without_loop_the_clip_ends_the_run(clip, default_model):
    with stream(clip.path, model=default_model) as frames:
        assert len(list(frames)) == FRAMES
        assert frames.summary().stop_reason == "end of source"


def test_stream_loop_keyword_goes_on_past_the_end(clip, default_model):
    with stream(clip.path, model=default_model, loop=True,
                max_frames=3 * FRAMES + 4) as frames:
        indices = [r.index for r in frames]
        summary = frames.summary()
    assert indices == list(range(3 * FRAMES + 4))
    assert summary.stop_reason == "max frames" and summary.error is None


def test_the_config_key_loops_the_source(clip, default_model, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[source]\nsource = "{clip.path}"\nloop = true\n'
                      f'[output]\nmax_frames = {2 * FRAMES + 5}\n')
    r = invoke("run", "--config", str(config), "--headless", "--model", default_model)
    assert r.exit_code == 0, r.output
    assert f"{2 * FRAMES + 5} frames" in r.output and "max frames" in r.output, r.output
