"""Labelled face data: a folder of class subfolders (the FER2013 image export), the FER2013 CSV,
or a NumPy `.npz` archive (arrays a notebook already holds).

Both the runtime (`edge-fer evaluate`) and the host toolchain (training, calibration) read data
through here, so a model is scored on exactly the pixels it was trained and calibrated on.
"""

from __future__ import annotations

import csv
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_fer.errors import InputError
from edge_fer.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, read_image, resize_to

log = logging.getLogger(__name__)

#: Label order of the classic FER2013 CSV (`emotion` column 0..6).
FER2013_CSV_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@dataclass
class LabelledImages:
    """Images with integer labels into `classes`."""

    images: np.ndarray
    """uint8 array, N x H x W (gray) or N x H x W x 3; an object array of such images when they
    differ in size (loaded without resizing, for detection)."""
    labels: np.ndarray
    """int array of N indices into `classes`."""
    classes: list[str]
    """Class names, index i is label i."""
    paths: list[str]
    """Where each image came from (file path, or `csv:ROW`)."""

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> "LabelledImages":
        return LabelledImages(
            self.images[index], self.labels[index], self.classes, [self.paths[i] for i in index]
        )

    def counts(self) -> dict[str, int]:
        return {c: int(np.sum(self.labels == i)) for i, c in enumerate(self.classes)}


