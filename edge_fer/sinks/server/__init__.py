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

One module per job, each importing only those listed before it:

- `options`: `ServerOptions` (address, token, stream and upload limits, privacy), checked when made.
- `page`: the kiosk page (`edge_fer/web/index.html`, package data) and its Content-Security-Policy.
- `state`: what the pipeline thread hands the HTTP threads: the newest result and stats, the JPEG
  encoded once per frame, `/api/faces`.
- `stream`: `/stream.mjpg`, the MJPEG response.
- `uploads`: `POST /api/predict`: multipart parsing, size and pixel caps, the upload slots, the
  lowered thread priority; the analysis is a callable handed in (`AnalyzeFn`).
- `metrics`: `/metrics`: `metric_name` and the Prometheus collector read at scrape time.
- `httpd`: the threaded HTTP server, its handler, the token check and the routing.
- `sink`: `ServerSink`, which puts them together.

Import from here (`from edge_fer.sinks.server import ServerSink, ServerOptions`).
"""

from edge_fer.sinks.server.metrics import metric_name
from edge_fer.sinks.server.options import FACES_API_MODES, ServerOptions
from edge_fer.sinks.server.sink import ServerSink
from edge_fer.sinks.server.stream import BOUNDARY
from edge_fer.sinks.server.uploads import AnalyzeFn

__all__ = ["BOUNDARY", "FACES_API_MODES", "AnalyzeFn", "ServerOptions", "ServerSink", "metric_name"]
