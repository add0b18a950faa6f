"""`edge-fer run` as the kiosk runs it: the real pipeline and model over a generated clip, served
to a real HTTP client, driven by a config file, supervised through a real notify socket."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import fields
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clips import FakePicamera2
from conftest import invoke
from edge_fer.results import StatsSnapshot
from edge_fer.sinks.base import Sink
from edge_fer.sinks.server import metric_name
from kiosk_helpers import (NotifySocket, alive, free_port, get_json, read_part, read_records,
                           spawn_run, stop_run, wait_for)

TOKEN = "kiosk-run-test-token-0123456789"
#: A clip of 150 frames played at 15 fps: ten seconds of live source, stopped by SIGTERM first.
LIVE = ["--realtime", "--fps", "15", "--headless"]


#: This module's clip (conftest's `clip` fixture).
CLIP = {"frames": 150}


@pytest.fixture
def short_dir():
    """A folder with a short path: an AF_UNIX socket path has to fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="efr-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_served_run_end_to_end_and_nothing_but_the_log_on_disk(clip, default_model, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "run.jsonl"
    # The run's temporary folder, home and working folder are all here: whatever it writes is.
    with spawn_run(["--source", clip.path, *LIVE, "--model", default_model, "--serve",
                    f"127.0.0.1:{port}", "--log-json", log.name, "--log-interval", "0.3"],
                   cwd=tmp_path, env={"TMPDIR": str(tmp_path), "HOME": str(tmp_path)}) as proc:
        first = wait_for(lambda: alive(proc) and (get_json(url + "api/stats") or {})
                         .get("frames_processed"), 60, "the first processed frame on /api/stats")
        wait_for(lambda: get_json(url + "api/stats")["frames_processed"] > first, 10,
                 "frames_processed to grow")
        labels = set(read_records(log)[0]["labels"])
        faces = wait_for(lambda: get_json(url + "api/faces")["faces"], 10, "a face on /api/faces")
        for face in faces:
            assert face["label"] in labels and face["scores"].keys() == labels
            assert 0 < face["score"] <= 1 and len(face["box"]) == 4

        with urllib.request.urlopen(url + "stream.mjpg", timeout=5) as stream:
            assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            parts = [read_part(stream)[1] for _ in range(4)]
        for body in parts:
            img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None and img.shape == (480, 640, 3)
        assert len({hashlib.sha1(b).digest() for b in parts}) >= 2, "the stream did not move"

        before = get_json(url + "api/stats")["frames_processed"]
        with urllib.request.urlopen(url + "metrics", timeout=5) as r:
            samples = metric_samples(r.read().decode())
        after = get_json(url + "api/stats")["frames_processed"]
        assert before <= samples[("edge_fer_frames_processed_total", ())] <= after
        assert samples[("edge_fer_fps", ())] > 0
        assert sum(v for (name, _), v in samples.items() if name == "edge_fer_faces_by_label") >= 1
        # /api/stats serves the numbers the stats records of the log hold.
        wait_for(lambda: any(r["type"] == "stats" for r in read_records(log)), 5, "a stats record")
        stats_record = next(r for r in read_records(log) if r["type"] == "stats")
        # One set of names: the stats type's fields, in the log, on /api/stats and in /metrics.
        names = [f.name for f in fields(StatsSnapshot)]
        assert list(stats_record)[2:] == names and list(get_json(url + "api/stats")) == names
        metrics = {name for name, _ in samples}
        for f in fields(StatsSnapshot):
            if f.metadata["metric"] and stats_record[f.name] is not None:
                name = metric_name(f.name)[0]
                assert {name, name + "_total"} & metrics, f"{f.name} is not in /metrics"
        out, err = stop_run(proc)
    assert proc.returncode == 0, err
    assert "stopped: signal SIGTERM" in out and "Traceback" not in err
    records = read_records(log)
    assert records[0]["serve"] == url
    summary = records[-1]
    assert summary["type"] == "summary" and summary["stop_reason"] == "signal SIGTERM"
    assert summary["frames_processed"] >= after
    # Privacy: frames were encoded and served, yet the only file the run left is its log.
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["run.jsonl"]
    with socket.socket() as s:
        # Nobody listens there any more (its old connections may linger in TIME_WAIT, which a
        # restarted service's SO_REUSEADDR ignores too).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_a_busy_port_or_a_missing_token_fails_before_the_model_loads(clip, tmp_path):
    absent = tmp_path / "absent.tflite"  # had the model loaded first, this would be the error
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = invoke("run", "--source", clip.path,
                   "--model", absent, "--headless", "--serve", f"127.0.0.1:{port}")
    assert r.exit_code == 2
    assert r.stderr == (f"edge-fer: error: cannot serve on 127.0.0.1:{port}: the port is already in "
                        "use (another edge-fer?): stop that program or choose another port with "
                        "--serve HOST:PORT\n")
    port = free_port()
    r = invoke("run", "--source", clip.path, "--model", absent, "--headless", "--serve", f"0.0.0.0:{port}")
    assert r.exit_code == 2
    assert r.stderr.startswith(f"edge-fer: error: refusing to serve on 0.0.0.0:{port} without a token")
    assert len(r.stderr.splitlines()) == 1
    # With the token from the environment the server starts, the model is the next thing to
    # fail, and the server is closed on the way out.
    r = invoke("run", "--source", clip.path, "--model", absent, "--headless", "--serve", f"0.0.0.0:{port}",
               env={"EDGE_FER_TOKEN": TOKEN})
    assert r.exit_code == 3 and r.stderr == f"edge-fer: error: model not found: {absent}\n"
    with socket.socket() as s:
        s.bind(("0.0.0.0", port))


