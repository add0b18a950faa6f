"""`POST /api/predict` on the real server with the real model, driven by real HTTP clients: each
status it answers, the thin client `edge-fer predict --server` end to end, and the upload form
in headless Chromium."""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import urllib.error
import urllib.request
import uuid
import zlib

import cv2
import numpy as np
import pytest

from clips import make_clip
from conftest import assert_one_line_error, run_cli
from edge_fer.analyzer import Analyzer
from edge_fer.assemble import upload_analyzer
from edge_fer.predict import ImageResult
from edge_fer.sinks.server import ServerOptions, ServerSink
from kiosk_helpers import alive, free_port, spawn_run, stop_run, wait_for

TOKEN = "predict-test-token-0123456789"


@pytest.fixture(scope="module")
def photo(images_dir):
    return images_dir / "test_image.jpg"


@pytest.fixture(scope="module")
def analyzer(default_model):
    return upload_analyzer(model=str(default_model))


@pytest.fixture(scope="module")
def server(analyzer):
    with ServerSink(ServerOptions(port=0, max_upload_bytes=3 * 1024 * 1024)) as sink:
        sink.serve_predictions(analyzer.analyze)
        yield sink


def post(url, body: bytes, headers=None, timeout=60):
    """(status, headers, body) of a POST, whatever the status."""
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def error_of(status, headers, body, code):
    assert status == code, (status, body[:300])
    assert headers["Content-Type"] == "application/json"
    message = json.loads(body)["error"]
    assert isinstance(message, str) and message
    return message


def multipart(name: str, data: bytes, field: str = "image") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{name}\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() + data \
        + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_raw_and_multipart_uploads_answer_what_predict_json_prints(server, photo, default_model):
    data = photo.read_bytes()
    local = Analyzer(default_model).analyze(str(photo))  # predict's own defaults
    assert len(local) >= 3
    status, headers, body = post(server.url + "api/predict", data)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == ImageResult("upload", local).to_dict()
    mp, ctype = multipart("party photo.jpg", data)
    status, _, body = post(server.url + "api/predict", mp, {"Content-Type": ctype})
    assert status == 200, body[:300]
    assert json.loads(body) == ImageResult("party photo.jpg", local).to_dict()


def test_annotate_returns_the_annotated_jpeg(server, photo):
    status, headers, body = post(server.url + "api/predict?annotate=1", photo.read_bytes())
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    annotated = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imread(str(photo))
    assert annotated.shape == original.shape
    # Boxes and labels were drawn: the pictures differ, and only in part.
    diff = np.abs(annotated.astype(int) - original.astype(int)).max(axis=2) > 60
    assert 0.001 < diff.mean() < 0.2


