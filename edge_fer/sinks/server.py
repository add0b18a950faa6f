"""The local page of `edge-fer run --serve HOST:PORT`: live MJPEG view, faces, stats and metrics.

`ServerSink` is a pipeline sink. Its `on_result()` only stores a reference to the newest result
and stats under a lock and wakes the stream clients; it never encodes, draws or touches a socket,
so the pipeline runs at the same speed with zero or fifty browsers watching. Each HTTP client has
its own thread (stdlib `ThreadingHTTPServer`). A stream client always takes the newest frame, so
a slow one skips frames; one that stops reading is dropped when its socket send times out. The
JPEG of a frame is encoded once, on demand, by the first stream client that needs it.

Routes: `/` page, `/stream.mjpg`, `/frame.jpg`, `/api/stats`, `/api/faces`, `/metrics`, and
`POST /api/predict` (an uploaded image's faces, from a model instance of its own; see
`ServerSink.serve_predictions`).
"""

from __future__ import annotations

import email.policy
import errno
import hashlib
import hmac
import json
import logging
import math
import os
import re
import socket
import socketserver
import threading
import time
from base64 import b64encode
from contextlib import contextmanager
from email.parser import BytesParser
from dataclasses import dataclass, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from edge_fer import __version__
from edge_fer.network import DEFAULT_SERVE, MIN_TOKEN_LENGTH, check_token, is_loopback, parse_address
from edge_fer.card import page_fields, read_card
from edge_fer.draw import draw_faces, hide, privacy_mode
from edge_fer.errors import InputError, UsageError
from edge_fer.images import DEFAULT_MAX_PIXELS, ImageTooLarge, decode_image
from edge_fer.predict import Face, ImageResult
from edge_fer.results import FrameResult, StatsSnapshot
from edge_fer.sinks.base import Sink

#: What answers `POST /api/predict`: a decoded frame (uint8 BGR) in, its faces out, largest first
#: (`edge_fer.analyzer.Analyzer.analyze`).
AnalyzeFn = Callable[[np.ndarray], "list[Face]"]

log = logging.getLogger(__name__)

BOUNDARY = "edgeferframe"
#: What `/api/faces` can tell (`ServerOptions.faces_api`, `run --faces-api`).
FACES_API_MODES = ("full", "aggregate")
_TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s]*")


@dataclass
class ServerOptions:
    """Where and how the local page is served."""

    host: str = "127.0.0.1"
    """Address to bind; anything but loopback requires `token`."""
    port: int = 8080
    """TCP port; 0 picks a free one (tests)."""
    token: str | None = None
    """When set, every request needs `Authorization: Bearer TOKEN` or `?token=TOKEN`."""
    jpeg_quality: int = 80
    """JPEG quality of the stream (1-100)."""
    max_stream_fps: float = 15.0
    """Upper bound on frames sent per stream client per second (0 = every frame); caps the
    encoding and sending cost on a Pi."""
    client_timeout: float = 5.0
    """Seconds a client may stall a send or a request read before it is dropped."""
    max_streams: int = 8
    """Concurrent `/stream.mjpg` clients; more get 503."""
    blur_faces: bool = False
    """Blur each face the detector found (and the tracker carried) in `/stream.mjpg`,
    `/frame.jpg` and annotated uploads (boxes and labels stay)."""
    privacy: str | None = None
    """"faces" (as `blur_faces`) or "frame": the whole picture blurred, boxes and labels drawn
    on top, so a face the detector missed is never served."""
    faces_api: str = "full"
    """What `/api/faces` tells: "full" (each face's track id, box, label and scores) or
    "aggregate" (how many faces show each label; no boxes, no track ids)."""
    max_upload_bytes: int = 10 * 1024 * 1024
    """`POST /api/predict`: larger request bodies get 413 without being read."""
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    """`POST /api/predict`: images whose header declares more pixels get 413, undecoded
    (`run --max-pixels`; None: no cap)."""
    max_predicts: int = 2
    """`POST /api/predict` requests handled at once; more get 503 with Retry-After, so uploads
    never take the cores the camera loop needs."""
    predict_nice: int = 19
    """Niceness added to the thread handling an upload, from reading it to answering (Linux
    schedules threads on their own), so the camera loop wins the cores when both want them."""

    @classmethod
    def from_serve(cls, serve: str | None, token: str | None = None, **kw) -> "ServerOptions":
        """Options from a `--serve HOST:PORT` value (None: the default address)."""
        try:
            host, port = parse_address(serve or DEFAULT_SERVE)
        except ValueError as exc:
            raise UsageError(f"--serve {serve!r}: {exc}: allowed HOST:PORT with PORT 1-65535, "
                             "e.g. 127.0.0.1:8080") from None
        return cls(host=host, port=port, token=token or None, **kw)

    def __post_init__(self):
        try:
            privacy_mode(self.blur_faces, self.privacy)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if self.faces_api not in FACES_API_MODES:
            raise UsageError(f"faces_api {self.faces_api!r}: allowed "
                             f"{' or '.join(FACES_API_MODES)}")


