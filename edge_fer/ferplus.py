"""FER+ votes (Microsoft's re-labelling of FER2013 by 10 annotators per face) for the faces of
a FER2013-layout folder, and the protocol that turns them into test labels.

The votes file is the shared `ferplus.csv` layout (`../shared/README.md`): one row per FER2013
file, its `path` relative to the folder that holds the split folders (`train/angry/Training_1.jpg`),
`fer2013_row`, `match` (ok, duplicate, none), `corr`, then the 10 vote columns.

The protocol (7 classes, the FER2013 folder names):
- a face's target distribution is its votes for the 7 FER2013 classes, normalised to sum 1
  (contempt, unknown and not-a-face votes dropped);
- its majority is the one column with the most votes of all 10; a face is left out of scoring,
  and counted, when that column is contempt, unknown or NF (not a face), when two or more
  columns share the most votes (a tie), or when it has no votes (`match` none, or a file the
  votes file has no row for).

Device side: no TensorFlow here; the host toolchain trains on the same objects.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_fer.errors import InputError

log = logging.getLogger(__name__)

#: FER+ vote column -> FER2013 folder name, for the 7 classes the two share.
FERPLUS_TO_FER2013 = {
    "neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
    "anger": "angry", "disgust": "disgust", "fear": "fear",
}
#: FER+'s own classes beyond FER2013's 7, in the file's column order.
EXTRA_COLUMNS = ("contempt", "unknown", "NF")
VOTE_COLUMNS = tuple(FERPLUS_TO_FER2013) + EXTRA_COLUMNS
COLUMNS = ("path", "fer2013_row", "match", "corr") + VOTE_COLUMNS
#: The 7 classes in FER2013 folder names (alphabetical, as folder tools sort them).
CLASSES = tuple(sorted(FERPLUS_TO_FER2013.values()))
MATCHES = ("ok", "duplicate", "none")

#: Where a face ends up under the protocol (`FolderVotes.outcome`).
KEPT, TIE, CONTEMPT, UNKNOWN, NOT_A_FACE, UNMATCHED = (
    "kept", "tie", "contempt", "unknown", "not_a_face", "unmatched")
OUTCOMES = (KEPT, TIE, CONTEMPT, UNKNOWN, NOT_A_FACE, UNMATCHED)
_EXTRA_OUTCOME = {"contempt": CONTEMPT, "unknown": UNKNOWN, "NF": NOT_A_FACE}

class VotesDoNotFit(InputError):
    """The votes file is sound but does not fit the data: it names none of its files, or the
    model lacks one of the 7 classes. Found beside a folder (not named by the user), that only
    means no FER+ figures for it."""


#: The votes file's name beside the split folders (`DATA/../ferplus.csv`).
VOTES_NAME = "ferplus.csv"

PROTOCOL = ("FER+ majority over 7 classes; left out: majority contempt, unknown or not-a-face, "
            "ties, and faces without votes")


@dataclass(frozen=True)
class FaceVotes:
    """One row of the votes file."""

    path: str
    """The file, relative to the folder holding the split folders (`train/angry/x.jpg`)."""
    fer2013_row: int
    """Its 0-based row in the original fer2013.csv."""
    match: str
    """`ok`, `duplicate` (the votes are the other copy's) or `none` (no votes)."""
    votes: tuple[int, ...] | None
    """The 10 annotators' votes in `VOTE_COLUMNS` order; None when the row has none."""
    line: int
    """Its line in the votes file (for messages)."""

    @property
    def outcome(self) -> str:
        """What the protocol does with this face (one of `OUTCOMES`)."""
        if self.votes is None or not any(self.votes):
            return UNMATCHED
        top = max(self.votes)
        if self.votes.count(top) > 1:
            return TIE
        column = VOTE_COLUMNS[self.votes.index(top)]
        return _EXTRA_OUTCOME.get(column, KEPT)

    @property
    def majority(self) -> str | None:
        """The FER2013 class name of the majority, or None when the face is left out."""
        if self.outcome != KEPT:
            return None
        return FERPLUS_TO_FER2013[VOTE_COLUMNS[self.votes.index(max(self.votes))]]

    def distribution(self) -> np.ndarray | None:
        """Votes for the 7 `CLASSES`, normalised to sum 1; None without any of them."""
        if self.votes is None:
            return None
        counts = dict(zip(VOTE_COLUMNS, self.votes))
        v = np.asarray([sum(counts[k] for k, c in FERPLUS_TO_FER2013.items() if c == name)
                        for name in CLASSES], dtype=np.float64)
        return v / v.sum() if v.sum() > 0 else None


@dataclass
class VoteCounts:
    """How many faces the protocol kept and left out, and why."""

    faces: int = 0
    """Faces scored or looked up (the data's, after any sample or detection)."""
    kept: int = 0
    """With a single 7-class majority: scored against it."""
    tie: int = 0
    """Two or more columns share the most votes."""
    contempt: int = 0
    """Majority contempt (FER+'s eighth class, which a 7-class model cannot give)."""
    unknown: int = 0
    """Majority unknown (the annotators could not tell)."""
    not_a_face: int = 0
    """Majority NF: not a face."""
    unmatched: int = 0
    """No votes: `match` none, or no row in the votes file for this file."""

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("faces",) + OUTCOMES}

    def summary(self) -> str:
        left = ", ".join(f"{getattr(self, k)} {k.replace('_', '-')}" for k in OUTCOMES[1:])
        return f"{self.kept} of {self.faces} faces with a single 7-class FER+ majority (left out: {left})"


