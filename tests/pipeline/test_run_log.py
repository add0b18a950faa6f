"""The run's JSON-lines log: start, stats, face events and summary; never pixels; size-capped."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edge_fer.errors import InputError
from edge_fer.sinks.jsonlines import JsonLinesSink
from edge_fer.results import FrameResult, TrackedFace, TrackEvent
from kiosk_helpers import stats_for, summary_for

#: The fields of an event record, and nothing else.
EVENT_FIELDS = {"type", "time", "event", "track", "frame", "label", "score", "previous", "box",
                "scores", "first_frame", "last_frame", "dwell_s", "labels"}
SCORES = {"happy": 0.7, "sad": 0.2, "neutral": 0.1}


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def event(kind, track, at, label="happy", previous=None):
    return TrackEvent(kind, track, 7, at, label, SCORES[label], previous, (10, 20, 30, 30), SCORES)


def test_records_are_start_stats_events_summary_and_events_hold_no_pixels(tmp_path):
    path = tmp_path / "run.jsonl"
    log = JsonLinesSink(path, interval=0.01, header={"source": "test"})
    now = time.monotonic()
    # A full-HD frame passes through the sink: none of it may reach the file.
    frame = np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    face = TrackedFace(1, (10, 20, 30, 30), "happy", 0.7, SCORES, "happy")
    log.on_event(event("appear", 1, now - 2.0))
    time.sleep(0.02)
    log.on_result(FrameResult(7, now, now + 0.01, frame, [face]), stats_for(8, 1))
    log.on_event(event("label", 1, now, "sad", previous="happy"))
    log.on_event(event("leave", 1, now, "sad"))
    log.on_summary(summary_for(8))
    log.close()
    log.close()  # the run's cleanup closes it again
    got = records(path)
    assert [r["type"] for r in got] == ["start", "event", "stats", "event", "event", "summary"]
    assert got[0]["source"] == "test" and got[2]["frames_processed"] == 8
    events = [r for r in got if r["type"] == "event"]
    assert [(e["event"], e["label"], e["previous"]) for e in events] == [
        ("appear", "happy", None), ("label", "sad", "happy"), ("leave", "sad", None)]
    for e in events:
        assert set(e) == EVENT_FIELDS
        assert e["track"] == 1 and e["box"] == [10, 20, 30, 30] and e["scores"] == SCORES
    # An event is stamped with when it happened, not when it was written.
    assert got[1]["time"] == pytest.approx(time.time() - 2.0, abs=0.5)
    assert path.stat().st_size < 4096


def test_lines_reach_the_file_while_the_run_goes_on(tmp_path):
    path = tmp_path / "run.jsonl"
    log = JsonLinesSink(path, header={})
    try:
        log.on_event(event("appear", 3, time.monotonic()))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and '"appear"' not in path.read_text():
            time.sleep(0.01)
        assert [r["type"] for r in records(path)] == ["start", "event"]
    finally:
        log.close()


def test_log_is_size_capped_and_rotated(tmp_path):
    path = tmp_path / "run.jsonl"
    log = JsonLinesSink(path, header={"source": "test"}, max_bytes=4096, backups=2)
    now = time.monotonic()
    for i in range(400):  # about 250 bytes a line, 100 KB in all
        log.on_event(event("appear", i, now))
    log.on_summary(summary_for(400))
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.jsonl", "run.jsonl.1", "run.jsonl.2"]
    for p in tmp_path.iterdir():
        assert 0 < p.stat().st_size <= 4096
        assert all(set(r) == EVENT_FIELDS for r in records(p) if r["type"] == "event")
    newest = records(path)
    assert newest[-1]["type"] == "summary"
    # The oldest lines went with the files beyond the two kept.
    kept = [r["track"] for p in (path.with_name("run.jsonl.2"), path.with_name("run.jsonl.1"), path)
            for r in records(p) if r["type"] == "event"]
    assert kept == list(range(400 - len(kept), 400)) and len(kept) < 100


def test_unwritable_log_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot write the JSON log .*missing"):
        JsonLinesSink(tmp_path / "missing" / "run.jsonl")
