"""Soak: `edge-fer run --serve` for a long time with a viewer and polled endpoints; does it leak?

    python benchmarks/soak.py [--minutes 60] [--interval 10] [--fps 30] [--json]

The source is a generated clip (three real faces from ../shared/images) looped forever by a
local HTTP MJPEG camera at --fps, so the run is as long as asked for and reads a live stream
as a kiosk's IP camera would. While it runs, one client watches /stream.mjpg without pause and
another polls /, /api/stats, /api/faces and /metrics once a second. Every --interval seconds
the run's resident memory (VmRSS), threads, open file descriptors and /api/stats fps are
sampled from /proc and the page.

Reported: each series' growth per hour (least-squares slope over the samples after the
warm-up, the first --warmup seconds), fps mean / min / max, and whether the targets hold.
Targets (a benchmark, not a test): RSS growth under 1 MB per hour over one hour; threads and
file descriptors flat; fps steady (every sample within 15 % of the median).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGE_FER_DATA", REPO.parent / "shared"))
sys.path.insert(0, str(REPO / "tests"))

from clips import clip_jpegs, make_clip, mjpeg_server, stop_server  # noqa: E402

TARGET_RSS_MB_PER_H = 1.0
FPS_TOLERANCE = 0.15


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_sample(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
            "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


class Viewer(threading.Thread):
    """One browser's worth of /stream.mjpg, read as fast as it comes; reconnects if cut."""

    def __init__(self, url: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.url, self.stop, self.parts, self.errors = url, stop, 0, 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=10) as r:
                    while not self.stop.is_set():
                        line = r.readline()
                        if not line:
                            break
                        if line.lower().startswith(b"content-length:"):
                            r.readline()
                            r.read(int(line.split(b":")[1]))
                            self.parts += 1
            except OSError:
                self.errors += 1
                self.stop.wait(1)


