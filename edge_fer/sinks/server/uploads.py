"""`POST /api/predict`: an uploaded image's faces, as `edge-fer predict --json` gives them, or the
image annotated.

The server never imports the analysis: the assembly hands it a callable (`AnalyzeFn`, an
`Analyzer`'s `analyze` with a model instance of its own, `ServerSink.serve_predictions`). What
guards the camera loop lives here: the body size and pixel caps (413 before decoding), a few
uploads at a time (503 with Retry-After past `max_predicts`), and the handling thread made
nicer (`_lower_priority`) so uploads never take the cores the camera loop needs.
"""

from __future__ import annotations

import email.policy
import json
import os
import threading
from contextlib import contextmanager
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler
from typing import Callable

import cv2
import numpy as np

from edge_fer.draw import draw_faces, hide
from edge_fer.exposure import privacy_mode
from edge_fer.errors import InputError
from edge_fer.images import ImageTooLarge, decode_image
from edge_fer.predict import Face, ImageResult
from edge_fer.sinks.server.options import ServerOptions

#: What answers `POST /api/predict`: a decoded frame (uint8 BGR) in, its faces out, largest first
#: (`edge_fer.analyzer.Analyzer.analyze`).
AnalyzeFn = Callable[[np.ndarray], "list[Face]"]


class Uploads:
    """The `POST /api/predict` route's work: read, check, decode, analyse, answer."""

    def __init__(self, options: ServerOptions):
        self.options = options
        self.analyze: AnalyzeFn | None = None
        """What analyses an upload; None (503, the model is still loading) until it is given."""
        self._slots = threading.BoundedSemaphore(options.max_predicts)

    def answer(self, req: BaseHTTPRequestHandler, query: dict) -> tuple[int, bytes, str, dict]:
        """(status, body, content type, extra headers) for an authorized upload `req`."""
        # The whole upload, from reading its body to the 503 of a busy server, runs nicer than
        # the camera loop: with uploads hammering, that is what keeps the loop's cores its own.
        with _lower_priority(self.options.predict_nice):
            return self._predict(req, query)

    def _predict(self, req: BaseHTTPRequestHandler, query: dict) -> tuple[int, bytes, str, dict]:
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
        analyze = self.analyze
        if analyze is None:
            return error(503, "the model is still loading", {"Retry-After": "2"})
        try:
            name, data = _upload(req.headers.get("Content-Type", ""), body)
        except ValueError as exc:
            return error(400, str(exc))
        if not self._slots.acquire(blocking=False):
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
            self._slots.release()


def _drain(req: BaseHTTPRequestHandler, limit: int) -> None:
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
