"""The Raspberry Pi budget: guest instructions per stage of edge-fer's runtime on a Cortex-A72
(Pi 4), a Cortex-A76 (Pi 5) and a Cortex-A53 (Zero 2 W, Pi 3), counted under qemu-user, and what
they mean for `edge-fer run`.

    sudo python3 benchmarks/pi_budget.py                    # table; about 15 minutes on 2 cores
    sudo python3 benchmarks/pi_budget.py --json             # the same as JSON
    sudo python3 benchmarks/pi_budget.py --cores a53 --json # one core

The CNN detectors' weights have to be fetched first (`edge-fer detectors fetch --dir DIR
blazeface blazeface-full`, then EDGE_FER_DETECTOR_DIR=DIR), as for `edge-fer run`.

Emulated wall time says nothing about a Pi; the number of instructions the Pi's CPU would
execute does, and it is exact and repeatable. `ci/arm64.sh prepare` gives an arm64 Debian 12
guest with this checkout installed (the same cache as the CI lane) and builds
`benchmarks/qemu/icount.c`, a QEMU TCG plugin that counts guest instructions between two
markers the guest writes (a write() to file descriptor 987654). This script then runs itself in
the guest (`--guest`), once per core (`-cpu cortex-a72` with a Pi 4 CPU view, `-cpu cortex-a76`
with a Pi 5 view, `-cpu cortex-a53` with a Zero 2 W view: XNNPACK picks its kernels by the CPU
it sees, e.g. sdot on the A76, its in-order kernels on the A53), and
every stage is run a few times after a warm-up inside one marked region:

- capture-side conversions on a 640x480 frame (resize to the 320-px detection frame, colour);
- detection with each detector at `edge-fer run`'s default size (320 px wide) on a 640x480
  frame (the shared group photo scaled to 640x480, six faces), and Haar at 640 px (`predict`'s
  default) for comparison with the reference recipe's figure;
- classification with each shipped model (`models/*.tflite`), one interpreter thread, batch 1
  and 4, with and without `--tta`, cropping included;
- the pipeline's own per-frame work (capture and detect threads, queues, tracking, smoothing,
  events, the log and JSON-lines sinks) with a no-op detector and a no-op model, from two runs of
  different lengths, so thread start-up cancels out.

Milliseconds are instructions / (IPC x clock). IPC is not measured here: it is an assumption,
stated in the output and overridable (`--ipc-a72`, `--ghz-a72` and the same for a76 and a53;
a Pi 3 B+ is `--ghz-a53 1.4`, a Pi 3 B `--ghz-a53 1.2`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARK_FD = 987654
DETECT_EVERY = {"haar": 5, "blazeface": 2, "blazeface-full": 3}
"""Each detector's default --detect-every (its class's `default_detect_every`; this script's host
side runs without edge-fer installed, so they are repeated here and a test keeps them equal)."""
RUN_THREADS = 2
"""`edge-fer run`'s default interpreter threads on a machine with four or more cores."""
THREAD_CHOICES = (1, RUN_THREADS)
"""Interpreter threads three faces are counted with (`--threads`: 1 is the small-board profile's)."""


def _threads(n: int) -> str:
    return f"{n} thread" if n == 1 else f"{n} threads"

DETECT_WIDTH = 320
"""`edge-fer run`'s default --detect-width (the Pi camera's low-resolution stream width)."""

#: The cores, as `ci/arm64.sh prepare` names their CPU views, and the assumptions that turn
#: instructions into time. IPC (instructions per clock) is an assumption, not a measurement:
#: ~1.0 for the A72 (3-wide, out of order; the usual figure for integer and mixed code, and
#: what the Pi 4's published single-core results come to at 1.5-1.8 GHz), ~1.5 for the A76
#: (Arm's published per-clock gains, A73 -> A75 -> A76, add up to about 1.5x the A72).
#: ~0.6 for the A53 (2-wide, in order: it stalls on every cache miss and dependent load that the
#: A72 would schedule around; 0.5-0.7 is the range usually quoted for mixed integer and NEON
#: code, and 0.6 puts it at 40 % of the A72 per clock, in line with published per-clock
#: single-core comparisons of the Pi 3 and Pi 4).
#: Clocks: Pi 4 at 1.8 GHz (boards from 2020 on, and the Pi 400; early Pi 4s run 1.5 GHz), Pi 5
#: at 2.4 GHz, Zero 2 W at 1.0 GHz (the Pi 3 B+ runs the same A53 at 1.4 GHz, the Pi 3 B at 1.2).
CORES = {
    "a72": {"cpu": "cortex-a72", "view": "pi4", "board": "Raspberry Pi 4", "ipc": 1.0, "ghz": 1.8},
    "a76": {"cpu": "cortex-a76", "view": "pi5", "board": "Raspberry Pi 5", "ipc": 1.5, "ghz": 2.4},
    "a53": {"cpu": "cortex-a53", "view": "zero2w", "board": "Raspberry Pi Zero 2 W", "ipc": 0.6,
            "ghz": 1.0},
}


