"""Comparisons of the arm64 lane (`ci/arm64.sh`): aarch64 answers against x86 ones.

Each `compare_*` function returns the list of differences, one sentence each; an empty list
means the answers agree within the stated tolerance. Nothing to compare is a difference too: a
lane that compared zero faces has not shown anything. Standard library only, so it runs with
any Python on the host (the lane calls it with the host's python3).

    python3 ci/arm64_compare.py predict X86.jsonl ARM.jsonl
    python3 ci/arm64_compare.py evaluate X86.json ARM.json
    python3 ci/arm64_compare.py run X86.jsonl ARM.jsonl
    python3 ci/arm64_compare.py live ARM.jsonl --min-frames N --min-faces N
    python3 ci/arm64_compare.py live-results X86.jsonl ARM.jsonl
    python3 ci/arm64_compare.py budget BUDGET.json --core a53 --detectors "haar ..." --models "lite.tflite ..."

prints `OK: ...` and exits 0, or prints every difference and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: One step of the int8 output: the shipped models' softmax is quantized to 1/256.
SCORE_TOL = 1.0 / 256
#: Accuracy may differ by 0.1 point (a face whose top two int8 scores tie may go either way).
ACCURACY_TOL = 0.001
#: A box corner may move by this many pixels (resize rounding on NEON against SSE).
BOX_TOL = 2
#: Floating-point slack on top of the quantization step (JSON rounds scores to 4 decimals).
EPS = 1e-4
#: Live runs: a tracked box is the last detection's, which lands when the detector is done, so
#: aarch64's (emulated, seconds per detection) lags x86's by a few frames of a slowly drifting
#: face. Each aarch64 face must overlap the x86 face of the same frame by this much.
LIVE_MIN_IOU = 0.5
#: Live runs: the share of faces whose own classification (raw label) must agree; the crops
#: differ by that lag, which can flip a face whose top two scores are close.
LIVE_LABEL_AGREEMENT = 0.9
#: Live runs: frames both processed (after both found faces) below which nothing was shown.
LIVE_MIN_FRAMES = 5


def _scores_differ(a: dict, b: dict, tol: float) -> list[str]:
    if set(a) != set(b):
        return [f"labels differ: {sorted(a)} vs {sorted(b)}"]
    return [f"{k} {a[k]:.4f} vs {b[k]:.4f}" for k in sorted(a) if abs(a[k] - b[k]) > tol + EPS]


def _box_differs(a, b, tol: int) -> bool:
    return a is None or b is None or len(a) != len(b) or \
        any(abs(int(p) - int(q)) > tol for p, q in zip(a, b))


def compare_faces(where: str, x86: list[dict], arm: list[dict], score_tol: float = SCORE_TOL,
                  box_tol: int = BOX_TOL) -> list[str]:
    """Faces of one image (or event) in order: same count, boxes, labels, scores within tol."""
    if len(x86) != len(arm):
        return [f"{where}: {len(x86)} face(s) on x86, {len(arm)} on aarch64"]
    out = []
    for i, (a, b) in enumerate(zip(x86, arm)):
        if _box_differs(a.get("box"), b.get("box"), box_tol):
            out.append(f"{where} face {i}: box {a.get('box')} on x86, {b.get('box')} on aarch64")
        if a.get("label") != b.get("label"):
            out.append(f"{where} face {i}: label {a.get('label')} on x86, {b.get('label')} on aarch64")
        for d in _scores_differ(a.get("scores", {}), b.get("scores", {}), score_tol):
            out.append(f"{where} face {i}: score {d} (tolerance {score_tol:.4f})")
    return out


def compare_predict(x86: list[dict], arm: list[dict], score_tol: float = SCORE_TOL,
                    box_tol: int = BOX_TOL) -> list[str]:
    """`edge-fer predict --json` outputs (one object per image), matched by file name."""
    xa = {Path(r["path"]).name: r for r in x86}
    ar = {Path(r["path"]).name: r for r in arm}
    out = []
    if set(xa) != set(ar):
        out.append(f"images differ: {sorted(xa)} on x86, {sorted(ar)} on aarch64")
    if not xa or sum(len(r["faces"]) for r in xa.values()) == 0:
        out.append("nothing to compare: x86 found no face in any image")
    for name in sorted(set(xa) & set(ar)):
        out += compare_faces(name, xa[name]["faces"], ar[name]["faces"], score_tol, box_tol)
    return out


def compare_evaluate(x86: dict, arm: dict, accuracy_tol: float = ACCURACY_TOL) -> list[str]:
    """`edge-fer evaluate --json` outputs: same faces scored, accuracy within `accuracy_tol`."""
    out = []
    if x86.get("count") != arm.get("count"):
        out.append(f"scored {x86.get('count')} faces on x86, {arm.get('count')} on aarch64")
    if not x86.get("count"):
        out.append("nothing to compare: x86 scored no face")
    if x86.get("labels") != arm.get("labels"):
        out.append(f"labels differ: {x86.get('labels')} vs {arm.get('labels')}")
    da = abs(float(x86["accuracy"]) - float(arm["accuracy"]))
    if da > accuracy_tol + 1e-9:
        out.append(f"accuracy {100 * x86['accuracy']:.2f} % on x86, {100 * arm['accuracy']:.2f} % "
                   f"on aarch64: {100 * da:.2f} points apart (tolerance {100 * accuracy_tol:.1f})")
    return out


def read_events(lines: list[dict]) -> list[dict]:
    """The face events (appear, label, leave) of a `--log-json` file, in order."""
    return [r for r in lines if r.get("type") == "event"]


def compare_run(x86: list[dict], arm: list[dict], score_tol: float = SCORE_TOL,
                box_tol: int = BOX_TOL) -> list[str]:
    """Two `edge-fer run --log-json` logs of the same file read offline (lossless, so every
    frame is processed and detection runs on the same frames): the same face events on the
    same frames, same tracks, boxes and labels, smoothed scores within `score_tol`."""
    ex, ea = read_events(x86), read_events(arm)
    out = []
    if not ex:
        out.append("nothing to compare: no face event in the x86 run")
    if len(ex) != len(ea):
        out.append(f"{len(ex)} face events on x86, {len(ea)} on aarch64: "
                   f"x86 {[_event_key(e) for e in ex]}, aarch64 {[_event_key(e) for e in ea]}")
    for a, b in zip(ex, ea):
        if _event_key(a) != _event_key(b):
            out.append(f"event {_event_key(a)} on x86, {_event_key(b)} on aarch64")
            continue
        out += compare_faces(f"event {_event_key(a)}", [a], [b], score_tol, box_tol)
    for name, log in (("x86", x86), ("aarch64", arm)):
        summary = _summary(log)
        if summary is None:
            out.append(f"the {name} run wrote no summary")
        elif summary.get("error"):
            out.append(f"the {name} run failed: {summary['error']}")
    return out


def _event_key(e: dict) -> tuple:
    return e.get("event"), e.get("track"), e.get("frame")


def _summary(log: list[dict]) -> dict | None:
    s = [r for r in log if r.get("type") == "summary"]
    return s[-1] if s else None


def check_live(log: list[dict], min_frames: int, min_faces: int) -> list[str]:
    """A live run (the fake Pi camera): it ended without error, processed at least
    `min_frames` frames and saw at least `min_faces` distinct faces, each with a label."""
    out = []
    summary = _summary(log)
    if summary is None:
        return ["the run wrote no summary"]
    if summary.get("error"):
        out.append(f"the run failed: {summary['error']}")
    processed = int(summary.get("frames_processed") or 0)
    if processed < min_frames:
        out.append(f"processed {processed} frames, expected at least {min_frames}")
    appeared = [e for e in read_events(log) if e.get("event") == "appear"]
    labelled = {e["track"] for e in appeared if e.get("label")}
    if len(labelled) < min_faces:
        out.append(f"{len(labelled)} labelled face(s) appeared, expected at least {min_faces}")
    return out


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - iw * ih
    return iw * ih / union if union > 0 else 0.0


def compare_live(x86: list[dict], arm: list[dict], min_frames: int = LIVE_MIN_FRAMES,
                 min_iou: float = LIVE_MIN_IOU, agreement: float = LIVE_LABEL_AGREEMENT,
                 seen: dict | None = None) -> list[str]:
    """Two `edge-fer run --camera pi --results` files (a record per processed frame) of the same
    frames served by the fake picamera2 on x86 and aarch64. Live, frames are dropped and a
    detection lands when it is done, so the frames processed and the boxes' lag differ; compared
    on every frame both processed once both had found faces: the same number of faces, each
    aarch64 face overlapping one of x86's by `min_iou`, and the same raw label (the frame's own
    classification of the face) on at least `agreement` of them. `seen`, when given, gets the
    figures: frames and faces compared, the smallest overlap, the labels that agreed."""
    xf = {r["frame"]: r["faces"] for r in x86}
    af = {r["frame"]: r["faces"] for r in arm}
    first_x = min((f for f, faces in xf.items() if faces), default=None)
    first_a = min((f for f, faces in af.items() if faces), default=None)
    if first_x is None:
        return ["nothing to compare: the x86 live run found no face"]
    if first_a is None:
        return ["the aarch64 live run found no face"]
    common = sorted(f for f in set(xf) & set(af) if f >= max(first_x, first_a))
    out = []
    if len(common) < min_frames:
        out.append(f"{len(common)} frames processed by both runs after both found faces, "
                   f"expected at least {min_frames}")
    same = compared = 0
    lowest = 1.0
    for f in common:
        xs, ars = xf[f], af[f]
        if len(xs) != len(ars):
            out.append(f"frame {f}: {len(xs)} face(s) on x86, {len(ars)} on aarch64")
            continue
        for face in ars:
            best = max(xs, key=lambda x: _iou(x["box"], face["box"]))
            overlap = _iou(best["box"], face["box"])
            lowest = min(lowest, overlap)
            if overlap < min_iou:
                out.append(f"frame {f}: aarch64 face at {face['box']} overlaps x86's nearest "
                           f"{best['box']} by {overlap:.2f} (at least {min_iou})")
                continue
            compared += 1
            same += best["raw_label"] == face["raw_label"]
    if compared and same < agreement * compared:
        out.append(f"the same raw label on {same} of {compared} faces, expected at least "
                   f"{100 * agreement:.0f} %")
    if seen is not None:
        seen.update(frames=len(common), faces=compared, same_label=same, lowest_iou=lowest)
    return out


def _load_jsonl(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


#: The rows `benchmarks/pi_budget.py` counts per model (one interpreter thread unless said).
BUDGET_MODEL_ROWS = (", batch 1", ", batch 4", ", batch 1, tta", ", batch 4, tta", ", batch 3, 1 thread",
                     ", batch 3, 2 threads")


def check_budget(budget: dict, core: str, detectors: list[str], models: list[str]) -> list[str]:
    """`pi_budget.py --json` output: every stage counted on `core` (capture, each detector at
    `run`'s default, each model's rows, the pipeline) and an estimate per detector, model and
    face count."""
    out = []
    rows = {(r["stage"], r["what"]): r for r in budget.get("stages", [])}
    if core not in budget.get("assumptions", {}):
        out.append(f"no assumptions (IPC, clock) for {core}")
    for (stage, what), r in rows.items():
        if not r.get("instructions", {}).get(core, 0) > 0:
            out.append(f"{stage} '{what}': no instruction count on {core}")
    stages = {stage for stage, _ in rows}
    out += [f"no {s} stage" for s in ("capture", "detect", "classify", "pipeline") if s not in stages]
    for det in detectors:
        if not any(s == "detect" and w.startswith(f"{det},") and "run default" in w for s, w in rows):
            out.append(f"detector {det} not counted")
    for m in models:
        out += [f"{m}{suffix} not counted" for suffix in BUDGET_MODEL_ROWS if ("classify", m + suffix) not in rows]
    est = {(e["detector"], e["model"], e["faces"]) for e in budget.get("run_estimates", []) if e["core"] == core}
    out += [f"no estimate for {d}, {m}, {n} face(s)" for d in detectors for m in models for n in (1, 3)
            if (d, m, n) not in est]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    for name in ("predict", "evaluate", "run", "live-results"):
        s = sub.add_parser(name)
        s.add_argument("x86")
        s.add_argument("arm")
    s = sub.add_parser("live")
    s.add_argument("log")
    s.add_argument("--min-frames", type=int, required=True)
    s.add_argument("--min-faces", type=int, required=True)
    s = sub.add_parser("budget")
    s.add_argument("json")
    s.add_argument("--core", required=True)
    s.add_argument("--detectors", required=True, help="Space-separated detector names.")
    s.add_argument("--models", required=True, help="Space-separated model file names.")
    a = p.parse_args(argv)
    if a.what == "predict":
        x86, arm = _load_jsonl(a.x86), _load_jsonl(a.arm)
        diffs = compare_predict(x86, arm)
        ok = f"{len(x86)} images, {sum(len(r['faces']) for r in x86)} faces: same boxes and labels, scores within 1/256"
    elif a.what == "evaluate":
        x86, arm = json.loads(Path(a.x86).read_text()), json.loads(Path(a.arm).read_text())
        diffs = compare_evaluate(x86, arm)
        ok = (f"{x86['count']} faces: accuracy {100 * x86['accuracy']:.2f} % on x86, "
              f"{100 * arm['accuracy']:.2f} % on aarch64")
    elif a.what == "run":
        x86, arm = _load_jsonl(a.x86), _load_jsonl(a.arm)
        diffs = compare_run(x86, arm)
        ok = f"{len(read_events(x86))} face events identical (frames, tracks, boxes, labels; scores within 1/256)"
    elif a.what == "live-results":
        x86, arm = _load_jsonl(a.x86), _load_jsonl(a.arm)
        seen: dict = {}
        diffs = compare_live(x86, arm, seen=seen)
        ok = (f"{seen.get('faces')} faces on {seen.get('frames')} frames both processed "
              f"({len(arm)} on aarch64, {len(x86)} on x86): each overlapping x86's by IoU >= "
              f"{seen.get('lowest_iou', 0):.2f}, the same raw label on {seen.get('same_label')}")
    elif a.what == "budget":
        budget = json.loads(Path(a.json).read_text())
        diffs = check_budget(budget, a.core, a.detectors.split(), a.models.split())
        ok = (f"{len(budget['stages'])} stages counted on {a.core} and "
              f"{len(budget['run_estimates'])} run estimates")
    else:
        log = _load_jsonl(a.log)
        diffs = check_live(log, a.min_frames, a.min_faces)
        s = _summary(log) or {}
        ok = (f"{s.get('frames_processed')} frames processed, "
              f"{len({e['track'] for e in read_events(log) if e.get('event') == 'appear'})} faces appeared")
    for d in diffs:
        print(f"DIFFERENT: {d}")
    if not diffs:
        print(f"OK: {ok}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
