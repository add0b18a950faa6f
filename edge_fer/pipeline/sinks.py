"""Where results go: a periodic log line, a rotated JSON-lines log, a window, a video file.

A sink is any object with `handle(result: FrameResult, stats: dict) -> None`. It may also have
`handle_event(event: TrackEvent)` (faces appearing, changing label, leaving: never dropped),
`finish(summary: dict)` (once, at the end of the run) and `close()`. All of them are called on
the sink thread only. The stats dict is a snapshot shared by all sinks (refreshed ten times a
second): read it, do not change it. A sink must return quickly: while it works, newer results replace older
ones in its queue (the kiosk web server, for one, only stores the latest result). A sink whose
output fails (a full disk) raises OutputError: the run goes on without it, and the summary and
the exit code say what was not written.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from edge_fer.errors import InputError, OutputError, UsageError
from edge_fer.files import LineLog
from edge_fer.pipeline.queues import LatestQueue
from edge_fer.pipeline.stage import Stage
from edge_fer.predict import draw_faces, draw_overlay
from edge_fer.results import FrameResult, TrackEvent

log = logging.getLogger(__name__)

#: Seconds between the stats snapshots handed to sinks.
STATS_REFRESH_S = 0.1


class Sink(Protocol):
    def handle(self, result: FrameResult, stats: dict) -> None: ...


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}ms"


def format_stats(stats: dict) -> str:
    """The human log line."""
    return (f"fps={stats['processed_fps']:.1f} dropped={stats['dropped']} "
            f"detect p50={_ms(stats['detect_p50_ms'])} classify p50={_ms(stats['classify_p50_ms'])} "
            f"latency p95={_ms(stats['latency_p95_ms'])} faces={stats['faces']}")


def format_summary(summary: dict) -> str:
    """The one-line summary printed at the end of a run."""
    s = summary
    first = "-" if s["first_result_s"] is None else f"{s['first_result_s']:.2f}s"
    return (f"{s['frames_processed']} frames processed of {s['frames_captured']} captured in "
            f"{s['uptime_s']:.1f}s ({s['fps_mean']:.1f} fps), dropped={s['dropped']}, "
            f"latency p50={_ms(s['latency_p50_ms'])} p95={_ms(s['latency_p95_ms'])}, "
            f"first result {first}, {s['tracks_started']} face track(s), stopped: {s['stop_reason']}"
            + "".join(f"; NOT WRITTEN: {f}" for f in s.get("outputs_failed") or ()))


class _Every:
    """True once per `interval` seconds."""

    def __init__(self, interval: float, clock=time.monotonic):
        self.interval, self.clock = interval, clock
        self._next = clock() + interval

    def __call__(self) -> bool:
        now = self.clock()
        if now < self._next:
            return False
        self._next = now + self.interval
        return True


class LogSink:
    """A human-readable stats line every `interval` seconds, through `emit` (default: logging)."""

    def __init__(self, interval: float = 5.0, emit: Callable[[str], None] | None = None):
        self._due = _Every(interval)
        self._emit = emit or log.info

    def handle(self, result: FrameResult, stats: dict) -> None:
        if self._due():
            self._emit(format_stats(stats))


class JsonLinesSink:
    """The run's log as JSON lines: a `start` record, `stats` every `interval` seconds, face
    `event`s and a `summary`. An event holds the time, track id, frame number, box, label and
    scores: never pixels.

    Size-capped: the file moves to FILE.1 (FILE.1 to FILE.2, ...) when the next line would take
    it past `max_bytes`, and `backups` old files are kept, so the log never takes more than about
    max_bytes * (backups + 1). Lines are written whole (see `LineLog`) by a thread of their own,
    so a slow SD card never holds up the sinks, and a full disk never leaves half a line. The
    file is appended to: the runs of a long-lived kiosk follow each other, each opening with its
    `start` record. Once a write fails, the next call raises OutputError and nothing more is
    written but the summary, which `finish` still tries.
    """

    def __init__(self, path: str | os.PathLike, interval: float = 5.0, header: dict | None = None,
                 *, max_bytes: int = 10 * 1024 * 1024, backups: int = 3):
        self.path = Path(path)
        try:
            self._file = LineLog(self.path, max_bytes, backups)
        except OSError as exc:
            raise InputError(f"cannot write the JSON log {self.path}: {exc.strerror or exc}") from None
        self.error: OSError | None = None
        """Why writing stopped (set on the writer thread)."""
        self.lines_written = 0
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._drain, name="edge-fer-json-log", daemon=True)
        self._thread.start()
        self._closed = False
        self._due = _Every(interval)
        self._write("start", header or {})

    def _drain(self) -> None:
        while (line := self._lines.get()) is not None:
            if self.error is None:
                self._put(line)

    def _put(self, line: str) -> None:
        try:
            self._file.write(line)
            self.lines_written += 1
        except OSError as exc:
            self.error = exc

    def _failure(self) -> OutputError:
        e = self.error
        return OutputError(f"the JSON log {self.path} stopped after {self.lines_written} lines: "
                           f"{e.strerror or e}")

    @staticmethod
    def _line(kind: str, fields: dict, at: float | None) -> str:
        return json.dumps({"type": kind, "time": round(time.time() if at is None else at, 3), **fields})

    def _write(self, kind: str, fields: dict, at: float | None = None) -> None:
        if self.error is not None:
            raise self._failure()
        self._lines.put(self._line(kind, fields, at))

    def handle(self, result: FrameResult, stats: dict) -> None:
        if self._due():
            self._write("stats", stats)

    def handle_event(self, event: TrackEvent) -> None:
        # Events carry monotonic times; the log says when they happened on the wall clock.
        self._write("event", event.to_dict(), at=time.time() - (time.monotonic() - event.at))

    def _stop_thread(self) -> None:
        if self._thread.is_alive():
            self._lines.put(None)
            self._thread.join()

    def finish(self, summary: dict) -> None:
        """Write what is queued, then the summary, even after a failure (space may have come
        back, and the summary says what was lost); OutputError if it cannot."""
        self._stop_thread()
        failed_before = self.error
        self.error = None
        self._put(self._line("summary", summary, None))
        self.error = self.error or failed_before
        if self.error is not None:
            raise self._failure()

    def close(self) -> None:
        """Write what is queued and close the file; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop_thread()
        self._file.close()