# ==== the guest side: runs under qemu-aarch64 with the plugin ================================

def _mark(kind: int) -> None:
    try:
        os.write(MARK_FD, b"\0" * kind)  # the plugin sees the syscall; the guest gets EBADF
    except OSError:
        pass


class Regions:
    """Marked regions, in order; the host pairs them with the plugin's reports."""

    def __init__(self):
        self.names: list[dict] = []

    def measure(self, stage: str, what: str, fn, reps: int, warmup: int = 2, per: int = 1,
                unit: str = "call") -> None:
        for _ in range(warmup):
            fn()
        _mark(1)
        for _ in range(reps):
            fn()
        _mark(2)
        self.names.append({"stage": stage, "what": what, "reps": reps, "per": per, "unit": unit})


def _frame640():
    import cv2

    from edge_fer.images import read_image

    img = read_image(Path(os.environ["EDGE_FER_DATA"]) / "images" / "test_image.jpg")
    return cv2.resize(img, (640, 480), interpolation=cv2.INTER_AREA)


def detectors() -> dict:
    """Every detector the runtime has, as `edge-fer run` builds it by default (one entry each)."""
    from edge_fer.detector import DetectorOptions, create_detector, detector_names

    return {name: (lambda name=name: create_detector(name, DetectorOptions(detect_width=DETECT_WIDTH)))
            for name in detector_names()}


class _NoopDetector:
    """Three fixed faces, at no cost: the pipeline's own work is what is left."""

    def __init__(self):
        from edge_fer.detector import CropTransform, DetectorOptions

        self.options = DetectorOptions(detect_width=DETECT_WIDTH)
        self.crop = CropTransform()

    accepts_gray = True
    default_detect_every = 5

    def detect(self, frame, full_size=None):
        from edge_fer.detector import DetectedFace

        return [DetectedFace((100, 100, 96, 96)), DetectedFace((300, 120, 96, 96)),
                DetectedFace((200, 300, 96, 96))]


class _NoopModel:
    """A model that answers at once (a constant): crops still made, smoothing still done."""

    labels = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    input_size = (48, 48)
    color = "gray"
    crop_margin = 0.0
    path = Path("noop")

    def predict_proba(self, faces):
        import numpy as np

        p = np.full((len(faces), 7), 0.05, np.float32)
        p[:, 3] = 0.7
        return p


def _pipeline_run(frames: int) -> None:
    import numpy as np

    from edge_fer.pipeline import Pipeline, PipelineOptions
    from edge_fer.pipeline.sources import Source
    from edge_fer.sinks.jsonlines import JsonLinesSink
    from edge_fer.sinks.log import LogSink

    image = _frame640()
    gray = np.ascontiguousarray(image[::2, ::2, 1])

    class Frames(Source):
        """`frames` copies of one frame with its 320-px gray view, as the Pi camera gives them."""

        def __init__(self):
            self.left = frames

        description = "frames"

        def open(self):
            pass

        def read(self):
            if self.left == 0:
                return None
            self.left -= 1
            return image, gray

    p = Pipeline(Frames(), _NoopDetector(), _NoopModel(), PipelineOptions())
    p.add_sink(LogSink(5.0, lambda line: None))
    with tempfile.TemporaryDirectory() as d:
        sink = JsonLinesSink(Path(d) / "run.jsonl", 5.0, {})
        p.add_sink(sink)
        p.start()
        p.wait()
        sink.close()
    if p.error is not None:
        raise p.error


