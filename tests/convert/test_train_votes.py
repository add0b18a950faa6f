"""`edge-fer train --targets votes|majority`: the model learns the FER+ votes, not the folder's
labels, where the two disagree; the epoch is chosen on the FER+ majority of --val; distillation
keeps working with it; bad vote options fail in one line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import QUIET_TF, assert_one_line_error, needs_tf, run_cli
from edge_fer.ferplus import CLASSES, COLUMNS, VOTE_COLUMNS

pytestmark = needs_tf


def _pattern(kind: str, rng) -> np.ndarray:
    """48x48 gray: a bright top half (`top`), a bright bottom half (`bottom`) or plain noise,
    each with noise: trivially told apart, so a few epochs learn whatever they are called."""
    img = rng.normal(90, 20, (48, 48))
    if kind == "top":
        img[:24] += 110
    elif kind == "bottom":
        img[24:] += 110
    return np.clip(img, 0, 255).astype(np.uint8)


def _votes(**counts):
    return [str(counts.get(c, 0)) for c in VOTE_COLUMNS]


@pytest.fixture(scope="module")
def disagreeing(tmp_path_factory):
    """train/: bright-top faces filed under angry but voted happy, bright-bottom faces filed
    under happy but voted angry (plus a few voted not-a-face), the other classes plain noise
    without votes; publictest/: the same patterns filed where the votes say."""
    root = tmp_path_factory.mktemp("votes") / "fer"
    rng = np.random.default_rng(7)
    rows = []

    def add(split, folder, name, kind, votes=None, match="ok"):
        d = root / split / folder
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / name), _pattern(kind, rng))
        if votes is not None:
            rows.append([f"{split}/{folder}/{name}", str(len(rows)), match, "0.99", *votes])

    for split, n, top_folder, bottom_folder in (("train", 60, "angry", "happy"),
                                                ("publictest", 20, "happy", "angry")):
        for i in range(n):
            add(split, top_folder, f"t{i}.png", "top", _votes(happiness=7, neutral=2, surprise=1))
            add(split, bottom_folder, f"b{i}.png", "bottom", _votes(anger=8, sadness=2))
        for c in CLASSES:
            if c not in ("angry", "happy"):
                for i in range(4):
                    add(split, c, f"n{i}.png", "noise")
    for i in range(5):  # not faces: left out of training, counted
        add("train", "happy", f"nf{i}.png", "top", _votes(NF=8, anger=2))
    with open(root / "ferplus.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows(rows)
    return root


def tiny_args(root, out, *extra, val=None):
    return ["train", "--arch", "edgenet-s", "--data", root / "train", "--val", val or root / "publictest",
            "--epochs", 8, "--batch-size", 16, "--lr", 5e-3, "--warmup-epochs", 0, "--augment", "none",
            "--seed", 3, "-o", out, *extra]


def tiny(root, out, *extra, val=None):
    return run_cli(*tiny_args(root, out, *extra, val=val), env=QUIET_TF)


def ferplus_accuracy(model, root):
    proc = run_cli("evaluate", "--data", root / "publictest", "-m", model, "--json", env=QUIET_TF)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fp = json.loads(proc.stdout)["ferplus"]
    assert fp["count"] == 40, "the publictest faces with votes"
    return fp["accuracy"]


@pytest.fixture(scope="module")
def trained(disagreeing, tmp_path_factory):
    """A tiny model per --targets mode, trained once for the tests of this module:
    {mode: (its .keras, the finished process)}."""
    runs = {}

    def train(targets):
        if targets not in runs:
            out = tmp_path_factory.mktemp(targets) / f"{targets}.keras"
            runs[targets] = out, tiny(disagreeing, out, "--targets", targets)
        return runs[targets]

    return train


@pytest.mark.parametrize("targets", ["votes", "majority"])
def test_training_on_votes_follows_the_votes_not_the_folder(trained, disagreeing, targets):
    out, proc = trained(targets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(FER+ majority)" in proc.stdout
    prov = json.loads(out.with_name(f"{targets}.keras.json").read_text())["provenance"]
    fp = prov["ferplus"]
    assert prov["targets"] == targets
    assert fp["train"] == {"faces": 145, "kept": 120, "tie": 0, "contempt": 0, "unknown": 0,
                           "not_a_face": 5, "unmatched": 20}
    assert fp["train_faces_used"] == 140, "the 5 not-a-face faces are left out"
    assert fp["val"]["kept"] == 40
    # The class shares `convert --logit-adjust` removes: what the model was trained towards
    # (60 faces voted 7/2/1 happy/neutral/surprise, 60 voted 8/2 angry/sad, 4 unvoted per
    # other class on their own label), not the folders' counts.
    learned = {"votes": {"angry": 48, "disgust": 4, "fear": 4, "happy": 42, "neutral": 16, "sad": 16,
                         "surprise": 10},
               "majority": {"angry": 60, "disgust": 4, "fear": 4, "happy": 60, "neutral": 4, "sad": 4,
                            "surprise": 4}}[targets]
    assert prov["train_counts"] == pytest.approx(learned), prov["train_counts"]
    # The epoch was chosen on the FER+ majority of the 40 validation faces with votes.
    assert prov["best_val_accuracy"] >= 0.9
    assert ferplus_accuracy(out, disagreeing) >= 0.9


def test_convert_scores_validation_faces_against_their_votes(tmp_path, disagreeing, trained):
    """`convert --validation` on a folder with votes beside it measures against the FER+
    majority: the training folder's faces are filed against their votes, so a votes-trained
    model is right about nearly all of them by the votes and wrong by the folders."""
    out, proc = trained("votes")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = tmp_path / "report.json"
    proc = run_cli("convert", out, "-o", tmp_path / "votes.tflite", "--calibration", disagreeing / "train",
                   "--validation", disagreeing / "train", "--report", report, env=QUIET_TF)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(report.read_text())
    assert r["validation_labels"].startswith("the FER+ majority") and "120 of 145 faces" in r["validation_labels"]
    assert "validation scored against the FER+ majority" in proc.stdout
    for side in ("float_model", "converted"):
        assert r[side]["scores"]["count"] == 120 and r[side]["scores"]["accuracy"] >= 0.9, r[side]["scores"]


def test_training_on_labels_follows_the_folder(tmp_path, disagreeing):
    """The control: the same run on the folder's labels calls every voted face the other class,
    so the test above fails when the votes are ignored."""
    out = tmp_path / "labels.keras"
    # Chosen on the training folder's own labels: publictest's folders follow the votes.
    proc = tiny(disagreeing, out, val=disagreeing / "train")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ferplus_accuracy(out, disagreeing) <= 0.1


def test_votes_with_a_teacher_and_the_shared_data(tmp_path, fer_dir, default_model):
    out = tmp_path / "student.keras"
    proc = run_cli("train", "--arch", "edgenet-lite", "--data", fer_dir / "train",
                   "--val", fer_dir / "publictest", "--epochs", 1, "--limit", 200,
                   "--batch-size", 64, "--teacher", default_model, "--targets", "votes", "-o", out,
                   env=QUIET_TF)
    assert proc.returncode == 0, proc.stderr[-3000:]
    prov = json.loads((tmp_path / "student.keras.json").read_text())["provenance"]
    fp = prov["ferplus"]
    assert fp["votes"] == [str(fer_dir / "ferplus.csv")] * 2
    assert fp["train"]["faces"] == 200 and fp["val"]["faces"] == 3589 and fp["val"]["kept"] == 3333
    assert prov["distillation"]["teachers"][0]["path"] == str(default_model)
    assert 0.0 < prov["best_val_accuracy"] < 1.0


def test_vote_options_fail_in_one_line(tmp_path, disagreeing):
    bare = tmp_path / "bare"
    for split in ("train", "publictest"):
        (bare / split / "happy").mkdir(parents=True)
    proc = tiny(bare, tmp_path / "m.keras", "--targets", "votes")
    assert_one_line_error(proc, "needs the FER+ votes file", "ferplus.csv", "--votes FILE", code=3)
    proc = tiny(disagreeing, tmp_path / "m.keras", "--votes", disagreeing / "ferplus.csv")
    assert_one_line_error(proc, "--votes is for --targets votes or majority", code=2)
    proc = tiny(disagreeing, tmp_path / "m.keras", "--targets", "votes", "--votes", tmp_path / "absent.csv")
    assert_one_line_error(proc, "not found", "absent.csv", code=3)


def test_an_interrupted_votes_run_resumes_with_the_same_command(tmp_path, disagreeing):
    import signal
    import time

    out = tmp_path / "resumed.keras"
    args = tiny_args(disagreeing, out, "--targets", "votes")
    history = tmp_path / "resumed.history.csv"
    proc = subprocess.Popen([sys.executable, "-m", "edge_fer", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    done = len(history.read_text().splitlines()) - 1
    assert 2 <= done < 8, "stopped part-way"
    again = run_cli(*args, env=QUIET_TF)
    assert again.returncode == 0, again.stderr[-3000:]
    epochs = [int(line.split(",")[0]) for line in history.read_text().splitlines()[1:]]
    assert epochs == list(range(8)), "the second sitting went on from where the first stopped"
    prov = json.loads((tmp_path / "resumed.keras.json").read_text())["provenance"]
    assert prov["targets"] == "votes" and prov["best_val_accuracy"] >= 0.9
