"""The arm64 lane's comparisons (ci/arm64_compare.py) on real x86 outputs and doctored copies.

The lane passes only when these functions find no difference, so each is shown to find one:
a score one quantization step and a bit off, a moved box, a changed label, a missing face, an
accuracy 0.1 point and a face apart, a missing event, and "nothing compared at all".
"""

from __future__ import annotations

import copy
import importlib.util
import json

import pytest

from conftest import REPO, invoke

_spec = importlib.util.spec_from_file_location("arm64_compare", REPO / "ci" / "arm64_compare.py")
cmp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cmp)


@pytest.fixture(scope="module")
def predicted(images_dir, default_model) -> list[dict]:
    """Real `predict --json` output on the shared photos, as the lane produces it on x86."""
    photos = sorted(images_dir.glob("*.jpg"))
    r = invoke("predict", "--json", "-m", default_model, *photos)
    assert r.exit_code == 0, r.output
    out = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert sum(len(o["faces"]) for o in out) >= 3
    return out


def test_identical_predictions_agree(predicted):
    assert cmp.compare_predict(predicted, copy.deepcopy(predicted)) == []


def test_a_score_within_one_step_agrees_and_beyond_it_differs(predicted):
    arm = copy.deepcopy(predicted)
    face = next(f for r in arm for f in r["faces"])
    label = face["label"]
    face["scores"][label] = round(face["scores"][label] - 1 / 256, 4)
    assert cmp.compare_predict(predicted, arm) == []
    face["scores"][label] = round(face["scores"][label] - 1 / 256, 4)
    (diff,) = cmp.compare_predict(predicted, arm)
    assert "score" in diff and label in diff


def test_a_moved_box_a_new_label_and_a_lost_face_differ(predicted):
    arm = copy.deepcopy(predicted)
    with_faces = [r for r in arm if r["faces"]]
    with_faces[0]["faces"][0]["box"][0] += cmp.BOX_TOL + 1
    assert any("box" in d for d in cmp.compare_predict(predicted, arm))

    arm = copy.deepcopy(predicted)
    face = next(f for r in arm for f in r["faces"])
    face["label"] = "disgust" if face["label"] != "disgust" else "happy"
    assert any("label" in d for d in cmp.compare_predict(predicted, arm))

    arm = copy.deepcopy(predicted)
    next(r for r in arm if r["faces"])["faces"].pop()
    assert any("face(s) on x86" in d for d in cmp.compare_predict(predicted, arm))

    arm = copy.deepcopy(predicted)[1:]
    assert any("images differ" in d for d in cmp.compare_predict(predicted, arm))


def test_no_faces_at_all_is_not_a_pass(predicted):
    empty = [{**r, "faces": []} for r in predicted]
    assert any("nothing to compare" in d for d in cmp.compare_predict(empty, copy.deepcopy(empty)))
    assert cmp.compare_predict([], []) != []


def evaluation(correct: int, count: int = 1000) -> dict:
    return {"accuracy": correct / count if count else 0.0, "count": count, "labels": ["angry", "happy"]}


def test_evaluate_tolerates_a_tenth_of_a_point_not_more():
    assert cmp.compare_evaluate(evaluation(683), evaluation(683)) == []
    assert cmp.compare_evaluate(evaluation(683), evaluation(682)) == []  # 0.1 point
    (diff,) = cmp.compare_evaluate(evaluation(683), evaluation(681))     # 0.2 point
    assert "0.20 points apart" in diff
    assert any("scored" in d for d in cmp.compare_evaluate(evaluation(683), evaluation(683, 999)))
    assert any("nothing to compare" in d for d in cmp.compare_evaluate(evaluation(0, 0), evaluation(0, 0)))


@pytest.fixture(scope="module")
def run_log(tmp_path_factory, images_dir, default_model) -> list[dict]:
    """A real `run --log-json` of a generated clip read offline."""
    from clips import make_clip

    d = tmp_path_factory.mktemp("arm64run")
    clip = make_clip(d / "clip.mp4", images_dir, frames=30, leave_at=0.5)
    log = d / "run.jsonl"
    r = invoke("run", "--source", clip.path, "--headless", "-m", default_model, "--log-json", log)
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(cmp.read_events(lines)) >= 3
    return lines


def test_identical_runs_agree_and_a_changed_event_differs(run_log):
    assert cmp.compare_run(run_log, copy.deepcopy(run_log)) == []

    arm = copy.deepcopy(run_log)
    next(r for r in arm if r.get("type") == "event")["frame"] += 1
    assert any("on aarch64" in d for d in cmp.compare_run(run_log, arm))

    arm = copy.deepcopy(run_log)
    arm.remove(next(r for r in arm if r.get("type") == "event"))
    assert any("face events on x86" in d for d in cmp.compare_run(run_log, arm))

    arm = copy.deepcopy(run_log)
    ev = next(r for r in arm if r.get("type") == "event")
    ev["scores"][ev["label"]] += 0.01
    assert any("score" in d for d in cmp.compare_run(run_log, arm))


