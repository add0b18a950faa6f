"""`/stream.mjpg`: the live view as MJPEG (multipart/x-mixed-replace), one JPEG per part.

Each stream client runs in its own HTTP thread and always takes the newest frame
(`ServerState.jpeg()`), so a slow client skips frames instead of queueing them; one that stops
reading is dropped when its socket send times out (`ServerOptions.client_timeout`).
`max_stream_fps` caps how often a client is sent a frame, the encoding and sending cost on a Pi.
How many clients may watch at once is the router's decision (`ServerState.stream_slot`).
"""

from __future__ import annotations

import logging
import time
from http.server import BaseHTTPRequestHandler

from edge_fer.sinks.server.state import ServerState

log = logging.getLogger(__name__)

#: The multipart boundary between two frames.
BOUNDARY = "edgeferframe"


def send_stream(req: BaseHTTPRequestHandler, state: ServerState) -> None:
    """Answer `req` with 200 and a frame each time a newer one arrives, until the server stops
    or the client goes away."""
    options = state.options
    stopped = state.stopped
    try:
        req.send_response(200)
        req.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        req.send_header("Cache-Control", "no-store")
        req.send_header("X-Content-Type-Options", "nosniff")
        req.end_headers()
        min_gap = 1.0 / options.max_stream_fps if options.max_stream_fps > 0 else 0.0
        sent = 0
        while not stopped.is_set():
            if state.wait_newer(sent, timeout=0.5) is None:
                continue
            started = time.monotonic()
            data, sent = state.jpeg()
            if data is None:
                continue
            req.wfile.write(b"--" + BOUNDARY.encode() + b"\r\nContent-Type: image/jpeg\r\n"
                            + f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n")
            req.wfile.flush()
            if min_gap:
                stopped.wait(max(0.0, min_gap - (time.monotonic() - started)))
    except (OSError, ValueError) as exc:
        # Timeout (a client that stopped reading), reset, or broken pipe: drop this client only.
        log.debug("stream client %s dropped: %s", req.client_address, exc)
        req.close_connection = True
