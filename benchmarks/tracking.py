"""Tracking people who walk past: tracks per person, identity switches, boxes between detections.

    python benchmarks/tracking.py [--detectors haar,blazeface,blazeface-full] [--no-motion] [--json]

The walk-past clip (tests/walkpast.py: six real faces from the shared group photo crossing a
640x480 view at 3-12 px per frame, entering and leaving, up to three at once, two pairs passing
each other) and a panned one (the six moving together at 13 px per frame) go through the real
pipeline, offline, with each detector at its own default
--detect-every and `run`'s detection width. Each frame's tracks are scored against the true
boxes: tracks per person (target at most 1.1), tracks covering two people (target 0), stray
tracks (no person), the mean IoU of the boxes the tracker carried between detections with the
true ones (target at least 0.5), and the fraction of (frame, person) with no box.
--no-motion runs the tracker as edge-fer tracked before: no motion model (boxes left where the
last detection put them), a track ended by two missed detections, none kept hidden.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from walkpast import CLIPS, make_walk_past, score_tracks  # noqa: E402
from edge_fer.classifier import EmotionClassifier  # noqa: E402
from edge_fer.detector import DETECTORS, DetectorOptions, create_detector  # noqa: E402
from edge_fer.options import RUN_DETECT_WIDTH  # noqa: E402
from edge_fer.pipeline import CaptureOptions, Pipeline, PipelineOptions, TrackerOptions, open_source  # noqa: E402
from edge_fer.sinks import Sink  # noqa: E402
from edge_fer_models import DEFAULT_MODEL  # noqa: E402

SHARED = Path(os.environ.get("EDGE_FER_DATA", REPO.parent / "shared"))
#: Targets of issue 29.
MAX_TRACKS_PER_PERSON = 1.1
MIN_BETWEEN_IOU = 0.5


class TrackRecorder(Sink):
    """Keeps each frame's (track id, box, frames since a detection found it)."""

    def __init__(self):
        self.frames: list[list[tuple[int, tuple, int]]] = []

    def on_result(self, result, stats):
        self.frames.append([(f.track_id, tuple(f.box), f.since_detection) for f in result.faces])


#: The tracker before motion: boxes left where the last detection put them, a track ended by
#: two missed detections in a row, none kept hidden.
NO_MOTION = {"motion": False, "max_misses": 2, "keep_lost": 0}


def track_clip(clip, detector: str, classifier, motion: bool = True,
               detect_every: int | None = None) -> tuple[list, int]:
    """Run `clip` through the pipeline offline; (per-frame tracks, detect_every used)."""
    det = create_detector(detector, DetectorOptions(detect_width=RUN_DETECT_WIDTH))
    every = detect_every or det.default_detect_every
    rec = TrackRecorder()
    tracking = TrackerOptions(detect_every=every, **({} if motion else NO_MOTION))
    pipeline = Pipeline(open_source(CaptureOptions(source=str(clip.path))), det, classifier,
                        PipelineOptions(tracking=tracking))
    pipeline.add_sink(rec)
    pipeline.start()
    pipeline.wait()
    if pipeline.error:
        raise pipeline.error
    return rec.frames, every


def meets_targets(score) -> bool:
    return (score.tracks_per_person <= MAX_TRACKS_PER_PERSON and score.tracks_covering_two == 0
            and score.between_iou >= MIN_BETWEEN_IOU)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detectors", help="comma-separated (default: every detector that is ready)")
    ap.add_argument("--no-motion", action="store_true", help="track without the motion model")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    names = (args.detectors.split(",") if args.detectors
             else [n for n, s in DETECTORS.items() if s.status()[0] == "ready"])
    clf = EmotionClassifier(DEFAULT_MODEL)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip_name, (walks, length) in CLIPS.items():
            clip = make_walk_past(Path(tmp) / f"{clip_name}.mp4", SHARED / "images", length,
                                  walks=walks)
            for name in names:
                frames, every = track_clip(clip, name, clf, motion=not args.no_motion)
                score = score_tracks(clip, frames)
                rows.append({"clip": clip_name, "frames": clip.frames, "detector": name,
                             "detect_every": every, "motion": not args.no_motion,
                             **dataclasses.asdict(score), "meets_targets": meets_targets(score)})
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"targets: tracks/person <= {MAX_TRACKS_PER_PERSON}, 0 covering two, "
          f"IoU between detections >= {MIN_BETWEEN_IOU}")
    for r in rows:
        print(f"{r['clip']:>9} ({r['frames']} frames, {r['people']} people) {r['detector']:>14} "
              f"every {r['detect_every']}: tracks/person {r['tracks_per_person']:.2f}"
              f"  covering two {r['tracks_covering_two']}  stray {r['stray_tracks']}"
              f"  IoU between {r['between_iou']:.3f} ({r['between_frames']} boxes)"
              f"  missed {r['missed']:.3f}  {'ok' if r['meets_targets'] else 'MISSES TARGETS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
