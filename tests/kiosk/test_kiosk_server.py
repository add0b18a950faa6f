"""The kiosk server on loopback, driven by a real HTTP client."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import fields, replace

import click
import cv2
import numpy as np
import prometheus_client
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from edge_fer.cli import handle_errors
from edge_fer.errors import UsageError
from edge_fer.results import FrameResult, StatsSnapshot
from edge_fer.sinks.server import ServerOptions, ServerSink, metric_name
from kiosk_helpers import Feeder, load_frames, read_part, stats_for, tracked

TOKEN = "0123456789abcdef-test-token"


@pytest.fixture(scope="module")
def frames(images_dir):
    return [(img, tracked(boxes)) for img, boxes in load_frames(images_dir)]


@pytest.fixture
def sink():
    with ServerSink(ServerOptions(port=0, max_stream_fps=0)) as s:
        yield s


def get(url, headers=None, timeout=5):
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout)


def push(sink, frames, n=1):
    for i in range(n):
        frame, faces = frames[i % len(frames)]
        now = time.monotonic()
        sink.on_result(FrameResult(i, now - 0.04, now, frame, faces), stats_for(i + 1, len(faces)))


def test_page_is_served_with_a_csp_that_allows_its_script(sink):
    r = get(sink.url)
    assert r.status == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
    html = r.read().decode()
    assert '<img id="stream"' in html and 'id="faces"' in html and 'id="fps"' in html
    script = html.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in r.headers["Content-Security-Policy"]


def test_faces_and_stats_are_the_newest_results(sink, frames):
    assert json.load(get(sink.url + "api/faces")) == {"index": None, "age_s": None,
                                                     "latency_ms": None, "faces": []}
    assert json.load(get(sink.url + "api/stats")) == {}
    push(sink, frames, n=2)
    frame, faces = frames[1]
    got = json.load(get(sink.url + "api/faces"))
    assert got["index"] == 1 and got["latency_ms"] == pytest.approx(40, abs=1)
    assert [(f["track_id"], f["label"], tuple(f["box"])) for f in got["faces"]] == \
        [(f.track_id, f.label, f.box) for f in faces]
    assert got["faces"][0]["scores"] == pytest.approx(faces[0].scores)
    assert json.load(get(sink.url + "api/stats")) == stats_for(2, len(faces)).to_dict()


def test_stats_with_nan_are_valid_json(sink, frames):
    frame, faces = frames[0]
    sink.on_result(FrameResult(0, 0.0, 0.01, frame, faces), replace(stats_for(1), latency_p95_ms=math.nan))
    body = get(sink.url + "api/stats").read().decode()
    assert json.loads(body) == {**stats_for(1).to_dict(), "latency_p95_ms": None}
    r = get(sink.url + "metrics").read().decode()
    assert "edge_fer_latency_p95_seconds" not in r and "edge_fer_latency_p50_seconds 0.06" in r


def test_stream_sends_several_decodable_jpeg_parts(sink, frames):
    with Feeder(sink, frames, fps=30):
        r = get(sink.url + "stream.mjpg")
        assert r.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=edgeferframe"
        shapes, digests = [], set()
        for _ in range(5):
            headers, body = read_part(r)
            assert headers["content-type"] == "image/jpeg"
            img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None, "a part is not a decodable JPEG"
            shapes.append(img.shape[:2])
            digests.add(hashlib.sha1(body).hexdigest())
        r.close()
    assert all(s in {f.shape[:2] for f, _ in frames} for s in shapes)
    assert len(digests) >= 2, "the stream did not follow the frames"


def test_frames_are_encoded_only_for_watchers_and_once_per_frame(sink, frames):
    push(sink, frames, n=30)
    assert sink.frames_encoded == 0  # nobody watching: no encoding at all
    with Feeder(sink, frames, fps=20) as feeder:
        a, b = get(sink.url + "stream.mjpg"), get(sink.url + "stream.mjpg")
        for _ in range(4):
            read_part(a)
            read_part(b)
        a.close()
        b.close()
    assert 1 <= sink.frames_encoded <= feeder.count


def test_metrics_parse_with_the_prometheus_parser(sink, frames):
    push(sink, frames, n=3)
    r = get(sink.url + "metrics")
    assert r.headers["Content-Type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(r.read().decode())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    stats = stats_for(3, len(frames[2][1]))
    assert families["edge_fer_frames_processed"].type == "counter"
    # The names dashboards and alerts use; each is the stats field's name in base units.
    assert samples[("edge_fer_frames_processed_total", ())] == stats.frames_processed
    assert samples[("edge_fer_frames_dropped_total", ())] == stats.frames_dropped
    assert samples[("edge_fer_fps", ())] == stats.fps
    assert samples[("edge_fer_latency_p95_seconds", ())] == pytest.approx(stats.latency_p95_ms / 1000)
    assert samples[("edge_fer_faces", ())] == stats.faces
    # Every exported figure of the stats type, with its documentation as help.
    exported = [f for f in fields(StatsSnapshot) if f.metadata["metric"]]
    assert len(exported) >= 15
    for f in exported:
        name, factor = metric_name(f.name)
        family = families[name]
        assert family.type == f.metadata["metric"] and family.documentation == f.metadata["doc"]
        suffix = "_total" if family.type == "counter" else ""
        assert samples[(name + suffix, ())] == pytest.approx(getattr(stats, f.name) * factor), f.name
    by_label = {dict(k[1])["label"]: v for k, v in samples.items() if k[0] == "edge_fer_faces_by_label"}
    expected: dict[str, int] = {}
    for f in frames[2][1]:
        expected[f.label] = expected.get(f.label, 0) + 1
    assert by_label == expected
    assert samples[("edge_fer_build_info", (("version", __import__("edge_fer").__version__),))] == 1
    # Its own registry: nothing leaks into the process-wide default one.
    assert sink.registry is not prometheus_client.REGISTRY
    assert prometheus_client.REGISTRY.get_sample_value("edge_fer_frames_processed_total") is None


def test_token_is_required_on_every_route(caplog):
    with ServerSink(ServerOptions(port=0, token=TOKEN)) as s:
        for path in ("", "stream.mjpg", "api/stats", "api/faces", "metrics", "nope"):
            with pytest.raises(urllib.error.HTTPError) as e:
                get(s.url + path)
            assert e.value.code == 401, path
            assert e.value.headers["WWW-Authenticate"].startswith("Bearer")
        with pytest.raises(urllib.error.HTTPError) as e:
            get(s.url + "api/stats", {"Authorization": "Bearer wrong-token-wrong-token"})
        assert e.value.code == 401
        with caplog.at_level(logging.DEBUG, logger="edge_fer.sinks.server"):
            assert get(s.url + f"?token={TOKEN}").status == 200
        assert "GET /?token=*** HTTP" in caplog.text and TOKEN not in caplog.text
        assert get(s.url + "metrics", {"Authorization": f"Bearer {TOKEN}"}).status == 200
        assert json.load(get(s.url + "api/faces", {"Authorization": f"Bearer {TOKEN}"}))["faces"] == []


def test_non_loopback_address_needs_a_token():
    with pytest.raises(UsageError, match="refusing to serve on 0.0.0.0:0 without a token"):
        ServerSink(ServerOptions(host="0.0.0.0", port=0))
    with pytest.raises(UsageError, match="too weak"):
        ServerSink(ServerOptions(host="0.0.0.0", port=0, token="short"))
    with ServerSink(ServerOptions(host="0.0.0.0", port=0, token=TOKEN)) as s:
        port = s.address[1]
        assert get(f"http://127.0.0.1:{port}/api/stats", {"Authorization": f"Bearer {TOKEN}"}).status == 200


def test_port_in_use_is_a_one_line_usage_error(sink):
    port = sink.address[1]
    with pytest.raises(UsageError) as e:
        ServerSink(ServerOptions(port=port))
    assert str(e.value) == (f"cannot serve on 127.0.0.1:{port}: the port is already in use (another "
                            "edge-fer?): stop that program or choose another port with --serve HOST:PORT")
    with pytest.raises(UsageError, match="port 99999 is outside 1-65535"):
        ServerOptions.from_serve("127.0.0.1:99999")

    # Through the CLI's error handling, as `run` will raise it: one line, exit code 2.
    @click.command()
    @handle_errors
    def serve():
        ServerSink(ServerOptions.from_serve(f"127.0.0.1:{port}"))

    got = CliRunner().invoke(serve, [])
    assert got.exit_code == 2
    assert got.output == f"edge-fer: error: {e.value}\n"


def test_a_client_that_never_reads_does_not_stall_handle(frames):
    # Big noisy frames fill the stuck client's socket buffers within a few frames.
    rng = np.random.default_rng(0)
    big = [(rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8), frames[0][1]) for _ in range(2)]
    with ServerSink(ServerOptions(port=0, max_stream_fps=0, client_timeout=1.0)) as s:
        stuck = socket.create_connection(s.address)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        got = []

        def watch():
            r = get(s.url + "stream.mjpg")
            while len(got) < 1000:
                try:
                    got.append(len(read_part(r)[1]))
                except Exception:  # noqa: BLE001 - the sink closed at the end of the test
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        with Feeder(s, big, fps=25) as feeder:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (s.stream_clients == 1 and feeder.count > 40):
                time.sleep(0.1)
            parts_while_stuck = len(got)
            # The stuck client's send timed out and it was dropped; the reader is still there.
            clients_left = s.stream_clients
        stuck.close()
    assert feeder.count > 40
    assert max(feeder.handle_times) < 0.5, f"handle() blocked for {max(feeder.handle_times):.3f} s"
    assert clients_left == 1
    assert parts_while_stuck >= 3, "the reading client starved while another was stuck"


def test_close_releases_the_port_and_ends_streams(frames):
    s = ServerSink(ServerOptions(port=0, max_stream_fps=0))
    port = s.address[1]
    push(s, frames)
    r = get(s.url + "stream.mjpg")
    read_part(r)
    t0 = time.monotonic()
    s.close()
    assert time.monotonic() - t0 < 3
    with ServerSink(ServerOptions(port=port)) as again:
        assert again.address[1] == port
