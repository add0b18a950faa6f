"""Figures read from a shipped model's card (models/NAME.md), so what the kiosk page tells its
viewers comes from the card the measurements were written to, not from a sentence that goes
stale when the default model changes.

The card states them in two tables, each beside the command that measured them: the
`| INT8, as shipped | **68.54 %** | **0.6679** | ...` row of "What it scores on FER2013
PrivateTest", and the `| as shipped | ... |` row of "Per-class recall (INT8, PrivateTest)"
under the header row of class names.
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

    def weakest(self, n: int = 2) -> list[tuple[str, float]]:
        """The `n` classes with the lowest recall, lowest first."""
        return sorted(self.recall.items(), key=lambda kv: kv[1])[:n]


def _cells(line: str) -> list[str]:
    return [c.strip().strip("*").strip() for c in line.strip().strip("|").split("|")]


def read_card(model: str = "default", folder: Path = MODELS_DIR) -> CardFigures:
    """The figures of `folder/model.md`; ValueError naming the card and what is missing."""
    path = folder / f"{model}.md"
    lines = path.read_text(encoding="utf-8").splitlines()
    accuracy = macro = None
    recall: dict[str, float] = {}
    for i, line in enumerate(lines):
        cells = _cells(line) if line.startswith("|") else []
        if cells[:1] == ["INT8, as shipped"] and accuracy is None:
            m = re.fullmatch(r"([\d.]+) ?%", cells[1])
            if m:
                accuracy, macro = float(m.group(1)) / 100, float(cells[2])
        if line.startswith("Per-class recall") and not recall:
            table = [ln for ln in lines[i + 1:i + 8] if ln.startswith("|")]
            rows = {(_cells(ln)[0]): _cells(ln)[1:] for ln in table}
            names = _cells(table[0])[1:] if table else []
            if "as shipped" in rows:
                recall = {name: float(v) for name, v in zip(names, rows["as shipped"])}
    if accuracy is None or not recall:
        raise ValueError(f"{path}: no '| INT8, as shipped |' accuracy row or no 'as shipped' "
                         f"per-class recall row")
    return CardFigures(model, accuracy, macro, recall)


def _one_in(share: float) -> str:
    """A share of wrong answers in words: "one time in three"."""
    words = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
             9: "nine", 10: "ten"}
    n = round(1 / share) if share > 0 else 0
    return f"one time in {words[n]}" if n in words else f"{share:.0%} of the time"


#: The words the page uses for a class in "most often for ..." and "...% of the ... faces".
ADJECTIVES = {"angry": "angry", "disgust": "disgusted", "fear": "fearful", "happy": "happy",
              "neutral": "neutral", "sad": "sad", "surprise": "surprised"}


def page_fields(figures: CardFigures) -> dict[str, str]:
    """The page's accuracy sentences (HTML), keyed by the placeholder each replaces."""
    (a, ra), (b, rb) = figures.weakest(2)
    pct = "&nbsp;%"
    return {
        "<!--card:summary-->": html.escape(
            f"It is wrong about {_one_in(1 - figures.accuracy)}, most often for {a} and {b}."),
        "<!--card:detail-->": (
            f"The shipped model is right for {figures.accuracy * 100:.1f}{pct} of the faces of "
            f"the FER2013 test set (PrivateTest), and finds only {ra * 100:.0f}{pct} of the "
            f"{ADJECTIVES.get(a, a)} and {rb * 100:.0f}{pct} of the {ADJECTIVES.get(b, b)} faces"),
    }
