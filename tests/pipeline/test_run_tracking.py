"""Tracking people who walk past: the motion model, and the walk-past clip scored frame by frame
through the real pipeline with each shipped detector at its default --detect-every."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO
from edge_fer.pipeline.tracking import BoxKalman, IouTracker, TrackerOptions
from walkpast import CLIPS, make_walk_past, score_tracks

sys.path.insert(0, str(REPO / "benchmarks"))
from tracking import MAX_TRACKS_PER_PERSON, MIN_BETWEEN_IOU, track_clip  # noqa: E402


def test_kalman_learns_a_constant_speed_and_predicts_between_detections():
    kf = BoxKalman((0, 100, 80, 80), 0)
    for k in range(1, 6):  # detections every 5 frames of a face moving 8 px per frame
        kf.update((40 * k, 100, 80, 80), 5 * k)
    cx, cy, w, h = kf.state_at(28)
    assert cx == pytest.approx(8 * 28 + 40, abs=4) and cy == pytest.approx(140, abs=1)
    assert w == pytest.approx(80, abs=1) and h == pytest.approx(80, abs=1)
    # Asking where the box is does not move the filter.
    assert kf.frame == 25 and kf.state_at(25)[0] == pytest.approx(8 * 25 + 40, abs=3)


def test_moving_face_keeps_its_track_where_a_still_box_would_lose_it():
    # A 60 px face walking 12 px per frame, detected every 5 frames: 60 px between detections,
    # no overlap with the last box, well inside the moved one.
    def walk(options):
        tr = IouTracker(options)
        ids = set()
        tr.update([(0, 100, 60, 60)], frame=0)
        tr.update([(12, 100, 60, 60)], frame=1)  # a new track is confirmed at once
        for f in range(6, 40, 5):
            tr.update([(12 * f, 100, 60, 60)], frame=f)
            ids |= {t.track_id for t in tr.snapshot(f)}
        return tr, ids

    tr, ids = walk(TrackerOptions())
    assert ids == {1}
    box = tr.snapshot(38)[0]
    assert abs(box.box[0] - 12 * 38) <= 6 and box.since_detection == 2 and box.first_frame == 0
    _, ids = walk(TrackerOptions(motion=False, keep_lost=0))
    assert len(ids) > 3


def test_a_face_hidden_for_a_while_gets_its_track_back():
    tr = IouTracker(TrackerOptions(max_misses=2, keep_lost=30))
    for f in range(0, 20, 2):
        tr.update([(100 + 5 * f, 100, 80, 80)], frame=f)
    for f in range(20, 36, 2):  # behind someone: not found, hidden after two misses
        started, ended = tr.update([], frame=f)
        assert not started and not ended
    assert tr.snapshot(34) == [] and tr.held == {1} and not tr.losing
    started, _ = tr.update([(100 + 5 * 36, 100, 80, 80)], frame=36)
    assert not started and [t.track_id for t in tr.snapshot(36)] == [1]
    # Never found again: it ends keep_lost frames after its last detection.
    ended = []
    for f in range(38, 80, 2):
        ended += tr.update([], frame=f)[1]
    assert [t.track_id for t in ended] == [1] and not tr.tracks


def test_a_face_walking_out_of_the_picture_ends_its_track():
    tr = IouTracker(TrackerOptions())
    for f in range(10):
        tr.update([(500 + 5 * f, 200, 80, 80)], frame=f)
    size = (640, 480)
    assert tr.snapshot(14, size)[0].box == (570, 200, 70, 80)  # clipped to the picture
    assert not tr.snapshot(22, size)  # more than half out
    _, ended = tr.update([], frame=22, size=size)
    assert [t.track_id for t in ended] == [1]


@pytest.fixture(scope="module")
def walk_clip(images_dir, tmp_path_factory):
    return make_walk_past(tmp_path_factory.mktemp("walk") / "walk.mp4", images_dir)


@pytest.fixture(scope="module")
def classifier(default_model):
    from edge_fer.classifier import EmotionClassifier

    return EmotionClassifier(default_model)


@pytest.mark.parametrize("detector", ["haar", "blazeface", "blazeface-full"])
def test_walk_past_clip_one_track_per_person(detector, walk_clip, classifier, request):
    if detector != "haar":
        request.getfixturevalue("detector_weights")
    frames, every = track_clip(walk_clip, detector, classifier)
    assert len(frames) == walk_clip.frames
    score = score_tracks(walk_clip, frames)
    assert score.people == 6
    assert score.tracks_per_person <= MAX_TRACKS_PER_PERSON, score
    assert score.tracks_covering_two == 0 and score.stray_tracks <= 1, score
    assert score.between_frames > 100 and score.between_iou >= MIN_BETWEEN_IOU, score
    assert score.missed < 0.25, score


def test_panned_clip_keeps_one_track_per_person_with_haar(images_dir, classifier, tmp_path):
    """Everyone moving at 13 px per frame with detection every 5th frame: 65 px between
    detections, more than the faces' width. Before motion: 40 tracks for 6 people."""
    walks, length = CLIPS["pan"]
    clip = make_walk_past(tmp_path / "pan.mp4", images_dir, length, walks=walks)
    score = score_tracks(clip, track_clip(clip, "haar", classifier)[0])
    assert score.people == 6 and score.tracks_per_person <= MAX_TRACKS_PER_PERSON, score
    assert score.tracks_covering_two == 0 and score.between_iou >= MIN_BETWEEN_IOU, score
    before = score_tracks(clip, track_clip(clip, "haar", classifier, motion=False)[0])
    assert before.tracks_per_person > 3 * score.tracks_per_person, before


def test_walk_past_clip_counts_people_with_the_readme_example(walk_clip, default_model):
    """docs/python-api.md's "happy faces per minute" counts distinct track ids: on the clip they are
    the six people who walked past, not more."""
    import edge_fer

    tracks = set()
    dwell = {}
    with edge_fer.stream(str(walk_clip.path), model=str(default_model)) as results:
        for result in results:
            tracks.update(f.track_id for f in result.faces)
            for f in result.faces:
                dwell[f.track_id] = result.index - f.first_frame
    assert len(tracks) == 6
    # The stays, in frames, add up to the people's time in view (less where the detector
    # missed a face entering or leaving, or walking behind another).
    spans = []
    for p in range(6):
        seen = [i for i, row in enumerate(walk_clip.boxes) if row[p] is not None]
        spans.append(seen[-1] - seen[0])
    assert 0.75 * sum(spans) <= sum(dwell.values()) <= sum(spans), (dwell, spans)
