"""Where the pipeline's results go, one module per sink behind the `Sink` base class.

`log` (a stats line and the end-of-run summary), `jsonlines` (the rotated JSON-lines log),
`results` (every frame's faces, JSON lines or CSV),
`display` (a window), `recorder` (a video file), `server` (the kiosk page, `/api/stats`,
`/metrics`; a package with one module per job) and `systemd` (readiness, status and watchdog).
Import the one you need from its module: the server pulls in prometheus_client, the display a
GUI check.
"""

from edge_fer.sinks.base import Sink

__all__ = ["Sink"]