def _finite(value):
    """JSON-safe copy: NaN/inf (a percentile before any sample) become null, not invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return _finite(value.item())
    return value


def _load_page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy, which allows exactly its one inline script."""
    html = resources.files("edge_fer").joinpath("web/index.html").read_text(encoding="utf-8")
    for placeholder, text in page_fields(read_card("default")).items():
        html = html.replace(placeholder, text)
    script = html.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
           "img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'")
    return html.encode("utf-8"), csp


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # A restarted service must be able to rebind while old connections sit in TIME_WAIT.
    allow_reuse_address = True

    def __init__(self, address, family: int, sink: "ServerSink"):
        self.address_family = family
        self.sink = sink
        super().__init__(address, _Handler)

    def server_bind(self):
        # HTTPServer.server_bind calls socket.getfqdn(), a DNS lookup that hangs on an offline Pi.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = host, port

    def handle_error(self, request, client_address):
        # A browser closing a tab mid-stream is routine; keep the traceback out of the journal.
        log.debug("client %s: connection error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server_version = f"edge-fer/{__version__}"
    server: _HTTPServer

    def version_string(self) -> str:
        # The stdlib appends "Python/3.x.y": an attacker's shortcut to known bugs, no use to anyone else.
        return self.server_version

    def setup(self):
        # Applies to reads and sends: a client that never reads has its send time out and is
        # dropped; one that never sends a request is dropped too.
        self.timeout = self.server.sink.options.client_timeout
        super().setup()

    def log_message(self, format, *args):  # noqa: A002 (the stdlib's name)
        # Request lines carry ?token=...: keep the secret out of the journal.
        log.debug("%s %s", self.address_string(), _TOKEN_IN_URL.sub(r"\1***", format % args))

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        self.server.sink._serve(self)

    def do_POST(self):  # noqa: N802
        self.server.sink._serve_post(self)

    def do_HEAD(self):  # noqa: N802
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED)


