"""The camera loop's frame rate while uploads hammer `POST /api/predict` (issue 14).

    python benchmarks/predict_load.py [--clients 4] [--seconds 10] [--model M.tflite]

Starts `edge-fer run --serve` on a generated 640x480 clip played in real time at 30 fps (as a
camera delivers it), then measures the processed frame rate from `/api/stats`' counters over
`--seconds` idle, then over `--seconds` while `--clients` threads post the shared 2048x1536
group photo (5 faces) to `/api/predict` back to back (after a 503 they wait 0.1 s, not the
1 s Retry-After: worse than a polite client). Target: the loaded frame rate within 10 % of
the idle one. Prints one table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGE_FER_DATA", REPO.parent / "shared"))
sys.path.insert(0, str(REPO / "tests"))

from clips import make_clip  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stats(url: str) -> dict:
    with urllib.request.urlopen(url + "api/stats", timeout=5) as r:
        return json.loads(r.read())


def _phase(url: str, seconds: float) -> dict:
    a, t0 = _stats(url), time.monotonic()
    time.sleep(seconds)
    b, t1 = _stats(url), time.monotonic()
    span = t1 - t0
    return {"fps": (b["frames_processed"] - a["frames_processed"]) / span,
            "capture_fps": (b["frames_captured"] - a["frames_captured"]) / span,
            "dropped": b["frames_dropped"] - a["frames_dropped"],
            "latency_p95_ms": b["latency_p95_ms"]}


class Hammer:
    """`clients` threads posting `image` to /api/predict until stopped."""

    def __init__(self, url: str, image: bytes, clients: int):
        self.url, self.image = url + "api/predict", image
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.codes: dict[int, int] = {}
        self.times: list[float] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        while not self.stop.is_set():
            t = time.monotonic()
            req = urllib.request.Request(self.url, data=self.image, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    r.read()
                    code = r.status
            except urllib.error.HTTPError as exc:
                exc.read()
                code = exc.code
            with self.lock:
                self.codes[code] = self.codes.get(code, 0) + 1
                if code == 200:
                    self.times.append(time.monotonic() - t)
            if code == 503:
                self.stop.wait(0.1)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(70)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--detector", default="haar")
    args = ap.parse_args()
    image = (SHARED / "images" / "test_image.jpg").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        frames = int(30 * (2 * args.seconds + 12))
        clip = make_clip(Path(tmp) / "clip.mp4", SHARED / "images", frames=frames, leave_at=None)
        port = _free_port()
        cmd = [sys.executable, "-m", "edge_fer", "run", "--headless", "--source", str(clip.path),
               "--realtime", "--detector", args.detector, "--serve", f"127.0.0.1:{port}"]
        if args.model:
            cmd += ["--model", args.model]
        env = {k: v for k, v in os.environ.items() if k not in ("EDGE_FER_CONFIG", "EDGE_FER_TOKEN")}
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if _stats(url).get("frames_processed", 0) > 0:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("edge-fer run did not start")
                time.sleep(0.2)
            time.sleep(2.0)  # past start-up
            load_before = os.getloadavg()
            idle = _phase(url, args.seconds)
            with Hammer(url, image, args.clients) as hammer:
                time.sleep(1.0)  # the uploads under way
                loaded = _phase(url, args.seconds)
            codes = dict(sorted(hammer.codes.items()))
            times = sorted(hammer.times)
        finally:
            proc.terminate()
            proc.wait(30)
    ratio = loaded["fps"] / idle["fps"] if idle["fps"] else float("nan")
    p50 = times[len(times) // 2] * 1000 if times else float("nan")
    print(f"source: 640x480 clip at 30 fps (--realtime), detector {args.detector}; "
          f"{args.clients} upload clients, {args.seconds:.0f} s per phase; "
          f"load average before: {load_before[0]:.2f}, cores: {os.cpu_count()}")
    print(f"{'phase':<8} {'fps':>6} {'capture fps':>12} {'dropped':>8} {'p95 ms':>8}")
    for name, p in (("idle", idle), ("uploads", loaded)):
        p95 = "-" if p["latency_p95_ms"] is None else f"{p['latency_p95_ms']:.0f}"
        print(f"{name:<8} {p['fps']:>6.1f} {p['capture_fps']:>12.1f} {p['dropped']:>8} {p95:>8}")
    print(f"loaded/idle fps: {ratio:.3f} (target >= 0.90: {'met' if ratio >= 0.9 else 'MISSED'}); "
          f"uploads answered: {codes}, p50 {p50:.0f} ms per analysed upload")
    print(json.dumps({"idle": idle, "loaded": loaded, "ratio": round(ratio, 4), "codes": codes,
                      "upload_p50_ms": round(p50, 1), "clients": args.clients,
                      "load_before": load_before[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
