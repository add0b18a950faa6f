"""Figures read from a shipped model's card (models/NAME.md), so what the kiosk page tells its
viewers comes from the card the measurements were written to, not from a sentence that goes
stale when the default model changes.

A card states them in tables, each beside the command that measured them. A model trained on
the FER+ votes is scored against the FER+ majority of ten annotators (issue 26): the
`| FER+ majority (3,304 faces) | **78.66 %** | **0.5670** |` row of "What it scores against the
FER+ majority" and the one row under "Per-class recall against the FER+ majority". A card
without them (a model trained on FER2013's own labels) is read from the
`| INT8, as shipped | **68.54 %** | **0.6679** | ...` row of "What it scores on FER2013
PrivateTest" and the `| as shipped | ... |` row of "Per-class recall (INT8, PrivateTest)".
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from edge_fer_models import MODELS_DIR


@dataclass(frozen=True)
class CardFigures:
    """What a model card says the shipped model scores on FER2013 PrivateTest."""

    model: str
    """The shipped model's name (`default`, `lite`, ...)."""
    accuracy: float
    """Share of the faces classified right, 0..1."""
    macro_recall: float
    """Mean of the per-class recalls, 0..1."""
    recall: dict[str, float]
    """Recall of each class, 0..1, in the card's column order."""
    labels: str = "FER2013"
    """Whose labels the figures are against: "FER+" (the majority of ten annotators' votes) or
    "FER2013" (the data set's own labels)."""

    def weakest(self, n: int = 2) -> list[tuple[str, float]]:
        """The `n` classes with the lowest recall, lowest first."""
        return sorted(self.recall.items(), key=lambda kv: kv[1])[:n]


def _cells(line: str) -> list[str]:
    return [c.strip().strip("*").strip() for c in line.strip().strip("|").split("|")]


def _table_after(lines: list[str], caption: str) -> tuple[list[str], dict[str, list[str]]]:
    """The class names of the table under the line starting with `caption`, and its rows by
    their first cell (a table of one row, with no row names, is keyed "")."""
    for i, line in enumerate(lines):
        if line.startswith(caption):
            table = [ln for ln in lines[i + 1:i + 8] if ln.startswith("|")]
            if len(table) < 3:
                break
            header = _cells(table[0])
            named = header[0] == ""
            rows = {(_cells(ln)[0] if named else ""): _cells(ln)[1 if named else 0:] for ln in table[2:]}
            return header[1 if named else 0:], rows
    return [], {}


def _accuracy_row(lines: list[str], first: str) -> tuple[float, float] | None:
    for line in lines:
        cells = _cells(line) if line.startswith("|") else []
        if cells and cells[0].startswith(first):
            m = re.fullmatch(r"([\d.]+) ?%", cells[1])
            if m:
                return float(m.group(1)) / 100, float(cells[2])
    return None


def read_card(model: str = "default", folder: Path = MODELS_DIR) -> CardFigures:
    """The figures of `folder/model.md`, against the FER+ majority where the card has them,
    else against FER2013's labels; ValueError naming the card and what is missing."""
    path = folder / f"{model}.md"
    lines = path.read_text(encoding="utf-8").splitlines()
    for labels, row, caption, recall_row in (
            ("FER+", "FER+ majority (", "Per-class recall against the FER+ majority", ""),
            ("FER2013", "INT8, as shipped", "Per-class recall (INT8, PrivateTest)", "as shipped")):
        scored = _accuracy_row(lines, row)
        names, rows = _table_after(lines, caption)
        if scored and recall_row in rows:
            recall = {name: float(v) for name, v in zip(names, rows[recall_row])}
            return CardFigures(model, scored[0], scored[1], recall, labels)
    raise ValueError(f"{path}: neither a '| FER+ majority (' accuracy row with its per-class "
                     f"recall table nor a '| INT8, as shipped |' row with an 'as shipped' "
                     f"per-class recall row")


def _one_in(share: float) -> str:
    """A share of wrong answers in words: "one time in three"."""
    words = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
             9: "nine", 10: "ten"}
    n = round(1 / share) if share > 0 else 0
    return f"one time in {words[n]}" if n in words else f"{share:.0%} of the time"


#: The words the page uses for a class in "most often for ..." and "...% of the ... faces".
ADJECTIVES = {"angry": "angry", "disgust": "disgusted", "fear": "fearful", "happy": "happy",
              "neutral": "neutral", "sad": "sad", "surprise": "surprised"}


#: How the page says whose labels a figure is against.
_AGAINST = {"FER+": ", as most of ten people who labelled each face saw it (FER+)", "FER2013": ""}


def page_fields(figures: CardFigures) -> dict[str, str]:
    """The page's accuracy sentences (HTML), keyed by the placeholder each replaces."""
    (a, ra), (b, rb) = figures.weakest(2)
    pct = "&nbsp;%"
    return {
        "<!--card:summary-->": html.escape(
            f"It is wrong about {_one_in(1 - figures.accuracy)}, most often for {a} and {b}."),
        "<!--card:detail-->": (
            f"The shipped model is right for {figures.accuracy * 100:.1f}{pct} of the faces of "
            f"the FER2013 test set (PrivateTest){_AGAINST[figures.labels]}, and finds only {ra * 100:.0f}{pct} of the "
            f"{ADJECTIVES.get(a, a)} and {rb * 100:.0f}{pct} of the {ADJECTIVES.get(b, b)} faces"),
    }
