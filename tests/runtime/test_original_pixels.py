"""benchmarks/original_pixels.py (issue 26, item 5) against a small git snapshot laid out like
tessav/crowd-emotion: each shared file's original is found through its votes row, and the
splits written to one folder share one votes file (train needs --val's votes beside it)."""

from __future__ import annotations

import csv
import subprocess
import sys

import cv2
import numpy as np

from conftest import REPO

VOTES_HEADER = ["path", "fer2013_row", "match", "corr", "neutral", "happiness", "surprise", "sadness",
                "anger", "disgust", "fear", "contempt", "unknown", "NF"]


def _snapshot_and_shared(tmp_path):
    rng = np.random.default_rng(3)
    snap, shared = tmp_path / "crowd-emotion", tmp_path / "fer2013"
    files = [("publictest/happy/PublicTest_1.jpg", "PublicTest", "FER2013Valid", "fer0000001.png"),
             ("publictest/sad/PublicTest_2.jpg", "PublicTest", "FER2013Valid", "fer0000002.png"),
             ("privatetest/angry/PrivateTest_3.jpg", "PrivateTest", "FER2013Test", "fer0000003.png")]
    new_rows, votes = [["Usage", "Image name"]], []
    for row, (path, usage, folder, name) in enumerate(files):
        original = rng.integers(40, 180, (48, 48), dtype=np.uint8)
        (snap / "data" / folder).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(snap / "data" / folder / name), original)
        (shared / path).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(shared / path), cv2.equalizeHist(original), [cv2.IMWRITE_JPEG_QUALITY, 95])
        new_rows.append([usage, name])
        votes.append([path, row, "ok", "0.99"] + ["0"] * 10)
    with open(snap / "fer2013new.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(new_rows)
    with open(shared / "ferplus.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([VOTES_HEADER] + votes)
    git = ["git", "-C", str(snap), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(snap)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "snapshot"], check=True)
    return snap, shared


def test_each_split_is_written_and_the_votes_file_keeps_every_split(tmp_path):
    snap, shared = _snapshot_and_shared(tmp_path)
    out = tmp_path / "original"
    for split in ("publictest", "privatetest", "publictest"):  # again: replaced, not doubled
        done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "original_pixels.py"),
                               "--snapshot", str(snap), "--data", str(shared), "--split", split,
                               "--out", str(out)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    with open(out / "ferplus.csv", newline="") as fh:
        paths = sorted(r["path"] for r in csv.DictReader(fh))
    assert paths == ["privatetest/angry/PrivateTest_3.png", "publictest/happy/PublicTest_1.png",
                     "publictest/sad/PublicTest_2.png"]
    written = cv2.imread(str(out / "publictest/sad/PublicTest_2.png"), cv2.IMREAD_GRAYSCALE)
    original = cv2.imread(str(snap / "data/FER2013Valid/fer0000002.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(written, original)  # the original pixels, losslessly
