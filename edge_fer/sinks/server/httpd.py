"""The HTTP side of the kiosk page: the threaded server, its request handler, who may ask
(a bearer token) and which route answers.

Each HTTP client has its own thread (stdlib `ThreadingHTTPServer`). `Router` checks the token,
picks the route and counts the answer by route and status; the answers themselves come from the
rooms beside it: the page (`page`), the newest frame and faces (`state`), the MJPEG stream
(`stream`), uploads (`uploads`) and the metrics registry (`metrics`).

Routes: `/` page, `/stream.mjpg`, `/frame.jpg`, `/api/stats`, `/api/faces`, `/metrics`, and
`POST /api/predict`.
"""

from __future__ import annotations

import errno
import hmac
import json
import logging
import re
import socket
import socketserver
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from edge_fer import __version__
from edge_fer.errors import UsageError
from edge_fer.network import MIN_TOKEN_LENGTH, check_token, is_loopback
from edge_fer.sinks.server.options import ServerOptions
from edge_fer.sinks.server.page import load_page
from edge_fer.sinks.server.state import ServerState, finite
from edge_fer.sinks.server.stream import send_stream
from edge_fer.sinks.server.uploads import Uploads

log = logging.getLogger(__name__)

_TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s]*")


def check_access(opts: ServerOptions) -> None:
    """UsageError when the token is too weak, or when a non-loopback address has none."""
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


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # A restarted service must be able to rebind while old connections sit in TIME_WAIT.
    allow_reuse_address = True

    def __init__(self, address, family: int, router: Router):
        self.address_family = family
        self.router = router
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
        self.timeout = self.server.router.options.client_timeout
        super().setup()

    def log_message(self, format, *args):  # noqa: A002 (the stdlib's name)
        # Request lines carry ?token=...: keep the secret out of the journal.
        log.debug("%s %s", self.address_string(), _TOKEN_IN_URL.sub(r"\1***", format % args))

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        self.server.router.get(self)

    def do_POST(self):  # noqa: N802
        self.server.router.post(self)

    def do_HEAD(self):  # noqa: N802
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED)


def bind(router: Router) -> ThreadingHTTPServer:
    """The server bound to `router.options`' address (not yet serving). UsageError, with what to
    do, when the address is unknown, taken, privileged or not this machine's."""
    o = router.options
    where = f"{o.host}:{o.port}"
    try:
        infos = socket.getaddrinfo(o.host, o.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"cannot serve on {where}: unknown host ({exc.strerror}): use an IP "
                         "address such as 127.0.0.1") from None
    family, _, _, _, sockaddr = infos[0]
    try:
        return _HTTPServer(sockaddr, family, router)
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



class Router:
    """Answers each request: the token first, then the route, each answer counted by route and
    status on `requests` (`edge_fer_http_requests_total`)."""

    def __init__(self, state: ServerState, uploads: Uploads, registry: CollectorRegistry,
                 requests: Counter):
        self.options = state.options
        self.state = state
        self.uploads = uploads
        self.registry = registry
        self._requests = requests
        self._page, self._csp = load_page()

    def _authorized(self, req: BaseHTTPRequestHandler, query: dict) -> bool:
        token = self.options.token
        if not token:
            return True
        auth = req.headers.get("Authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else query.get("token", [""])[0]
        return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))

    _ROUTES = {"/": "page", "/index.html": "page", "/stream.mjpg": "stream", "/frame.jpg": "frame",
               "/api/stats": "stats", "/api/faces": "faces", "/metrics": "metrics",
               "/favicon.ico": "favicon", "/api/predict": "predict"}

    def get(self, req: BaseHTTPRequestHandler) -> None:
        """Answer a GET."""
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
            _, stats, _, _ = self.state.snapshot()
            self._count(route, 200)
            body = stats.to_dict() if stats is not None else {}
            body.update({name: status for name, (status, _) in self.state.statuses().items()})
            self._send_json(req, finite(body))
        elif route == "faces":
            self._count(route, 200)
            self._send_json(req, self.state.faces_json())
        elif route == "metrics":
            self._count(route, 200)
            self._send(req, 200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif route == "frame":
            data, _ = self.state.jpeg()
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

    def post(self, req: BaseHTTPRequestHandler) -> None:
        """Answer a POST: only `/api/predict` takes one."""
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
        code, body, ctype, headers = self.uploads.answer(req, query)
        self._count("predict", code)
        self._send(req, code, body, ctype, headers)

    def _send_error(self, req: BaseHTTPRequestHandler, code: int, message: str,
                    headers: dict | None = None) -> None:
        self._send(req, code, json.dumps({"error": message}).encode(), "application/json", headers)

    def _count(self, route: str, code: int) -> None:
        self._requests.labels(route=route, code=str(code)).inc()

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str,
              headers: dict | None = None) -> None:
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

    def _send_json(self, req: BaseHTTPRequestHandler, obj) -> None:
        self._send(req, 200, json.dumps(obj, allow_nan=False).encode("utf-8"),
                   "application/json")

    def _stream(self, req: BaseHTTPRequestHandler) -> None:
        with self.state.stream_slot(self.options.max_streams) as admitted:
            if not admitted:
                self._count("stream", 503)
                self._send(req, 503, b"too many stream clients\n", "text/plain; charset=utf-8",
                           {"Retry-After": "5"})
                return
            self._count("stream", 200)
            send_stream(req, self.state)
