"""FER+ votes: the protocol on a hand-made votes file with known answers, `evaluate` against the
FER+ majority beside FER2013's labels, bad votes files, and a real PrivateTest sample."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from conftest import assert_one_line_error, invoke
from edge_fer.datasets import load_labelled
from edge_fer.evaluate import evaluate_with_votes
from edge_fer.ferplus import CLASSES, COLUMNS, VOTE_COLUMNS, load_folder_votes, read_votes
from stated import FERPLUS, scored

#: (folder class, file, match, votes by column or None, the class the fake model predicts,
#: its FER+ outcome). Classes index CLASSES: angry disgust fear happy neutral sad surprise.
FACES = [
    ("happy", "a", "ok", {"happiness": 8, "neutral": 2}, "happy", "kept"),
    ("happy", "b", "ok", {"neutral": 6, "happiness": 4}, "happy", "kept"),       # FER+ says neutral
    ("sad", "c", "ok", {"sadness": 5, "neutral": 5}, "sad", "tie"),
    ("angry", "d", "ok", {"contempt": 6, "anger": 4}, "angry", "contempt"),
    ("fear", "e", "ok", {"unknown": 7, "fear": 3}, "fear", "unknown"),
    ("neutral", "f", "ok", {"NF": 10}, "neutral", "not_a_face"),
    ("surprise", "g", "none", None, "surprise", "unmatched"),
    ("surprise", "h", None, None, "surprise", "unmatched"),                      # no row at all
    ("angry", "i", "duplicate", {"anger": 9, "fear": 1}, "fear", "kept"),
    ("neutral", "j", "ok", {"neutral": 10}, "neutral", "kept"),
    ("disgust", "k", "ok", {"disgust": 3, "anger": 2, "fear": 1, "contempt": 2, "unknown": 2},
     "disgust", "kept"),
]


def _row(path, match, votes, fer_row=0):
    cells = [str(votes.get(c, 0)) for c in VOTE_COLUMNS] if votes else [""] * len(VOTE_COLUMNS)
    return [path, str(fer_row), match, "0.999" if votes else "", *cells]


def write_votes(path, rows, header=COLUMNS):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture()
def folder(tmp_path):
    """tmp/fer/privatetest/<class>/<file>.png, each face's gray level naming the class the fake
    model predicts, and tmp/fer/ferplus.csv beside it (plus rows of another split)."""
    root = tmp_path / "fer"
    rows = []
    for i, (cls, name, match, votes, pred, _) in enumerate(FACES):
        d = root / "privatetest" / cls
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{name}.png"), np.full((48, 48), 20 + 30 * CLASSES.index(pred), np.uint8))
        if match is not None:
            rows.append(_row(f"privatetest/{cls}/{name}.png", match, votes, i))
    rows.append(_row("train/happy/elsewhere.png", "ok", {"happiness": 10}, 99))
    write_votes(root / "ferplus.csv", rows)
    return root


def fake_predict(images):
    """One-hot of the class each face's gray level names (see `folder`)."""
    cls = (np.asarray(images)[:, 0, 0].astype(int) - 20 + 15) // 30
    return np.eye(len(CLASSES))[cls]


def test_the_protocol_on_known_answers(folder):
    data = load_labelled(folder / "privatetest", classes=CLASSES)
    fv = load_folder_votes(folder / "ferplus.csv", folder / "privatetest", data.paths, CLASSES)
    by_name = {p.rsplit("/", 1)[1][0]: i for i, p in enumerate(data.paths)}
    for cls, name, _, votes, _, outcome in FACES:
        assert fv.outcomes[by_name[name]] == outcome, name
    assert fv.counts.to_dict() == {"faces": 11, "kept": 5, "tie": 1, "contempt": 1, "unknown": 1,
                                   "not_a_face": 1, "unmatched": 2}
    majority = {name: CLASSES[fv.majority[i]] for name, i in by_name.items() if fv.majority[i] >= 0}
    assert majority == {"a": "happy", "b": "neutral", "i": "angry", "j": "neutral", "k": "disgust"}
    # Distributions over the 7 classes only: contempt/unknown/NF votes dropped, then normalised.
    k = fv.distributions[by_name["k"]]
    assert k[CLASSES.index("disgust")] == pytest.approx(0.5)
    assert k[CLASSES.index("angry")] == pytest.approx(2 / 6)
    assert k.sum() == pytest.approx(1.0)
    assert fv.distributions[by_name["f"]].sum() == 0, "not-a-face only: no 7-class votes"
    assert fv.distributions[by_name["g"]].sum() == 0


