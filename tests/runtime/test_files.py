"""The runtime's atomic writer: used for converted models, annotated images and plots."""

from __future__ import annotations

import os
import resource
import signal

import pytest


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path):
    """Writes capped at 20 kB, as on a full disk: the old output survives, no temp file remains."""
    from edge_fer.files import write_atomically

    target = tmp_path / "model.tflite"
    target.write_bytes(b"previous model")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
    try:
        with pytest.raises(OSError) as err:
            write_atomically(target, b"x" * 100_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert err.value.filename == str(target), "the error names the target, not the temp file"
    assert target.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


def test_atomic_write_gives_the_mode_open_would(tmp_path):
    """Not mkstemp's 0600: a kiosk service reads the model under its own account."""
    from edge_fer.files import write_atomically

    old = os.umask(0o027)
    try:
        write_atomically(tmp_path / "a.tflite", b"model")
    finally:
        os.umask(old)
    assert (tmp_path / "a.tflite").stat().st_mode & 0o777 == 0o640