@dataclass
class FolderVotes:
    """The votes of a list of files (a loaded data set's `paths`), aligned with it."""

    votes_file: str
    """The votes file read."""
    classes: list[str]
    """Class names of `distributions`' columns and `majority`'s indices (the data's order)."""
    distributions: np.ndarray
    """N x len(classes) float32: each face's normalised 7-class votes; a row of zeros where it
    has none."""
    majority: np.ndarray
    """N ints: index into `classes` of each face's majority, -1 where the protocol leaves it out."""
    outcomes: list[str]
    """Per face, one of `OUTCOMES`."""
    counts: VoteCounts = field(default_factory=VoteCounts)
    """The protocol's tallies over these faces."""

    @property
    def kept(self) -> np.ndarray:
        """Indices of the faces scored against their FER+ majority."""
        return np.flatnonzero(self.majority >= 0)

    @property
    def has_votes(self) -> np.ndarray:
        """Boolean mask of the faces with a 7-class vote distribution."""
        return self.distributions.sum(axis=1) > 0


def _parse_votes(row: dict, where: str) -> tuple[int, ...] | None:
    cells = [row[k].strip() for k in VOTE_COLUMNS]
    if not any(cells):
        return None
    out = []
    for name, cell in zip(VOTE_COLUMNS, cells):
        if not cell.isdigit():
            raise InputError(f"{where}: vote '{name}' is {cell!r}, expected a whole number of "
                             "annotators (0 or more), or all 10 vote cells empty for a face without votes")
        out.append(int(cell))
    return tuple(out)


