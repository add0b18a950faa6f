"""The thin client of a running `edge-fer run --serve`: images go to its `POST /api/predict`
(`edge-fer predict --server URL`), faces come back as `predict --json` prints them."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from edge_fer.errors import InputError, ServerError
from edge_fer.results import Face

#: Seconds to wait for the server's answer to one image (a large photo on a busy Pi).
TIMEOUT_S = 60.0


class RemotePredictor:
    """Sends images to the server at `url` (the page's address, `http://HOST:PORT/`), with
    `token` when the server wants one."""

    def __init__(self, url: str, token: str | None = None, timeout: float = TIMEOUT_S):
        parts = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServerError(f"--server {url}: give the server's address as http://HOST:PORT")
        self.base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
        self.token = token
        self.timeout = timeout

    def _post(self, data: bytes, name: str, annotate: bool) -> tuple[str, bytes]:
        url = self.base + "api/predict" + ("?annotate=1" if annotate else "")
        headers = {"Content-Type": "application/octet-stream"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                message = json.loads(body)["error"]
            except (ValueError, KeyError, TypeError):
                message = body.decode("utf-8", "replace").strip()[:200] or exc.reason
            if exc.code in (400, 413, 415, 422):
                # This image is the problem: the next one may be fine.
                raise InputError(f"{name}: the server refused it: {message}") from None
            if exc.code == 401:
                raise ServerError(f"{self.base} wants a token: give --token or set "
                                  "$EDGE_FER_TOKEN" if not self.token else
                                  f"{self.base} refused the token") from None
            if exc.code == 404:
                raise ServerError(f"{self.base} has no /api/predict: is it an edge-fer run "
                                  "--serve of this version?") from None
            raise ServerError(f"{self.base}: HTTP {exc.code}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, socket.timeout) or isinstance(exc, TimeoutError):
                reason = f"no answer within {self.timeout:.0f} s"
            raise ServerError(f"cannot reach {self.base}: {reason}") from None

    def predict(self, data: bytes, name: str) -> list[Face]:
        """The faces the server finds in the encoded image `data`; InputError when it refuses
        the image, ServerError when the server cannot answer."""
        ctype, body = self._post(data, name, annotate=False)
        try:
            result: dict[str, Any] = json.loads(body)
            return [Face(tuple(f["box"]), f["label"], f["score"], f["scores"],
                         landmarks=tuple(tuple(p) for p in f.get("landmarks", ())))
                    for f in result["faces"]]
        except (ValueError, KeyError, TypeError):
            raise ServerError(f"{self.base} answered something that is not a result "
                              f"({ctype or 'no content type'})") from None

    def annotated(self, data: bytes, name: str) -> bytes:
        """The server's annotated JPEG of the image."""
        ctype, body = self._post(data, name, annotate=True)
        if not ctype.startswith("image/jpeg"):
            raise ServerError(f"{self.base} answered {ctype or 'nothing'} instead of a JPEG")
        return body