def overlay_text(result: FrameResult, stats: dict) -> str:
    l95 = stats.get("latency_p95_ms")
    return (f"{stats['processed_fps']:.1f} fps  latency p95 {'-' if l95 is None else f'{l95:.0f}'} ms"
            f"  faces {len(result.faces)}")


def annotate(result: FrameResult, stats: dict, out: np.ndarray | None = None) -> np.ndarray:
    """A copy of the result's frame (into `out` when it fits) with boxes, labels and overlay."""
    frame = result.frame
    if out is None or out.shape != frame.shape:
        out = np.empty_like(frame)
    np.copyto(out, frame)
    draw_faces(out, result.faces)
    return draw_overlay(out, overlay_text(result, stats))


def gui_problem() -> str | None:
    """Why a window cannot be shown here, or None when it can."""
    import cv2

    framework = cv2.currentUIFramework() if hasattr(cv2, "currentUIFramework") else "unknown"
    if not framework:
        return ("this OpenCV has no GUI (opencv-python-headless): for --display install "
                "opencv-python in its place, or use Raspberry Pi OS's python3-opencv")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no graphical session (DISPLAY is not set): run from the desktop, or use --headless"
    return None


class DisplaySink:
    """Shows the annotated stream in a window; `q` or Esc (or closing it) calls `on_quit`."""

    def __init__(self, on_quit: Callable[[], None], title: str = "edge-fer"):
        problem = gui_problem()
        if problem:
            raise UsageError(f"--display: {problem}")
        self.title = title
        self._on_quit = on_quit
        self._buf: np.ndarray | None = None

    def handle(self, result: FrameResult, stats: dict) -> None:
        import cv2

        self._buf = annotate(result, stats, self._buf)
        cv2.imshow(self.title, self._buf)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27) or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self._on_quit()

    def close(self) -> None:
        import cv2

        cv2.destroyAllWindows()


#: Container suffix -> codec that OpenCV's FFmpeg writer has everywhere. Only containers that
#: stay readable when the recording is cut short (a kill, a power cut): Matroska is written as
#: it goes, and OpenCV's AVI writer puts every MJPEG frame on disk as it comes. An .mp4 holds its
#: index at the end and is unreadable without it.
RECORD_CODECS = {".mkv": "mp4v", ".avi": "MJPG"}
#: Bytes a recording leaves free on its disk: room to close the file cleanly and for the JSON
#: log's last lines and summary.
RECORD_RESERVE_BYTES = 1024 * 1024