def test_a_config_file_drives_run_and_the_command_line_wins(clip, default_model, tmp_path):
    shutil.copy(clip.path, tmp_path / "faces.mp4")
    (tmp_path / "logs").mkdir()
    config = tmp_path / "config.toml"
    # Relative paths start at the config file's folder, wherever run is started from.
    config.write_text(f"""
[source]
source = "faces.mp4"
[model]
model = "{default_model}"
[detection]
min_face = 36
[tracking]
detect_every = 4
smoothing = 6
[logging]
log_json = "logs/run.jsonl"
log_interval = 0.2
[output]
display = false
max_frames = 20
""")
    r = invoke("run", "--config", config, "--detect-every", "2")
    assert r.exit_code == 0, r.output
    records = read_records(tmp_path / "logs" / "run.jsonl")
    start, summary = records[0], records[-1]
    assert start["tracking"]["detect_every"] == 2  # the command line
    assert start["tracking"]["smoothing"] == 6 and start["detector"]["min_size"] == 36  # the file
    assert start["source"] == f"video {tmp_path / 'faces.mp4'}" and start["capture"]["max_frames"] == 20
    assert summary["frames_processed"] == 20 and summary["stop_reason"] == "max frames"
    # $EDGE_FER_CONFIG names the file too, and --source on the command line replaces its camera.
    config.write_text(f'[source]\ncamera = "usb:97"\n[model]\nmodel = "{default_model}"\n'
                      '[output]\ndisplay = false\nmax_frames = 5\n')
    r = invoke("run", "--source", clip.path, env={"EDGE_FER_CONFIG": str(config)})
    assert r.exit_code == 0, r.output
    assert "5 frames processed of 5 captured" in r.stdout


