"""Peak memory of `edge-fer run` as a 64-bit Raspberry Pi would hold it, counted in the arm64
guest under qemu-user (the guest that `ci/arm64.sh prepare DIR` makes).

    sudo bash ci/arm64.sh prepare /tmp/pi-guest
    sudo python3 benchmarks/pi_memory.py --env /tmp/pi-guest            # the small-board profile
    sudo python3 benchmarks/pi_memory.py --env /tmp/pi-guest --config systemd/config.example.toml

BlazeFace's weights have to be where the guest looks ($EDGE_FER_DETECTOR_DIR, filled with
`edge-fer detectors fetch blazeface --dir DIR` on the host).

The run is `edge-fer run --config CONFIG` on the Pi camera (the fake picamera2 of the tests
playing a generated clip of three faces), serving the live page with a client reading the
MJPEG stream, as the kiosk browser does, and writing the JSON log.

What is counted: the process's resident memory in the guest's own mappings. The process under
qemu-user is QEMU plus the guest; QEMU 7.2 emulates /proc/self/maps for the guest (only what the
guest mapped) but passes /proc/self/smaps through (every mapping of the QEMU process, with Rss).
A sampler thread in the guest sums the Rss of the smaps entries that lie inside the guest's
mappings, every `--interval` seconds, and keeps the peak: the Python heap, numpy and OpenCV
buffers, the interpreter's arenas and the pages of the shared libraries the guest touched, which
is what `VmHWM` would say on the Pi (same wheels, same Python, 4 KiB pages as on a Zero 2 W, Pi 3
and Pi 4). QEMU's own memory (its translation cache and bookkeeping) is left out and shown apart
(`qemu_vmhwm_kb`: the whole emulator process).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: The runtime's peak must stay under this on a 512 MB board (issue 31).
LIMIT_MB = 150

_MAPS = re.compile(r"([0-9a-f]+)-([0-9a-f]+) ")


# ==== the guest side ==========================================================================

def guest_rss_kb() -> tuple[int, int]:
    """(resident KiB inside the guest's mappings, of which anonymous) right now."""
    spans = []
    with open("/proc/self/maps") as fh:  # emulated by QEMU: the guest's mappings only
        for line in fh:
            m = _MAPS.match(line)
            if m:
                spans.append((int(m.group(1), 16), int(m.group(2), 16)))
    spans.sort()
    total = anon = 0
    start = end = 0
    inside = False
    named = False
    with open("/proc/self/smaps") as fh:  # passed through: the QEMU process's mappings
        for line in fh:
            m = _MAPS.match(line)
            if m:
                start, end = int(m.group(1), 16), int(m.group(2), 16)
                fields = line.split()
                named = len(fields) > 5
                inside = any(a < end and start < b for a, b in spans)
                share = 0.0
                if inside:
                    # A host entry may straddle a guest mapping's edge: count the part inside.
                    share = sum(max(0, min(b, end) - max(a, start)) for a, b in spans) / (end - start)
            elif inside and line.startswith("Rss:"):
                kb = int(line.split()[1])
                total += round(kb * share)
                if not named:
                    anon += round(kb * share)
    return total, anon


def guest(args: list[str], interval: float) -> dict:
    from edge_fer.cli import cli

    peak = {"rss_kb": 0, "anon_kb": 0, "samples": 0}
    stop = threading.Event()

    def sample():
        while True:
            rss, anon = guest_rss_kb()
            peak["samples"] += 1
            if rss > peak["rss_kb"]:
                peak.update(rss_kb=rss, anon_kb=anon)
            if stop.wait(interval):
                return

    t = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    t.start()
    try:
        code = cli.main(args=args, prog_name="edge-fer", standalone_mode=False)
    finally:
        stop.set()
        t.join(timeout=30)
    status = open("/proc/self/status").read()
    hwm = re.search(r"VmHWM:\s+(\d+)", status)
    return {**peak, "exit": code or 0, "qemu_vmhwm_kb": int(hwm.group(1)) if hwm else None}


# ==== the host side ===========================================================================

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def watch_stream(port: int, stop: threading.Event) -> None:
    """Read the live MJPEG stream as the kiosk browser does, until the run ends."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/stream.mjpg", timeout=5) as r:
                while not stop.is_set() and r.read(65536):
                    pass
        except OSError:
            stop.wait(1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", type=Path, help="A guest made with `ci/arm64.sh prepare DIR` (required).")
    ap.add_argument("--config", type=Path, default=REPO / "systemd" / "config.zero.toml",
                    help="The config to run with (default: the small-board profile).")
    ap.add_argument("--view", default="zero2w", help="CPU view of the guest (zero2w, pi3, pi4, pi5).")
    ap.add_argument("--frames", type=int, default=90, help="Camera frames to run for.")
    ap.add_argument("--interval", type=float, default=0.25, help="Seconds between samples.")
    ap.add_argument("--json", action="store_true", help="Print JSON instead of a summary.")
    ap.add_argument("--guest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.guest is not None:
        print("PI_MEMORY " + json.dumps(guest(a.guest, a.interval)))
        return
    if a.env is None or not (a.env / "guest").is_file():
        raise SystemExit(f"pi_memory: {a.env} is not a prepared guest: run 'sudo bash ci/arm64.sh prepare {a.env}'")
    if not a.config.is_file():
        raise SystemExit(f"pi_memory: no config file {a.config}")
    cpu = {"zero2w": "cortex-a53", "pi3": "cortex-a53", "pi4": "cortex-a72", "pi5": "cortex-a76"}.get(a.view)
    if cpu is None:
        raise SystemExit(f"pi_memory: unknown view {a.view}: zero2w, pi3, pi4 or pi5")
    shared = Path(os.environ.get("EDGE_FER_DATA", REPO.parent / "shared"))
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="pi-memory-") as tmp:
        clip = Path(tmp) / "clip.mp4"
        # The clip is made by the guest (tests/clips.py needs OpenCV, which the host may lack).
        env = {**os.environ, "ARM64_CPU": cpu, "ARM64_VIEW": a.view,
               "PYTHONPATH": f"{REPO / 'tests' / 'fake_picamera2'}:{REPO / 'tests'}"}
        r = subprocess.run([str(a.env / "guest"), "-c", "import sys; from pathlib import Path; from clips import "
                            "make_clip; make_clip(sys.argv[1], Path(sys.argv[2]), frames=int(sys.argv[3]))",
                            str(clip), str(shared / "images"), str(a.frames)], env=env, text=True,
                           capture_output=True)
        if r.returncode != 0 or not clip.is_file():
            sys.stderr.write(r.stderr[-3000:])
            raise SystemExit(f"pi_memory: cannot make the test clip in the guest (exit {r.returncode})")
        run_args = ["run", "--config", str(a.config.resolve()), "--max-frames", str(a.frames),
                    "--log-json", str(Path(tmp) / "run.jsonl"), "--serve", f"127.0.0.1:{port}",
                    "--headless"]
        env.update(EDGE_FER_FAKE_CAMERA_CLIP=str(clip), EDGE_FER_FAKE_CAMERA_FPS="5")
        stop = threading.Event()
        viewer = threading.Thread(target=watch_stream, args=(port, stop), daemon=True)
        viewer.start()
        t0 = time.monotonic()
        try:
            r = subprocess.run([str(a.env / "guest"), str(Path(__file__).resolve()), "--interval",
                                str(a.interval), "--guest", *run_args],
                               env=env, text=True, capture_output=True, timeout=1800)
        finally:
            stop.set()
        found = [ln for ln in r.stdout.splitlines() if ln.startswith("PI_MEMORY ")]
        if r.returncode != 0 or not found:
            sys.stderr.write(r.stdout[-3000:] + r.stderr[-3000:])
            raise SystemExit(f"pi_memory: the guest run failed (exit {r.returncode})")
        peak = json.loads(found[-1].split(" ", 1)[1])
        events = [json.loads(ln) for ln in (Path(tmp) / "run.jsonl").read_text().splitlines()]
    summary = next((e for e in reversed(events) if e.get("type") == "summary"), {})
    out = {"command": "python3 benchmarks/pi_memory.py" + "".join(f" {x}" for x in sys.argv[1:]),
           "config": str(a.config), "view": a.view, "cpu": cpu, "frames": a.frames,
           "peak_rss_mb": round(peak["rss_kb"] / 1024, 1), "peak_anon_mb": round(peak["anon_kb"] / 1024, 1),
           "samples": peak["samples"], "qemu_vmhwm_mb": round((peak["qemu_vmhwm_kb"] or 0) / 1024, 1),
           "limit_mb": LIMIT_MB, "frames_processed": summary.get("frames_processed"),
           "seconds": round(time.monotonic() - t0)}
    if a.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"peak RSS of `edge-fer run --config {a.config.name}` in the aarch64 guest ({a.view}, {cpu}): "
              f"{out['peak_rss_mb']} MB ({out['peak_anon_mb']} MB anonymous; {out['samples']} samples; "
              f"limit {LIMIT_MB} MB); the whole QEMU process peaked at {out['qemu_vmhwm_mb']} MB")
    if peak["rss_kb"] / 1024 > LIMIT_MB:
        raise SystemExit(f"pi_memory: peak {out['peak_rss_mb']} MB is over the {LIMIT_MB} MB limit")


if __name__ == "__main__":
    main()