def test_scores_against_the_majority_beside_the_labels(folder):
    data = load_labelled(folder / "privatetest", classes=CLASSES)
    result = evaluate_with_votes(fake_predict, data, folder / "privatetest")
    assert result.scores.count == 11
    assert result.scores.accuracy == pytest.approx(10 / 11), "only face i is wrong by FER2013 labels"
    fp = result.ferplus.scores
    assert fp.count == 5
    assert fp.accuracy == pytest.approx(3 / 5), "a, j, k right; b (FER+ neutral) and i wrong"
    assert fp.per_class_recall == pytest.approx({"angry": 0.0, "disgust": 1.0, "happy": 1.0, "neutral": 0.5})
    assert fp.macro_recall == pytest.approx(2.5 / 4)
    assert fp.confusion[CLASSES.index("neutral")][CLASSES.index("happy")] == 1
    assert result.ferplus.counts.kept == 5 and result.ferplus.counts.unmatched == 2


def test_evaluate_json_carries_both(folder, default_model):
    r = invoke("evaluate", "--data", folder / "privatetest", "--json", "-m", default_model)
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["count"] == 11
    fp = s["ferplus"]
    assert fp["count"] == 5 and sum(map(sum, fp["confusion"])) == 5
    assert fp["faces"] == {"faces": 11, "kept": 5, "tie": 1, "contempt": 1, "unknown": 1,
                           "not_a_face": 1, "unmatched": 2}
    assert fp["votes_file"].endswith("ferplus.csv")


def test_a_folder_without_votes_gives_fer2013_figures_and_says_why(folder, default_model):
    (folder / "ferplus.csv").unlink()
    r = invoke("evaluate", "--data", folder / "privatetest", "-m", default_model)
    assert r.exit_code == 0, r.output
    assert "accuracy:" in r.output and "FER+ majority" not in r.output
    (note,) = [ln for ln in r.output.splitlines() if "FER+" in ln]
    assert "need the votes file" in note and "--votes" in note
    s = json.loads(invoke("evaluate", "--data", folder / "privatetest", "--json", "-m", default_model).output)
    assert s["ferplus"] is None and "votes file" in s["ferplus_note"]


def test_votes_named_elsewhere(folder, default_model, tmp_path):
    other = tmp_path / "mine.csv"
    (folder / "ferplus.csv").rename(other)
    r = invoke("evaluate", "--data", folder / "privatetest", "--json", "-m", default_model, "--votes", other)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["ferplus"]["faces"]["kept"] == 5


def _bad_rows(folder):
    rows = list(csv.reader(open(folder / "ferplus.csv")))
    return rows[0], rows[1:]


@pytest.mark.parametrize("case", ["missing", "columns", "not-in-folder", "non-integer", "negative",
                                  "empty-cell", "short-row"])
def test_bad_votes_file_is_one_line_naming_file_and_row_exit_3(folder, default_model, tmp_path, case):
    bad = tmp_path / "bad.csv"
    header, rows = _bad_rows(folder)
    needles = [str(bad)]
    if case == "missing":
        needles.append("not found")
    elif case == "columns":
        write_votes(bad, [r + ["1"] for r in rows], header=list(header) + ["extra"])
        needles += ["line 1", "unexpected extra"]
    elif case == "not-in-folder":
        rows.insert(3, _row("privatetest/happy/nobody.png", "ok", {"happiness": 10}))
        write_votes(bad, rows)
        needles += ["line 5", "privatetest/happy/nobody.png", "is not in"]
    else:
        column = header.index("fear")
        rows[2][column] = {"non-integer": "2.5", "negative": "-1", "empty-cell": "", "short-row": "0"}[case]
        if case == "short-row":
            rows[2] = rows[2][:-2]
        write_votes(bad, rows)
        needles += ["line 4"] + (["'fear'"] if case != "short-row" else ["fields"])
    r = invoke("evaluate", "--data", folder / "privatetest", "-m", default_model, "--votes", bad)
    assert_one_line_error(r, *needles, code=3)


def test_read_votes_rejects_a_path_listed_twice(folder, tmp_path):
    header, rows = _bad_rows(folder)
    bad = write_votes(tmp_path / "twice.csv", rows + [rows[0]])
    with pytest.raises(Exception, match=r"line \d+: .* listed twice \(also line 2\)"):
        read_votes(bad)


def _majority_by_hand(votes_csv, paths, root):
    """The protocol written out independently of edge_fer.ferplus, for the real sample."""
    names = ["neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", None, None, None]
    table = {r["path"]: r for r in csv.DictReader(open(votes_csv))}
    out = []
    for p in paths:
        r = table.get(str(p.relative_to(root)))
        if r is None or not r["neutral"]:
            out.append(None)
            continue
        v = [int(r[c]) for c in VOTE_COLUMNS]
        top = max(v)
        out.append(names[v.index(top)] if v.count(top) == 1 else None)
    return out