def read_votes(path: str | os.PathLike) -> dict[str, FaceVotes]:
    """Every row of a FER+ votes file, by its `path` column.

    InputError (one line naming the file and the row) for a missing or unreadable file, other
    columns, a row with a bad `match` or a vote that is not a whole number, or a path listed twice.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"FER+ votes file not found: {path}")
    rows: dict[str, FaceVotes] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            if sorted(header) != sorted(COLUMNS):
                extra = [c for c in header if c not in COLUMNS]
                missing = [c for c in COLUMNS if c not in header]
                what = "; ".join(filter(None, [f"unexpected {', '.join(extra)}" if extra else "",
                                               f"missing {', '.join(missing)}" if missing else ""]))
                raise InputError(f"{path}: line 1: not a FER+ votes file ({what or 'a column repeated'}); "
                                 f"expected the columns {','.join(COLUMNS)}")
            for row in reader:
                where = f"{path}: line {reader.line_num}"
                if None in row or any(row[k] is None for k in COLUMNS):
                    raise InputError(f"{where}: {len(header) + len(row.get(None, []))} fields where the "
                                     f"header has {len(header)}" if None in row else
                                     f"{where}: fewer fields than the header's {len(header)}")
                name = row["path"].strip()
                if not name:
                    raise InputError(f"{where}: 'path' is empty")
                if name in rows:
                    raise InputError(f"{where}: {name} is listed twice (also line {rows[name].line})")
                match = row["match"].strip()
                if match not in MATCHES:
                    raise InputError(f"{where}: 'match' is {match!r}, expected one of {', '.join(MATCHES)}")
                fer_row = row["fer2013_row"].strip()
                if fer_row and not fer_row.isdigit():
                    raise InputError(f"{where}: 'fer2013_row' is {fer_row!r}, expected a row number")
                votes = _parse_votes(row, where)
                if match == "none" and votes is not None:
                    raise InputError(f"{where}: 'match' is none but the row has votes")
                rows[name] = FaceVotes(name, int(fer_row) if fer_row else -1, match, votes,
                                       reader.line_num)
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text: is this really the FER+ votes file?") from None
    except csv.Error as exc:
        raise InputError(f"{path}: line {reader.line_num + 1}: not valid CSV ({exc})") from None
    log.info("read %d FER+ vote rows from %s", len(rows), path)
    return rows


def default_votes_file(data: str | os.PathLike) -> Path:
    """Where the votes of the split folder `data` are looked for without --votes: beside it,
    as in the shared layout (`datasets/fer2013/{train,publictest,privatetest}` and
    `datasets/fer2013/ferplus.csv`)."""
    return _absolute(data).parent / VOTES_NAME


def _absolute(path: str | os.PathLike) -> Path:
    """`path` made absolute without following links: a sample folder of links to the shared
    files is still looked up by its own layout."""
    return Path(os.path.abspath(path))


def _key(path: str | os.PathLike, base: Path) -> str | None:
    """`path` relative to `base` as the votes file writes it, or None when it is not under it."""
    try:
        return _absolute(path).relative_to(base).as_posix()
    except ValueError:
        return None


def folder_votes(rows: dict[str, FaceVotes], folder: str | os.PathLike, paths: Sequence[str],
                 classes: Sequence[str], votes_file: str | os.PathLike,
                 folder_files: Sequence[str | os.PathLike] | None = None) -> FolderVotes:
    """The votes of the files `paths` (all inside the split folder `folder`), columns in
    `classes` order (a model's or the data's).

    A row is looked up by the file's path relative to `folder`'s parent (`privatetest/angry/x.jpg`).
    Rows of `folder`'s split must name files that are in it (`folder_files`, default: every file
    under it); rows of other splits are ignored. InputError when the votes name a missing file,
    name no file of `folder` at all, or when `classes` lacks one of the 7.
    """
    folder = _absolute(folder)
    missing = [c for c in CLASSES if c not in classes]
    if missing:
        raise VotesDoNotFit(f"FER+ scoring needs the 7 classes {', '.join(CLASSES)}; the model has no "
                         f"{', '.join(missing)}")
    split = folder.name + "/"
    ours = {k: v for k, v in rows.items() if k.startswith(split)}
    if not ours:
        raise VotesDoNotFit(f"{votes_file}: no row names a file of {folder} (paths would start with {split})")
    if folder_files is None:
        folder_files = [p for p in folder.rglob("*") if p.is_file()]
    present = {_key(p, folder.parent) for p in folder_files}
    absent = sorted((v.line, k) for k, v in ours.items() if k not in present)
    if absent:
        line, name = absent[0]
        more = f" ({len(absent)} rows name files not there)" if len(absent) > 1 else ""
        raise InputError(f"{votes_file}: line {line}: {name} is not in {folder.parent}{more}")
    col = {name: i for i, name in enumerate(classes)}
    dist = np.zeros((len(paths), len(classes)), dtype=np.float32)
    majority = np.full(len(paths), -1, dtype=np.int64)
    outcomes = []
    counts = VoteCounts(faces=len(paths))
    for i, p in enumerate(paths):
        face = ours.get(_key(p, folder.parent))
        outcome = UNMATCHED if face is None else face.outcome
        outcomes.append(outcome)
        setattr(counts, outcome, getattr(counts, outcome) + 1)
        if face is None:
            continue
        d = face.distribution()
        if d is not None:
            dist[i, [col[c] for c in CLASSES]] = d
        if outcome == KEPT:
            majority[i] = col[face.majority]
    return FolderVotes(str(votes_file), list(classes), dist, majority, outcomes, counts)


def load_folder_votes(votes_file: str | os.PathLike, folder: str | os.PathLike,
                      paths: Sequence[str], classes: Sequence[str]) -> FolderVotes:
    """`read_votes` then `folder_votes`: the votes of the loaded files `paths` of `folder`."""
    return folder_votes(read_votes(votes_file), folder, paths, classes, votes_file)


#: `edge-fer train --targets`: what a face with votes is trained towards.
TARGETS = ("labels", "votes", "majority")


def training_targets(fv: FolderVotes, labels: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-face training targets (N x classes, rows summing to 1) and which faces to train on.

    `votes`: the normalised 7-class vote distribution (the FER+ paper's best scheme,
    cross-entropy against it), ties included; `majority`: the one-hot majority, ties left out.
    Both leave out faces whose majority is contempt, unknown or not-a-face, and fall back on the
    folder's own label (`labels`, FER2013's) only where a face has no votes at all.
    """
    if mode not in ("votes", "majority"):
        raise ValueError(f"unknown vote targets {mode!r}")
    outcome = np.asarray(fv.outcomes)
    no_votes = outcome == UNMATCHED
    targets = np.eye(len(fv.classes), dtype=np.float32)[labels]
    if mode == "votes":
        use = ~no_votes & np.isin(outcome, [KEPT, TIE]) & fv.has_votes
        targets[use] = fv.distributions[use]
    else:
        use = outcome == KEPT
        targets[use] = np.eye(len(fv.classes), dtype=np.float32)[fv.majority[use]]
    return targets, use | no_votes
