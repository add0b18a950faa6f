"""`ServerSink`: the kiosk page as a pipeline sink, the one object the assembly sees.

It puts the rooms together: the options, the shared state the pipeline writes and the routes
read, the upload route, the metrics registry and the HTTP server with its thread. It binds and
starts serving in its constructor, so a bad address fails before the model loads.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from prometheus_client import CollectorRegistry

from edge_fer.results import FrameResult, StatsSnapshot
from edge_fer.sinks.base import Sink
from edge_fer.sinks.server.httpd import Router, bind, check_access
from edge_fer.sinks.server.metrics import StatsCollector, request_counter
from edge_fer.sinks.server.options import ServerOptions
from edge_fer.sinks.server.state import ServerState
from edge_fer.sinks.server.uploads import AnalyzeFn, Uploads

log = logging.getLogger(__name__)


class ServerSink(Sink):
    """Pipeline sink serving the kiosk page; binds and starts serving in the constructor.

    Raises UsageError when the address needs a token and has none, the port is taken, or the
    address cannot be bound, so `run` fails before loading the model.
    """

    def __init__(self, options: ServerOptions | None = None, *, registry=None):
        self.options = opts = options or ServerOptions()
        check_access(opts)
        self._state = ServerState(opts)
        self._uploads = Uploads(opts)

        self.registry = registry or CollectorRegistry(auto_describe=True)
        requests = request_counter(self.registry)
        self.registry.register(StatsCollector(self._state))

        self._httpd = bind(Router(self._state, self._uploads, self.registry, requests))
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="edge-fer-http", daemon=True)
        self._thread.start()
        log.info("serving the kiosk page on %s", self.url)

    # --- the sink contract ---------------------------------------------------------------------

    def on_result(self, result: FrameResult, stats: StatsSnapshot) -> None:
        """Keep the newest result and stats; wakes the stream clients. Never blocks on clients."""
        self._state.put(result, stats)

    def serve_predictions(self, analyze: AnalyzeFn) -> None:
        """Answer `POST /api/predict` with `analyze` (an `Analyzer`'s `analyze`): give it a
        model instance of its own (an interpreter is not thread-safe, and sharing the camera
        loop's would stall it) and one interpreter thread. Until this is called, the route
        answers 503."""
        self._uploads.analyze = analyze

    def follow(self, stats_fn: Callable[[], StatsSnapshot]) -> None:
        """Answer /api/stats and /metrics from `stats_fn` (the pipeline's `stats`) at request
        time. The stats handed over with each result stop with the results: through a source
        outage they would go on showing the last frame rate instead of one that falls to 0."""
        self._state.follow(stats_fn)

    def add_status(self, name: str, status_fn: Callable[[], dict],
                   metrics: dict[str, tuple[str, str]] | None = None) -> None:
        """Serve `status_fn()` under `name` in /api/stats (another output's state, MQTT's), and
        export its keys named in `metrics` (key -> (Prometheus kind, help)) on /metrics as
        `edge_fer_<name>_<key>`."""
        self._state.add_status(name, status_fn, metrics)

    def statuses(self) -> dict[str, tuple[dict, dict[str, tuple[str, str]]]]:
        """name -> (its status now, its metrics) for every `add_status`."""
        return self._state.statuses()

    def close(self) -> None:
        """Stop serving: stream clients end within a wait interval, the port is released."""
        if self._state.stopped.is_set():
            return
        self._state.stop()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "ServerSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- what the routes serve, for callers and tests ------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the real port when options.port was 0."""
        host, port = self._httpd.socket.getsockname()[:2]
        return host, port

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    @property
    def stream_clients(self) -> int:
        return self._state.stream_clients

    @property
    def frames_encoded(self) -> int:
        return self._state.frames_encoded

    def snapshot(self) -> tuple[FrameResult | None, StatsSnapshot | None, int, float]:
        """(newest result, the stats now, its sequence number, seconds since it arrived)."""
        return self._state.snapshot()

    def jpeg(self) -> tuple[bytes | None, int]:
        """The newest frame, annotated and encoded (at most once per frame), and its sequence."""
        return self._state.jpeg()

    def faces_json(self) -> dict:
        """What `/api/faces` serves: the newest frame's faces, or with `faces_api="aggregate"`
        only how many show each label (`{"count": N, "counts": {label: n}}`)."""
        return self._state.faces_json()
