"""Privacy options of the kiosk: `--blur-faces` checked on the pixels of the real MJPEG stream
and of a real recording, and `--faces-api aggregate` through a real HTTP client."""

from __future__ import annotations

import http.client
import json
import urllib.request

import cv2
import numpy as np
import pytest

from clips import make_clip
from conftest import run_cli
from edge_fer.draw import hide
from edge_fer.errors import UsageError
from edge_fer.results import FrameResult
from edge_fer.sinks.server import ServerOptions, ServerSink
from kiosk_helpers import load_frames, read_part, stats_for, tracked


def detail(image: np.ndarray, box, shrink: float = 0.2) -> float:
    """High-frequency energy (variance of the Laplacian of the gray image) inside `box`, shrunk
    by `shrink` per side so the drawn box outline is left out."""
    x, y, w, h = box
    dx, dy = int(w * shrink), int(h * shrink)
    gray = cv2.cvtColor(image[y + dy:y + h - dy, x + dx:x + w - dx], cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def stream_frame(sink: ServerSink) -> np.ndarray:
    """The first frame of /stream.mjpg, read with a real HTTP client and decoded."""
    host, port = sink.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/stream.mjpg")
    resp = conn.getresponse()
    assert resp.status == 200
    headers, body = read_part(resp)
    conn.close()
    assert headers["content-type"] == "image/jpeg"
    return cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)


@pytest.fixture(scope="module")
def photo(images_dir):
    """A real group photo with the faces Haar finds in it (the largest ones)."""
    frames = load_frames(images_dir, width=960)
    img, boxes = max(frames, key=lambda f: sum(b[2] >= 40 for b in f[1]))
    boxes = [b for b in boxes if b[2] >= 40]
    assert len(boxes) >= 2
    return img, boxes


def test_blur_faces_blurs_every_face_in_the_stream_and_nothing_else(photo):
    img, boxes = photo
    result = FrameResult(1, 0.0, 0.01, img, tracked(boxes))
    shown = {}
    for blur in (False, True):
        with ServerSink(ServerOptions(port=0, blur_faces=blur)) as sink:
            sink.on_result(result, stats_for(1, len(boxes)))
            shown[blur] = stream_frame(sink)
    for box in boxes:
        sharp, blurred = detail(shown[False], box), detail(shown[True], box)
        assert sharp > 50, f"the test face at {box} has too little detail to tell: {sharp}"
        assert blurred < 0.1 * sharp, (box, sharp, blurred)
    # Away from the faces the two streams show the same picture.
    mask = np.ones(img.shape[:2], bool)
    for x, y, w, h in boxes:
        mx, my = w // 2 + 8, h // 2 + 40  # the blur margin, the box outline and the label
        mask[max(0, y - my):y + h + my, max(0, x - mx):x + w + mx] = False
    diff = np.abs(shown[True].astype(int) - shown[False].astype(int)).max(axis=2)
    assert mask.mean() > 0.2 and np.percentile(diff[mask], 99) <= 12
    # The analysis never sees the blur: the pipeline's frame is untouched.
    assert detail(img, boxes[0]) > 50 and result.frame is img


def test_blur_faces_blurs_the_recording_from_the_command_line(images_dir, default_model, tmp_path):
    clip = make_clip(tmp_path / "faces.mp4", images_dir, frames=20, leave_at=None)
    rec = tmp_path / "rec.avi"
    r = run_cli("run", "--headless", "--source", clip.path, "--model", default_model,
                "--record", rec, "--blur-faces")
    assert r.returncode == 0, r.stderr[-3000:]
    src, out = cv2.VideoCapture(str(clip.path)), cv2.VideoCapture(str(rec))
    checked = 0
    for i in range(clip.frames):
        ok1, original = src.read()
        ok2, recorded = out.read()
        assert ok1 and ok2, i
        if i < 5:  # the tracker's first boxes settle over the first frames
            continue
        for box in clip.boxes[i]:
            sharp, blurred = detail(original, box), detail(recorded, box)
            assert blurred < 0.15 * sharp, (i, box, sharp, blurred)
            checked += 1
    assert checked >= 40


def test_faces_api_aggregate_tells_counts_per_label_and_nothing_about_a_face(photo):
    img, boxes = photo
    labels = ["happy", "neutral", "happy"]
    faces = tracked(boxes[:3] if len(boxes) >= 3 else boxes + boxes[:1], labels)
    with ServerSink(ServerOptions(port=0, faces_api="aggregate")) as sink:
        url = sink.url
        with urllib.request.urlopen(url + "api/faces", timeout=5) as resp:
            assert json.loads(resp.read()) == {"index": None, "age_s": None, "latency_ms": None,
                                               "count": 0, "counts": {}}
        sink.on_result(FrameResult(9, 0.0, 0.02, img, faces), stats_for(9, 3))
        with urllib.request.urlopen(url + "api/faces", timeout=5) as resp:
            body = resp.read().decode()
    data = json.loads(body)
    assert data["count"] == 3 and data["counts"] == {"happy": 2, "neutral": 1}
    assert set(data) == {"index", "age_s", "latency_ms", "count", "counts"}
    for word in ("box", "track", "faces", "scores"):
        assert word not in body
    # The default stays the full list.
    with ServerSink(ServerOptions(port=0)) as sink:
        sink.on_result(FrameResult(9, 0.0, 0.02, img, faces), stats_for(9, 3))
        with urllib.request.urlopen(sink.url + "api/faces", timeout=5) as resp:
            full = json.loads(resp.read())
    assert [f["track_id"] for f in full["faces"]] == [1, 2, 3]


