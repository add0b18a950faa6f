"""`run --results FILE` and `stream(results=...)`: every processed frame's faces to JSON lines or
CSV, checked frame by frame on a real clip; bad paths and a really full disk."""

from __future__ import annotations

import csv
import json
import os

import pytest

import edge_fer
from conftest import assert_one_line_error, run_cli, small_disk
from edge_fer.errors import InputError, UsageError
from edge_fer.pipeline.tracking import iou_matrix
from edge_fer.sinks.results import CSV_COLUMNS, TRACK_COLUMNS

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def iou(a, b) -> float:
    return float(iou_matrix([a], [b])[0, 0])


def csv_frames(path) -> tuple[list[str], dict[int, list[dict]]]:
    """The header and the rows grouped by frame (in file order)."""
    text = path.read_text()
    assert text.endswith("\n")
    rows = list(csv.DictReader(text.splitlines()))
    frames: dict[int, list[dict]] = {}
    for r in rows:
        frames.setdefault(int(r["frame"]), []).append(r)
    return text.splitlines()[0].split(","), frames


def test_run_writes_every_frame_to_csv_matching_the_ground_truth(clip, default_model, tmp_path):
    out = tmp_path / "faces.csv"
    r = run_cli("run", "--headless", "--source", clip.path, "--model", default_model,
                "--results", out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{clip.frames} frames processed" in r.stdout
    header, frames = csv_frames(out)
    assert header == [*CSV_COLUMNS, *LABELS, *TRACK_COLUMNS]
    # Lossless: one frame entry per frame of the file, in order, none twice.
    assert list(frames) == list(range(clip.frames))
    matched = total = 0
    tracks_per_truth: dict[int, set] = {}
    last_t = -1.0
    for i, rows in frames.items():
        truth = [b for b in clip.boxes[i] if b is not None]
        n = int(rows[0]["faces"])
        assert all(int(r["faces"]) == n for r in rows)
        t = float(rows[0]["t"])
        assert t >= last_t and all(r["t"] == rows[0]["t"] and r["time"] == rows[0]["time"]
                                   for r in rows)
        last_t = t
        if n == 0:
            assert len(rows) == 1 and rows[0]["track_id"] == "" and rows[0]["label"] == ""
            continue
        assert len(rows) == n
        for r in rows:
            box = tuple(int(r[k]) for k in "xywh")
            scores = {k: float(r[k]) for k in LABELS}
            assert sum(scores.values()) == pytest.approx(1.0, abs=0.01)
            assert r["label"] == max(scores, key=scores.get)
            assert float(r["score"]) == pytest.approx(scores[r["label"]], abs=1e-6)
            assert r["raw_label"] in LABELS
            total += 1
            best = max(range(len(truth)), key=lambda k: iou(box, truth[k]), default=None)
            if best is not None and iou(box, truth[best]) > 0.4:
                matched += 1
                tracks_per_truth.setdefault(best, set()).add(int(r["track_id"]))
    # The faces written are the faces in the clip, each followed by one track.
    assert total >= 0.8 * sum(len([b for b in row if b]) for row in clip.boxes)
    assert matched >= 0.95 * total
    assert len(tracks_per_truth) == 3 and all(len(t) == 1 for t in tracks_per_truth.values())
    # The wall-clock time is the run's: within the last minutes.
    first = frames[0][0]
    assert abs(float(first["time"]) - os.path.getmtime(out)) < 120


def test_stream_writes_json_lines_identical_to_the_results_it_yields(clip, default_model, tmp_path):
    out = tmp_path / "faces.jsonl"
    seen = []
    with edge_fer.stream(clip.path, model=default_model, results=str(out)) as results:
        for result in results:
            seen.append((result.index, [(f.track_id, tuple(int(v) for v in f.box), f.label,
                                         f.score, f.raw_label, dict(f.scores))
                                        for f in result.faces]))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(seen) == clip.frames
    for rec, (index, faces) in zip(records, seen):
        assert set(rec) == {"frame", "t", "time", "faces"}
        assert rec["frame"] == index
        assert len(rec["faces"]) == len(faces)
        for got, (track, box, label, score, raw, scores) in zip(rec["faces"], faces):
            assert got["track_id"] == track and tuple(got["box"]) == box
            assert got["label"] == label and got["raw_label"] == raw
            assert got["score"] == pytest.approx(score, abs=1e-6)
            assert got["scores"] == pytest.approx(scores, abs=1e-6)
    assert any(r["faces"] for r in records)
    ts = [r["t"] for r in records]
    assert ts == sorted(ts) and 0 <= ts[0] < 30


def test_bad_results_paths_are_refused_in_one_line(clip, default_model, tmp_path):
    def run(path, *extra):
        return run_cli("run", "--headless", "--source", clip.path, "--model", default_model,
                       "--max-frames", 2, "--results", path, *extra)

    assert_one_line_error(run(tmp_path / "faces.txt"), "use a .jsonl (JSON lines) or .csv", code=2)
    assert_one_line_error(run(tmp_path / "missing" / "faces.csv"), "does not exist", code=3)
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    assert_one_line_error(run(folder), "is a folder", code=3)
    existing = tmp_path / "old.csv"
    existing.write_text("keep me\n")
    assert_one_line_error(run(existing), "already exists", "--overwrite", code=3)
    assert existing.read_text() == "keep me\n"
    r = run(existing, "--overwrite")
    assert r.returncode == 0, r.stderr[-2000:]
    assert existing.read_text().startswith("frame,t,time,")
    # Not writable: /proc refuses new files even to root.
    assert_one_line_error(run("/proc/edge-fer-results.csv"), "cannot write the results file", code=3)


def test_the_api_refuses_bad_results_paths_before_starting(clip, default_model, tmp_path):
    with pytest.raises(UsageError, match="use a .jsonl"):
        edge_fer.stream(clip.path, model=default_model, results=str(tmp_path / "x.json"))
    with pytest.raises(InputError, match="does not exist"):
        edge_fer.stream(clip.path, model=default_model, results=str(tmp_path / "no" / "x.csv"))


def _whole_csv_frames(path) -> dict[int, list[dict]]:
    _, frames = csv_frames(path)
    for rows in frames.values():
        # A frame's rows are written together: never some of its faces without the others.
        assert len(rows) == max(1, int(rows[0]["faces"]))
    return frames


def test_a_file_size_limit_cuts_the_results_back_to_whole_frames(clip, default_model, tmp_path):
    out = tmp_path / "faces.csv"
    r = run_cli("run", "--headless", "--source", clip.path, "--model", default_model,
                "--results", out, preexec_fn=lambda: small_disk(6000))
    line = assert_one_line_error(r, f"the results file {out} stopped after", "frames",
                                 "File too large", code=7)
    assert "not everything asked for was written" in line
    assert f"NOT WRITTEN: the results file {out}" in r.stdout
    assert f"{clip.frames} frames processed" in r.stdout
    frames = _whole_csv_frames(out)
    assert 3 < len(frames) < clip.frames and list(frames) == list(range(len(frames)))
    assert f"stopped after {len(frames)} frames" in line


def test_a_really_full_disk_stops_the_results_whole_and_says_so(clip, default_model, small_tmpfs):
    disk = small_tmpfs(256 * 1024)
    st = os.statvfs(disk)
    (disk / "filler").write_bytes(bytes(max(0, st.f_bavail * st.f_frsize - 8192)))
    out = disk / "faces.jsonl"
    r = run_cli("run", "--headless", "--source", clip.path, "--model", default_model,
                "--results", out)
    assert_one_line_error(r, "the results file", "No space left on device", code=7)
    assert "NOT WRITTEN: the results file" in r.stdout
    text = out.read_text()
    assert text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]
    assert records and [x["frame"] for x in records] == list(range(len(records)))
