"""Malformed rows of the FER2013 CSV stop `evaluate`, `convert` and `train` with one line naming
the row's line and what is wrong (issue 13, case 1: they crashed with OverflowError,
AttributeError and cv2.error tracebacks)."""

from __future__ import annotations

import pytest

from conftest import QUIET_TF, assert_one_line_error, invoke, needs_tf, run_cli
from edge_fer.datasets import load_fer_csv
from edge_fer.errors import InputError

GOOD = "3," + " ".join(str(i % 256) for i in range(2304)) + ",PrivateTest"

#: kind -> (the bad row, what the error line must say)
BAD_ROWS = {
    "pixel over 255": ("3," + " ".join(["12"] * 100 + ["300"] + ["12"] * 2203) + ",PrivateTest",
                       "'pixels' value 101 is 300, expected 0..255"),
    "negative pixel": ("3," + " ".join(["-1"] + ["12"] * 2303) + ",PrivateTest",
                       "'pixels' value 1 is -1, expected 0..255"),
    "too few fields": ("3", "1 field(s), expected 3 (emotion,pixels,Usage): no pixels, Usage"),
    "too many fields": ("3,1 2 3,PrivateTest,extra", "4 fields, expected 3 (emotion,pixels,Usage)"),
    "empty pixels": ("3,,PrivateTest", "'pixels' is empty"),
    "wrong pixel count": ("3," + " ".join(["7"] * 2303) + ",PrivateTest",
                          "'pixels' has 2303 values, not a square image"),
    "non-numeric pixel": ("3," + " ".join(["7"] * 5 + ["x7"] + ["7"] * 2298) + ",PrivateTest",
                          "'pixels' value 6 is 'x7', expected an integer 0..255"),
    "bad emotion": ("9," + " ".join(["7"] * 2304) + ",PrivateTest",
                    "'emotion' is '9', expected an integer 0..6"),
}


def bad_csv(tmp_path, row: str):
    """A CSV whose fourth line is `row`: the good rows around it must not hide it."""
    path = tmp_path / "fer2013.csv"
    path.write_text("\n".join(["emotion,pixels,Usage", GOOD, GOOD, row, GOOD]) + "\n")
    return path


@pytest.mark.parametrize("kind", BAD_ROWS)
def test_load_names_the_line_and_the_fault(kind, tmp_path):
    row, says = BAD_ROWS[kind]
    path = bad_csv(tmp_path, row)
    with pytest.raises(InputError) as exc:
        load_fer_csv(path, usage="PrivateTest")
    assert str(exc.value).startswith(f"{path}: line 4: "), exc.value
    assert says in str(exc.value)


@pytest.mark.parametrize("kind", BAD_ROWS)
def test_evaluate_reports_a_malformed_row_in_one_line(kind, tmp_path, default_model):
    row, says = BAD_ROWS[kind]
    path = bad_csv(tmp_path, row)
    r = invoke("evaluate", "--data", str(path), "-m", str(default_model))
    assert_one_line_error(r, "line 4", says, code=InputError.exit_code)


def test_rows_of_another_split_are_checked_only_when_kept(tmp_path):
    """--usage skips other splits unread: a damaged Training row does not stop a PrivateTest
    evaluation, as before."""
    path = tmp_path / "fer2013.csv"
    path.write_text("\n".join(["emotion,pixels,Usage", GOOD, "3,300,Training"]) + "\n")
    assert len(load_fer_csv(path, usage="PrivateTest")) == 1
    with pytest.raises(InputError, match="line 3: 'pixels' value 1 is 300"):
        load_fer_csv(path)


def test_not_utf8_and_not_csv(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_bytes(b"emotion,pixels,Usage\n3,\xff\xfe 1 2,PrivateTest\n")
    with pytest.raises(InputError, match="is not UTF-8 text"):
        load_fer_csv(path)
    path.write_text('emotion,pixels,Usage\n3,"1 2' + "9" * 200_000 + '",PrivateTest\n')
    with pytest.raises(InputError, match="line 2: not valid CSV"):
        load_fer_csv(path)


@needs_tf
def test_train_and_convert_report_a_malformed_row_in_one_line(tmp_path, mini_xception):
    row, says = BAD_ROWS["pixel over 255"]
    path = bad_csv(tmp_path, row)
    r = run_cli("train", "--data", path, "--val", path, "--epochs", 1, "-o", tmp_path / "m.keras",
                env=QUIET_TF)
    assert_one_line_error(r, f"{path}: line 4", says, code=InputError.exit_code)
    r = run_cli("convert", mini_xception, "-o", tmp_path / "m.tflite", "--calibration", path,
                "--labels", "angry,disgust,fear,happy,sad,surprise,neutral",
                "--normalization", "symmetric", env=QUIET_TF)
    assert_one_line_error(r, f"{path}: line 4", says, code=InputError.exit_code)
    assert not (tmp_path / "m.tflite").exists() and not (tmp_path / "m.keras").exists()


def test_rows_of_different_sizes_without_resizing(tmp_path):
    """`evaluate --detect` loads rows at their own size; a 36x36 row among 48x48 ones is named
    instead of failing in np.stack."""
    small = "3," + " ".join(["7"] * 36 * 36) + ",PrivateTest"
    path = bad_csv(tmp_path, small)
    assert load_fer_csv(path, size=(48, 48)).images.shape == (4, 48, 48)
    with pytest.raises(InputError, match="line 4: a 36x36 image among 48x48 ones"):
        load_fer_csv(path, size=None)


def test_a_csv_saved_with_a_byte_order_mark_is_read(tmp_path):
    """Excel's "CSV UTF-8" puts a BOM before the header: it is not part of the first column."""
    path = tmp_path / "fer2013.csv"
    path.write_bytes(("\n".join(["emotion,pixels,Usage", GOOD, GOOD]) + "\n").encode("utf-8-sig"))
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    data = load_fer_csv(path, usage="PrivateTest")
    assert len(data) == 2 and data.labels.tolist() == [3, 3]
