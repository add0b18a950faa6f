"""Every model shipped in models/: the accuracy its card states, on every installed backend,
and in the real-time pipeline."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from conftest import invoke
from edge_fer_models import SHIPPED
from stated import FERPLUS, PRIVATETEST, Scored, card, per_class_recall, privatetest, scored

#: The shipped models (each with its card, models/NAME.md, whose figures these tests read).
NAMES = sorted(name for name, path in SHIPPED.items() if path.is_file())
#: The card figures come from ai-edge-litert on x86; another backend or CPU may move an int8
#: output by one step, which flips the top label of a face or two (on aarch64: none of 3,589).
#: 0.3 points is 11 faces.
TOLERANCE = 0.003
#: Per class, the same flips: this many faces of the class.
CLASS_FLIPS = 2


def test_every_shipped_model_has_a_card_with_its_figures():
    from edge_fer.classifier import EmotionClassifier

    assert {"default", "lite"} <= set(NAMES)
    for name in NAMES:
        assert card(name).is_file(), f"models/{name}.md: the model card is missing"
        labels = sorted(EmotionClassifier(SHIPPED[name]).labels)
        for against in (PRIVATETEST, FERPLUS):
            figures = scored(name, against)
            assert 0.5 < figures["accuracy"] < 1 and 0.4 < figures["macro recall"] < 1, figures
            assert sorted(per_class_recall(name, against)) == labels, (name, against)


def check_against_card(name: str, s: dict, got: dict, labels: Scored, count: int) -> None:
    """`edge-fer evaluate --json` on all of PrivateTest (`s`; `got`: its figures against
    `labels`) scores what models/NAME.md states for them, on `count` faces."""
    stated = scored(name, labels)
    where = f"{card(name)} states"
    assert got["count"] == count
    assert got["accuracy"] == pytest.approx(stated["accuracy"], abs=TOLERANCE), \
        f"{where} accuracy {stated['accuracy']} ({labels.section}), evaluate gives {got['accuracy']}"
    assert got["macro_recall"] == pytest.approx(stated["macro recall"], abs=TOLERANCE), \
        f"{where} macro recall {stated['macro recall']} ({labels.section}), evaluate gives " \
        f"{got['macro_recall']}"
    labels_order = got.get("labels", s["labels"])
    for label, recall in per_class_recall(name, labels).items():
        faces = sum(got["confusion"][labels_order.index(label)])
        # The card rounds to 3 decimals.
        assert got["per_class_recall"][label] == pytest.approx(recall, abs=CLASS_FLIPS / faces + 5e-4), \
            f"{where} {label} recall {recall} ({labels.section}), evaluate gives " \
            f"{got['per_class_recall'][label]}"


@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_scores_its_card_figure(name, fer_dir):
    r = invoke("evaluate", "--data", fer_dir / "privatetest", "--json", "--model", name)
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    check_against_card(name, s, s, PRIVATETEST, 3589)
    assert s["ferplus"] is not None, s.get("ferplus_note")
    check_against_card(name, s, s["ferplus"], FERPLUS, scored(name, FERPLUS)["faces"])


def _faces(fer_dir, n=64):
    from edge_fer.datasets import load_labelled

    return load_labelled(fer_dir / "privatetest", size=(48, 48), color="gray", limit=n, seed=5)


@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_loads_under_every_backend(name, fer_dir):
    from edge_fer.backends import BACKENDS, available_backends
    from edge_fer.classifier import EmotionClassifier

    faces = _faces(fer_dir)
    names = available_backends()
    assert "litert" in names, "ai-edge-litert is the runtime dependency"
    # On 64 faces, 3 standard errors below the card's accuracy.
    p = privatetest(name)["accuracy"]
    floor = p - 3 * math.sqrt(p * (1 - p) / len(faces.labels))
    for n in names:
        out = EmotionClassifier(SHIPPED[name], backend=BACKENDS[n]()).predict_proba(list(faces.images))
        assert np.mean(np.argmax(out, axis=1) == faces.labels) > floor, (n, floor)


@pytest.mark.parametrize("name", NAMES)
def test_every_installed_backend_gives_the_same_answer(name, fer_dir):
    from edge_fer.backends import BACKENDS, available_backends
    from edge_fer.classifier import EmotionClassifier

    names = available_backends()
    if len(names) < 2:
        pytest.skip(f"one interpreter backend installed ({names[0]}): nothing to compare it with")
    faces = list(_faces(fer_dir).images)
    outs = {n: EmotionClassifier(SHIPPED[name], backend=BACKENDS[n]()).predict_proba(faces)
            for n in names}
    first = names[0]
    for other in names[1:]:
        np.testing.assert_allclose(outs[other], outs[first], atol=1e-6,
                                   err_msg=f"{other} against {first}")
    print(f"{name}: {', '.join(names)} compared on {len(faces)} faces")


@pytest.mark.parametrize("name", sorted(set(NAMES) - {"default"}))
def test_shipped_model_runs_in_the_pipeline(name, clip):
    """The default runs in every pipeline test; the others here, by their short name."""
    r = invoke("run", "--headless", "--source", clip.path, "--model", name, "--max-frames", 30)
    assert r.exit_code == 0, r.output
    assert "30 frames processed of 30 captured" in r.stdout
    assert "tracks_started=3" in r.stdout, "the clip's three faces were found and classified"


def _shipped_test_with_cards(cards, name):
    import os
    import subprocess
    import sys

    from conftest import REPO

    test = f"tests/models/test_shipped_models.py::test_shipped_model_scores_its_card_figure[{name}]"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                          cwd=REPO, env={**os.environ, "EDGE_FER_CARDS_DIR": str(cards)},
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def cards_copy(tmp_path):
    import shutil

    for name in NAMES:
        shutil.copy(card(name), tmp_path / f"{name}.md")
    return tmp_path


def test_the_shipped_model_test_reads_a_copy_of_the_cards(cards_copy, fer_dir):
    r = _shipped_test_with_cards(cards_copy, "lite")
    assert r.returncode == 0, r.stdout[-3000:]


def _one_line(text: str, pick) -> str:
    lines = [line for line in text.splitlines() if pick(line)]
    assert len(lines) == 1, lines
    return lines[0]


def _bump(line: str, pattern: str, by: float, which: int, fmt: str) -> str:
    """`line` with its `which`-th match of `pattern` (a figure) raised by `by`."""
    m = list(re.finditer(pattern, line))[which]
    return line[:m.start(1)] + format(float(m.group(1)) + by, fmt) + line[m.end(1):]


def _wrong_accuracy(text: str) -> tuple[str, str]:
    line = _one_line(text, lambda t: t.startswith(f"| {PRIVATETEST.row} |"))
    return line, _bump(line, r"(\d+\.\d+) %", 1.0, 0, ".2f")


def _wrong_fear_recall(text: str) -> tuple[str, str]:
    recall = per_class_recall("lite", PRIVATETEST)
    line = _one_line(text, lambda t: t == "| " + " | ".join(f"{v:.3f}" for v in recall.values()) + " |")
    return line, _bump(line, r"(\d\.\d{3})", 0.041, list(recall).index("fear"), ".3f")


def _wrong_ferplus_macro_recall(text: str) -> tuple[str, str]:
    line = _one_line(text, lambda t: t.startswith(f"| {FERPLUS.row} ("))
    return line, _bump(line, r"(0\.\d{4})", 0.01, -1, ".4f")


@pytest.mark.parametrize("mutate", [_wrong_accuracy, _wrong_fear_recall, _wrong_ferplus_macro_recall],
                         ids=["accuracy", "fear recall", "FER+ macro recall"])
def test_a_wrong_card_figure_turns_the_shipped_model_test_red(mutate, cards_copy, fer_dir):
    lite = cards_copy / "lite.md"
    stated, wrong = mutate(lite.read_text())
    assert stated != wrong
    lite.write_text(lite.read_text().replace(stated, wrong))
    r = _shipped_test_with_cards(cards_copy, "lite")
    assert r.returncode == 1 and "1 failed" in r.stdout, r.stdout[-3000:]
    assert f"{lite} states" in r.stdout, r.stdout[-3000:]