def test_an_unknown_faces_api_mode_is_refused():
    with pytest.raises(UsageError, match="allowed full or aggregate"):
        ServerOptions(faces_api="boxes")
    r = run_cli("run", "--source", "x.mp4", "--faces-api", "boxes")
    assert r.returncode == 2 and "Traceback" not in r.stderr


# -- privacy that fails safe: a face the detector misses ------------------------------------------

def test_privacy_frame_hides_in_the_stream_the_faces_the_detector_missed(photo):
    img, boxes = photo
    # The detector found only the first face; the others were missed.
    result = FrameResult(1, 0.0, 0.01, img, tracked(boxes[:1]))
    shown = {}
    for mode in ("faces", "frame"):
        with ServerSink(ServerOptions(port=0, privacy=mode)) as sink:
            sink.on_result(result, stats_for(1, 1))
            shown[mode] = stream_frame(sink)
    for i, box in enumerate(boxes):
        sharp = detail(img, box)
        assert sharp > 50, f"the test face at {box} has too little detail to tell: {sharp}"
        assert detail(shown["frame"], box) < 0.1 * sharp, (box, sharp)
        if i:  # --blur-faces hides only what was found: a missed face is served sharp
            assert detail(shown["faces"], box) > 0.5 * sharp, (box, sharp)
    # The found face's box is still drawn on the blurred picture.
    x, y, w, h = boxes[0]
    plain = hide(img.copy(), [], "frame")
    outline = np.abs(shown["frame"][y + h // 2, x - 1:x + 2].astype(int)
                     - plain[y + h // 2, x - 1:x + 2].astype(int)).max()
    assert outline > 60
    assert result.frame is img


def _two_face_clip(path, images_dir, frames: int = 15):
    """A still clip of a close face (200 px) and a far one (60 px): `--min-face 80` makes the
    detector miss the far one."""
    from clips import face_sprites, textured_background

    frame = textured_background((640, 480))
    boxes = []
    for (sprite, (fx, fy, fw, fh)), (x0, y0) in zip(
            [face_sprites(images_dir, 200)[0], face_sprites(images_dir, 60)[1]], [(40, 60), (460, 120)]):
        sh, sw = sprite.shape[:2]
        frame[y0:y0 + sh, x0:x0 + sw] = sprite
        boxes.append((x0 + fx, y0 + fy, fw, fh))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (640, 480))
    for _ in range(frames):
        writer.write(frame)
    writer.release()
    return frame, boxes


def test_privacy_frame_records_no_sharp_face_when_the_detector_misses_one(images_dir, default_model,
                                                                         tmp_path):
    clip = tmp_path / "two.mp4"
    _, (near, far) = _two_face_clip(clip, images_dir)
    recorded = {}
    for flag in (["--blur-faces"], ["--privacy", "frame"]):
        rec, res = tmp_path / f"rec{len(recorded)}.avi", tmp_path / f"res{len(recorded)}.jsonl"
        r = run_cli("run", "--headless", "--source", clip, "--model", default_model,
                    "--min-face", "80", "--record", rec, "--results", res, *flag)
        assert r.returncode == 0, r.stderr[-3000:]
        found = {tuple(f["box"]) for line in res.read_text().splitlines()
                 for f in json.loads(line)["faces"]}
        # The detector found the near face only, on every frame.
        assert found and all(iou(b, near) > 0.5 and iou(b, far) == 0 for b in found), found
        cap = cv2.VideoCapture(str(rec))
        recorded[flag[-1]] = [cap.read()[1] for _ in range(15)]
        cap.release()
    src = cv2.VideoCapture(str(clip))
    original = src.read()[1]
    src.release()
    sharp_near, sharp_far = detail(original, near), detail(original, far)
    assert sharp_near > 50 and sharp_far > 50
    for i in range(15):
        faces, frame = recorded["--blur-faces"][i], recorded["frame"][i]
        assert detail(faces, near) < 0.15 * sharp_near
        assert detail(faces, far) > 0.5 * sharp_far  # the documented limit of --blur-faces
        assert detail(frame, near) < 0.15 * sharp_near and detail(frame, far) < 0.15 * sharp_far, i


def iou(a, b) -> float:
    from edge_fer.pipeline.tracking import iou_matrix

    return float(iou_matrix([a], [b])[0, 0])


def test_an_unknown_privacy_mode_is_refused(tmp_path):
    with pytest.raises(UsageError, match="privacy 'blur'"):
        ServerOptions(port=0, privacy="blur")
    r = run_cli("run", "--headless", "--source", tmp_path / "none.mp4", "--privacy", "blur")
    assert r.returncode != 0 and "--privacy" in r.stderr and "Traceback" not in r.stderr
