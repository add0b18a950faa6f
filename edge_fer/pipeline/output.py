"""The output stage: hands each result, event and the final summary to the sinks
(`edge_fer.sinks`), on one thread. A sink whose output fails (a full disk) raises OutputError:
the run goes on without it, and the summary and the exit code say what was not written."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

from edge_fer.errors import OutputError
from edge_fer.pipeline.queues import LatestQueue
from edge_fer.pipeline.stage import Stage
from edge_fer.results import FrameResult, RunSummary, StatsSnapshot
from edge_fer.sinks.base import Every, Sink

log = logging.getLogger(__name__)

#: Seconds between the stats snapshots handed to sinks.
STATS_REFRESH_S = 0.1


class SinkStage(Stage):
    """Calls every sink with each result and event, on one thread; ends the run's output."""

    name = "sinks"

    def __init__(self, sinks: list[Sink], inbox: LatestQueue[FrameResult], upstream: threading.Event,
                 events: queue.Queue, stats_fn: Callable[[], StatsSnapshot],
                 summary_fn: Callable[[], RunSummary], stop: threading.Event,
                 on_error: Callable[[str, BaseException], None]):
        super().__init__(stop, on_error)
        self.sinks = sinks
        self.inbox, self.upstream, self.events = inbox, upstream, events
        self.stats_fn, self.summary_fn = stats_fn, summary_fn
        self._active = list(sinks)
        self.failures: list[str] = []
        """What an output could not write (OutputError messages), in order: the run goes on
        without that sink, and the summary and the exit code say so."""

    def _failed_output(self, sink: Sink, exc: OutputError) -> None:
        if sink not in self._active:
            # Already reported: its `on_summary` (a last try at the summary) failed the same way.
            log.debug("%s (again)", exc)
            return
        log.warning("%s; the run goes on without it", exc)
        self.failures.append(str(exc))
        self._active.remove(sink)

    def _call(self, sink: Sink, method, *args) -> None:
        try:
            method(*args)
        except OutputError as exc:
            self._failed_output(sink, exc)

    def _drain_events(self) -> None:
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            for sink in list(self._active):
                self._call(sink, sink.on_event, event)

    def run_loop(self) -> None:
        # A snapshot costs about a millisecond (percentiles over the windows): taken per frame
        # it would eat a third of a core at the offline rate, so it is refreshed ten times a
        # second, which is as fresh as any sink shows it.
        refresh = Every(STATS_REFRESH_S)
        stats = self.stats_fn()
        for result in self.items(self.inbox, self.upstream):
            self._drain_events()
            if refresh():
                stats = self.stats_fn()
            for sink in list(self._active):
                self._call(sink, sink.on_result, result, stats)
        self._drain_events()

    def close(self) -> None:
        # Every sink gets the summary and is closed, even when one of them fails.
        summary = self.summary_fn()
        failure = None
        for sink in self.sinks:
            for method, args in ((sink.on_summary, (summary,)), (sink.close, ())):
                try:
                    method(*args)
                except OutputError as exc:
                    self._failed_output(sink, exc)
                except Exception as exc:  # noqa: BLE001 - the first failure is raised below
                    log.debug("%s.%s failed", type(sink).__name__, method.__name__, exc_info=True)
                    failure = failure or exc
        if failure is not None:
            raise failure