def test_evaluate_on_a_real_privatetest_sample(fer_dir, default_model):
    from pathlib import Path

    from edge_fer.classifier import EmotionClassifier

    r = invoke("evaluate", "--data", fer_dir / "privatetest", "--limit", 400, "--json", "-m", default_model)
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    fp = s["ferplus"]
    faces = fp["faces"]
    assert faces["faces"] == 400 == s["count"]
    assert sum(faces[k] for k in faces if k != "faces") == 400
    assert 340 < faces["kept"] < 390, "92 % of PrivateTest has a single 7-class majority (3,304 of 3,589)"
    # The same sample (evaluate's seed 0), scored here with the protocol written out by hand.
    clf = EmotionClassifier(default_model)
    data = load_labelled(fer_dir / "privatetest", size=clf.input_size, color=clf.color, limit=400,
                         classes=clf.labels)
    truth = _majority_by_hand(fer_dir / "ferplus.csv", [Path(p) for p in data.paths], fer_dir)
    pred = np.argmax(clf.predict_proba(list(data.images)), axis=1)
    kept = [i for i, t in enumerate(truth) if t is not None]
    assert len(kept) == faces["kept"]
    right = sum(clf.labels[pred[i]] == truth[i] for i in kept)
    assert fp["accuracy"] == pytest.approx(right / len(kept), abs=1e-4)
    # The card's FER+ figure on all 3,304 faces; 370 of them have a standard error of about 2 points.
    card = scored("default", FERPLUS)["accuracy"]
    assert card - 0.07 < fp["accuracy"] < card + 0.07


def test_the_python_api_carries_both(folder, default_model):
    import edge_fer

    result = edge_fer.evaluate_model(folder / "privatetest", model=default_model)
    assert isinstance(result, edge_fer.Evaluation)
    assert result.scores.count == 11 and result.ferplus.scores.count == 5
    assert result.to_dict()["ferplus"]["faces"]["tie"] == 1
    (folder / "ferplus.csv").unlink()
    result = edge_fer.evaluate_model(folder / "privatetest", model=default_model)
    assert result.ferplus is None and "votes file" in result.note


def test_training_targets(folder):
    from edge_fer.ferplus import training_targets

    data = load_labelled(folder / "privatetest", classes=CLASSES)
    fv = load_folder_votes(folder / "ferplus.csv", folder / "privatetest", data.paths, CLASSES)
    name = [p.rsplit("/", 1)[1][0] for p in data.paths]
    targets, keep = training_targets(fv, data.labels, "votes")
    # Ties train on their split distribution; contempt, unknown and not-a-face majorities are
    # left out; faces without votes keep the folder's label.
    assert {n for n, k in zip(name, keep) if not k} == {"d", "e", "f"}
    c = targets[name.index("c")]
    assert c[CLASSES.index("sad")] == pytest.approx(0.5) and c[CLASSES.index("neutral")] == pytest.approx(0.5)
    assert targets[name.index("b")][CLASSES.index("neutral")] == pytest.approx(0.6)
    assert targets[name.index("g")][CLASSES.index("surprise")] == 1.0
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    targets, keep = training_targets(fv, data.labels, "majority")
    assert {n for n, k in zip(name, keep) if not k} == {"c", "d", "e", "f"}
    assert targets[name.index("b")][CLASSES.index("neutral")] == 1.0


def test_a_sample_folder_of_links_is_looked_up_by_its_own_layout(fer_dir, tmp_path, default_model):
    """A user's sample of the shared folder, made of symbolic links, beside a link to the votes."""
    root = tmp_path / "sample"
    for cls in CLASSES:
        (root / "privatetest" / cls).mkdir(parents=True)
        for f in sorted((fer_dir / "privatetest" / cls).iterdir())[:6]:
            (root / "privatetest" / cls / f.name).symlink_to(f)
    rows = list(csv.reader(open(fer_dir / "ferplus.csv")))
    wanted = {f"privatetest/{c}/{f.name}" for c in CLASSES for f in (root / "privatetest" / c).iterdir()}
    write_votes(root / "ferplus.csv", [r for r in rows[1:] if r[0] in wanted])
    r = invoke("evaluate", "--data", root / "privatetest", "--json", "-m", default_model)
    assert r.exit_code == 0, r.output
    faces = json.loads(r.output)["ferplus"]["faces"]
    assert faces["faces"] == 42 and faces["kept"] > 30
    assert faces["unmatched"] == sum(1 for r in rows[1:] if r[0] in wanted and r[2] == "none")
