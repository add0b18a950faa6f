"""`edge-fer run` against the serial loops FER projects use, on one generated clip, in one run.

    python benchmarks/bench_run.py [--quick] [--frames N] [--model M.tflite] [--keras M.hdf5]

Rows: (a) decode only, the ceiling; (b) the usual serial loop: Haar (scale 1.3, 5 neighbours)
on the full frame and one Keras `predict` per face; (c) the same loop with the INT8 model, one
interpreter call per face; (d) `edge-fer run` as shipped. Each row runs in its own process so its
peak RSS and its time from launch to the first result are its own. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGE_FER_DATA", REPO.parent / "shared"))
KERAS_MODEL = SHARED / "models" / "face_classification" / "fer2013_mini_XCEPTION.102-0.66.hdf5"
TARGETS = ("targets: (d) >= 5x (c) and >= 20x (b); p95 < 40 ms with 0 dropped at 30 FPS; "
           "RSS < 150 MiB; first result < 1 s")


# -- child processes: one case each, one JSON line on stdout ----------------------------------


def _frames(clip: str):
    import cv2

    cap = cv2.VideoCapture(clip)
    while True:
        ok, frame = cap.read()
        if not ok:
            return
        yield frame


def _serial(clip: str, classify_face, launch_wall: float) -> dict:
    """The FER-project loop: per frame, gray, Haar on the full frame, classify face by face."""
    import cv2

    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
    per_frame, first, faces_seen = [], None, 0
    t_start = time.perf_counter()
    for frame in _frames(clip):
        t0 = time.perf_counter()
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        for x, y, w, h in cascade.detectMultiScale(gray, 1.3, 5):
            classify_face(gray[y:y + h, x:x + w])
            faces_seen += 1
        per_frame.append((time.perf_counter() - t0) * 1000)
        if first is None:
            first = time.time() - launch_wall
    total = time.perf_counter() - t_start
    return {"frames": len(per_frame), "seconds": total, "per_frame_ms": per_frame,
            "first_result_s": first, "faces": faces_seen}


def child(case: str, clip: str, model: str, keras: str, launch_wall: float) -> dict:
    if case == "decode":
        t0 = time.perf_counter()
        n, first = 0, None
        for _ in _frames(clip):
            n += 1
            first = first if first is not None else time.time() - launch_wall
        return {"frames": n, "seconds": time.perf_counter() - t0, "first_result_s": first}
    import cv2

    if case == "keras":
        sys.path.insert(0, str(REPO))
        from edge_fer_convert.loader import load_keras_model

        net = load_keras_model(keras).model
        size = tuple(int(v) for v in net.input_shape[1:3])[::-1]

        def classify_face(face):
            x = cv2.resize(face, size).astype(np.float32) / 255.0
            x = (x - 0.5) * 2.0
            return net.predict(x[None, :, :, None], verbose=0)

        return _serial(clip, classify_face, launch_wall)
    if case == "int8":
        from edge_fer.classifier import EmotionClassifier
        from edge_fer.images import resize_to

        clf = EmotionClassifier(model)
        return _serial(clip, lambda face: clf.predict_proba([resize_to(face, clf.input_size)]), launch_wall)
    raise SystemExit(f"unknown case {case}")


# -- the parent: run every case, print the table -------------------------------------------------


def _wait(proc: subprocess.Popen, timeout: float) -> tuple[int, float]:
    """Exit status and the child's own peak RSS in MiB (wait4 reports that child only)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_maxrss / 1024.0
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError(f"{proc.args} ran longer than {timeout:.0f} s")


