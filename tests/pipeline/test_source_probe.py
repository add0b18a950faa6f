"""The fault probe's source cases (issue 29, item 4), each reproduced for real through the real
entry point, stderr read line by line as a user sees it: a refused port, a server that accepts
and never answers, a text file given as a video, a truncated mp4. (The probe's BOM case is in
test_csv_rows.py.)"""

from __future__ import annotations

import re
import socket
import threading

import pytest

from clips import make_clip
from conftest import assert_one_line_error, run_cli
from kiosk_helpers import free_port, read_records

#: What edge-fer's own log lines look like on stderr (the CLI's logging format).
OWN_LOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (WARNING|INFO|DEBUG) edge_fer[.\w]*: ")
TIMEOUT = 2.0
#: Room past the deadline for giving up and closing (not for another wait or open).
SLACK = 0.6


def stderr_lines_are_ours(stderr: str) -> list[str]:
    """Every stderr line is edge-fer's log or its one error line: nothing FFmpeg or OpenCV
    printed natively (those lines go to the log, shown with -v)."""
    lines = stderr.splitlines()
    for line in lines:
        assert line.startswith("edge-fer: error: ") or OWN_LOG.match(line), line
    assert sum(line.startswith("edge-fer: error: ") for line in lines) == 1, stderr
    return lines


@pytest.fixture
def silent_server():
    """A real TCP server that accepts every connection and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held, stop = [], threading.Event()

    def serve():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def give_up_after(url: str, default_model, tmp_path) -> tuple[float, str]:
    log = tmp_path / "run.jsonl"
    r = run_cli("run", "--headless", "--source", url, "--model", default_model,
                "--source-timeout", TIMEOUT, "--log-json", log, timeout=120)
    assert_one_line_error(r, f"did not come up within {TIMEOUT:g} s (--source-timeout)", code=6)
    stderr_lines_are_ours(r.stderr)
    summary = read_records(log)[-1]
    assert summary["type"] == "summary" and summary["stop_reason"] == "error in capture"
    return summary["uptime_s"], r.stderr


def test_a_refused_port_gives_up_at_the_source_timeout_not_after_the_next_backoff(
        default_model, tmp_path):
    port = free_port()  # nothing listens: every connection is refused at once
    took, err = give_up_after(f"http://127.0.0.1:{port}/", default_model, tmp_path)
    # Backoff 0.5, 1, 2 s: the 2 s wait would have ended at 3.5 s; it is cut to the deadline.
    assert TIMEOUT - 0.1 <= took < TIMEOUT + SLACK, took
    assert "open failed" in err


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_a_server_that_never_answers_gives_up_at_the_source_timeout(scheme, silent_server,
                                                                    default_model, tmp_path):
    # Each open would block for the 10 s open timeout: the first is given only the 2 s there are.
    took, _ = give_up_after(f"{scheme}://127.0.0.1:{silent_server}/live", default_model, tmp_path)
    assert TIMEOUT - 0.1 <= took < TIMEOUT + SLACK, took


@pytest.mark.parametrize("name, says", [("notes.txt", "is text, not a video"),
                                        # FFmpeg picks its text reader by the name's ending
                                        ("README", "is not a video OpenCV can read")])
def test_a_text_file_is_refused_as_not_a_video(name, says, default_model, tmp_path):
    notes = tmp_path / name
    # About 750 bytes of prose: FFmpeg's tty demuxer would render it as a few frames of text.
    notes.write_text("Meeting notes, Tuesday.\n" + "We looked at the kiosk and the camera.\n" * 19)
    assert 700 < notes.stat().st_size < 800
    r = run_cli("run", "--headless", "--source", notes, "--model", default_model)
    assert_one_line_error(r, f"{notes} {says}", code=6)
    assert stderr_lines_are_ours(r.stderr) == [ln for ln in r.stderr.splitlines()
                                                if ln.startswith("edge-fer: error: ")]
    assert "0 frames processed" in r.stdout


@pytest.fixture(scope="module")
def truncated_mp4(tmp_path_factory, images_dir):
    folder = tmp_path_factory.mktemp("probe")
    clip = make_clip(folder / "whole.mp4", images_dir, frames=30, n_faces=1)
    data = clip.path.read_bytes()
    cut = folder / "cut.mp4"
    cut.write_bytes(data[:len(data) // 2])  # a copy stopped half-way: no moov atom at the end
    return cut


def test_a_truncated_mp4_says_one_line_and_ffmpeg_goes_to_the_log(truncated_mp4, default_model):
    r = run_cli("run", "--headless", "--source", truncated_mp4, "--model", default_model)
    line = assert_one_line_error(r, str(truncated_mp4), "not a video OpenCV can read", code=6)
    assert r.stderr.splitlines() == [line]
    # -v shows what FFmpeg said, as a log record, not as a bare native line.
    verbose = run_cli("run", "--headless", "--source", truncated_mp4, "--model", default_model,
                      "-v")
    lines = stderr_lines_are_ours(verbose.stderr)
    assert any(re.search(r"INFO edge_fer\.quiet: \[mov,mp4,m4a,3gp,3g2,mj2 @ 0x[0-9a-f]+\] "
                         r"moov atom not found", ln) for ln in lines), verbose.stderr


def test_an_intact_clip_still_plays_with_the_filter_around_each_read(truncated_mp4, default_model):
    whole = truncated_mp4.with_name("whole.mp4")
    r = run_cli("run", "--headless", "--source", whole, "--model", default_model)
    assert r.returncode == 0, r.stderr
    assert "30 frames processed of 30 captured" in r.stdout
    assert r.stderr.strip() == "" or all(ln.startswith("edge-fer: ") for ln in r.stderr.splitlines())
