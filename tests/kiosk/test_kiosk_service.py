"""systemd readiness, status and watchdog: the logic with a fake notifier, the protocol for real."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge_fer.results import FrameResult
from edge_fer.sinks.systemd import ServiceMonitor, SystemdNotifier, status_line
from kiosk_helpers import NotifySocket, stats_for, wait_for

FRAME = np.zeros((48, 64, 3), np.uint8)


class FakeNotifier:
    """Records what would have gone to systemd, with the time it was sent."""

    def __init__(self, watchdog_timeout_s=None):
        self.watchdog_timeout_s = watchdog_timeout_s
        self.sent: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def _add(self, msg):
        with self._lock:
            self.sent.append((time.monotonic(), msg))

    def ready(self):
        self._add("READY=1")

    def status(self, text):
        self._add(f"STATUS={text}")

    def watchdog(self):
        self._add("WATCHDOG=1")

    def stopping(self):
        self._add("STOPPING=1")

    def messages(self, prefix=""):
        with self._lock:
            return [m for _, m in self.sent if m.startswith(prefix)]

    def times(self, msg):
        with self._lock:
            return [t for t, m in self.sent if m == msg]


def frame(n):
    return FrameResult(n, 0.0, 0.0, FRAME, [])


def test_ready_only_after_model_loaded_and_first_frame():
    n = FakeNotifier()
    m = ServiceMonitor(n, interval=1.0, clock=lambda: 0.0)
    m.tick()
    assert n.messages() == ["STATUS=loading the model"]
    m.on_result(frame(0), stats_for(1))  # a frame before the model: still not ready
    m.tick()
    assert "READY=1" not in n.messages()
    m.model_loaded()
    m.tick()
    assert n.messages("READY") == ["READY=1"]
    assert n.messages()[-1] == "STATUS=" + status_line(stats_for(1))
    m.tick()
    m.on_result(frame(1), stats_for(2))
    m.tick()
    assert n.messages("READY") == ["READY=1"], "READY must be sent once"


def test_model_loaded_but_no_frame_is_not_ready():
    n = FakeNotifier()
    m = ServiceMonitor(n, interval=1.0, clock=lambda: 0.0)
    m.model_loaded()
    for _ in range(3):
        m.tick()
    assert n.messages() == ["STATUS=waiting for the first frame"]


def test_watchdog_pings_only_while_frames_are_processed():
    now = [0.0]
    n = FakeNotifier()
    m = ServiceMonitor(n, interval=1.0, clock=lambda: now[0])
    m.model_loaded()
    m.on_result(frame(0), stats_for(1))
    m.tick()  # READY
    for i in range(2, 6):
        now[0] += 1
        m.on_result(frame(i), stats_for(i))
        m.tick()
    assert len(n.messages("WATCHDOG")) == 4
    for _ in range(5):  # the pipeline stalls: same frames_processed
        now[0] += 1
        m.tick()
    assert len(n.messages("WATCHDOG")) == 4
    assert n.messages()[-1] == "STATUS=stalled: no frame processed for 5 s"
    now[0] += 1
    m.on_result(frame(6), stats_for(6))  # it recovers before systemd gave up
    m.tick()
    assert len(n.messages("WATCHDOG")) == 5
    assert n.messages()[-1] == "STATUS=fps=12.5 faces=0 latency_p50_ms=60 frames_dropped=0"


def test_monitor_thread_stops_pinging_when_frames_stop():
    n = FakeNotifier()
    m = ServiceMonitor(n, interval=0.05).start()
    stop = threading.Event()
    count = [0]

    def pipeline():
        while not stop.wait(0.01):
            count[0] += 1
            m.on_result(frame(count[0]), stats_for(count[0]))

    m.model_loaded()
    t = threading.Thread(target=pipeline, daemon=True)
    t.start()
    time.sleep(0.6)
    stop.set()
    t.join()
    stopped_at = time.monotonic()
    time.sleep(0.5)
    m.close()
    pings = n.times("WATCHDOG=1")
    assert len(pings) >= 5, f"only {len(pings)} pings while frames flowed"
    # Only the first tick after the stop can still see progress (frames since the last tick).
    assert len([p for p in pings if p > stopped_at]) <= 1
    assert n.messages()[-1] == "STOPPING=1"
    assert any(msg.startswith("STATUS=stalled") for msg in n.messages())


def test_ready_is_sent_at_the_first_frame_not_at_the_next_tick():
    n = FakeNotifier()
    m = ServiceMonitor(n, interval=30.0).start()
    try:
        m.model_loaded()
        t0 = time.monotonic()
        m.on_result(frame(0), stats_for(1))
        deadline = t0 + 2
        while not n.times("READY=1") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert n.times("READY=1") and n.times("READY=1")[0] - t0 < 1.0
    finally:
        m.close()


def test_interval_follows_watchdog_sec():
    assert ServiceMonitor(FakeNotifier(watchdog_timeout_s=30.0)).interval == 10.0
    assert ServiceMonitor(FakeNotifier(watchdog_timeout_s=3.0)).interval == 1.0
    assert ServiceMonitor(FakeNotifier()).interval == 5.0


def test_handle_is_cheap():
    m = ServiceMonitor(FakeNotifier(), interval=1.0)
    f, stats = frame(0), stats_for(1)
    t0 = time.perf_counter()
    for _ in range(10000):
        m.on_result(f, stats)
    assert (time.perf_counter() - t0) / 10000 < 1e-4


# --- the real notifier on a real notify socket --------------------------------------------------

@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    with NotifySocket(tmp_path) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", str(sock.path))
        monkeypatch.setenv("WATCHDOG_USEC", "3000000")
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        yield sock


def test_systemd_notifier_speaks_sd_notify(notify_socket):
    n = SystemdNotifier()
    assert n.enabled and n.watchdog_timeout_s == 3.0
    n.ready()
    n.status("12.0 fps,\n2 faces")
    n.watchdog()
    n.stopping()
    got = wait_for(lambda: len(notify_socket.messages()) == 4 and notify_socket.messages(), 2,
                   "four messages")
    assert got == ["READY=1", "STATUS=12.0 fps, 2 faces", "WATCHDOG=1", "STOPPING=1"]


def test_monitor_with_the_real_notifier(notify_socket):
    m = ServiceMonitor(SystemdNotifier(), interval=0.05).start()
    m.model_loaded()
    for i in range(1, 4):
        m.on_result(frame(i), stats_for(i))
        time.sleep(0.08)
    # No more frames: within a few rounds the monitor says so.
    last = time.time()
    wait_for(lambda: notify_socket.messages("STATUS=stalled", after=last + 0.1), 2, "a stalled status")
    m.close()
    got = wait_for(lambda: "STOPPING=1" in notify_socket.messages() and notify_socket.messages(), 2,
                   "STOPPING=1")
    assert got[0] == "STATUS=loading the model"
    assert "READY=1" in got and "WATCHDOG=1" in got
    assert got.index("READY=1") < got.index("WATCHDOG=1")
    assert got[-2].startswith("STATUS=stalled") and got[-1] == "STOPPING=1"


def test_systemd_notifier_is_a_no_op_outside_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = SystemdNotifier()
    assert not n.enabled and n.watchdog_timeout_s is None
    n.ready()
    n.status("x")
    n.watchdog()
    n.stopping()


def test_a_vanished_notify_socket_is_logged_once_not_raised(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    n = SystemdNotifier()
    n.ready()
    n.watchdog()
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1