def _run(cmd: list[str]) -> tuple[str, float]:
    """Run `cmd`; its stdout and its own peak RSS (MiB). Its stderr is shown only if it fails."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=_env())
        code, rss = _wait(proc, 1800)
        out.seek(0)
        err.seek(0)
        if code != 0:
            tail = "\n".join(err.read().splitlines()[-5:])
            raise RuntimeError(f"{' '.join(cmd)} failed (exit {code}):\n{tail}")
        return out.read(), rss


def run_child(case: str, clip: Path, model: str, keras: str) -> dict:
    launch = time.time()
    text, rss = _run([sys.executable, __file__, "--child", case, "--clip", str(clip), "--model", model,
                      "--keras", keras, "--launch", repr(launch)])
    result = json.loads(text.strip().splitlines()[-1])
    result["rss_mb"] = rss
    return result


def run_pipeline(clip: Path, model: str, realtime: bool, workdir: Path) -> dict:
    log = workdir / f"run{'-rt' if realtime else ''}.jsonl"
    cmd = [sys.executable, "-m", "edge_fer", "run", "--source", str(clip), "--model", model,
           "--headless", "--log-json", str(log), "--log-interval", "60"]
    if realtime:
        cmd.append("--realtime")
    launch = time.time()
    _, rss = _run(cmd)
    summary = json.loads(log.read_text().splitlines()[-1])
    summary["rss_mb"] = rss
    summary["launch_to_first_s"] = summary["started_wall"] + summary["first_result_s"] - launch
    summary["launch_to_first_face_s"] = summary["started_wall"] + summary["first_face_s"] - launch
    return summary


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _serial_row(name: str, r: dict, fps: float) -> dict:
    tput = r["frames"] / r["seconds"]
    p50, p95 = np.percentile(r["per_frame_ms"], [50, 95])
    # A serial loop holds one frame at a time: frames the camera delivers meanwhile are lost.
    dropped = max(0.0, 1.0 - tput / fps)
    return {"case": name, "fps": tput, "p50": p50, "p95": p95, "dropped": f"{dropped:.0%} (est.)",
            "rss": r["rss_mb"], "first": r["first_result_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a 90-frame clip (3 s) instead of 300")
    ap.add_argument("--frames", type=int, help="clip length in frames")
    ap.add_argument("--model", default=os.environ.get("EDGE_FER_MODEL"),
                    help="INT8 .tflite (default: $EDGE_FER_MODEL or the shipped model)")
    ap.add_argument("--keras", default=str(KERAS_MODEL), help="Keras model for row (b)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--clip", help=argparse.SUPPRESS)
    ap.add_argument("--launch", type=float, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        sys.path.insert(0, str(REPO))
        print(json.dumps(child(a.child, a.clip, a.model, a.keras, a.launch)))
        return

    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "tests"))
    from clips import make_clip

    from edge_fer_models import DEFAULT_MODEL

    model = a.model or str(DEFAULT_MODEL)
    frames = a.frames or (90 if a.quick else 300)
    fps = 30.0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = make_clip(work / "clip.mp4", SHARED / "images", frames=frames, fps=fps)
        print(f"clip: 640x480, {frames} frames at {fps:g} FPS, 3 faces drifting < 2 px/frame "
              f"(one leaves at 60 %); model {model}; load average {os.getloadavg()[0]:.2f} "
              f"on {os.cpu_count()} CPUs", flush=True)
        rows = []
        dec = run_child("decode", clip.path, model, a.keras)
        rows.append({"case": "(a) decode only", "fps": dec["frames"] / dec["seconds"], "p50": None,
                     "p95": None, "dropped": "-", "rss": dec["rss_mb"], "first": dec["first_result_s"]})
        try:
            import importlib.util

            if importlib.util.find_spec("tensorflow") is None:
                raise RuntimeError("TensorFlow is not installed (pip install '.[convert]')")
            if not Path(a.keras).exists():
                raise RuntimeError(f"{a.keras} is absent")
            rows.append(_serial_row("(b) serial Haar + Keras", run_child("keras", clip.path, model, a.keras), fps))
        except RuntimeError as exc:
            print(f"(b) skipped: {exc}")
        rows.append(_serial_row("(c) serial Haar + INT8", run_child("int8", clip.path, model, a.keras), fps))
        offline = run_pipeline(clip.path, model, realtime=False, workdir=work)
        live = run_pipeline(clip.path, model, realtime=True, workdir=work)
        rows.append({"case": "(d) edge-fer run", "fps": offline["fps_mean"], "p50": live["latency_p50_ms"],
                     "p95": live["latency_p95_ms"],
                     "dropped": f"{live['frames_dropped']}/{live['frames_captured']}",
                     "rss": max(offline["rss_mb"], live["rss_mb"]), "first": live["launch_to_first_s"]})

    base = {r["case"][:3]: r["fps"] for r in rows}

    def ratio(row: dict, key: str) -> str:
        return f"{row['fps'] / base[key]:.1f}" if key in base else "-"

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    head = (f"{'case':26s} {'frames/s':>9s} {'x (b)':>7s} {'x (c)':>7s} {'p50 ms':>7s} {'p95 ms':>7s} "
            f"{'dropped@30':>12s} {'RSS MiB':>7s} {'first s':>8s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['case']:26s} {r['fps']:9.1f} {ratio(r, '(b)'):>7s} {ratio(r, '(c)'):>7s} {num(r['p50']):>7s} "
              f"{num(r['p95']):>7s} {r['dropped']:>12s} {r['rss']:7.0f} {num(r['first']):>8s}")
    print(f"(d) detail: detect p50 {offline['detect_p50_ms']} ms, classify p50 {offline['classify_p50_ms']} ms; "
          f"at 30 FPS: first result {live['first_result_s']:.2f} s after start "
          f"({live['launch_to_first_s']:.2f} s after launch), first face {live['first_face_s']:.2f} s "
          f"({live['launch_to_first_face_s']:.2f} s after launch), dropped by queue {live['dropped_by_queue']}")
    print("latency: (d) capture-to-result measured with --realtime at 30 FPS; (b)/(c) per-frame processing "
          "time, and dropped estimated from throughput (a serial loop misses frames while busy)")
    print(TARGETS)


if __name__ == "__main__":
    main()
