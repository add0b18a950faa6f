"""The README's two pictures, made here in headless Chromium from a real `edge-fer run --serve`:
the kiosk page over a live clip (docs/img/kiosk.png) and a photo analysed through the page's
upload form (docs/img/annotated-photo.png). Both show FER2013 PrivateTest faces (the shared
photos are not cleared for showing; the London faces must never be shown).

The test always makes both pictures and checks them; with EDGE_FER_DOCS_IMG=1 it also writes
them into docs/img/ (commit them when the page or the annotation changes)."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from clips import textured_background
from kiosk_helpers import LABELS, REPO, alive, free_port, get_json, spawn_run, stop_run, wait_for

selenium = pytest.importorskip("selenium", reason="pip install selenium (the dev extra)")
from chromium import NEEDS_CHROMIUM, headless_chromium  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = NEEDS_CHROMIUM

DOCS_IMG = REPO / "docs" / "img"
PICTURES = ("kiosk.png", "annotated-photo.png")
SCENE = (640, 480)
FACE_PX = 150
#: One FER2013 PrivateTest face per class, placed left to right.
CLASSES = ("happy", "surprise", "neutral")
SLOTS = [(45, 150), (245, 150), (445, 150)]


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / float(aw * ah + bw * bh - w * h)


def place(canvas: np.ndarray, face: np.ndarray, slot) -> tuple[int, int, int, int]:
    x, y = slot
    canvas[y:y + FACE_PX, x:x + FACE_PX] = cv2.cvtColor(
        cv2.resize(face, (FACE_PX, FACE_PX), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
    return (x, y, FACE_PX, FACE_PX)


def make_scene(fer_dir: Path, default_model: Path) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A 640x480 frame with the first face (in file order) of each class that Haar finds where it
    was put: the picture's faces are chosen for being detected, never for being classified right."""
    import edge_fer

    analyzer = edge_fer.Analyzer(model=str(default_model), detector="haar")
    canvas = textured_background(SCENE)
    boxes = []
    for name, slot in zip(CLASSES, SLOTS):
        for path in sorted((fer_dir / "privatetest" / name).glob("*.jpg"))[:40]:
            face = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            trial = canvas.copy()
            box = place(trial, face, slot)
            found = analyzer.analyze(trial)
            if len(found) == len(boxes) + 1 and all(max(iou(f.box, b) for f in found) >= 0.5
                                                   for b in [*boxes, box]):
                canvas, boxes = trial, [*boxes, box]
                break
        else:
            raise AssertionError(f"Haar finds none of the first 40 {name} faces")
    return canvas, boxes


@pytest.fixture(scope="module")
def scene(tmp_path_factory, fer_dir, default_model):
    folder = tmp_path_factory.mktemp("docs-pictures")
    frame, boxes = make_scene(fer_dir, default_model)
    photo = folder / "faces.png"
    cv2.imwrite(str(photo), frame)
    clip = folder / "faces.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 15, SCENE)
    rng = np.random.default_rng(7)
    for _ in range(30):  # the same faces, with a camera's noise from frame to frame
        noise = rng.normal(0, 3, frame.shape)
        writer.write(np.clip(frame + noise, 0, 255).astype(np.uint8))
    writer.release()
    return folder, photo, clip, frame, boxes


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    yield from headless_chromium(tmp_path_factory.mktemp("chromium"), (1024, 720), "--hide-scrollbars")


