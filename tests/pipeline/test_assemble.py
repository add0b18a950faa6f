"""One assembly of the loop (`edge_fer.assemble.build_run`) behind both `edge-fer run` and
`edge_fer.stream`: the same options give the same loop, on a real clip and the shipped model."""

from __future__ import annotations

import json
import os

import pytest

import edge_fer
from conftest import run_cli
from edge_fer.assemble import BUILD_OPTIONS, RUN_INTERPRETER_THREADS, build_run
from edge_fer.errors import UsageError
from edge_fer.options import RUN, RUN_OPTIONS, names


#: This module's clip (conftest's `clip` fixture).
CLIP = {"frames": 20, "suffix": ".avi"}


def _start_record(path) -> dict:
    start = json.loads(path.read_text().splitlines()[0])
    assert start["type"] == "start"
    start.pop("time")
    return start


def test_run_and_stream_assemble_the_same_loop(tmp_path, clip, default_model):
    """The JSON log's start record (source, model, capture, tracking and detector options) is
    the same from the command and from the API given the same options."""
    cli_log, api_log = tmp_path / "cli.jsonl", tmp_path / "api.jsonl"
    r = run_cli("run", "--config", os.devnull, "--source", str(clip.path), "--headless",
                "--model", str(default_model), "--min-face", "40", "--detect-every", "3",
                "--max-frames", "8", "--log-json", str(cli_log))
    assert r.returncode == 0, r.stderr
    with edge_fer.stream(clip.path, model=default_model, min_face=40, detect_every=3,
                         max_frames=8, log_json=str(api_log)) as results:
        assert len(list(results)) == 8
    assert _start_record(api_log) == _start_record(cli_log)


def test_stream_gets_runs_interpreter_threads(clip, default_model):
    # It used to pass threads=None (one thread) where run used two: the drift issue 27 names.
    with edge_fer.stream(clip.path, model=default_model, max_frames=1) as results:
        threads = results.pipeline.classifier.options.num_threads
        list(results)
    assert threads == min(RUN_INTERPRETER_THREADS, os.cpu_count() or 1)
    with edge_fer.stream(clip.path, model=default_model, max_frames=1, threads=1) as results:
        assert results.pipeline.classifier.options.num_threads == 1


def test_every_run_option_has_a_consumer_and_build_run_takes_it():
    assert set(RUN) <= BUILD_OPTIONS
    consumers = {o.consumer for o in RUN_OPTIONS}
    assert consumers == {"capture", "classifier", "detector", "tracking", "output"}
    assert sum(len(names(RUN_OPTIONS, c)) for c in consumers) == len(RUN_OPTIONS)
    assert len(RUN) == len(RUN_OPTIONS), "an option declared twice"


def test_build_run_refuses_unknown_options_before_opening_anything():
    with pytest.raises(UsageError, match="unknown run options min_faces: allowed"):
        build_run({"min_faces": 3, "source": "nowhere.avi"})
