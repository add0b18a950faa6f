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
The tables are read by the reader below, the one the tests check every card's figures with
(tests/stated.py).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from edge_fer_models import MODELS_DIR


@dataclass(frozen=True)
class CardFigures:
    """What a model card says the shipped model scores on FER2013 PrivateTest, against `labels`."""

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


# -- Markdown tables, as the cards (and benchmarks/README.md) write them ----------------------


def _clean(cell: str) -> str:
    return cell.strip().replace("**", "").replace("`", "").strip()


@dataclass
class Table:
    """A Markdown table of a document."""

    section: str
    """The heading (without the #s) of the section it is in."""
    caption: str
    """The last line of text above it (e.g. "Per-class recall (INT8, PrivateTest):")."""
    header: list[str]
    """Column names, cleaned of ** and backticks."""
    rows: list[list[str]]
    """Cells, cleaned the same way."""

    def row(self, first: str | None = None) -> dict[str, str]:
        """{column: cell} of the row whose first cell starts with `first`; with None, of the
        only row. KeyError when there is no such row (or more than one with None)."""
        if first is None:
            if len(self.rows) != 1:
                raise KeyError(f"{len(self.rows)} rows under '{self.caption}': name one")
            return dict(zip(self.header, self.rows[0]))
        for cells in self.rows:
            if cells[0].startswith(first):
                return dict(zip(self.header, cells))
        raise KeyError(f"no row starting '{first}' in the table under '{self.caption}' "
                       f"({self.section})")


def tables(path: Path) -> list[Table]:
    """Every table of the Markdown file at `path`, in order."""
    out: list[Table] = []
    section, caption, block = "", "", []
    lines = Path(path).read_text(encoding="utf-8").splitlines() + [""]
    for line in lines:
        if line.startswith("|"):
            block.append([_clean(c) for c in line.strip().strip("|").split("|")])
            continue
        if len(block) >= 2 and set("".join(block[1])) <= set("-: "):
            out.append(Table(section, caption, block[0], block[2:]))
        block = []
        if line.startswith("#"):
            section, caption = line.lstrip("#").strip(), ""
        elif line.strip():
            caption = line.strip()
    return out


def find_table(path: Path, *, section: str = "", caption: str = "", column: str = "") -> Table:
    """The first table whose section and caption start with these and whose header has a
    column starting with `column`."""
    for t in tables(path):
        if t.section.startswith(section) and t.caption.startswith(caption) and \
                any(h.startswith(column) for h in t.header):
            return t
    raise LookupError(f"{path}: no table in section '{section}', caption '{caption}', "
                      f"with a column '{column}'")


def figure(cell: str) -> float:
    """A cell as a number: "68.54 %" -> 0.6854, "0.6679" -> 0.6679, "1,131.6" -> 1131.6."""
    text = _clean(cell).replace(",", "")
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*(%?)", text)
    if not m:
        raise ValueError(f"not a figure: {cell!r}")
    return float(m.group(1)) / (100 if m.group(2) else 1)


# -- where a card states what the shipped file scores ------------------------------------------


@dataclass(frozen=True)
class Scored:
    """Where a card states how the shipped file scores against one set of labels."""

    section: str
    """The start of the section's heading."""
    row: str
    """The start of the row of the file as shipped, in the section's accuracy table."""
    per_class: str
    """The start of the caption of the per-class recall table."""


#: FER2013 PrivateTest, its own labels (all 3,589 faces).
PRIVATETEST = Scored("What it scores on FER2013 PrivateTest", "INT8, as shipped",
                     "Per-class recall (INT8, PrivateTest)")
#: PrivateTest against the FER+ majority of 10 votes (the faces edge_fer.ferplus keeps).
FERPLUS = Scored("What it scores against the FER+ majority", "FER+ majority",
                 "Per-class recall against the FER+ majority")


def scored_row(path: Path, labels: Scored) -> dict[str, str]:
    """{column: cell} of the row of the file as shipped in the card's accuracy table against
    `labels`. LookupError or KeyError where the card has no such table or row."""
    return find_table(path, section=labels.section, column="accuracy").row(labels.row)


def recall_of(path: Path, labels: Scored) -> dict[str, float]:
    """The card's per-class recall of the file as shipped against `labels`: {label: recall}
    (the "as shipped" row where the table names its rows, else its only row)."""
    t = find_table(path, caption=labels.per_class)
    row = t.row("as shipped") if t.header[0] == "" else t.row()
    return {k: figure(v) for k, v in row.items() if k}


def read_card(model: str = "default", folder: Path = MODELS_DIR) -> CardFigures:
    """The figures of `folder/model.md`, against the FER+ majority where the card has them,
    else against FER2013's labels; ValueError naming the card and what is missing."""
    path = folder / f"{model}.md"
    for labels, against in (("FER+", FERPLUS), ("FER2013", PRIVATETEST)):
        try:
            row, recall = scored_row(path, against), recall_of(path, against)
            accuracy, macro = figure(row["accuracy"]), figure(row["macro recall"])
        except (LookupError, ValueError):  # KeyError is a LookupError
            continue
        return CardFigures(model, accuracy, macro, recall, labels)
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