def decode(png: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a PNG"
    return image


def keep(pictures: dict[str, bytes], folder: Path) -> None:
    targets = [folder] + ([DOCS_IMG] if os.environ.get("EDGE_FER_DOCS_IMG") == "1" else [])
    for target in targets:
        target.mkdir(parents=True, exist_ok=True)
        for name, png in pictures.items():
            (target / name).write_bytes(png)


def test_the_readme_pictures_show_a_real_run(browser, scene, default_model):
    folder, photo, clip, frame, boxes = scene
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with spawn_run(["--source", clip, "--loop", "--realtime", "--serve", f"127.0.0.1:{port}",
                    "--model", default_model], cwd=folder) as proc:
        wait_for(lambda: alive(proc) and get_json(url + "api/stats"), 60, "the page to be served")
        browser.get(url)
        wait = WebDriverWait(browser, 30, poll_frequency=0.2)
        # The page as a visitor sees it: every face of the clip listed with a label the live
        # run gave it, and a frame rate.
        wait.until(lambda d: d.execute_script(
            "return document.querySelectorAll('#faces li.face').length") == len(boxes))
        shown = browser.execute_script(
            "return [...document.querySelectorAll('#faces li.face .label')].map(e => e.textContent)")
        assert set(shown) <= set(LABELS), shown
        wait.until(lambda d: (d.find_element(By.ID, "fps").text.replace(".", "", 1).isdigit()
                              and float(d.find_element(By.ID, "fps").text) > 0))
        kiosk = browser.get_screenshot_as_png()
        viewport = browser.execute_script("return [window.innerWidth, window.innerHeight]")

        # The same photo through the page's upload form: the annotated copy the server sends.
        browser.find_element(By.CSS_SELECTOR, "#upload-panel summary").click()
        browser.find_element(By.ID, "upload-file").send_keys(str(photo))
        browser.find_element(By.ID, "upload-send").click()
        wait.until(lambda d: d.find_element(By.ID, "upload-image").is_displayed()
                   and d.execute_script("return document.getElementById('upload-image').complete"))
        uploaded = browser.execute_script(
            "return [...document.querySelectorAll('#upload-faces li')].map(e => e.textContent)")
        annotated = browser.find_element(By.ID, "upload-image").screenshot_as_png
        request = urllib.request.Request(url + "api/predict", data=photo.read_bytes(), method="POST")
        with urllib.request.urlopen(request, timeout=60) as r:
            answer = json.load(r)
        stop_run(proc)

    # The kiosk picture is the whole window, its live view a real frame, not a blank image.
    page = decode(kiosk)
    assert [page.shape[1], page.shape[0]] == viewport, (page.shape, viewport)
    assert page.std() > 20

    # The upload found exactly the faces placed in the photo, and the picture is that photo
    # with something drawn on each face's border: where the box is, it differs from the photo.
    assert len(uploaded) == len(answer["faces"]) == len(boxes), (uploaded, answer)
    for box in boxes:
        assert max(iou(tuple(f["box"]), box) for f in answer["faces"]) >= 0.5, (box, answer)
    picture = decode(annotated)
    h, w = picture.shape[:2]
    assert abs(w / h - SCENE[0] / SCENE[1]) < 0.03, picture.shape
    diff = np.abs(cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA).astype(int)
                  - picture.astype(int)).mean(axis=2)
    sx, sy = w / SCENE[0], h / SCENE[1]
    for f in answer["faces"]:
        x, y, bw, bh = (int(round(v * s)) for v, s in zip(f["box"], (sx, sy, sx, sy)))
        edge = np.concatenate([diff[max(0, y - 1):y + 2, x:x + bw].ravel(),
                               diff[y:y + bh, max(0, x - 1):x + 2].ravel()])
        inside = diff[y + bh // 4:y + 3 * bh // 4, x + bw // 4:x + 3 * bw // 4]
        assert edge.mean() > 3 * inside.mean() + 10, (f["box"], edge.mean(), inside.mean())
    keep({"kiosk.png": kiosk, "annotated-photo.png": annotated}, folder)


def test_the_readme_shows_the_pictures_the_test_makes():
    readme = (REPO / "README.md").read_text()
    for name in PICTURES:
        path = DOCS_IMG / name
        assert path.is_file(), f"{path} is missing: EDGE_FER_DOCS_IMG=1 pytest {Path(__file__).name}"
        assert decode(path.read_bytes()).std() > 20, name
        assert f"](docs/img/{name})" in readme, f"README does not show docs/img/{name}"
