"""The thread every pipeline stage runs on.

One stop event is shared by the whole pipeline. The capture stage ends when it is set; every other
stage ends once the stage before it has ended and its input queue is empty, so the frames already
in flight still reach the sinks and the run's summary counts them. A stage that fails hands its
exception to the pipeline, which sets the stop event, so no stage is left waiting on a dead one.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterator, TypeVar

from edge_fer.pipeline.queues import LatestQueue

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds any wait in the pipeline blocks before it looks at the stop event again.
POLL_S = 0.1
#: After a stop, seconds a stage keeps draining an upstream stage that has not ended (a camera
#: read or a model call that hangs) before it gives up on it.
STOP_GRACE_S = 2.0


class Stage:
    """A pipeline stage on its own (daemon) thread; subclasses implement `run_loop`."""

    name = "stage"

    def __init__(self, stop: threading.Event, on_error: Callable[[str, BaseException], None],
                 lossless: bool = False):
        self.stop_event = stop
        self.lossless = lossless
        """Wait for room in the next queue instead of dropping (offline file processing)."""
        self._on_error = on_error
        self.done = threading.Event()
        """Set when the thread has ended: downstream stages stop waiting for more input."""
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # Daemon: a camera read that never returns must not keep the process alive after the
        # pipeline has given up on it.
        self._thread = threading.Thread(target=self._main, name=f"edge-fer-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> bool:
        """True once the thread has ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def run_loop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the stage holds; runs on the stage's thread after `run_loop`."""

    def _main(self) -> None:
        try:
            self.run_loop()
        except BaseException as exc:  # noqa: BLE001 - handed to the pipeline, which stops the run
            self._on_error(self.name, exc)
        finally:
            try:
                self.close()
            except Exception as exc:  # noqa: BLE001 - same: reported, never lost
                self._on_error(self.name, exc)
            self.done.set()

    def items(self, inbox: LatestQueue[T], upstream: threading.Event) -> Iterator[T]:
        """Items from `inbox` until the upstream stage has ended and the queue is empty."""
        stopped_at = None
        while True:
            item = inbox.get(POLL_S)
            if item is not None:
                yield item
                continue
            # Checked in this order so an item put just before `upstream` was set is not lost.
            if upstream.is_set() and len(inbox) == 0:
                return
            if self.stop_event.is_set():
                stopped_at = stopped_at or time.monotonic()
                if time.monotonic() - stopped_at > STOP_GRACE_S:
                    log.warning("%s: the stage before it did not stop within %.0f s; ending anyway",
                                self.name, STOP_GRACE_S)
                    return

    def emit(self, outbox: LatestQueue[T], item: T) -> None:
        """Pass `item` on: drop the stalest when full, or wait for room in lossless mode."""
        if not self.lossless:
            outbox.put(item)
            return
        while not outbox.put_wait(item, POLL_S):
            if self.stop_event.is_set():
                # The next stage may be gone (it failed): do not wait for it forever.
                outbox.put(item)
                return