class Poller(threading.Thread):
    """The page's own polling and a Prometheus scraper: every endpoint once a second."""

    def __init__(self, base: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.base, self.stop, self.requests, self.errors = base, stop, 0, 0
        self.last_stats: dict = {}

    def run(self) -> None:
        while not self.stop.wait(1.0):
            for path in ("", "api/stats", "api/faces", "metrics"):
                try:
                    body = _get(self.base + path)
                    self.requests += 1
                    if path == "api/stats":
                        self.last_stats = json.loads(body)
                except OSError:
                    self.errors += 1


def _slope_per_hour(t: np.ndarray, v: np.ndarray) -> float:
    if len(t) < 3 or np.ptp(t) <= 0:
        return float("nan")
    return float(np.polyfit(t, v, 1)[0] * 3600.0)


def soak(minutes: float, interval: float, fps: float, warmup: float, model: str | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="edge-fer-soak-"))
    clip = make_clip(work / "clip.mp4", SHARED / "images", frames=300, fps=fps)
    camera = mjpeg_server(clip_jpegs(clip), fps=fps)
    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "edge_fer", "run", "--headless",
           "--source", f"http://127.0.0.1:{camera.server_address[1]}/",
           "--serve", f"127.0.0.1:{port}", "--log-json", str(work / "run.jsonl"),
           "--duration", str(minutes * 60 + 30)]
    if model:
        cmd += ["--model", model]
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "EDGE_FER_CONFIG")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(work / "run.err", "w"))
    stop = threading.Event()
    samples = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                # The page answers before the model is loaded, with empty stats until then.
                if "fps" in json.loads(_get(base + "api/stats")):
                    break
                time.sleep(0.2)
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the run did not start: {(work / 'run.err').read_text()[-2000:]}")
                time.sleep(0.2)
        viewer, poller = Viewer(base + "stream.mjpg", stop), Poller(base, stop)
        viewer.start()
        poller.start()
        started = time.monotonic()
        end = started + minutes * 60
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise SystemExit(f"the run ended early ({proc.returncode}): "
                                 f"{(work / 'run.err').read_text()[-2000:]}")
            stats = json.loads(_get(base + "api/stats"))
            samples.append({"t": time.monotonic() - started, **_proc_sample(proc.pid),
                            "fps": stats["fps"], "dropped": stats["frames_dropped"]})
            time.sleep(max(0.0, started + len(samples) * interval - time.monotonic()))
    finally:
        stop.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        stop_server(camera)

    kept = [s for s in samples if s["t"] >= warmup] or samples
    t = np.array([s["t"] for s in kept])
    growth = {k: _slope_per_hour(t, np.array([s[k] for s in kept], dtype=float))
              for k in ("rss_mb", "threads", "fds")}
    fps_v = np.array([s["fps"] for s in kept])
    median = float(np.median(fps_v)) if fps_v.size else 0.0
    steady = bool(fps_v.size and median > 0 and np.all(np.abs(fps_v - median) <= FPS_TOLERANCE * median))
    return {
        "minutes": minutes, "source_fps": fps, "samples": len(samples), "warmup_s": warmup,
        "rss_mb_first": round(kept[0]["rss_mb"], 1), "rss_mb_last": round(kept[-1]["rss_mb"], 1),
        "rss_mb_per_hour": round(growth["rss_mb"], 2),
        "threads_per_hour": round(growth["threads"], 2), "fds_per_hour": round(growth["fds"], 2),
        "threads_last": kept[-1]["threads"], "fds_last": kept[-1]["fds"],
        "fps_mean": round(float(fps_v.mean()), 2), "fps_min": round(float(fps_v.min()), 2),
        "fps_max": round(float(fps_v.max()), 2), "fps_steady": steady,
        "dropped_last": kept[-1]["dropped"],
        "stream_parts_seen": viewer.parts, "stream_errors": viewer.errors,
        "requests": poller.requests, "request_errors": poller.errors,
        "rss_target_met": bool(growth["rss_mb"] < TARGET_RSS_MB_PER_H),
        "run_exit_code": proc.returncode,
        "series": samples,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="how long to soak (default 60)")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--fps", type=float, default=30.0, help="the looped camera's frame rate")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds left out of the slopes (default: 60, or a tenth of a short run)")
    ap.add_argument("--model", help="model (.tflite); default: the shipped one")
    ap.add_argument("--json", action="store_true", help="print the report and the samples as JSON")
    a = ap.parse_args()
    warmup = a.warmup if a.warmup is not None else min(60.0, a.minutes * 6)
    r = soak(a.minutes, a.interval, a.fps, warmup, a.model)
    if a.json:
        print(json.dumps(r, indent=1))
        return
    print(f"soak: {r['minutes']:g} min at {r['source_fps']:g} fps, {r['samples']} samples every "
          f"{a.interval:g} s, slopes after {r['warmup_s']:g} s of warm-up")
    print(f"  RSS      {r['rss_mb_first']:.1f} -> {r['rss_mb_last']:.1f} MB, "
          f"{r['rss_mb_per_hour']:+.2f} MB/hour (target < {TARGET_RSS_MB_PER_H:g})")
    print(f"  threads  {r['threads_last']}, {r['threads_per_hour']:+.2f}/hour;  "
          f"fds {r['fds_last']}, {r['fds_per_hour']:+.2f}/hour")
    print(f"  fps      mean {r['fps_mean']:.1f}, min {r['fps_min']:.1f}, max {r['fps_max']:.1f}, "
          f"{'steady' if r['fps_steady'] else 'NOT steady'} (within {FPS_TOLERANCE:.0%} of the median)")
    print(f"  clients  {r['stream_parts_seen']} stream frames seen ({r['stream_errors']} errors), "
          f"{r['requests']} requests ({r['request_errors']} errors); run exit code {r['run_exit_code']}")
    ok = r["rss_target_met"] and r["fps_steady"]
    print(f"  targets  {'met' if ok else 'NOT met'}" +
          ("" if r["minutes"] >= 60 else " (a short soak: the target is over one hour)"))


if __name__ == "__main__":
    main()