def guest(models: list[Path], reps: int) -> list[dict]:
    import cv2
    import numpy as np

    from edge_fer.classifier import ClassifierOptions, EmotionClassifier
    from edge_fer.predict import FacePredictor

    r = Regions()
    frame = _frame640()
    small = np.empty((240, 320, 3), np.uint8)
    gray = np.empty((240, 320), np.uint8)
    r.measure("capture", "resize 640x480 -> 320x240 (INTER_AREA)",
              lambda: cv2.resize(frame, (320, 240), dst=small, interpolation=cv2.INTER_AREA), reps * 4)
    r.measure("capture", "BGR -> gray, 320x240",
              lambda: cv2.cvtColor(small, cv2.COLOR_BGR2GRAY, dst=gray), reps * 4)
    r.measure("capture", "BGR -> gray, 640x480", lambda: cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), reps * 4)

    full_gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    for name, make in detectors().items():
        det = make()
        # Haar takes the Pi camera's 320-px Y plane; a CNN detector the 640x480 colour frame.
        src, what = (gray, f"{DETECT_WIDTH}x240 gray") if det.accepts_gray else (frame, "640x480 BGR")
        r.measure("detect", f"{name}, {what} (run default)",
                  lambda det=det, src=src: det.detect(src, full_size=(640, 480)), max(2, reps // 2), warmup=1)
    from edge_fer.detector import DetectorOptions, HaarFaceDetector

    haar640 = HaarFaceDetector(DetectorOptions(detect_width=640))
    r.measure("detect", "haar, 640x480 gray (predict default)", lambda: haar640.detect(full_gray),
              2, warmup=1)

    boxes = [f.box for f in HaarFaceDetector(DetectorOptions(detect_width=640, min_size=20)).detect(frame)]
    while len(boxes) < 4:
        boxes.append((50 * len(boxes), 50, 80, 80))
    for path in models:
        for tta in (False, True):
            clf = EmotionClassifier(path, ClassifierOptions(num_threads=1, flip_tta=tta))
            predictor = FacePredictor(clf, None)
            for n in (1, 4):
                crop_boxes = boxes[:n]
                r.measure("classify", f"{path.name}, batch {n}{', tta' if tta else ''}",
                          lambda p=predictor, c=clf, b=crop_boxes: c.predict_proba(p.crops(frame, b)),
                          reps, per=n, unit="face")
        for threads in THREAD_CHOICES:
            clf = EmotionClassifier(path, ClassifierOptions(num_threads=threads))
            predictor = FacePredictor(clf, None)
            r.measure("classify", f"{path.name}, batch 3, {_threads(threads)}",
                      lambda p=predictor, c=clf, b=boxes[:3]: c.predict_proba(p.crops(frame, b)),
                      reps, per=3, unit="face")
    short, long_ = 10, 10 + 4 * reps
    _pipeline_run(5)  # warm-up: imports, first allocations
    r.measure("pipeline", f"{short} frames, 3 faces, no-op detector and model",
              lambda: _pipeline_run(short), 1, warmup=0)
    r.measure("pipeline", f"{long_} frames, 3 faces, no-op detector and model",
              lambda: _pipeline_run(long_), 1, warmup=0)
    return r.names


# ==== the host side ==========================================================================

REGION = re.compile(r"ICOUNT region:(.*) total=(\d+) vector=(\d+)")
THREAD = re.compile(r"t\d+=(\d+)")


@dataclass
class Row:
    stage: str
    what: str
    unit: str
    instructions: dict = field(default_factory=dict)
    """core -> guest instructions per `unit`."""
    vector: dict = field(default_factory=dict)
    """core -> share of them with a vector operand."""
    busiest: dict = field(default_factory=dict)
    """core -> instructions per `unit` of the busiest thread (what sets the latency)."""


def prepare(env_dir: Path) -> None:
    r = subprocess.run(["bash", str(REPO / "ci" / "arm64.sh"), "prepare", str(env_dir)], text=True,
                       capture_output=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-3000:] + r.stderr[-3000:])
        raise SystemExit(f"pi_budget: the arm64 guest could not be prepared (ci/arm64.sh prepare, exit {r.returncode})")


def count(env_dir: Path, core: str, models: list[Path], reps: int) -> list[tuple[dict, int, int]]:
    c = CORES[core]
    env = {**os.environ, "ARM64_CPU": c["cpu"], "ARM64_VIEW": c["view"], "ARM64_PLUGIN": "1",
           "EDGE_FER_DATA": os.environ.get("EDGE_FER_DATA", str(REPO.parent / "shared"))}
    cmd = [str(env_dir / "guest"), str(Path(__file__).resolve()), "--guest", "--reps", str(reps), "--models",
           *[str(m) for m in models]]
    r = subprocess.run(cmd, env=env, text=True, capture_output=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        raise SystemExit(f"pi_budget: the guest run on {c['cpu']} failed (exit {r.returncode})")
    names = json.loads(r.stdout.strip().splitlines()[-1])
    counts = [(int(m.group(2)), int(m.group(3)), max(map(int, THREAD.findall(m.group(1))), default=0))
              for m in REGION.finditer(r.stderr)]
    if len(counts) != len(names):
        raise SystemExit(f"pi_budget: {len(names)} regions run but {len(counts)} counted on {c['cpu']}")
    return [(n, *tvb) for n, tvb in zip(names, counts)]


def tabulate(per_core: dict[str, list]) -> list[Row]:
    rows: dict[tuple, Row] = {}
    for core, regions in per_core.items():
        pipe = {}
        for n, total, vec, busiest in regions:
            if n["stage"] == "pipeline":
                pipe[int(n["what"].split()[0])] = (total, vec)
                continue
            key = (n["stage"], n["what"])
            row = rows.setdefault(key, Row(n["stage"], n["what"], n["unit"]))
            row.instructions[core] = round(total / (n["reps"] * n["per"]))
            row.busiest[core] = round(busiest / (n["reps"] * n["per"]))
            row.vector[core] = round(vec / total, 3) if total else 0.0
        (f0, (t0, v0)), (f1, (t1, v1)) = sorted(pipe.items())
        row = rows.setdefault(("pipeline", "per frame"), Row(
            "pipeline", "per frame, 3 faces: capture, queues, tracking, smoothing, events, sinks "
            "(no-op detector and model)", "frame"))
        row.instructions[core] = round((t1 - t0) / (f1 - f0))
        row.vector[core] = round((v1 - v0) / max(1, t1 - t0), 3)
    return list(rows.values())


def ms(instructions: float, core: str, assume: dict) -> float:
    a = assume[core]
    return instructions / (a["ipc"] * a["ghz"] * 1e9) * 1e3


def estimate(rows: list[Row], assume: dict, detect_every: int | None = None,
             threads: int = RUN_THREADS, fps: float = 30.0) -> list[dict]:
    """`edge-fer run` on a Pi camera at `fps`, per model and detector, 1 and 3 faces.

    The stages run on their own threads (the Pi has four cores), so a frame's throughput is set
    by the busiest stage and its latency by the sum on its path: the Pi camera's low-resolution
    Y plane goes to detection as it is (no conversion), the classify thread crops and runs the
    model (batch 1 on one thread for one face; for three, one batch-3 call on `threads`
    interpreter threads, `run`'s default two, timed by the busiest), detection runs on its own thread at
    most every `detect_every` frames (default: each detector's own) and never on a frame's path. The pipeline's own work is
    split between the capture/detect and classify/sink threads (half each)."""
    find = {(r.stage, r.what): r for r in rows}
    pipe = next(r for r in rows if r.stage == "pipeline")
    out = []
    for core in assume:
        for (stage, what), det in find.items():
            if stage != "detect" or "run default" not in what:
                continue
            for (s2, w2), cls in find.items():
                if s2 != "classify" or ", batch 1" not in w2 or "tta" in w2:
                    continue
                model = w2.split(",")[0]
                threaded = find[("classify", f"{model}, batch 3, {_threads(threads)}")]
                for faces in (1, 3):
                    # One face: batch 1 on one thread. Three: one batch-3 call on
                    # `threads` threads, whose busiest thread sets the time.
                    per_face = cls.busiest[core] if faces == 1 else threaded.busiest[core]
                    classify = ms(per_face * faces, core, assume)
                    overhead = ms(pipe.instructions[core], core, assume)
                    detect = ms(det.instructions[core], core, assume)
                    every = detect_every or DETECT_EVERY[what.split(",")[0]]
                    busiest = max(classify + overhead / 2, detect / every, overhead / 2)
                    out.append({
                        "core": core, "board": assume[core]["board"], "model": model,
                        "detector": what.split(",")[0], "faces": faces,
                        "classify_ms": round(classify, 2), "pipeline_ms": round(overhead, 2),
                        "detect_ms": round(detect, 1),
                        "fps": round(min(1000.0 / busiest, 1e4), 1),
                        "redetect_ms": round(max(detect, every * 1000.0 / fps), 1),
                        "cpu_per_frame_ms": round(classify + overhead + detect / every, 2),
                    })
    return out


def print_table(rows: list[Row], est: list[dict], assume: dict, cmd: str, threads: int = RUN_THREADS,
                fps: float = 30.0) -> None:
    cores = list(assume)
    print(f"Guest instructions per unit (millions), `{cmd}`\n")
    head = f"{'stage':9} {'what':62} {'per':5}" + "".join(f" {c + ' M':>9} {'vec%':>5}" for c in cores)
    print(head)
    print("-" * len(head))
    for r in rows:
        what = r.what if len(r.what) <= 62 else r.what[:59] + "..."
        print(f"{r.stage:9} {what:62} {r.unit:5}" + "".join(
            f" {r.instructions[c] / 1e6:9.2f} {100 * r.vector[c]:5.1f}" for c in cores))
    print("\nAssumed (not measured): " + "; ".join(
        f"{c}: {a['board']}, IPC {a['ipc']}, {a['ghz']} GHz" for c, a in assume.items()))
    print(f"\n`edge-fer run --camera pi` at {fps:g} fps, estimated (1 face: batch 1, one interpreter thread; "
          f"3 faces: batch 3, {_threads(threads)}, busiest thread)\n")
    head = (f"{'board':21} {'model':18} {'detector':14} {'faces':>5} {'classify ms':>11} "
            f"{'pipeline ms':>11} {'detect ms':>9} {'max fps':>7} {'re-detect ms':>12} {'CPU ms/frame':>12}")
    print(head)
    print("-" * len(head))
    for e in est:
        print(f"{e['board']:21} {e['model']:18} {e['detector']:14} {e['faces']:5d} {e['classify_ms']:11.2f} "
              f"{e['pipeline_ms']:11.2f} {e['detect_ms']:9.1f} {e['fps']:7.1f} {e['redetect_ms']:12.1f} "
              f"{e['cpu_per_frame_ms']:12.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="Print JSON instead of the tables.")
    ap.add_argument("--reps", type=int, default=4, help="Repetitions per measured stage.")
    ap.add_argument("--cores", default=",".join(CORES),
                    help="Comma-separated: a72 (Pi 4), a76 (Pi 5), a53 (Zero 2 W, Pi 3).")
    ap.add_argument("--models", nargs="*", type=Path, help="Models to count (default: models/*.tflite).")
    ap.add_argument("--detect-every", type=int, default=None,
                    help="As `edge-fer run --detect-every` (default: each detector's own).")
    ap.add_argument("--threads", type=int, choices=THREAD_CHOICES, default=RUN_THREADS,
                    help="As `edge-fer run --threads`, for three faces (default: run's own, 2).")
    ap.add_argument("--fps", type=float, default=30.0, help="Camera frame rate (default 30).")
    for core, c in CORES.items():
        ap.add_argument(f"--ipc-{core}", type=float, default=c["ipc"], help=f"Assumed IPC of the {c['cpu']}.")
        ap.add_argument(f"--ghz-{core}", type=float, default=c["ghz"], help=f"Assumed clock of the {c['cpu']}.")
    ap.add_argument("--env", type=Path, help="A guest already made with `ci/arm64.sh prepare DIR` "
                    "(default: prepare one in a temporary folder).")
    ap.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    models = a.models or sorted((REPO / "models").glob("*.tflite"))
    if a.guest:
        print(json.dumps(guest(models, a.reps)))
        return
    cores = [c.strip() for c in a.cores.split(",") if c.strip()]
    unknown = [c for c in cores if c not in CORES]
    if unknown or not cores:
        raise SystemExit(f"pi_budget: unknown core(s) {unknown}: use {', '.join(CORES)}")
    assume = {c: {**CORES[c], "ipc": getattr(a, f"ipc_{c}"), "ghz": getattr(a, f"ghz_{c}")} for c in cores}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pi-budget-") as tmp:
        env_dir = a.env or Path(tmp)
        if a.env is None:
            prepare(env_dir)
        elif not (env_dir / "guest").is_file():
            raise SystemExit(f"pi_budget: {env_dir} is not a prepared guest: run 'sudo bash ci/arm64.sh prepare {env_dir}'")
        per_core = {c: count(env_dir, c, models, a.reps) for c in cores}
    rows = tabulate(per_core)
    est = estimate(rows, assume, a.detect_every, a.threads, a.fps)
    cmd = "python3 benchmarks/pi_budget.py" + "".join(f" {x}" for x in sys.argv[1:])
    if a.json:
        print(json.dumps({"command": cmd, "assumptions": assume, "stages": [asdict(r) for r in rows],
                          "run_estimates": est, "seconds": round(time.monotonic() - t0)}, indent=1))
    else:
        print_table(rows, est, assume, cmd, a.threads, a.fps)
        print(f"\n({time.monotonic() - t0:.0f} s under emulation)")


if __name__ == "__main__":
    main()
