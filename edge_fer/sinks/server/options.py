"""Where and how the kiosk page is served: `ServerOptions`, checked when made.

The options are plain data with no server behind them, so `edge_fer.options` and the command
line can build and check them without importing the HTTP machinery.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_fer.errors import UsageError
from edge_fer.exposure import FACES_API_MODES, privacy_mode
from edge_fer.images import DEFAULT_MAX_PIXELS
from edge_fer.network import DEFAULT_SERVE, parse_address


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
