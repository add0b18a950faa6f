"""What publishing over MQTT costs `edge-fer run`: fps with and without `--mqtt` on the bench clip.

    python benchmarks/mqtt_overhead.py [--frames 300] [--repeats 3]

The bench clip (benchmarks/bench_run.py's: 640x480, three faces, one leaving) is read offline,
as fast as the pipeline goes, which is where a sink's cost would show (a live camera caps the
rate). Runs alternate without and with `--mqtt` to a real Mosquitto broker on 127.0.0.1 (started
here from a config file of our own, as the tests do; needs Debian's mosquitto) while a real
subscriber reads every message. Prints each run's fps_mean, the medians, and the ratio; the
target is "with" within 5 % of "without". Needs the [mqtt] extra (paho-mqtt).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGE_FER_DATA", REPO.parent / "shared"))
sys.path.insert(0, str(REPO / "tests"))

from clips import make_clip  # noqa: E402
from mqtt_broker import Mosquitto, Subscriber  # noqa: E402


def run_fps(clip: Path, extra: list[str]) -> tuple[float, int, float]:
    """fps_mean of one offline run, the frames it processed, and the CPU seconds it used
    (user + system: steadier than the rate on a machine shared with other jobs)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, "-m", "edge_fer", "run", "--config", "/dev/null",
                        "--source", str(clip), "--headless", *extra],
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise SystemExit(f"run failed ({p.returncode}): {p.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    m = re.search(r"(\d+) frames processed .* fps_mean=([\d.]+)", p.stdout)
    return float(m.group(2)), int(m.group(1)), cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300, help="clip length in frames")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each kind, alternating")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = make_clip(work / "clip.mp4", SHARED / "images", frames=a.frames, fps=30.0)
        with Mosquitto(work / "broker") as broker, Subscriber(broker.port) as sub:
            mqtt = ["--mqtt", broker.url, "--mqtt-device", "bench"]
            fps: dict[str, list[float]] = {"without": [], "with": []}
            cpu: dict[str, list[float]] = {"without": [], "with": []}
            run_fps(clip.path, [])  # warm the page cache and the model file
            for i in range(a.repeats):
                for kind, extra in (("without", []), ("with", mqtt)):
                    value, frames, seconds = run_fps(clip.path, extra)
                    fps[kind].append(value)
                    cpu[kind].append(seconds)
                    print(f"run {i + 1} {kind:8s} MQTT: fps_mean={value:.1f} ({frames} frames), "
                          f"CPU {seconds:.2f} s", flush=True)
            messages = len(sub.under("edge-fer/bench/"))
    without, with_ = (statistics.median(fps[k]) for k in ("without", "with"))
    cpu_without, cpu_with = (statistics.median(cpu[k]) for k in ("without", "with"))
    print(f"median fps_mean: without {without:.1f}, with MQTT {with_:.1f}: "
          f"{100 * (with_ / without - 1):+.1f} % ({messages} messages read by the subscriber "
          f"over {a.repeats} runs); target: within 5 %")
    print(f"median CPU per run: without {cpu_without:.2f} s, with MQTT {cpu_with:.2f} s: "
          f"{100 * (cpu_with / cpu_without - 1):+.1f} %")


if __name__ == "__main__":
    main()
