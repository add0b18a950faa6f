"""The kiosk page in headless Chromium: the live image updates and the classified faces show up."""

from __future__ import annotations

import shutil

import pytest

from edge_fer.results import TrackedFace
from edge_fer.server import ServerOptions, ServerSink
from kiosk_helpers import Feeder, load_frames

selenium = pytest.importorskip("selenium", reason="pip install selenium (the dev extra)")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (ci/kiosk-deps.sh)")
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


@pytest.fixture(scope="module")
def classified_frames(images_dir, default_model):
    """The test images with the faces the shipped model finds, as the pipeline would hand them on."""
    from edge_fer.classifier import EmotionClassifier
    from edge_fer.detector import DetectorOptions, HaarFaceDetector
    from edge_fer.predict import FacePredictor

    predictor = FacePredictor(EmotionClassifier(default_model), HaarFaceDetector(DetectorOptions(min_size=20)))
    out = []
    for img, _ in load_frames(images_dir):
        faces = [TrackedFace(i + 1, tuple(f.box), f.label, f.score, f.scores, f.label)
                 for i, f in enumerate(predictor.predict_frame(img))]
        out.append((img, faces))
    assert any(faces for _, faces in out), "the detector found no face in the test images"
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1024,768",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def shown_faces(driver) -> set[tuple[int, str]]:
    # One script call: the list is re-rendered twice a second, so element handles go stale.
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#faces li.face')].map("
        "li => [li.dataset.track, li.querySelector('.label').textContent])")
    return {(int(track), label) for track, label in rows}


def check_page(driver, url, frames):
    driver.get(url)
    wait = WebDriverWait(driver, 15, poll_frequency=0.1)
    first = wait.until(lambda d: d.execute_script(PIXEL_HASH))
    assert driver.execute_script("return document.getElementById('stream').naturalWidth") == frames[0][0].shape[1]
    wait.until(lambda d: d.execute_script(PIXEL_HASH) not in (None, first))  # the image updates
    expected = {(f.track_id, f.label) for _, faces in frames for f in faces}
    shown = wait.until(lambda d: shown_faces(d) or None)
    assert shown <= expected, f"page shows {shown}, the feed had {expected}"
    assert wait.until(lambda d: d.find_element(By.ID, "state").text) in ("live", "no new frames")
    fps = wait.until(lambda d: d.find_element(By.ID, "fps").text if d.find_element(By.ID, "fps").text != "-" else None)
    assert float(fps) == 12.5


def test_page_shows_the_live_stream_and_the_faces(browser, classified_frames):
    with ServerSink(ServerOptions(port=0, max_stream_fps=10)) as sink, \
            Feeder(sink, classified_frames, fps=8):
        check_page(browser, sink.url, classified_frames)


def test_page_passes_its_token_on(browser, classified_frames):
    with ServerSink(ServerOptions(port=0, token=TOKEN, max_stream_fps=10)) as sink, \
            Feeder(sink, classified_frames, fps=8):
        check_page(browser, f"{sink.url}?token={TOKEN}", classified_frames)