def bomb_png(side: int) -> bytes:
    """A real PNG of side x side gray pixels (all black) that compresses to a few hundred kB:
    decoded it would take side * side bytes."""
    comp = zlib.compressobj(9)
    row = b"\0" * (side + 1)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (len(payload).to_bytes(4, "big") + kind + payload
                + zlib.crc32(kind + payload).to_bytes(4, "big"))

    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_bad_uploads_get_a_clear_status_and_a_json_error(server, photo):
    url = server.url + "api/predict"
    assert "no image" in error_of(*post(url, b""), 400)
    assert "not a readable image" in error_of(*post(url, b"hello, this is text\n" * 50), 400)
    data = photo.read_bytes()
    assert "truncated" in error_of(*post(url, data[:len(data) // 2]), 400)
    png = cv2.imencode(".png", cv2.imread(str(photo)))[1].tobytes()
    assert "not a readable image" in error_of(*post(url, png[:len(png) * 2 // 3]), 400)
    bomb = bomb_png(10_000)
    assert len(bomb) < 1024 * 1024
    message = error_of(*post(url, bomb), 413)
    assert "10000x10000" in message and "over the limit" in message
    big = data * 8  # 8 x the photo: over the server's 3 MiB
    assert len(big) > 3 * 1024 * 1024
    assert "over the limit" in error_of(*post(url, big), 413)
    mp, ctype = multipart("empty.jpg", b"")
    assert "empty" in error_of(*post(url, mp, {"Content-Type": ctype}), 400)
    # The method and route rules.
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(url, timeout=5)
    assert exc.value.code == 405
    assert error_of(*post(server.url + "api/faces", data), 405)
    assert error_of(*post(server.url + "nothing", data), 404)
    # Still serving after all that.
    assert post(url, data)[0] == 200


def test_a_body_cut_short_is_a_400(server, photo):
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest("POST", "/api/predict")
    conn.putheader("Content-Length", "100000")
    conn.endheaders()
    conn.send(photo.read_bytes()[:5000])
    conn.sock.shutdown(1)  # the client stops sending
    r = conn.getresponse()
    assert r.status == 400 and "ended" in json.loads(r.read())["error"]
    conn.close()


def test_the_token_rules_are_those_of_the_other_routes(analyzer, photo):
    data = photo.read_bytes()
    with ServerSink(ServerOptions(port=0, token=TOKEN)) as sink:
        sink.serve_predictions(analyzer.analyze)
        url = sink.url + "api/predict"
        status, headers, _ = post(url, data)
        assert status == 401 and "Bearer" in headers["WWW-Authenticate"]
        assert post(url, data, {"Authorization": "Bearer wrong-token-0123456789"})[0] == 401
        assert post(url, data, {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert post(f"{url}?token={TOKEN}", data)[0] == 200


def test_more_uploads_than_slots_get_503_with_retry_after(analyzer, photo):
    data = photo.read_bytes()
    with ServerSink(ServerOptions(port=0, max_predicts=2)) as sink:
        sink.serve_predictions(analyzer.analyze)
        results: list[tuple[int, str | None]] = []
        for _ in range(3):
            gate = threading.Barrier(10)

            def one():
                gate.wait()
                status, headers, body = post(sink.url + "api/predict", data)
                results.append((status, headers.get("Retry-After")))

            threads = [threading.Thread(target=one) for _ in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            if any(s == 503 for s, _ in results):
                break
    statuses = {s for s, _ in results}
    assert statuses == {200, 503}, results
    assert all(retry == "1" for s, retry in results if s == 503)
    # Before the model is there, the route says so.
    with ServerSink(ServerOptions(port=0)) as sink:
        status, headers, body = post(sink.url + "api/predict", data)
        assert status == 503 and headers["Retry-After"] and "loading" in json.loads(body)["error"]


# -- the thin client against a real `edge-fer run --serve` ---------------------------------------

@pytest.fixture(scope="module")
def running(tmp_path_factory, images_dir, default_model):
    """`edge-fer run --serve` over a clip played at 5 fps (80 s), with a token."""
    folder = tmp_path_factory.mktemp("serve")
    clip = make_clip(folder / "faces.mp4", images_dir, frames=400)
    port = free_port()
    with spawn_run(["--headless", "--source", clip.path, "--realtime", "--fps", 5,
                    "--model", default_model,
                    "--serve", f"127.0.0.1:{port}", "--token", TOKEN, "--duration", 120],
                   cwd=folder) as proc:
        url = f"http://127.0.0.1:{port}/"

        def up():
            alive(proc)
            try:
                return post(url + "api/predict", b"x", {"Authorization": f"Bearer {TOKEN}"})[0] == 400
            except OSError:
                return False

        wait_for(up, 60, "the server to answer /api/predict")
        yield url, proc
        stop_run(proc)


def test_predict_server_prints_what_local_predict_prints(running, images_dir, default_model,
                                                         tmp_path):
    url, _ = running
    images = [images_dir / "test_image.jpg", images_dir / "12_angry_men.jpg"]
    for extra in ([], ["--json"]):
        local = run_cli("predict", *images, "--model", default_model, *extra)
        remote = run_cli("predict", *images, "--server", url, "--token", TOKEN, *extra)
        assert local.returncode == 0 and remote.returncode == 0, remote.stderr[-2000:]
        assert remote.stdout == local.stdout and remote.stdout.count("\n") == 2
    r = run_cli("predict", images[0], "--server", url, "--token", TOKEN, "--annotate", tmp_path)
    assert r.returncode == 0, r.stderr
    out = cv2.imread(str(tmp_path / "test_image_annotated.jpg"))
    assert out is not None and out.shape == cv2.imread(str(images[0])).shape


def test_predict_server_errors_are_one_line(running, images_dir, tmp_path):
    url, _ = running
    image = images_dir / "test_image.jpg"
    assert_one_line_error(run_cli("predict", image, "--server", url), "wants a token", code=8)
    assert_one_line_error(run_cli("predict", image, "--server", url, "--token", "x" * 20),
                          "refused the token", code=8)
    assert_one_line_error(run_cli("predict", image, "--server", f"http://127.0.0.1:{free_port()}"),
                          "cannot reach", code=8)
    assert_one_line_error(run_cli("predict", image, "--server", url, "--token", TOKEN,
                                  "--detector", "blazeface"), "--detector has no effect", code=2)
    # A bad file among good ones: its one line, the others' results, exit 3.
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    r = run_cli("predict", text, image, "--server", url, "--token", TOKEN)
    assert_one_line_error(r, "notes.jpg", "the server refused it", code=3)
    assert "test_image.jpg: " in r.stdout


# -- the upload form in headless Chromium --------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="needs Debian's chromium and chromium-driver (ci/kiosk-deps.sh)")
def test_the_upload_form_shows_the_faces_and_the_annotated_photo(running, photo, default_model,
                                                                  tmp_path):
    pytest.importorskip("selenium", reason="pip install selenium (the dev extra)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = running
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1024,768",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        driver.get(f"{url}?token={TOKEN}")
        wait = WebDriverWait(driver, 30, poll_frequency=0.1)
        assert "not what anyone feels" in driver.find_element(By.ID, "notice").text
        driver.find_element(By.CSS_SELECTOR, "#upload-panel summary").click()
        driver.find_element(By.ID, "upload-file").send_keys(str(photo))
        driver.find_element(By.ID, "upload-send").click()
        wait.until(lambda d: d.execute_script(
            "const i = document.getElementById('upload-image'); return i.complete && i.naturalWidth"))
        rows = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#upload-faces li")]
        local = Analyzer(default_model).analyze(str(photo))
        assert rows == [f"{f.label} {round(f.score * 100)}% at {', '.join(map(str, f.box))}"
                        for f in local]
        assert driver.execute_script("return document.getElementById('upload-image').naturalWidth") \
            == cv2.imread(str(photo)).shape[1]
        status = driver.find_element(By.ID, "upload-status").text
        assert status == f"{len(local)} face(s) in {photo.name}"
        # A file that is not an image: the server's reason, in the form.
        bad = tmp_path / "notes.png"
        bad.write_text("not an image")
        driver.find_element(By.ID, "upload-file").send_keys(str(bad))
        driver.find_element(By.ID, "upload-send").click()
        message = wait.until(lambda d: (t := d.find_element(By.ID, "upload-status").text)
                             .startswith("not analysed") and t)
        assert "not a readable image" in message
    finally:
        driver.quit()
