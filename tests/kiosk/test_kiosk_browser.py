"""The kiosk page in headless Chromium, fed by the real pipeline over a test clip: the live image
updates and the faces the pipeline found show up with their labels."""

from __future__ import annotations

import threading

import pytest

from clips import FakePicamera2
from edge_fer.sinks.base import Sink
from edge_fer.sinks.server import ServerOptions, ServerSink

selenium = pytest.importorskip("selenium", reason="pip install selenium (the dev extra)")
from chromium import NEEDS_CHROMIUM, headless_chromium  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = NEEDS_CHROMIUM
TOKEN = "browser-test-token-0123456789"

# Draws the <img> into a canvas and hashes its pixels: changes when a new MJPEG part is shown.
PIXEL_HASH = """
const img = document.getElementById('stream');
if (!img.complete || img.naturalWidth === 0) return null;
const c = document.createElement('canvas');
c.width = 64; c.height = 48;
const g = c.getContext('2d');
g.drawImage(img, 0, 0, 64, 48);
const d = g.getImageData(0, 0, 64, 48).data;
let h = 0;
for (let i = 0; i < d.length; i++) h = (h * 31 + d[i]) >>> 0;
return h;
"""


class Seen(Sink):
    """A sink keeping every (track id, label) the pipeline put out."""

    def __init__(self):
        self.faces: set[tuple[int, str]] = set()
        self.lock = threading.Lock()

    def on_result(self, result, stats):
        with self.lock:
            self.faces.update((f.track_id, f.label) for f in result.faces)

    def snapshot(self) -> set[tuple[int, str]]:
        with self.lock:
            return set(self.faces)


@pytest.fixture(scope="module")
def live(clip, default_model):
    """The real pipeline and model over a test clip from a camera that loops it, serving the
    page twice: on one port openly, on another with a token."""
    from edge_fer.classifier import EmotionClassifier
    from edge_fer.detector import DetectorOptions, HaarFaceDetector
    from edge_fer.pipeline import PiCameraSource, Pipeline

    classifier = EmotionClassifier(default_model)
    pipeline = Pipeline(PiCameraSource(640, 480, 15, camera=FakePicamera2(clip.path, fps=15)),
                        HaarFaceDetector(DetectorOptions(detect_width=320)), classifier)
    seen = Seen()
    servers = {"open": ServerSink(ServerOptions(port=0, max_stream_fps=10)),
               "token": ServerSink(ServerOptions(port=0, token=TOKEN, max_stream_fps=10))}
    for sink in (seen, *servers.values()):
        pipeline.add_sink(sink)
    pipeline.start()
    yield servers, seen, set(classifier.labels)
    pipeline.stop()
    pipeline.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    yield from headless_chromium(tmp_path_factory.mktemp("chromium"), (1024, 768))


def shown_faces(driver) -> set[tuple[int, str]]:
    # One script call: the list is re-rendered twice a second, so element handles go stale.
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#faces li.face')].map("
        "li => [li.dataset.track, li.querySelector('.label').textContent])")
    return {(int(track), label) for track, label in rows}


def check_page(driver, url, seen, labels):
    driver.get(url)
    wait = WebDriverWait(driver, 15, poll_frequency=0.1)
    first = wait.until(lambda d: d.execute_script(PIXEL_HASH))
    assert driver.execute_script("return document.getElementById('stream').naturalWidth") == 640
    wait.until(lambda d: d.execute_script(PIXEL_HASH) not in (None, first))  # the image updates
    # A face from the clip shows up with its label: one the pipeline gave that very track.
    shown = wait.until(lambda d: shown_faces(d) or None)
    assert {label for _, label in shown} <= labels
    assert shown <= seen.snapshot(), f"page shows {shown}, the pipeline gave {seen.snapshot()}"
    assert wait.until(lambda d: d.find_element(By.ID, "state").text) in ("live", "no new frames")
    # The panel shows "-" and then 0.0 until the rate window has two frames: wait for a rate.
    assert wait.until(lambda d: _number(d.find_element(By.ID, "fps").text) or None) > 0


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def test_page_shows_the_live_stream_and_the_faces(browser, live):
    servers, seen, labels = live
    check_page(browser, servers["open"].url, seen, labels)


def test_page_passes_its_token_on(browser, live):
    servers, seen, labels = live
    check_page(browser, f"{servers['token'].url}?token={TOKEN}", seen, labels)
