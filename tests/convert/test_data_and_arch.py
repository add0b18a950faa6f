"""Data loading (folders, FER2013 CSV, sampling) and the architecture builders."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import needs_tf
from edge_fer.datasets import (FER2013_CSV_LABELS, load_fer_csv, load_folder, remap_labels,
                               stratified_indices)
from edge_fer.errors import InputError


def test_stratified_sample_keeps_every_class_in_proportion():
    labels = np.repeat(np.arange(7), [400, 40, 400, 700, 500, 480, 320])
    idx = stratified_indices(labels, 300, seed=1)
    counts = np.bincount(labels[idx], minlength=7)
    assert len(idx) == 300 and counts.min() >= 4
    expected = 300 * np.bincount(labels) / len(labels)
    assert np.all(np.abs(counts - expected) <= 1.5)


def test_folder_and_csv_give_the_same_pixels(fer_dir, tmp_path):
    folder = load_folder(fer_dir / "privatetest", size=None, limit=70)
    path = tmp_path / "fer2013.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["emotion", "pixels", "Usage"])
        for img, lab in zip(folder.images, folder.labels):
            w.writerow([FER2013_CSV_LABELS.index(folder.classes[lab]), " ".join(map(str, img.ravel())),
                        "PrivateTest"])
        w.writerow([0, " ".join(["0"] * 2304), "Training"])
    data = load_fer_csv(path, usage="PrivateTest", size=None)
    assert len(data) == 70
    np.testing.assert_array_equal(data.images, folder.images)
    # Labels differ in order between the CSV and the folders; by name they agree.
    remapped = remap_labels(data, folder.classes)
    np.testing.assert_array_equal(remapped.labels, folder.labels)


def test_csv_without_the_columns(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="'emotion' and 'pixels'"):
        load_fer_csv(p)


def test_folder_not_found(tmp_path):
    with pytest.raises(InputError, match="data folder not found"):
        load_folder(tmp_path / "nope")


@needs_tf
def test_every_architecture_builds_with_its_declared_input():
    from edge_fer_convert.architectures import ARCHITECTURES

    assert {"edgenet", "edgenet-l", "cnn48", "cnn96rgb", "cnn224rgb", "littlevgg", "minixception", "vgg16",
            "efficientnetv2"} <= set(ARCHITECTURES)
    for name, arch in ARCHITECTURES.items():
        model = arch.build(7)
        channels = 1 if arch.spec.color == "gray" else 3
        assert tuple(model.input_shape) == (None, arch.spec.size, arch.spec.size, channels), name
        assert tuple(model.output_shape) == (None, 7), name
        if name in ("edgenet", "edgenet-l", "minixception", "cnn48", "littlevgg"):
            x = np.random.default_rng(0).uniform(-1, 1, (2, arch.spec.size, arch.spec.size, channels))
            p = np.asarray(model(x.astype("float32"), training=False))
            np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_train_help_names_every_architecture():
    """`edge-fer train --help` lists the architectures as text (the runtime's CLI does not import
    the host toolchain to build its help), so the list is checked against the registry here."""
    from edge_fer_convert.commands import train
    from edge_fer_convert.architectures import ARCHITECTURES

    listed = train.__doc__.split("Architectures:", 1)[1].replace("(default)", "")
    names = {n.strip(" .\n") for n in listed.split(",")}
    assert names == set(ARCHITECTURES)


@needs_tf
def test_edgenet_fits_the_size_budget():
    from edge_fer_convert.architectures import get_architecture

    # At most 1 MB as INT8 means well under a million parameters.
    assert get_architecture("edgenet").build(7).count_params() < 1_000_000


@needs_tf
def test_edgenet_l_spends_its_channels_on_the_small_stages():
    """edgenet-l's budget (issue 6): under 2 MB as INT8, and the 48 px stage no wider than
    edgenet's, so the extra capacity costs parameters rather than multiply-adds."""
    from edge_fer_convert.architectures import get_architecture

    small = get_architecture("edgenet").build(7)
    large = get_architecture("edgenet-l").build(7)
    assert 1_000_000 < large.count_params() < 1_900_000

    def conv_filters(model):
        return [layer.filters for layer in model.layers
                if type(layer).__name__ == "Conv2D" and layer.kernel_size == (3, 3)]

    assert conv_filters(small) == [16, 16, 32, 32, 64, 64, 128, 128]
    assert conv_filters(large) == [16, 16, 32, 32, 128, 128, 256, 256]