def test_under_systemd_ready_after_the_first_frame_status_and_watchdog(clip, default_model,
                                                                       tmp_path, short_dir):
    log = tmp_path / "run.jsonl"
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with NotifySocket(short_dir) as notify:
        # WatchdogSec=0.6 s: the monitor checks for progress every 0.2 s.
        with spawn_run(["--source", clip.path, *LIVE, "--model", default_model, "--log-json", log,
                        "--serve", f"127.0.0.1:{port}"], cwd=tmp_path,
                       env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "600000",
                            "EDGE_FER_TOKEN": TOKEN}) as proc:
            # Faces come and go with the clip: wait for the status to have counted all three.
            wait_for(lambda: alive(proc) and len(notify.messages("WATCHDOG=1")) >= 3
                     and any(" faces=3 " in m for m in notify.messages("STATUS=fps=")), 60,
                     "three watchdog pings and a status with three faces")
            # The token came from the environment: the page needs it.
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(url + "api/stats", timeout=5)
            assert e.value.code == 401
            assert get_json(url + "api/stats", {"Authorization": f"Bearer {TOKEN}"})["frames_processed"] > 0
            out, err = stop_run(proc)
        wait_for(lambda: "STOPPING=1" in notify.messages(), 5, "STOPPING=1")
        got = notify.messages()
        ready_at = notify.times("READY=1")
    assert proc.returncode == 0 and "stopped: signal SIGTERM" in out, err
    records = read_records(log)
    summary = records[-1]
    assert got[0] == "STATUS=loading the model" and got[-1] == "STOPPING=1"
    assert got.count("READY=1") == 1
    # Ready once the model was loaded (the log opens after it) and the first frame was through.
    assert ready_at[0] >= records[0]["time"] - 0.002  # the log rounds to milliseconds
    assert ready_at[0] >= summary["started_wall"] + summary["first_result_s"] - 0.002
    # While frames flowed: pings, and the status says how fast and how many faces.
    flowing = got[got.index("READY=1"):len(got) - got[::-1].index("WATCHDOG=1")]
    assert flowing.count("WATCHDOG=1") >= 3
    statuses = [m for m in flowing if m.startswith("STATUS=")]
    status = r"STATUS=fps=\d+\.\d faces=\d+ latency_p50_ms=(\d+|-) frames_dropped=\d+"
    assert len(statuses) >= 2 and all(re.fullmatch(status, m) for m in statuses), statuses
    assert any(" faces=3 " in m for m in statuses), statuses


class StallingCamera(FakePicamera2):
    """A Pi camera that stops delivering after `stall_after` frames (a loose ribbon cable, a hung
    driver) until `resume` is set."""

    def __init__(self, clip_path, stall_after: int, fps: float = 30.0):
        super().__init__(clip_path, fps=fps)
        self.stall_after = stall_after
        self.stalled = threading.Event()
        self.resume = threading.Event()

    def _next_request(self):
        if self.requests == self.stall_after:
            self.stalled.set()
            self.resume.wait(20)
        return super()._next_request()


class LastResult(Sink):
    """A sink noting when the newest result arrived."""

    at = 0.0

    def on_result(self, result, stats):
        self.at = time.time()


def test_watchdog_pings_stop_while_the_camera_stalls(clip, default_model, short_dir, monkeypatch):
    from edge_fer.classifier import EmotionClassifier
    from edge_fer.detector import DetectorOptions, HaarFaceDetector
    from edge_fer.pipeline import PiCameraSource, Pipeline
    from edge_fer.sinks.systemd import ServiceMonitor, SystemdNotifier

    with NotifySocket(short_dir) as notify:
        monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
        monkeypatch.setenv("WATCHDOG_USEC", "450000")  # checked every 0.15 s
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        camera = StallingCamera(clip.path, stall_after=20)
        monitor = ServiceMonitor(SystemdNotifier()).start()
        pipeline = Pipeline(PiCameraSource(640, 480, 30, camera=camera),
                            HaarFaceDetector(DetectorOptions(detect_width=320)),
                            EmotionClassifier(default_model))
        monitor.model_loaded()
        last = LastResult()
        for sink in (monitor, last):
            pipeline.add_sink(sink)
        pipeline.start()
        try:
            assert camera.stalled.wait(30), "the camera never stalled"
            # The frames in flight drain, then the pipeline sits still for over a second.
            wait_for(lambda: last.at and time.time() - last.at > 1.2, 30, "a second without frames")
            # The monitor's first word of the stall after the last result starts the quiet: from
            # then on no frame is processed, so no ping may come until the camera resumes.
            wait_for(lambda: notify.messages("STATUS=stalled", after=last.at), 30, "a stalled status")
            quiet_from = min(t for t in notify.times("STATUS=stalled", prefix=True) if t > last.at)
            time.sleep(10 * monitor.interval)  # ticks in which a wrong ping would show
            resumed_at = time.time()
            camera.resume.set()
            wait_for(lambda: notify.messages("WATCHDOG=1", after=resumed_at), 5, "pings to resume")
        finally:
            camera.resume.set()
            pipeline.stop()
            pipeline.wait()
        wait_for(lambda: "STOPPING=1" in notify.messages(), 5, "STOPPING=1")
        pings = notify.times("WATCHDOG=1")
    assert len([t for t in pings if t < quiet_from]) >= 2, "no pings while frames flowed"
    assert not [t for t in pings if quiet_from < t < resumed_at], "pings while nothing was processed"
