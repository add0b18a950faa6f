"""benchmarks/detect_every.py --ferplus (issue 26: --detect-every re-chosen against the FER+
majority): the clip shows each face where its true box says, and a (frame, face) pair is scored
against that face's label through the real pipeline."""

from __future__ import annotations

import sys

import cv2
import numpy as np

from conftest import REPO
from edge_fer.classifier import EmotionClassifier
from edge_fer.datasets import load_folder, remap_labels
from edge_fer.detector import crop_face

sys.path.insert(0, str(REPO / "benchmarks"))
from detect_every import ferplus_clip, measure_ferplus  # noqa: E402


def test_each_face_is_where_its_box_says_and_is_scored_against_its_own_label(fer_dir, default_model, tmp_path):
    clf = EmotionClassifier(default_model)
    data = remap_labels(load_folder(fer_dir / "publictest", size=None, color="gray", limit=60), clf.labels)
    own = np.argmax(clf.predict_proba([crop_face(f, (0, 0, 48, 48), clf.input_size, "gray")
                                       for f in data.images]), axis=1)
    # The "truth" is the model's own call on the dataset crop, so the test checks the clip and
    # the scoring, not the model; the shifted truth must then score (almost) nothing.
    faces = list(data.images[:6])
    path = tmp_path / "clip.mp4"
    boxes, shown = ferplus_clip(path, faces, segment=8)
    assert len(boxes) == 16 and shown[0] == [0, 1, 2] and shown[8] == [3, 4, 5]

    cap = cv2.VideoCapture(str(path))
    ok, first = cap.read()
    cap.release()
    assert ok
    for (x, y, w, h), face in zip(boxes[0], faces[:3]):
        seen = cv2.resize(cv2.cvtColor(first[y:y + h, x:x + w], cv2.COLOR_BGR2GRAY), (48, 48),
                          interpolation=cv2.INTER_AREA)
        assert np.abs(seen.astype(int) - face.astype(int)).mean() < 12  # mp4v is lossy

    right = measure_ferplus("haar", 1, path, boxes, shown, own[:6], clf.labels, clf)
    wrong = measure_ferplus("haar", 1, path, boxes, shown, (own[:6] + 1) % len(clf.labels),
                            clf.labels, clf)
    assert right["pairs"] == wrong["pairs"] == 16 * 3
    assert right["coverage"] == wrong["coverage"] > 0.5
    assert right["raw_accuracy_with_box"] >= 0.75 > 0.25 >= wrong["raw_accuracy_with_box"]
    assert right["accuracy"] > wrong["accuracy"]
