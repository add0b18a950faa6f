"""The kiosk page itself: `edge_fer/web/index.html` filled in from the model card, and the
Content-Security-Policy that lets exactly its one inline script run.

The HTML is package data of `edge_fer.web` (setup.cfg), read through `importlib.resources` so it
is found in a checkout, an editable install and a wheel alike.
"""

from __future__ import annotations

import hashlib
from base64 import b64encode
from importlib import resources

from edge_fer.card import page_fields, read_card


def load_page() -> tuple[bytes, str]:
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
