"""A cap on decoded image size, checked from the header before decoding (issue 13, case 8: a
950 KB PNG that decodes to 30000 x 30000 took 15 s and 5.3 GB in `predict`)."""

from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
import zlib

import cv2
import numpy as np
import pytest

from conftest import assert_one_line_error
from edge_fer.errors import InputError
from edge_fer.images import DEFAULT_MAX_PIXELS, decode_image, read_image
from edge_fer.imagesize import image_size

W, H = 321, 123
_rng = np.random.default_rng(0)
BGR = _rng.integers(0, 255, (H, W, 3), dtype=np.uint8)

#: (case, extension, image, imencode parameters): every format OpenCV's wheel writes and reads.
ENCODED = [
    ("jpeg", ".jpg", BGR, []),
    ("jpeg progressive", ".jpg", BGR, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
    ("png", ".png", BGR, []),
    ("png gray 16-bit", ".png", (BGR[..., 0].astype(np.uint16) * 257), []),
    ("png with alpha", ".png", np.dstack([BGR, BGR[..., :1]]), []),
    ("bmp", ".bmp", BGR, []),
    ("webp lossy (VP8)", ".webp", BGR, [cv2.IMWRITE_WEBP_QUALITY, 80]),
    ("webp lossless (VP8L)", ".webp", BGR, [cv2.IMWRITE_WEBP_QUALITY, 101]),
    ("webp with alpha (VP8X)", ".webp", np.dstack([BGR, BGR[..., :1]]), [cv2.IMWRITE_WEBP_QUALITY, 80]),
    ("tiff", ".tiff", BGR, []),
    ("pgm", ".pgm", BGR[..., 0], []),
    ("ppm", ".ppm", BGR, []),
    ("pbm", ".pbm", BGR[..., 0], []),
    ("pam", ".pam", BGR, []),
    ("pfm", ".pfm", BGR.astype(np.float32) / 255, []),
    ("sun raster", ".ras", BGR, []),
    ("radiance hdr", ".hdr", BGR.astype(np.float32) / 255, []),
    ("jpeg 2000", ".jp2", BGR, []),
    ("gif", ".gif", BGR, []),
    ("avif", ".avif", BGR, []),
]


@pytest.mark.parametrize("case, ext, img, params", ENCODED, ids=[c[0] for c in ENCODED])
def test_header_size_is_the_decoded_size(case, ext, img, params):
    try:
        ok, buf = cv2.imencode(ext, img, params)
    except cv2.error:
        pytest.skip(f"this OpenCV build cannot write {ext}")
    assert ok
    data = buf.tobytes()
    size = image_size(data)
    decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    assert size is not None, case
    assert (size.width, size.height) == (decoded.shape[1], decoded.shape[0]) == (W, H)
    assert decode_image(data).shape == (H, W, 3)


def test_real_photos(images_dir, fer_dir):
    """Camera JPEGs (EXIF and all) and the FER2013 exports, read whole."""
    files = sorted(images_dir.iterdir()) + sorted((fer_dir / "privatetest" / "happy").iterdir())[:20]
    for path in files:
        size = image_size(path.read_bytes())
        img = cv2.imread(str(path))
        assert size is not None and (size.width, size.height) == (img.shape[1], img.shape[0]), path


def test_unknown_or_damaged_headers_are_refused(tmp_path):
    ok, buf = cv2.imencode(".png", BGR)
    png = buf.tobytes()
    with pytest.raises(InputError, match="not a readable image: upload .*header is damaged"):
        decode_image(png[:14], name="upload")
    with pytest.raises(InputError, match="not a readable image"):
        decode_image(b"hello, I am text", name="notes.jpg")
    with pytest.raises(InputError, match="the file is empty"):
        decode_image(b"")
    # A header that is fine over a damaged body: OpenCV's own failure, still one InputError.
    with pytest.raises(InputError, match="not a readable image: cut.png$"):
        decode_image(png[:200], name="cut.png")


def test_limit_is_checked_against_the_header(tmp_path):
    ok, buf = cv2.imencode(".jpg", BGR)
    data = buf.tobytes()
    assert decode_image(data, max_pixels=W * H).shape == (H, W, 3)
    with pytest.raises(InputError, match=rf"image too large: a.jpg is {W}x{H} = 39,483 pixels, "
                                         r"over the limit of 39,482: shrink it, or raise --max-pixels"):
        decode_image(data, max_pixels=W * H - 1, name="a.jpg")
    assert decode_image(data, max_pixels=None).shape == (H, W, 3)


def huge_png(path, side: int = 30000) -> None:
    """A valid grayscale PNG of side x side black pixels: under 1 MB on disk, 900 MB decoded as
    gray and 2.7 GB as BGR. Streamed through zlib so writing it allocates one row at a time."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                 + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    huge_png(path)
    assert path.stat().st_size < 1_000_000
    return path


#: Runs `edge-fer ARGS...` and writes the process's peak RSS (VmHWM, kB) to the file in argv[1]
#: at exit. VmHWM belongs to the exec'd image alone; a fork's ru_maxrss would include the test
#: process's own memory (TensorFlow is loaded here).
_MEASURED = """
import atexit, runpy, sys
out = sys.argv[1]
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            open(out, "w").write(line.split()[1])
atexit.register(hwm)
sys.argv = ["edge-fer", *sys.argv[2:]]
runpy.run_module("edge_fer", run_name="__main__")
"""


def peak_rss_mb(*args) -> tuple[subprocess.CompletedProcess, float]:
    """Run `edge-fer ARGS` and return it with its own peak resident memory in MB."""
    with tempfile.NamedTemporaryFile("r") as hwm:
        proc = subprocess.run([sys.executable, "-c", _MEASURED, hwm.name, *map(str, args)],
                              capture_output=True, text=True, timeout=120)
        return proc, int(hwm.read()) / 1024


def test_predict_refuses_a_decompression_bomb_from_its_header(bomb, default_model):
    proc, rss = peak_rss_mb("predict", bomb, "-m", default_model)
    assert_one_line_error(proc, str(bomb), "image too large", "30000x30000 = 900,000,000 pixels",
                          "over the limit of 50,000,000", "--max-pixels", code=InputError.exit_code)
    # Decoding would need 2.7 GB; the refusal costs what loading the model does.
    assert rss < 200, f"peak RSS {rss:.0f} MB: the image was decoded"


def test_read_image_refuses_it_without_reading_the_file(bomb):
    with pytest.raises(InputError, match="image too large"):
        read_image(bomb)
    assert DEFAULT_MAX_PIXELS >= 8160 * 6120, "a 50 MP phone photo must pass"


def test_predict_option_lowers_the_limit(images_dir, default_model):
    photo = images_dir / "test_image.jpg"  # 2048 x 1536
    proc, _ = peak_rss_mb("predict", photo, "-m", default_model, "--max-pixels", 2_000_000)
    assert_one_line_error(proc, "2048x1536 = 3,145,728 pixels, over the limit of 2,000,000", code=3)


def test_folder_source_skips_an_oversized_image(bomb, images_dir, default_model, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "a.jpg").write_bytes((images_dir / "test_image.jpg").read_bytes())
    (frames / "b.png").write_bytes(bomb.read_bytes())
    proc, rss = peak_rss_mb("run", "--source", frames, "--headless", "-m", default_model)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "image too large" in proc.stderr and "b.png" in proc.stderr
    assert "1 frames processed of 1 captured" in proc.stdout, proc.stdout
    assert rss < 300, f"peak RSS {rss:.0f} MB: the image was decoded"


def test_evaluate_refuses_an_oversized_image_in_a_class_folder(bomb, default_model, tmp_path):
    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "big.png").write_bytes(bomb.read_bytes())
    proc, _ = peak_rss_mb("evaluate", "--data", tmp_path, "-m", default_model)
    assert_one_line_error(proc, "image too large", "big.png", code=3)


def test_a_jpeg_cut_short_is_refused_not_decoded_half_gray(images_dir):
    data = (images_dir / "test_image.jpg").read_bytes()
    assert decode_image(data).shape == (1536, 2048, 3)
    with pytest.raises(InputError, match=r"not a readable image: half.jpg \(truncated: the end "
                                         r"of the JPEG is missing\)"):
        decode_image(data[:len(data) // 2], name="half.jpg")
