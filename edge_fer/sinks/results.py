"""Every processed frame's faces to a file (`run --results FILE`): JSON lines or CSV.

One record per processed frame, so a video read offline (where no frame is dropped) gives a
row for each of its frames. Written through the JSON log's `LineWriter`: off-thread, a frame's
rows reach the file whole or not at all, and a full disk stops the file with a message the
run's summary repeats (the exit code is then 7).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

from edge_fer.errors import InputError, UsageError
from edge_fer.results import FrameResult, RunSummary, StatsSnapshot
from edge_fer.sinks.base import Sink
from edge_fer.sinks.jsonlines import LineWriter

#: The formats, chosen by the file's suffix.
RESULTS_FORMATS = (".jsonl", ".csv")

#: The CSV columns before one column per label (that label's smoothed score).
CSV_COLUMNS = ("frame", "t", "time", "faces", "track_id", "x", "y", "w", "h", "label", "score",
               "raw_label")

#: The CSV columns after the label columns: the track's first frame, how long the face has
#: been in view, and frames since a detection last found it (0: this frame's own detection).
TRACK_COLUMNS = ("first_frame", "dwell_s", "since_detection")

#: Places the scores are written to (`TrackedFace.to_dict`), in both formats.
_DIGITS = 6


class ResultsSink(Sink):
    """Writes each processed frame's faces to `path` (`.jsonl` or `.csv`).

    JSON lines: `{"frame", "t", "time", "faces": [{"track_id", "box": [x, y, w, h], "label",
    "score", "raw_label", "scores": {label: p}, "first_frame", "dwell_s",
    "since_detection"}]}` per frame. CSV: a header row, then one row per face, with
    `CSV_COLUMNS`, one column per label in `labels` holding its smoothed score, then
    `TRACK_COLUMNS`; a frame without faces gets one row with the face columns empty. Distinct
    `track_id`s are the people seen (a person who leaves and comes back is two), `dwell_s` on
    a track's last row how long they stayed. `frame` is the
    capture sequence number (gaps are dropped frames), `t` the seconds from the run's start
    (`started()`, monotonic) to the frame's capture, `time` the Unix time of the capture.

    An existing file is refused unless `overwrite`; strftime fields in `path` give each run a
    file of its own. The file is not rotated: it is the complete record of the run.
    """

    def __init__(self, path: str | os.PathLike, labels: Sequence[str], *,
                 started: Callable[[], float | None] | None = None, overwrite: bool = False):
        self.path = path = Path(path)
        self.format = path.suffix.lower()
        if self.format not in RESULTS_FORMATS:
            raise UsageError(f"--results {path}: use a .jsonl (JSON lines) or .csv file")
        if path.is_dir():
            raise InputError(f"--results {path} is a folder: give a file name in it")
        if not path.parent.is_dir():
            raise InputError(f"cannot write the results file {path}: folder {path.parent} "
                             "does not exist")
        if path.exists() and not overwrite:
            raise InputError(f"--results {path} already exists: choose another name, or add "
                             "--overwrite to replace it")
        self.labels = list(labels)
        self._started = started or (lambda: None)
        self._origin: float | None = None
        header = (self._csv_rows([[*CSV_COLUMNS, *self.labels, *TRACK_COLUMNS]])
                  if self.format == ".csv" else None)
        self._writer = LineWriter(path, "the results file", truncate=True, unit="frames",
                                  header=header)
        self.frames = 0
        """Frames handed to the writer."""

    @staticmethod
    def _csv_rows(rows: list[list]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        return buf.getvalue()

    def _times(self, result: FrameResult) -> tuple[float, float]:
        if self._origin is None:
            self._origin = self._started() or result.captured_at
        now_mono, now_wall = time.monotonic(), time.time()
        return (round(result.captured_at - self._origin, 4),
                round(now_wall - (now_mono - result.captured_at), 3))

    def record(self, result: FrameResult) -> str:
        """The text written for `result`: one JSON line, or its CSV rows."""
        t, wall = self._times(result)
        if self.format == ".jsonl":
            return json.dumps({"frame": result.index, "t": t, "time": wall,
                               "faces": [f.to_dict(_DIGITS) for f in result.faces]})
        head = [result.index, t, wall, len(result.faces)]
        if not result.faces:
            return self._csv_rows([head + [""] * (len(CSV_COLUMNS) - len(head) + len(self.labels)
                                                  + len(TRACK_COLUMNS))])
        rows = []
        for face in result.faces:
            f = face.to_dict(_DIGITS)  # the JSON line's fields, rounded as there
            rows.append(head + [f["track_id"], *f["box"], f["label"], f["score"], f["raw_label"]]
                        + [f["scores"].get(k, "") for k in self.labels]
                        + [f["first_frame"], f["dwell_s"], f["since_detection"]])
        return self._csv_rows(rows)

    def on_result(self, result: FrameResult, stats: StatsSnapshot) -> None:
        self._writer.put(self.record(result))
        self.frames += 1

    def on_summary(self, summary: RunSummary) -> None:
        """Write what is queued; OutputError when frames were lost."""
        self._writer.finish()

    def close(self) -> None:
        self._writer.close()


__all__ = ["CSV_COLUMNS", "RESULTS_FORMATS", "TRACK_COLUMNS", "ResultsSink"]