def test_a_failed_or_empty_run_is_not_a_pass(run_log):
    arm = copy.deepcopy(run_log)
    next(r for r in arm if r.get("type") == "summary")["error"] = "classify stage failed"
    assert any("failed" in d for d in cmp.compare_run(run_log, arm))
    no_events = [r for r in run_log if r.get("type") != "event"]
    assert any("nothing to compare" in d for d in cmp.compare_run(no_events, no_events))


def test_live_run_needs_frames_and_labelled_faces(run_log):
    assert cmp.check_live(run_log, min_frames=5, min_faces=3) == []
    assert any("processed" in d for d in cmp.check_live(run_log, min_frames=10_000, min_faces=1))
    assert any("labelled face" in d for d in cmp.check_live(run_log, min_frames=1, min_faces=4))
    assert cmp.check_live([r for r in run_log if r.get("type") != "summary"], 1, 1) == ["the run wrote no summary"]


@pytest.fixture(scope="module")
def live_results(tmp_path_factory, images_dir, default_model) -> list[dict]:
    """Records as `run --results` writes them, a clip's frames with three faces. Made in-process
    (the guest runs this file and cannot start a child Python) from the clip read offline, so
    every frame has its record however slow the machine (emulated, the lane's guest): the tests
    drop frames themselves, as a live run would."""
    from clips import make_clip
    from edge_fer.classifier import EmotionClassifier
    from edge_fer.detector import DetectorOptions, HaarFaceDetector
    from edge_fer.pipeline import CaptureOptions, Pipeline, PipelineOptions, open_source
    from edge_fer.sinks.results import ResultsSink

    d = tmp_path_factory.mktemp("arm64live")
    clip = make_clip(d / "clip.mp4", images_dir, frames=18, leave_at=None)
    classifier = EmotionClassifier(default_model)
    capture = CaptureOptions(source=str(clip.path))
    pipeline = Pipeline(open_source(capture), HaarFaceDetector(DetectorOptions()), classifier,
                        PipelineOptions(capture))
    pipeline.add_sink(ResultsSink(d / "live.jsonl", classifier.labels))
    pipeline.start()
    pipeline.wait()
    assert pipeline.error is None
    records = [json.loads(line) for line in (d / "live.jsonl").read_text().splitlines()]
    assert len(records) == 18 and all(len(r["faces"]) == 3 for r in records)
    return records


def _shift(records, dx):
    out = copy.deepcopy(records)
    for r in out:
        for f in r["faces"]:
            f["box"][0] += dx
    return out


def test_live_runs_agree_on_the_frames_both_processed(live_results, tmp_path):
    assert cmp.compare_live(live_results, copy.deepcopy(live_results)) == []
    a, b = tmp_path / "x86.jsonl", tmp_path / "arm.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in live_results))
    b.write_text("".join(json.dumps(r) + "\n" for r in _shift(live_results, 60)))
    assert cmp.main(["live-results", str(a), str(a)]) == 0
    assert cmp.main(["live-results", str(a), str(b)]) == 1
    # aarch64 processes fewer frames, and its boxes lag a few pixels behind.
    seen = {}
    assert cmp.compare_live(live_results, _shift(live_results[::3], 6), seen=seen) == []
    assert seen["frames"] >= 5 and seen["faces"] == seen["same_label"] >= 3 * 5
    assert 0.5 < seen["lowest_iou"] < 1


def test_live_runs_differ_on_a_misplaced_lost_or_relabelled_face(live_results):
    far = cmp.compare_live(live_results, _shift(live_results, 60))
    assert far and all("overlaps x86's nearest" in d for d in far)

    lost = copy.deepcopy(live_results)
    frame = next(r for r in lost if len(r["faces"]) == 3)
    frame["faces"].pop()
    assert cmp.compare_live(live_results, lost) == [f"frame {frame['frame']}: 3 face(s) on x86, 2 on aarch64"]

    relabelled = copy.deepcopy(live_results)
    faces = [f for r in relabelled for f in r["faces"]]
    faces[0]["raw_label"] = "surprise-ish"  # one face in many: a close call the lag can flip
    assert cmp.compare_live(live_results, relabelled) == []
    for f in faces[: len(faces) // 5]:  # a fifth of them: more than the 10 % allowed
        f["raw_label"] = "surprise-ish"
    assert any("the same raw label on" in d for d in cmp.compare_live(live_results, relabelled))


def test_a_live_run_without_faces_or_frames_in_common_is_not_a_pass(live_results):
    empty = [{**r, "faces": []} for r in live_results]
    assert cmp.compare_live(empty, live_results) == ["nothing to compare: the x86 live run found no face"]
    assert cmp.compare_live(live_results, empty) == ["the aarch64 live run found no face"]
    assert any("expected at least 5" in d for d in cmp.compare_live(live_results, live_results[-3:]))


def test_command_line_exit_status(tmp_path, predicted):
    a, b = tmp_path / "x86.jsonl", tmp_path / "arm.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in predicted))
    b.write_text(a.read_text())
    assert cmp.main(["predict", str(a), str(b)]) == 0
    doctored = copy.deepcopy(predicted)
    next(r for r in doctored if r["faces"])["faces"][0]["label"] = "surprise-ish"
    b.write_text("".join(json.dumps(r) + "\n" for r in doctored))
    assert cmp.main(["predict", str(a), str(b)]) == 1