class ServerSink(Sink):
    """Pipeline sink serving the kiosk page; binds and starts serving in the constructor.

    Raises UsageError when the address needs a token and has none, the port is taken, or the
    address cannot be bound, so `run` fails before loading the model.
    """

    def __init__(self, options: ServerOptions | None = None, *, registry=None):
        self.options = opts = options or ServerOptions()
        if opts.token is not None:
            try:
                check_token(opts.token)
            except ValueError:
                raise UsageError(f"the server token is too weak: use {MIN_TOKEN_LENGTH} or more "
                                 "characters without spaces, e.g. from `openssl rand -hex 16`") \
                    from None
        elif not is_loopback(opts.host):
            raise UsageError(f"refusing to serve on {opts.host}:{opts.port} without a token: anyone "
                             "on the network could watch the camera. Set --token (or [server] "
                             "token in the config), or serve on 127.0.0.1")
        self._cond = threading.Condition()
        self._result: FrameResult | None = None
        self._stats: StatsSnapshot | None = None
        self._live_stats: Callable[[], StatsSnapshot] | None = None
        self._statuses: dict[str, tuple[Callable[[], dict], dict[str, tuple[str, str]]]] = {}
        self._seq = 0
        self._handled_at = 0.0  # time.monotonic() of the newest result
        self._encode_lock = threading.Lock()
        self._jpeg: bytes | None = None
        self._jpeg_seq = 0
        self._frames_encoded = 0
        self._streams = 0
        self._stop = threading.Event()
        self._page, self._csp = _load_page()
        self._analyze: AnalyzeFn | None = None
        self._predict_slots = threading.BoundedSemaphore(opts.max_predicts)

        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._requests = Counter("edge_fer_http_requests", "HTTP requests served, by route and status",
                                 ["route", "code"], registry=self.registry)
        self.registry.register(_StatsCollector(self))

        self._httpd = self._bind()
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="edge-fer-http", daemon=True)
        self._thread.start()
        log.info("serving the kiosk page on %s", self.url)

    def _bind(self) -> _HTTPServer:
        o = self.options
        where = f"{o.host}:{o.port}"
        try:
            infos = socket.getaddrinfo(o.host, o.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise UsageError(f"cannot serve on {where}: unknown host ({exc.strerror}): use an IP "
                             "address such as 127.0.0.1") from None
        family, _, _, _, sockaddr = infos[0]
        try:
            return _HTTPServer(sockaddr, family, self)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                hint = ("the port is already in use (another edge-fer?): stop that program or "
                        "choose another port with --serve HOST:PORT")
            elif exc.errno == errno.EACCES:
                hint = "permission denied (ports below 1024 need privileges): use a port above 1024"
            elif exc.errno == errno.EADDRNOTAVAIL:
                hint = "this machine has no such address: use 127.0.0.1 or one of its own addresses"
            else:
                hint = exc.strerror or str(exc)
            raise UsageError(f"cannot serve on {where}: {hint}") from None

    # --- the sink contract ---------------------------------------------------------------------

    def on_result(self, result: FrameResult, stats: StatsSnapshot) -> None:
        """Keep the newest result and stats; wakes the stream clients. Never blocks on clients."""
        with self._cond:
            self._result = result
            self._stats = stats
            self._seq += 1
            self._handled_at = time.monotonic()
            self._cond.notify_all()

    def serve_predictions(self, analyze: AnalyzeFn) -> None:
        """Answer `POST /api/predict` with `analyze` (an `Analyzer`'s `analyze`): give it a
        model instance of its own (an interpreter is not thread-safe, and sharing the camera
        loop's would stall it) and one interpreter thread. Until this is called, the route
        answers 503."""
        self._analyze = analyze

    def follow(self, stats_fn: Callable[[], StatsSnapshot]) -> None:
        """Answer /api/stats and /metrics from `stats_fn` (the pipeline's `stats`) at request
        time. The stats handed over with each result stop with the results: through a source
        outage they would go on showing the last frame rate instead of one that falls to 0."""
        self._live_stats = stats_fn

    def add_status(self, name: str, status_fn: Callable[[], dict],
                   metrics: dict[str, tuple[str, str]] | None = None) -> None:
        """Serve `status_fn()` under `name` in /api/stats (another output's state, MQTT's), and
        export its keys named in `metrics` (key -> (Prometheus kind, help)) on /metrics as
        `edge_fer_<name>_<key>`."""
        self._statuses[name] = (status_fn, dict(metrics or {}))

    def statuses(self) -> dict[str, tuple[dict, dict[str, tuple[str, str]]]]:
        """name -> (its status now, its metrics) for every `add_status`."""
        return {name: (fn(), metrics) for name, (fn, metrics) in self._statuses.items()}

    def close(self) -> None:
        """Stop serving: stream clients end within a wait interval, the port is released."""
        if self._stop.is_set():
            return
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "ServerSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- state for the routes ------------------------------------------------------------------

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
        with self._cond:
            return self._streams

    @property
    def frames_encoded(self) -> int:
        return self._frames_encoded

    def snapshot(self) -> tuple[FrameResult | None, StatsSnapshot | None, int, float]:
        """(newest result, the stats now, its sequence number, seconds since it arrived)."""
        with self._cond:
            age = time.monotonic() - self._handled_at if self._result is not None else math.nan
            result, stats, seq = self._result, self._stats, self._seq
        if self._live_stats is not None:
            stats = self._live_stats()
        return result, stats, seq, age

    def _wait_newer(self, seq: int, timeout: float) -> int | None:
        with self._cond:
            if self._seq <= seq and not self._stop.is_set():
                self._cond.wait(timeout)
            return self._seq if self._seq > seq else None

    def jpeg(self) -> tuple[bytes | None, int]:
        """The newest frame, annotated and encoded (at most once per frame), and its sequence."""
        with self._encode_lock:
            with self._cond:
                result, seq = self._result, self._seq
            if result is None:
                return None, 0
            if self._jpeg_seq != seq:
                # The pipeline shares the frame with every sink: draw on a copy.
                frame = result.frame.copy()
                hide(frame, result.faces, privacy_mode(self.options.blur_faces, self.options.privacy))
                draw_faces(frame, result.faces)
                ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.options.jpeg_quality])
                if not ok:
                    log.warning("cannot encode frame %d as JPEG", result.index)
                    return None, seq
                self._jpeg, self._jpeg_seq = buf.tobytes(), seq
                self._frames_encoded += 1
            return self._jpeg, self._jpeg_seq

    def faces_json(self) -> dict:
        """What `/api/faces` serves: the newest frame's faces, or with `faces_api="aggregate"`
        only how many show each label (`{"count": N, "counts": {label: n}}`)."""
        result, _, _, age = self.snapshot()
        aggregate = self.options.faces_api == "aggregate"
        if result is None:
            empty = {"count": 0, "counts": {}} if aggregate else {"faces": []}
            return {"index": None, "age_s": None, "latency_ms": None, **empty}
        head = {"index": result.index, "age_s": round(age, 3),
                "latency_ms": round(result.latency_ms, 2)}
        if aggregate:
            counts: dict[str, int] = {}
            for f in result.faces:
                counts[f.label] = counts.get(f.label, 0) + 1
            return _finite({**head, "count": len(result.faces), "counts": dict(sorted(counts.items()))})
        faces = [{"track_id": f.track_id, "box": [int(v) for v in f.box], "label": f.label,
                  "score": float(f.score), "scores": {k: float(v) for k, v in f.scores.items()},
                  "raw_label": f.raw_label, "first_frame": f.first_frame,
                  "dwell_s": float(f.dwell_s), "since_detection": f.since_detection}
                 for f in result.faces]
        return _finite({**head, "faces": faces})

    # --- HTTP ----------------------------------------------------------------------------------

    def _authorized(self, req: _Handler, query: dict) -> bool:
        token = self.options.token
        if not token:
            return True
        auth = req.headers.get("Authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else query.get("token", [""])[0]
        return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))

    _ROUTES = {"/": "page", "/index.html": "page", "/stream.mjpg": "stream", "/frame.jpg": "frame",
               "/api/stats": "stats", "/api/faces": "faces", "/metrics": "metrics",
               "/favicon.ico": "favicon", "/api/predict": "predict"}

    def _serve(self, req: _Handler) -> None:
        url = urlsplit(req.path)
        route = self._ROUTES.get(url.path, "other")
        if not self._authorized(req, parse_qs(url.query)):
            self._count(route, 401)
            self._send(req, 401, b"401 unauthorized: send 'Authorization: Bearer TOKEN' or add "
                                 b"?token=TOKEN to the URL\n", "text/plain; charset=utf-8",
                       {"WWW-Authenticate": 'Bearer realm="edge-fer"'})
            return
        if route == "page":
            self._count(route, 200)
            self._send(req, 200, self._page, "text/html; charset=utf-8",
                       {"Content-Security-Policy": self._csp})
        elif route == "stats":
            _, stats, _, _ = self.snapshot()
            self._count(route, 200)
            body = stats.to_dict() if stats is not None else {}
            body.update({name: status for name, (status, _) in self.statuses().items()})
            self._send_json(req, _finite(body))
        elif route == "faces":
            self._count(route, 200)
            self._send_json(req, self.faces_json())
        elif route == "metrics":
            self._count(route, 200)
            self._send(req, 200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif route == "frame":
            data, _ = self.jpeg()
            if data is None:
                self._count(route, 503)
                self._send(req, 503, b"no frame yet\n", "text/plain; charset=utf-8", {"Retry-After": "1"})
            else:
                self._count(route, 200)
                self._send(req, 200, data, "image/jpeg")
        elif route == "stream":
            self._stream(req)
        elif route == "predict":
            self._count(route, 405)
            self._send_error(req, 405, "POST an image to /api/predict", {"Allow": "POST"})
        elif route == "favicon":
            self._count(route, 204)
            self._send(req, 204, b"", "image/x-icon")
        else:
            self._count(route, 404)
            self._send(req, 404, b"404 not found: try / /stream.mjpg /api/stats /api/faces /metrics\n",
                       "text/plain; charset=utf-8")

    def _serve_post(self, req: _Handler) -> None:
        url = urlsplit(req.path)
        query = parse_qs(url.query)
        if url.path != "/api/predict":
            self._count("other", 405 if url.path in self._ROUTES else 404)
            req.close_connection = True
            self._send_error(req, 405 if url.path in self._ROUTES else 404,
                             f"POST goes to /api/predict, not {url.path}")
            return
        if not self._authorized(req, query):
            req.close_connection = True
            self._count("predict", 401)
            self._send_error(req, 401, "send 'Authorization: Bearer TOKEN' or add ?token=TOKEN "
                                       "to the URL", {"WWW-Authenticate": 'Bearer realm="edge-fer"'})
            return
        # The whole upload, from reading its body to the 503 of a busy server, runs nicer than
        # the camera loop: with uploads hammering, that is what keeps the loop's cores its own.
        with _lower_priority(self.options.predict_nice):
            code, body, ctype, headers = self._predict(req, query)
        self._count("predict", code)
        self._send(req, code, body, ctype, headers)

    def _predict(self, req: _Handler, query: dict) -> tuple[int, bytes, str, dict]:
        """`POST /api/predict`: (status, body, content type, extra headers)."""
        def error(code: int, message: str, headers: dict | None = None):
            return code, json.dumps({"error": message}).encode(), "application/json", headers or {}

        o = self.options
        if req.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            req.close_connection = True
            return error(411, "send the image with a Content-Length (no chunked encoding)")
        try:
            length = int(req.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            req.close_connection = True
            return error(400, "Content-Length is not a number of bytes")
        if length > o.max_upload_bytes:
            # Not read: the connection is closed after the answer. What is already on its way is
            # taken (up to a limit) so that the client sees the 413 rather than a reset.
            req.close_connection = True
            _drain(req, min(length, 4 * 1024 * 1024))
            return error(413, f"the request body is {length:,} bytes, over the limit of "
                              f"{o.max_upload_bytes:,}")
        try:
            body = req.rfile.read(length) if length else b""
        except OSError:
            req.close_connection = True
            return error(400, "the request body ended early")
        if len(body) < length:
            req.close_connection = True
            return error(400, f"the request body ended after {len(body)} of {length} bytes")
        analyze = self._analyze
        if analyze is None:
            return error(503, "the model is still loading", {"Retry-After": "2"})
        try:
            name, data = _upload(req.headers.get("Content-Type", ""), body)
        except ValueError as exc:
            return error(400, str(exc))
        if not self._predict_slots.acquire(blocking=False):
            return error(503, f"busy: {o.max_predicts} images are being analysed, try again",
                         {"Retry-After": "1"})
        try:
            frame = decode_image(data, "bgr", o.max_pixels, name)
            faces = analyze(frame)
            if query.get("annotate", ["0"])[0] not in ("1", "true", "yes"):
                return (200, json.dumps(ImageResult(name, faces).to_dict()).encode(),
                        "application/json", {})
            hide(frame, faces, privacy_mode(o.blur_faces, o.privacy))
            ok, buf = cv2.imencode(".jpg", draw_faces(frame, faces),
                                   [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not ok:
                return error(500, "cannot encode the annotated image")
            return 200, buf.tobytes(), "image/jpeg", {}
        except ImageTooLarge as exc:
            return error(413, str(exc))
        except InputError as exc:
            return error(400, str(exc))
        finally:
            self._predict_slots.release()

    def _send_error(self, req: _Handler, code: int, message: str, headers: dict | None = None) -> None:
        self._send(req, code, json.dumps({"error": message}).encode(), "application/json", headers)

    def _count(self, route: str, code: int) -> None:
        self._requests.labels(route=route, code=str(code)).inc()

    @staticmethod
    def _send(req: _Handler, code: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        req.send_response(code)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.send_header("Cache-Control", "no-store")
        req.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            req.send_header(k, v)
        req.end_headers()
        if body:
            req.wfile.write(body)

    def _send_json(self, req: _Handler, obj) -> None:
        self._send(req, 200, json.dumps(obj, allow_nan=False).encode("utf-8"),
                   "application/json")

    def _stream(self, req: _Handler) -> None:
        with self._cond:
            full = self._streams >= self.options.max_streams
            if not full:
                self._streams += 1
        if full:
            self._count("stream", 503)
            self._send(req, 503, b"too many stream clients\n", "text/plain; charset=utf-8",
                       {"Retry-After": "5"})
            return
        self._count("stream", 200)
        try:
            req.send_response(200)
            req.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            req.send_header("Cache-Control", "no-store")
            req.send_header("X-Content-Type-Options", "nosniff")
            req.end_headers()
            min_gap = 1.0 / self.options.max_stream_fps if self.options.max_stream_fps > 0 else 0.0
            sent = 0
            while not self._stop.is_set():
                if self._wait_newer(sent, timeout=0.5) is None:
                    continue
                started = time.monotonic()
                data, sent = self.jpeg()
                if data is None:
                    continue
                req.wfile.write(b"--" + BOUNDARY.encode() + b"\r\nContent-Type: image/jpeg\r\n"
                                + f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n")
                req.wfile.flush()
                if min_gap:
                    self._stop.wait(max(0.0, min_gap - (time.monotonic() - started)))
        except (OSError, ValueError) as exc:
            # Timeout (a client that stopped reading), reset, or broken pipe: drop this client only.
            log.debug("stream client %s dropped: %s", req.client_address, exc)
            req.close_connection = True
        finally:
            with self._cond:
                self._streams -= 1


def _drain(req: _Handler, limit: int) -> None:
    """Read and drop up to `limit` bytes of the request body, stopping at the first stall."""
    left = limit
    try:
        req.connection.settimeout(0.2)
        while left > 0:
            chunk = req.rfile.read1(min(left, 65536))
            if not chunk:
                return
            left -= len(chunk)
    except OSError:
        return


def _upload(ctype: str, body: bytes) -> tuple[str, bytes]:
    """(file name, image bytes) of a request body: a multipart/form-data upload (its first
    file, else its first part) or the raw image. ValueError when there is nothing."""
    if not body:
        raise ValueError("no image in the request: send its bytes as the body, or a "
                         "multipart/form-data upload")
    if not ctype.lower().startswith("multipart/form-data"):
        return "upload", body
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + body)
    parts = [p for p in message.iter_parts()] if message.is_multipart() else []
    if not parts:
        raise ValueError("the multipart upload has no parts (is its boundary right?)")
    files = [p for p in parts if p.get_filename()] or parts
    part = files[0]
    data = part.get_payload(decode=True) or b""
    if not data:
        raise ValueError("the uploaded file is empty")
    return part.get_filename() or "upload", data


@contextmanager
def _lower_priority(nice: int):
    """Run the block at `nice` more niceness on this thread (Linux only), then restore it where
    the system allows (raising priority back needs CAP_SYS_NICE or RLIMIT_NICE)."""
    tid = threading.get_native_id()
    try:
        before = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, before + nice))
    except (OSError, AttributeError):
        yield
        return
    try:
        yield
    finally:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, before)
        except OSError:
            pass  # stays lower: this thread serves only this connection


def metric_name(stat: str) -> tuple[str, float]:
    """The Prometheus name of a `StatsSnapshot` field and the factor to its value: `edge_fer_`
    + the field's name in Prometheus base units (`_ms` and `_s` fields become `_seconds`).
    Counters get the `_total` suffix from the client library when exposed."""
    if stat.endswith("_ms"):
        return f"edge_fer_{stat[:-3]}_seconds", 1e-3
    if stat.endswith("_s"):
        return f"edge_fer_{stat[:-2]}_seconds", 1.0
    return f"edge_fer_{stat}", 1.0


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


class _StatsCollector:
    """Prometheus collector reading the newest stats at scrape time (no copies kept in step).

    Every `StatsSnapshot` field with a metric kind is exported under `metric_name(field)`, with
    the field's documentation as its help: a figure has one name and one meaning everywhere."""

    _FAMILIES = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}

    def __init__(self, sink: ServerSink):
        self._sink = sink

    def describe(self):
        return []

    def collect(self):
        result, stats, _, age = self._sink.snapshot()
        yield InfoMetricFamily("edge_fer_build", "edge-fer version", value={"version": __version__})
        for f in fields(StatsSnapshot) if stats is not None else ():
            kind = f.metadata["metric"]
            value = _number(getattr(stats, f.name))
            if kind is None or value is None:
                continue
            name, factor = metric_name(f.name)
            yield self._FAMILIES[kind](name, f.metadata["doc"], value=value * factor)
        by_label = GaugeMetricFamily("edge_fer_faces_by_label", "Faces in the newest frame, by smoothed emotion",
                                     labels=["label"])
        counts: dict[str, int] = {}
        for f in (result.faces if result is not None else []):
            counts[f.label] = counts.get(f.label, 0) + 1
        for label, n in sorted(counts.items()):
            by_label.add_metric([label], n)
        yield by_label
        if math.isfinite(age):
            yield GaugeMetricFamily("edge_fer_last_frame_age_seconds",
                                    "Seconds since the newest processed frame (alert when it grows)",
                                    value=age)
        yield GaugeMetricFamily("edge_fer_stream_clients", "Connected /stream.mjpg clients",
                                value=self._sink.stream_clients)
        yield CounterMetricFamily("edge_fer_stream_frames_encoded", "Frames encoded to JPEG for the stream",
                                  value=self._sink.frames_encoded)
        for name, (status, metrics) in self._sink.statuses().items():
            for key, (kind, doc) in metrics.items():
                value = _number(status.get(key))
                if value is not None:
                    yield self._FAMILIES[kind](f"edge_fer_{name}_{key}", doc, value=value)
