"""SIGTERM during `convert` cleans up as Ctrl-C does (issue 13, case 10: it left a temporary
SavedModel and TensorFlow's autograph files behind)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import FACE_CLASSIFICATION_LABELS, needs_tf, tiny_classifier

pytestmark = needs_tf


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A Keras 3 file (converted through a SavedModel in edge-fer's own work folder) and a Keras 2
    SavedModel (converted by TensorFlow through its own temporary folder)."""
    import keras
    import tf_keras

    d = tmp_path_factory.mktemp("models")
    tiny_classifier(keras).save(d / "k3.keras")
    tiny_classifier(tf_keras).save(d / "k2_savedmodel", save_format="tf")
    return {"keras3": d / "k3.keras", "tf_keras": d / "k2_savedmodel"}


def _everything(folder):
    return sorted(os.path.join(d, n) for d, dirs, files in os.walk(folder) for n in dirs + files)


@pytest.mark.parametrize("flavor", ["keras3", "tf_keras"])
def test_sigterm_mid_conversion_leaves_no_temporary_files(flavor, models, fer_dir, tmp_path):
    tmp = tmp_path / "tmp"  # a private TMPDIR: anything left in it was left by this convert
    tmp.mkdir()
    out = tmp_path / "out.tflite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_fer", "convert", str(models[flavor]), "-o", str(out),
         "--calibration", str(fer_dir / "train"), "--samples", "20",
         "--labels", FACE_CLASSIFICATION_LABELS, "--normalization", "unit"],
        env={**os.environ, "TMPDIR": str(tmp), "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until the conversion has its temporary files, then stop it as systemd or kill would.
    deadline = time.monotonic() + 240
    while not any("saved_model" in p or "autograph" in p or os.path.basename(p).startswith("tmp")
                  for p in _everything(tmp)):
        assert proc.poll() is None, "convert ended before it made temporary files: " + \
            proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "convert made no temporary files in 240 s"
        time.sleep(0.05)
    assert _everything(tmp), "the fault needs temporary files to exist when the signal comes"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert proc.returncode == 143, stderr[-2000:]
    # TensorFlow may log an exception of its own that the signal interrupted (it loses the
    # interrupt in C++ and fails later); what edge-fer says is the one line, and it is the last.
    assert [ln for ln in stderr.splitlines() if ln.startswith("edge-fer:")] == \
        ["edge-fer: terminated (SIGTERM)"], result.stderr[-2000:]
    assert stderr.rstrip().endswith("edge-fer: terminated (SIGTERM)")
    assert _everything(tmp) == [], "temporary files left behind"
    assert not out.exists()


def test_a_second_sigterm_still_kills(tmp_path):
    """The handler is one-shot: a cleanup that hangs cannot make the process unkillable by
    SIGTERM."""
    code = ("import signal, time\n"
            "from edge_fer.cli import _Sigterm, Terminated\n"
            "signal.signal(signal.SIGTERM, _Sigterm.handle)\n"
            "try:\n"
            "    print('ready', flush=True); time.sleep(60)\n"
            "except Terminated:\n"
            "    print('cleaning', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline() == "cleaning\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM


def test_an_error_raised_while_unwinding_an_interrupt_is_the_interrupt():
    """TensorFlow's tracing can fail in its own cleanup when SIGTERM lands inside it, replacing
    the interrupt with an AttributeError that the converter reports as a failed conversion."""
    from edge_fer.cli import Terminated
    from edge_fer.errors import ModelError, interruption

    def traced():
        try:
            raise Terminated
        finally:
            raise AttributeError("'SymbolicTensor' object has no attribute '_type_spec'")

    try:
        try:
            traced()
        except Exception as exc:  # what convert_bytes catches
            raise ModelError(f"the TFLite converter failed: {exc}") from None
    except ModelError as exc:
        assert isinstance(interruption(exc), Terminated)
    assert interruption(ModelError("a plain failure")) is None
