"""Figures the project states in its documents (model cards, benchmarks/README.md), read from there so a
test checks what the documents say, not a copy of it that can drift.

A document's tables are read as `Table`s: the `## ` section they sit in, the line of text just
above them (their caption), the header and the rows. `figure` turns a cell into a number.
$EDGE_FER_CARDS_DIR points the card readers at another folder of cards (a test gives them a
deliberately wrong one).
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cards_dir() -> Path:
    return Path(os.environ.get("EDGE_FER_CARDS_DIR", REPO / "models"))


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
    lines = Path(path).read_text().splitlines() + [""]
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


# -- the model cards ---------------------------------------------------------------------------


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


def card(name: str) -> Path:
    return cards_dir() / f"{name}.md"


def scored(name: str, labels: Scored = PRIVATETEST) -> dict[str, float]:
    """The card's figures of the model as shipped against `labels`: {"accuracy", "macro
    recall"}, and "faces" where the row names how many were scored ("... (3,304 faces)")."""
    row = find_table(card(name), section=labels.section, column="accuracy").row(labels.row)
    out = {"accuracy": figure(row["accuracy"]), "macro recall": figure(row["macro recall"])}
    faces = re.search(r"\(([\d,]+) faces\)", next(iter(row.values())))
    if faces:
        out["faces"] = int(faces.group(1).replace(",", ""))
    return out


def per_class_recall(name: str, labels: Scored = PRIVATETEST) -> dict[str, float]:
    """The card's per-class recall of the model as shipped against `labels`: {label: recall}."""
    t = find_table(card(name), caption=labels.per_class)
    row = t.row("as shipped") if t.header[0] == "" else t.row()
    return {k: figure(v) for k, v in row.items() if k}


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
