"""The event log: face events as JSON lines, size-capped and rotated, never pixels."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import numpy as np
import pytest

from edge_fer.errors import InputError
from edge_fer.eventlog import EVENT_FIELDS, EventLogOptions, EventLogSink
from edge_fer.results import FrameResult, TrackedFace
from edge_fer.server import ServerOptions, ServerSink
from kiosk_helpers import Feeder, load_frames, read_part, tracked

FRAME = np.zeros((120, 160, 3), np.uint8)


def face(track_id, label, box=(10, 20, 30, 30)):
    return TrackedFace(track_id, box, label, 0.8, {label: 0.8, "other": 0.2}, label)


def result(t, faces):
    return FrameResult(int(t * 10), t, t + 0.01, FRAME, faces)


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_events_hold_only_time_track_box_label_scores(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLogSink(EventLogOptions(str(path), heartbeat_s=1.0))
    t = time.monotonic()
    log.handle(result(t, [face(1, "happy")]), {})  # enter
    log.handle(result(t + 0.1, [face(1, "happy", (11, 20, 30, 30))]), {})  # within heartbeat: nothing
    log.handle(result(t + 0.2, [face(1, "sad"), face(2, "fear")]), {})  # change, enter
    log.handle(result(t + 1.3, [face(1, "sad")]), {})  # update (heartbeat), exit of 2
    log.handle(result(t + 1.4, []), {})  # exit of 1
    log.close()
    got = lines(path)
    assert [(e["event"], e["track_id"], e["label"]) for e in got] == [
        ("enter", 1, "happy"), ("change", 1, "sad"), ("enter", 2, "fear"),
        ("update", 1, "sad"), ("exit", 2, "fear"), ("exit", 1, "sad")]
    for e in got:
        assert tuple(e) == EVENT_FIELDS
        assert e["box"] == [10, 20, 30, 30] and e["scores"] == {e["label"]: 0.8, "other": 0.2}
        when = datetime.fromisoformat(e["time"])
        assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 60


def test_log_is_size_capped_and_rotated(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLogSink(EventLogOptions(str(path), max_bytes=4096, backups=2, heartbeat_s=0))
    t = time.monotonic()
    for i in range(400):  # every frame logs: ~100 bytes a line, ~40 KB in all
        log.handle(result(t + i * 0.01, [face(1, "happy"), face(2, "sad")]), {})
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    for name in files:
        p = tmp_path / name
        assert 0 < p.stat().st_size <= 4096
        assert all(tuple(e) == EVENT_FIELDS for e in lines(p))


def test_unwritable_log_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot open the event log .*create its folder"):
        EventLogSink(EventLogOptions(str(tmp_path / "missing" / "events.jsonl")))


def test_serving_and_logging_write_no_frames_to_disk(tmp_path, images_dir, monkeypatch):
    # Privacy by default: with the page watched and the event log on, the only file written
    # is the event log, and it holds no pixel data.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    frames = [(img, tracked(boxes)) for img, boxes in load_frames(images_dir)]
    log = EventLogSink(EventLogOptions(str(tmp_path / "events.jsonl"), heartbeat_s=0))
    with ServerSink(ServerOptions(port=0, max_stream_fps=0)) as server:

        class Both:
            def handle(self, r, s):
                server.handle(r, s)
                log.handle(r, s)

        import urllib.request

        with Feeder(Both(), frames, fps=30):
            r = urllib.request.urlopen(server.url + "stream.mjpg", timeout=5)
            for _ in range(5):
                read_part(r)
            r.close()
    log.close()
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["events.jsonl"]
    for e in lines(tmp_path / "events.jsonl"):
        assert tuple(e) == EVENT_FIELDS and len(e["box"]) == 4
