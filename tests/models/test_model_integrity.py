"""Models carry a checksum of their flatbuffer and a damaged one is refused at load (issue 13,
case 7): flipped weights used to load and answer, wrongly, with exit status 0."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest

from conftest import QUIET_TF, assert_one_line_error, run_cli
from edge_fer.classifier import EmotionClassifier
from edge_fer.errors import ModelError
from edge_fer.metadata import METADATA_NAME, ModelMetadata, embed, unpack
from edge_fer_models import SHIPPED


def test_shipped_models_carry_their_flatbuffer_checksum():
    for path in SHIPPED.values():
        packed = unpack(path.read_bytes())
        assert packed.sha256 == hashlib.sha256(packed.flatbuffer).hexdigest(), path
        assert EmotionClassifier(path).verified_sha256 == packed.sha256


def test_embed_keeps_the_flatbuffer_and_records_its_checksum(default_model):
    blob = default_model.read_bytes()
    packed = unpack(blob)
    again = embed(blob, ModelMetadata.from_mapping(packed.metadata))
    assert again == blob, "re-embedding the same metadata must reproduce the file byte for byte"
    assert unpack(again).flatbuffer == packed.flatbuffer


@pytest.fixture(scope="module")
def damaged_model(default_model, tmp_path_factory):
    """The shipped model with 8 KiB of its weights inverted, as a bad SD card or copy leaves it."""
    blob = bytearray(default_model.read_bytes())
    start = len(unpack(bytes(blob)).flatbuffer) // 2
    blob[start:start + 8192] = bytes(b ^ 0xFF for b in blob[start:start + 8192])
    path = tmp_path_factory.mktemp("damaged") / "default.tflite"
    path.write_bytes(bytes(blob))
    return path


def test_a_damaged_model_is_refused_at_load(damaged_model):
    with pytest.raises(ModelError, match="is corrupted"):
        EmotionClassifier(damaged_model)


@pytest.mark.parametrize("command", ["predict", "evaluate", "run"])
def test_a_damaged_model_is_refused_by_every_command(command, damaged_model, images_dir, fer_dir,
                                                     tmp_path):
    if command == "predict":
        args = ["predict", images_dir / "test_image.jpg"]
    elif command == "evaluate":
        args = ["evaluate", "--data", fer_dir / "privatetest", "--limit", 50]
    else:
        frames = tmp_path / "frames"
        frames.mkdir()
        (frames / "a.jpg").write_bytes((images_dir / "test_image.jpg").read_bytes())
        args = ["run", "--source", frames, "--headless", "--max-frames", 1]
    r = run_cli(*args, "-m", damaged_model, env=QUIET_TF)
    line = assert_one_line_error(r, str(damaged_model), "is corrupted", code=ModelError.exit_code)
    assert "copy the model again or re-convert it" in line


def test_a_model_without_a_checksum_runs_unverified(default_model, tmp_path, images_dir):
    """Models written before the checksum existed keep working; `info` says they are unverified."""
    packed = unpack(default_model.read_bytes())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(METADATA_NAME, json.dumps(packed.metadata))
    old = tmp_path / "old.tflite"
    old.write_bytes(packed.flatbuffer + buf.getvalue())
    assert unpack(old.read_bytes()).sha256 is None
    assert EmotionClassifier(old).verified_sha256 is None

    r = run_cli("info", "-m", old, env=QUIET_TF)
    assert r.returncode == 0, r.stderr
    assert "integrity: unverified" in r.stdout
    r = run_cli("predict", images_dir / "test_image.jpg", "-m", old, "--json", env=QUIET_TF)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["faces"]) >= 5

    r = run_cli("info", "-m", default_model, env=QUIET_TF)
    assert f"integrity: verified (flatbuffer sha256 {packed.sha256})" in r.stdout
