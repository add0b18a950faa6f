"""The runtime classifier on the shipped model: input spec, batching, preprocessing, metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_fer.classifier import ClassifierOptions, EmotionClassifier
from edge_fer.datasets import load_folder
from edge_fer.errors import InputError, ModelError
from edge_fer.metadata import ModelMetadata, embed, normalize, read_embedded, sidecar_path


@pytest.fixture(scope="module")
def clf(default_model):
    return EmotionClassifier(default_model, ClassifierOptions(num_threads=1))


@pytest.fixture(scope="module")
def faces(fer_dir, clf):
    return load_folder(fer_dir / "privatetest", size=clf.input_size, color=clf.color, limit=40)


def test_reads_input_spec_from_model(clf):
    i = clf.input
    assert i.dtype == "int8", "the shipped model is full INT8"
    assert i.channels == 1 and clf.color == "gray"
    assert i.scale > 0 and -128 <= i.zero_point <= 127
    assert i.batchable, "the shipped model takes several faces per call"
    assert sorted(clf.labels) == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def test_probabilities_are_a_distribution(clf, faces):
    p = clf.predict_proba(list(faces.images))
    assert p.shape == (len(faces), len(clf.labels))
    assert np.all(p >= 0)
    # INT8 softmax outputs are multiples of 1/256, so rows sum to 1 within a few steps.
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=0.02)


def test_batched_call_matches_one_face_at_a_time(clf, faces):
    batch = clf.predict_proba(list(faces.images[:8]))
    single = np.concatenate([clf.predict_proba([f]) for f in faces.images[:8]])
    np.testing.assert_allclose(batch, single, atol=1e-6)


def test_lookup_table_equals_normalize_then_quantize(clf, faces):
    face = faces.images[0]
    x = normalize(face, clf.metadata.normalization)
    q = np.clip(np.round(x / clf.input.scale + clf.input.zero_point), -128, 127).astype(np.int8)
    np.testing.assert_array_equal(clf.prepare([face])[0, ..., 0], q)


def test_wrong_crop_size_is_a_clear_error(clf):
    with pytest.raises(InputError, match="the model takes"):
        clf.predict_proba([np.zeros((10, 12), np.uint8)])


def test_metadata_roundtrip_and_sidecar_override(default_model, tmp_path, faces):
    blob = default_model.read_bytes()
    meta = ModelMetadata.from_mapping(read_embedded(blob))
    # Re-embedding replaces the archive rather than stacking a second one.
    again = embed(blob, meta)
    assert len(again) == len(blob)
    stripped_path = tmp_path / "plain.tflite"
    stripped = blob[:_model_end(blob)]
    stripped_path.write_bytes(stripped)
    assert read_embedded(stripped) is None
    with pytest.raises(ModelError, match="no edge-fer metadata"):
        EmotionClassifier(stripped_path)
    # Options stand in for missing metadata ...
    clf = EmotionClassifier(stripped_path, ClassifierOptions(labels=meta.labels,
                                                             normalization=meta.normalization))
    ref = EmotionClassifier(default_model).predict_proba(list(faces.images[:4]))
    np.testing.assert_allclose(clf.predict_proba(list(faces.images[:4])), ref, atol=1e-6)
    # ... and a sidecar beside the model is read instead.
    sidecar_path(stripped_path).write_text(json.dumps({"labels": meta.labels, "color": "gray",
                                                       "normalization": meta.normalization}))
    assert EmotionClassifier(stripped_path).labels == meta.labels


def _model_end(blob: bytes) -> int:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return min(i.header_offset for i in zf.infolist())


def test_label_count_mismatch_is_an_error(default_model):
    with pytest.raises(ModelError, match="outputs but 3 labels"):
        EmotionClassifier(default_model, ClassifierOptions(labels=["a", "b", "c"]))


def test_unknown_metadata_key_is_rejected():
    with pytest.raises(ModelError, match="unknown key"):
        ModelMetadata.from_mapping({"labels": ["a"], "colour": "gray"})


@pytest.mark.parametrize("content, message", [
    (b"", "not a valid TFLite model"),
    (b"this is a text file, not a model" * 4, "not a valid TFLite model"),
])
def test_not_a_model(tmp_path, content, message):
    p = tmp_path / "bad.tflite"
    p.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        EmotionClassifier(p)


def test_truncated_model(default_model, tmp_path):
    p = tmp_path / "truncated.tflite"
    p.write_bytes(default_model.read_bytes()[:2000])
    with pytest.raises(ModelError, match="not a valid TFLite model"):
        EmotionClassifier(p)


def test_litert_is_installed():
    from edge_fer.backends import available_backends

    assert "litert" in available_backends(), "ai-edge-litert is the runtime dependency"


def test_every_installed_backend_gives_the_same_answer(default_model, faces):
    from edge_fer.backends import BACKENDS, available_backends

    names = available_backends()
    if len(names) < 2:
        pytest.skip(f"one interpreter backend installed ({names[0]}): nothing to compare it with")
    outs = {n: EmotionClassifier(default_model, backend=BACKENDS[n]()).predict_proba(list(faces.images))
            for n in names}
    for other in names[1:]:
        np.testing.assert_allclose(outs[other], outs[names[0]], atol=1e-6,
                                   err_msg=f"{other} against {names[0]}")
    print(f"{', '.join(names)} compared on {len(faces.images)} faces")


def test_flip_averaging_is_the_mean_of_face_and_mirror(default_model, faces):
    tta = EmotionClassifier(default_model, ClassifierOptions(flip_tta=True))
    plain = EmotionClassifier(default_model)
    x = list(faces.images[:6])
    expected = (plain.predict_proba(x) + plain.predict_proba([f[:, ::-1] for f in x])) / 2
    np.testing.assert_allclose(tta.predict_proba(x), expected, atol=1e-6)