class RecorderSink:
    """Writes the annotated stream to a video file at the source's frame rate.

    An existing file is never replaced unless `overwrite`. Before each frame the free space of
    the file's disk is checked: below `reserve` bytes (or a few seconds of video, if more) the
    recording is closed cleanly and OutputError says how many frames it holds, instead of
    OpenCV failing frame after frame with a warning each and a file that will not open.
    """

    def __init__(self, path: str | os.PathLike, fps: float | None = None, *, overwrite: bool = False,
                 reserve: int = RECORD_RESERVE_BYTES):
        self.path = Path(path)
        codec = RECORD_CODECS.get(self.path.suffix.lower())
        if codec is None:
            raise UsageError(f"--record {self.path}: use .mkv (MPEG-4 in Matroska) or .avi (MJPEG), "
                             f"which stay readable if the recording is cut short; an .mp4 does "
                             f"not (convert afterwards: ffmpeg -i rec.mkv -c copy rec.mp4)")
        if not self.path.parent.is_dir():
            raise InputError(f"cannot record to {self.path}: folder {self.path.parent} does not exist")
        if self.path.exists() and not overwrite:
            raise InputError(f"--record {self.path} already exists: choose another name, or add "
                             f"--overwrite to replace it")
        self._codec = codec
        self.fps = fps
        self.reserve = reserve
        self._writer = None
        self._size: tuple[int, int] | None = None
        self._buf: np.ndarray | None = None
        self.frames = 0
        """Frames written to the file."""

    def _open(self, size: tuple[int, int], fps: float) -> None:
        import cv2

        writer = cv2.VideoWriter(os.fspath(self.path), cv2.VideoWriter_fourcc(*self._codec), fps, size)
        if not writer.isOpened():
            raise InputError(f"cannot write the video {self.path} ({self._codec} at {size[0]}x{size[1]})")
        self._writer, self._size = writer, size

    def _check_space(self) -> None:
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return  # not a reason to stop recording; a failing disk shows in the writes
        free = st.f_bavail * st.f_frsize
        written = self.path.stat().st_size if self.frames and self.path.exists() else 0
        # A few seconds of this recording at its rate so far, or the fixed reserve.
        need = max(self.reserve, 3 * 30 * written // max(self.frames, 1))
        if free < need:
            self.close()
            raise OutputError(f"recording {self.path} stopped after {self.frames} frames: the "
                              f"disk is full ({free // 1024} KiB left)")

    def handle(self, result: FrameResult, stats: dict) -> None:
        import cv2

        self._check_space()
        self._buf = annotate(result, stats, self._buf)
        size = (self._buf.shape[1], self._buf.shape[0])
        if self._writer is None:
            self._open(size, self.fps or stats.get("source_fps") or 30.0)
        frame = self._buf
        if size != self._size:
            # A video file has one frame size: fit frames from a source that changed size.
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class SinkStage(Stage):
    """Calls every sink with each result and event, on one thread; ends the run's output."""

    name = "sinks"

    def __init__(self, sinks: list, inbox: LatestQueue[FrameResult], upstream: threading.Event,
                 events: queue.Queue, stats_fn: Callable[[], dict],
                 summary_fn: Callable[[], dict], stop: threading.Event,
                 on_error: Callable[[str, BaseException], None]):
        super().__init__(stop, on_error)
        self.sinks = sinks
        self.inbox, self.upstream, self.events = inbox, upstream, events
        self.stats_fn, self.summary_fn = stats_fn, summary_fn
        self._active = list(sinks)
        self.failures: list[str] = []
        """What an output could not write (OutputError messages), in order: the run goes on
        without that sink, and the summary and the exit code say so."""

    def _failed_output(self, sink, exc: OutputError) -> None:
        if sink not in self._active:
            # Already reported: its `finish` (a last try at the summary) failed the same way.
            log.debug("%s (again)", exc)
            return
        log.warning("%s; the run goes on without it", exc)
        self.failures.append(str(exc))
        self._active.remove(sink)

    def _drain_events(self) -> None:
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            for sink in list(self._active):
                handler = getattr(sink, "handle_event", None)
                if handler is not None:
                    try:
                        handler(event)
                    except OutputError as exc:
                        self._failed_output(sink, exc)

    def run_loop(self) -> None:
        # A snapshot costs about a millisecond (percentiles over the windows): taken per frame
        # it would eat a third of a core at the offline rate, so it is refreshed ten times a
        # second, which is as fresh as any sink shows it.
        refresh = _Every(STATS_REFRESH_S)
        stats = self.stats_fn()
        for result in self.items(self.inbox, self.upstream):
            self._drain_events()
            if refresh():
                stats = self.stats_fn()
            for sink in list(self._active):
                try:
                    sink.handle(result, stats)
                except OutputError as exc:
                    self._failed_output(sink, exc)
        self._drain_events()

    def close(self) -> None:
        # Every sink gets the summary and is closed, even when one of them fails.
        summary = self.summary_fn()
        failure = None
        for sink in self.sinks:
            for method, args in (("finish", (summary,)), ("close", ())):
                fn = getattr(sink, method, None)
                if fn is None:
                    continue
                try:
                    fn(*args)
                except OutputError as exc:
                    self._failed_output(sink, exc)
                except Exception as exc:  # noqa: BLE001 - the first failure is raised below
                    log.debug("%s.%s failed", type(sink).__name__, method, exc_info=True)
                    failure = failure or exc
        if failure is not None:
            raise failure