def list_class_folders(root: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image paths, for each subfolder of `root` holding images."""
    if not root.exists():
        raise InputError(f"data folder not found: {root}")
    if not root.is_dir():
        raise InputError(f"not a folder of class subfolders: {root}")
    found: dict[str, list[Path]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in sub.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            found[sub.name] = files
    if not found:
        raise InputError(
            f"no labelled images in {root}: expected one subfolder per class "
            f"(angry/, happy/, ...) holding image files"
        )
    return found


def _unknown_classes_message(unknown, known, where: str = "") -> str:
    return (f"the data{where} has class(es) {', '.join(unknown)} that the model does not know "
            f"(model labels: {', '.join(known)}): rename or remove those folders")


def stratified_indices(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Up to `n` indices drawn across classes in proportion, every class represented."""
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    picked = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        share = max(1, int(round(n * len(idx) / len(labels))))
        picked.append(rng.choice(idx, size=min(share, len(idx)), replace=False))
    out = np.concatenate(picked)
    rng.shuffle(out)
    return np.sort(out[:n])


def _resize(img: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    return img if size is None else resize_to(img, size)


def load_folder(
    root: str | os.PathLike,
    *,
    size: tuple[int, int] | None = (48, 48),
    color: str = "gray",
    limit: int | None = None,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> LabelledImages:
    """Load a folder of class subfolders.

    `size` is (width, height) to resize to; `limit` draws a stratified sample; `classes`, when
    given, fixes the label order (a model's) and rejects folders it does not name; an image
    over `max_pixels` is refused before it is decoded.
    """
    root = Path(root)
    found = list_class_folders(root)
    if classes is None:
        classes = sorted(found)
    else:
        classes = list(classes)
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise InputError(_unknown_classes_message(unknown, classes, f" in {root}"))
    paths: list[Path] = []
    labels: list[int] = []
    for name, files in found.items():
        paths.extend(files)
        labels.extend([classes.index(name)] * len(files))
    label_arr = np.asarray(labels, dtype=np.int64)
    if limit is not None:
        keep = stratified_indices(label_arr, limit, seed)
        paths = [paths[i] for i in keep]
        label_arr = label_arr[keep]

    def load_one(p: Path) -> np.ndarray:
        return _resize(read_image(p, color=color, max_pixels=max_pixels), size)

    # JPEG decoding releases the GIL, so a few threads cut a 30k-image load several times over.
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        images = list(pool.map(load_one, paths))
    if len({im.shape for im in images}) > 1:
        # Only without `size` (whole frames for detection): keep each image as it is.
        stacked = np.empty(len(images), dtype=object)
        stacked[:] = images
    else:
        stacked = np.stack(images)
    log.info("loaded %d images in %d classes from %s", len(images), len(classes), root)
    return LabelledImages(stacked, label_arr, list(classes), [str(p) for p in paths])


def _check_csv_fields(row: dict, header: list[str], where: str) -> None:
    """InputError unless `row` has exactly the header's fields (csv.DictReader puts extra ones
    under None and fills missing ones with None)."""
    if None in row:
        raise InputError(f"{where}: {len(header) + len(row[None])} fields, expected "
                         f"{len(header)} ({','.join(header)})")
    missing = [k for k in header if row[k] is None]
    if missing:
        raise InputError(f"{where}: {len(header) - len(missing)} field(s), expected "
                         f"{len(header)} ({','.join(header)}): no {', '.join(missing)}")


def _csv_row_image(row: dict, where: str) -> tuple[np.ndarray, int]:
    """(square uint8 image, label) of one FER2013 CSV row; InputError saying what is wrong."""
    emotion = row["emotion"].strip()
    if not emotion.isdigit() or int(emotion) >= len(FER2013_CSV_LABELS):
        raise InputError(f"{where}: 'emotion' is {emotion!r}, expected an integer 0..6 "
                         f"({', '.join(FER2013_CSV_LABELS)})")
    values = row["pixels"].split()
    if not values:
        raise InputError(f"{where}: 'pixels' is empty, expected 48x48 = 2304 values 0..255")
    try:
        # int32, not uint8: numpy raises OverflowError on 256 for uint8 and wraps on astype.
        pix = np.asarray(values, dtype=np.int32)
    except ValueError:
        bad = next(k for k, v in enumerate(values) if not v.lstrip("-").isdigit())
        raise InputError(f"{where}: 'pixels' value {bad + 1} is {values[bad][:20]!r}, expected "
                         "an integer 0..255") from None
    out_of_range = np.flatnonzero((pix < 0) | (pix > 255))
    if out_of_range.size:
        k = int(out_of_range[0])
        raise InputError(f"{where}: 'pixels' value {k + 1} is {int(pix[k])}, expected 0..255"
                         + (f" ({out_of_range.size} values are out of range)" if out_of_range.size > 1 else ""))
    side = int(round(len(pix) ** 0.5))
    if side * side != len(pix):
        raise InputError(f"{where}: 'pixels' has {len(pix)} values, not a square image "
                         f"(FER2013 rows have 48x48 = 2304)")
    return pix.astype(np.uint8).reshape(side, side), int(emotion)


def load_fer_csv(
    path: str | os.PathLike,
    *,
    usage: str | None = None,
    size: tuple[int, int] | None = (48, 48),
    color: str = "gray",
    limit: int | None = None,
    seed: int = 0,
) -> LabelledImages:
    """Load the FER2013 CSV (`emotion,pixels[,Usage]`); `usage` keeps one split (e.g. PrivateTest).

    A malformed row stops the load with an InputError naming its line and what is wrong: a
    silently skipped row would change the scores without a word.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise InputError(f"CSV file not found: {path}")
    images, labels, rows = [], [], []
    shape = None
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"emotion", "pixels"} <= set(reader.fieldnames):
                raise InputError(f"{path} is not the FER2013 CSV: it needs 'emotion' and 'pixels' columns")
            for row in reader:
                where = f"{path}: line {reader.line_num}"
                # Before the split filter: a short row's Usage is not known either.
                _check_csv_fields(row, reader.fieldnames, where)
                if usage and row.get("Usage") != usage:
                    continue
                img, label = _csv_row_image(row, where)
                if size is None and shape is not None and img.shape != shape:
                    # Kept at their own size (no resize): every row must match for one array.
                    raise InputError(f"{where}: a {img.shape[1]}x{img.shape[0]} image "
                                     f"among {shape[1]}x{shape[0]} ones")
                shape = img.shape
                if color == "rgb":
                    img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
                images.append(_resize(img, size))
                labels.append(label)
                rows.append(f"csv:{reader.line_num}")
    except UnicodeDecodeError:
        # Decoding runs a buffer ahead of the parser, so no line number would be right.
        raise InputError(f"{path} is not UTF-8 text: is this really the FER2013 CSV?") from None
    except csv.Error as exc:
        # line_num counts the lines parsed before the one that failed.
        raise InputError(f"{path}: line {reader.line_num + 1}: not valid CSV ({exc})") from None
    if not images:
        which = f" with Usage={usage}" if usage else ""
        raise InputError(f"no rows{which} in {path}")
    data = LabelledImages(np.stack(images), np.asarray(labels), list(FER2013_CSV_LABELS), rows)
    if limit is not None:
        data = data.subset(stratified_indices(data.labels, limit, seed))
    return data


#: What `load_npz` reads, for error messages and `--help`.
NPZ_LAYOUT = ("'images': uint8 N x H x W (gray), N x H x W x 1 or N x H x W x 3 (RGB); optional "
              "'labels': N integers indexing 'classes'; optional 'classes': class names in label order")


def _npz_classes(npz, path: Path, classes: Sequence[str] | None) -> list[str] | None:
    if "classes" in npz.files:
        names = [str(c) for c in np.asarray(npz["classes"]).ravel()]
        if not names or len(set(names)) != len(names):
            raise InputError(f"{path}: 'classes' must hold distinct class names, got {names}")
        return names
    return list(classes) if classes is not None else None


def load_npz(
    path: str | os.PathLike,
    *,
    size: tuple[int, int] | None = (48, 48),
    color: str = "gray",
    limit: int | None = None,
    seed: int = 0,
    classes: Sequence[str] | None = None,
) -> LabelledImages:
    """Load faces from a NumPy archive laid out as `NPZ_LAYOUT` describes.

    Without a 'classes' array, 'labels' index `classes` (a model's output order). Without
    'labels' the faces are unlabelled: fine for calibration, refused for scoring by
    `remap_labels` (the result has no classes).
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise InputError(f"npz file not found: {path}")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable .npz archive ({exc})") from None
    with npz:
        if "images" not in npz.files:
            raise InputError(f"{path} has no 'images' array (found: {', '.join(npz.files) or 'none'}); "
                             f"expected {NPZ_LAYOUT}")
        images = npz["images"]
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
            raise InputError(f"{path}: 'images' is {images.dtype} {list(images.shape)}; expected {NPZ_LAYOUT}")
        if len(images) == 0:
            raise InputError(f"{path}: 'images' is empty")
        names = _npz_classes(npz, path, classes)
        if "labels" in npz.files:
            labels = np.asarray(npz["labels"])
            if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
                raise InputError(f"{path}: 'labels' is {labels.dtype} {list(labels.shape)}; expected "
                                 f"{len(images)} integers, one per image")
            if names is None:
                raise InputError(f"{path} has 'labels' but no 'classes' array naming them: add "
                                 "classes=np.array(['angry', ...]) in label order")
            if labels.min() < 0 or labels.max() >= len(names):
                raise InputError(f"{path}: 'labels' run {labels.min()}..{labels.max()} but there are "
                                 f"{len(names)} classes ({', '.join(names)})")
        else:
            # Unlabelled faces: one pseudo-class, so stratified sampling degrades to a plain draw.
            labels, names = np.zeros(len(images), dtype=np.int64), []
    if images.ndim == 4 and images.shape[3] == 1:
        images = images[..., 0]
    keep = np.arange(len(images)) if limit is None else stratified_indices(labels, limit, seed)
    out = []
    for img in images[keep]:
        if color == "gray" and img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        elif color == "rgb" and img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        out.append(_resize(img, size))
    log.info("loaded %d images from %s", len(out), path)
    return LabelledImages(np.stack(out), labels[keep].astype(np.int64), names,
                          [f"npz:{i}" for i in keep])


def load_labelled(
    source: str | os.PathLike,
    *,
    usage: str | None = None,
    classes: Sequence[str] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    **kwargs,
) -> LabelledImages:
    """A folder of class subfolders, a FER2013 CSV or an `.npz`, by what `source` is.

    `classes` (a model's labels) fixes the label order of folders and names the labels of an
    `.npz` without its own 'classes'; CSV labels are always the FER2013 order. `max_pixels`
    caps the images of a folder (CSV and .npz rows are arrays already).
    """
    source = Path(source)
    suffix = source.suffix.lower()
    if usage and suffix != ".csv":
        log.warning("usage %r applies to the FER2013 CSV only; ignored for %s", usage, source)
    if suffix == ".csv":
        return load_fer_csv(source, usage=usage, **kwargs)
    if suffix == ".npz":
        return load_npz(source, classes=classes, **kwargs)
    return load_folder(source, classes=classes, max_pixels=max_pixels, **kwargs)


def remap_labels(data: LabelledImages, classes: Sequence[str]) -> LabelledImages:
    """Express `data`'s labels in another class order (a model's), by name."""
    classes = list(classes)
    if not data.classes:
        raise InputError("the data has no labels: scoring and fine-tuning need labelled faces "
                         "(class subfolders, the FER2013 CSV, or an .npz with 'labels' and 'classes')")
    missing = [c for c in data.classes if c not in classes and np.any(data.labels == data.classes.index(c))]
    if missing:
        raise InputError(_unknown_classes_message(missing, classes))
    lut = np.asarray([classes.index(c) if c in classes else -1 for c in data.classes])
    return LabelledImages(data.images, lut[data.labels], classes, data.paths)
