"""Figures the project states in its documents (model cards, benchmarks/README.md), read from there so a
test checks what the documents say, not a copy of it that can drift.

A document's tables are read as `edge_fer.card.Table`s (the reader the kiosk page's sentences
come from): the `## ` section they sit in, the line of text just above them (their caption),
the header and the rows. `figure` turns a cell into a number.
$EDGE_FER_CARDS_DIR points the card readers at another folder of cards (a test gives them a
deliberately wrong one).
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

# The tests and the kiosk page read the cards with the same reader; FERPLUS and figure are
# re-exported for the tests that import them from here.
from edge_fer.card import FERPLUS, PRIVATETEST, Scored, figure, find_table, recall_of, scored_row  # noqa: F401

REPO = Path(__file__).resolve().parent.parent


def cards_dir() -> Path:
    return Path(os.environ.get("EDGE_FER_CARDS_DIR", REPO / "models"))


# -- the model cards ---------------------------------------------------------------------------


def card(name: str) -> Path:
    return cards_dir() / f"{name}.md"


def scored(name: str, labels: Scored = PRIVATETEST) -> dict[str, float]:
    """The card's figures of the model as shipped against `labels`: {"accuracy", "macro
    recall"}, and "faces" where the row names how many were scored ("... (3,304 faces)")."""
    row = scored_row(card(name), labels)
    out = {"accuracy": figure(row["accuracy"]), "macro recall": figure(row["macro recall"])}
    faces = re.search(r"\(([\d,]+) faces\)", next(iter(row.values())))
    if faces:
        out["faces"] = int(faces.group(1).replace(",", ""))
    return out


def per_class_recall(name: str, labels: Scored = PRIVATETEST) -> dict[str, float]:
    """The card's per-class recall of the model as shipped against `labels`: {label: recall}."""
    return recall_of(card(name), labels)


def privatetest(name: str) -> dict[str, float]:
    """The card's PrivateTest figures of the model as shipped: {"accuracy", "macro recall"}."""
    return scored(name, PRIVATETEST)


# -- benchmarks/README.md -----------------------------------------------------------------------------


def benchmark_photos() -> tuple[str, ...]:
    """The photos benchmarks/detectors.py counts faces on, in its order (its PHOTOS)."""
    tree = ast.parse((REPO / "benchmarks" / "detectors.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "PHOTOS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise LookupError("benchmarks/detectors.py has no PHOTOS")


def detector_photo_counts() -> dict[str, dict[str, int]]:
    """The detector table of benchmarks/README.md (its `detectors.py` section): {detector: {photo:
    faces found}}, as benchmarks/detectors.py measured them."""
    column = "faces in the 3 photos"
    t = find_table(REPO / "benchmarks" / "README.md", section="detectors.py", column=column)
    photos = benchmark_photos()
    out = {}
    for cells in t.rows:
        counts = [int(v) for v in dict(zip(t.header, cells))[column].split(",")]
        assert len(counts) == len(photos), (cells, photos)
        out[cells[0]] = dict(zip(photos, counts))
    return out
