"""systemd integration: readiness, status and a watchdog that tracks real progress.

`ServiceMonitor` is a pipeline sink with a small thread. It tells systemd READY=1 only once the
model is loaded *and* the first frame came through, reports fps and faces in STATUS=, and sends
WATCHDOG=1 only while `frames_processed` keeps increasing: a pipeline that stalls (camera gone,
interpreter hung) stops pinging, so systemd's `WatchdogSec=` restarts the service.

The notify protocol itself is the `systemd-watchdog` library's (`SystemdNotifier`); anything
implementing `Notifier` can stand in, which is how the tests drive the logic.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Protocol

from edge_fer.results import FrameResult, StatsSnapshot
from edge_fer.sinks.base import Sink

log = logging.getLogger(__name__)


class Notifier(Protocol):
    """The four messages edge-fer sends to its service manager."""

    def ready(self) -> None: ...

    def status(self, text: str) -> None: ...

    def watchdog(self) -> None: ...

    def stopping(self) -> None: ...


class SystemdNotifier:
    """`Notifier` over sd_notify(3) via `systemd_watchdog`; every call is a no-op when the
    process was not started by systemd (no NOTIFY_SOCKET)."""

    def __init__(self, address: str | None = None):
        from systemd_watchdog import WatchDog

        class _WatchDog(WatchDog):
            # The library has no STOPPING=1; its protected _send is the protocol's one primitive.
            def stopping(self) -> None:
                self._send("STOPPING=1\n")

        self._wd = _WatchDog(addr=address)
        self._failed = False

    @property
    def enabled(self) -> bool:
        """True when there is a service manager to talk to."""
        return self._wd.is_enabled

    @property
    def watchdog_timeout_s(self) -> float | None:
        """systemd's WatchdogSec= as passed in WATCHDOG_USEC, or None when it is off."""
        if not self.enabled or not os.environ.get("WATCHDOG_USEC", "").isdigit():
            return None
        return self._wd.timeout / 1e6

    def _call(self, fn: Callable, *args) -> None:
        try:
            fn(*args)
        except OSError as exc:
            # systemd going away must not take the pipeline with it; say so once.
            if not self._failed:
                log.warning("cannot notify systemd (%s): status and watchdog messages are lost",
                            exc.strerror or exc)
                self._failed = True

    def ready(self) -> None:
        self._call(self._wd.ready)

    def status(self, text: str) -> None:
        self._call(self._wd.status, text.replace("\n", " "))

    def watchdog(self) -> None:
        self._call(self._wd.notify)

    def stopping(self) -> None:
        self._call(self._wd.stopping)


def status_line(stats: StatsSnapshot) -> str:
    """`fps=12.4 faces=2 latency_p50_ms=85 frames_dropped=0`: the figures of the log line."""
    latency = "-" if stats.latency_p50_ms is None else f"{stats.latency_p50_ms:.0f}"
    return (f"fps={stats.fps:.1f} faces={stats.faces} latency_p50_ms={latency} "
            f"frames_dropped={stats.frames_dropped}")


class ServiceMonitor(Sink):
    """Sink that drives READY=1, STATUS= and WATCHDOG=1 from the pipeline's progress.

    Call `model_loaded()` once the classifier is built, `start()` the thread, add the monitor to
    the sinks, and `close()` it at stop. `tick()` is one round of the thread's work (tests call it
    directly with a fake clock).
    """

    def __init__(self, notifier: Notifier, *, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.notifier = notifier
        timeout = getattr(notifier, "watchdog_timeout_s", None)
        # A third of WatchdogSec: a frame within any such window keeps the service alive, and a
        # pipeline stalled for two windows is restarted.
        self.interval = interval if interval is not None else (
            min(timeout / 3, 10.0) if timeout else 5.0)
        self._clock = clock
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._stats: StatsSnapshot | None = None
        self._model_loaded = False
        self._first_frame = False
        self._ready_sent = False
        self._last_frames = -1
        self._progress_at = clock()
        self._last_status = ""
        self._extra: list[Callable[[], str]] = []
        self._thread: threading.Thread | None = None

    # --- inputs --------------------------------------------------------------------------------

    def model_loaded(self) -> None:
        with self._cond:
            self._model_loaded = True
            self._cond.notify_all()

    def on_result(self, result: FrameResult, stats: StatsSnapshot) -> None:
        with self._cond:
            self._stats = stats
            if not self._first_frame:
                self._first_frame = True
                self._cond.notify_all()  # send READY now, not at the next tick

    def add_status(self, part: Callable[[], str]) -> None:
        """Append `part()` (another output's state: `mqtt=connected`) to the running status."""
        self._extra.append(part)

    # --- the thread ----------------------------------------------------------------------------

    def start(self) -> "ServiceMonitor":
        self.notifier.status("loading the model")
        self._thread = threading.Thread(target=self._loop, name="edge-fer-systemd", daemon=True)
        self._thread.start()
        return self

    def _ready_due(self) -> bool:
        return not self._ready_sent and self._model_loaded and self._first_frame

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._stop.is_set() or self._ready_due(),
                                    timeout=self.interval)
            if self._stop.is_set():
                break
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a notifier bug must not end the monitoring
                log.exception("service monitor round failed")
                self._stop.wait(self.interval)

    def tick(self) -> None:
        """Send READY once due; ping the watchdog if frames were processed since the last tick."""
        with self._cond:
            stats = self._stats
            loaded, first = self._model_loaded, self._first_frame
        now = self._clock()
        frames = stats.frames_processed if stats is not None else -1
        if not self._ready_sent:
            if not (loaded and first):
                self._set_status("loading the model" if not loaded else "waiting for the first frame")
                return
            self._ready_sent = True
            self._last_frames, self._progress_at = frames, now
            self.notifier.ready()
            self._set_status(self._running_status(stats))
            log.info("told systemd the service is ready")
            return
        if frames > self._last_frames:
            self._last_frames, self._progress_at = frames, now
            self.notifier.watchdog()
            self._set_status(self._running_status(stats))
        else:
            self._set_status(f"stalled: no frame processed for {now - self._progress_at:.0f} s")

    def _running_status(self, stats: StatsSnapshot) -> str:
        return " ".join([status_line(stats)] + [part() for part in self._extra])

    def _set_status(self, text: str) -> None:
        if text != self._last_status:
            self.notifier.status(text)
            self._last_status = text

    def close(self) -> None:
        """Stop the thread and tell systemd the service is stopping."""
        if self._stop.is_set():
            return
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.notifier.stopping()
