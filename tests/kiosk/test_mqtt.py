"""`edge-fer run --mqtt` against a real Mosquitto broker (tests/mqtt_broker.py), read by a real
paho subscriber and checked against the run's own --results file: availability and its last
will, state, events, Home Assistant discovery, `mqtt forget`, a broker down at the start and
restarted mid-run, wrong credentials, TLS with a CA made here, two devices on one broker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

try:
    import paho.mqtt  # noqa: F401
except ModuleNotFoundError:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise  # tests/run.sh installs the [mqtt] extra: a skip here would hide a broken install
    pytest.skip("pip install 'edge-fer[mqtt]' (paho-mqtt)", allow_module_level=True)

from clips import make_clip  # noqa: E402
from edge_fer.classifier import EmotionClassifier  # noqa: E402
from edge_fer.results import FrameResult, TrackedFace, TrackEvent  # noqa: E402
from edge_fer.sinks import mqtt as mq  # noqa: E402
from kiosk_helpers import (NotifySocket, alive, free_port, get_json, read_records,  # noqa: E402
                           spawn_run, stop_run, wait_for)
from mqtt_broker import Mosquitto, Subscriber, make_ca, retained  # noqa: E402

#: Paced like a camera (a clip of 300 frames at 10 fps lasts 30 s), for what happens mid-run.
PACE = 10
LIVE = ["--realtime", "--fps", str(PACE), "--headless"]
#: Clean environment for a run: no config file, no credentials unless a test gives them.
ENV = {"EDGE_FER_CONFIG": "/dev/null"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory, images_dir):
    folder = tmp_path_factory.mktemp("mqtt-clips")
    return {"three": make_clip(folder / "three.mp4", images_dir, frames=90),
            "one": make_clip(folder / "one.mp4", images_dir, frames=60, n_faces=1),
            "long": make_clip(folder / "long.mp4", images_dir, frames=300, leave_at=None)}


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "broker") as b:
        yield b


@pytest.fixture(scope="module")
def labels(default_model):
    return EmotionClassifier(str(default_model)).labels


def run_args(clip, url, device, *extra):
    return ["--source", clip.path, "--headless", "--mqtt", url, "--mqtt-device", device, *extra]


def finish(proc, timeout=120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def frames_of(results: Path) -> dict[int, dict]:
    return {r["frame"]: r for r in read_records(results)}


def check_against_results(sub: Subscriber, device: str, results: Path, labels, *, full: bool):
    """What the subscriber read of `device` agrees with the run's own results file."""
    frames = frames_of(results)
    base = f"edge-fer/{device}"
    # State: each message describes a frame the run processed, as the results file has it.
    states = [m.json() for m in sub.on(f"{base}/state")]
    assert states, "no state"
    for s in states:
        faces = frames[s["frame"]]["faces"]
        assert s["faces"] == len(faces), (s, faces)
        assert s["counts"] == {label: sum(f["label"] == label for f in faces) for label in labels}
        assert (s["dominant"] is None) == (not faces)
        assert s["dominant"] is None or s["counts"][s["dominant"]] == max(s["counts"].values())
        assert s["fps"] >= 0 and s["latency_ms"] >= 0
    last_frame = max(frames)
    assert states[-1]["frame"] == last_frame  # the newest state went out before the run ended
    # Events: appear, label and leave agree with the tracks and labels of the results file.
    events = [m.json() for m in sub.on(f"{base}/events")]
    assert events, "no events"
    kinds = Counter(e["event"] for e in events)
    assert kinds["appear"] == kinds["leave"] >= 1
    for e in events:
        if full:
            present = {f["track_id"]: f for f in frames[e["frame"]]["faces"]}
            if e["event"] in ("appear", "label"):
                assert present[e["track"]]["label"] == e["label"], e
                assert present[e["track"]]["box"] == e["box"], e
        else:
            assert "track" not in e and "box" not in e and "scores" not in e, e
    if full:
        tracks = {f["track_id"] for r in frames.values() for f in r["faces"]}
        assert {e["track"] for e in events if e["event"] == "appear"} == tracks
        for e in events:
            if e["event"] == "leave":
                seen = [n for n, r in frames.items()
                        if any(f["track_id"] == e["track"] for f in r["faces"])]
                first, last = min(seen), max(seen)
                # Dwell: from the frame it appeared on to the one its leaving was noticed on.
                assert e["dwell_s"] >= 0
                assert e["frame"] >= last
                assert e["frame"] > first or e["dwell_s"] == 0
    return states, events


# --- pure parts --------------------------------------------------------------------------------

def test_broker_urls():
    assert mq.parse_broker("mqtt://broker.lan") == mq.Broker(False, "broker.lan", 1883)
    assert mq.parse_broker("mqtts://10.0.0.2") == mq.Broker(True, "10.0.0.2", 8883)
    assert mq.parse_broker("MQTT://[::1]:1884").url == "mqtt://[::1]:1884"
    for bad in ("http://x", "mqtt://", "mqtt://x:0", "mqtt://x:99999", "mqtt://x/topic", ""):
        with pytest.raises(ValueError):
            mq.parse_broker(bad)
    with pytest.raises(ValueError) as err:
        mq.parse_broker("mqtt://kiosk:s3cret@broker")
    assert "s3cret" not in str(err.value) and "EDGE_FER_MQTT_PASSWORD" in str(err.value)


def test_password_on_the_command_line_is_refused(tmp_path):
    from kiosk_helpers import REPO  # noqa: F401 - the package under test
    from conftest import run_cli

    r = run_cli("run", "--source", tmp_path / "none.mp4", "--mqtt", "mqtt://u:hunter22@127.0.0.1",
                env=ENV)
    assert r.returncode == 2 and "hunter22" not in r.stderr + r.stdout, r.stderr
    assert "[mqtt] username and password" in r.stderr


def test_discovery_names_every_sensor_of_one_device(labels):
    topics = mq.Topics("kiosk-1")
    configs = mq.discovery_configs(topics, labels, "default")
    expected = {"faces", "dominant", "fps", "latency"} | {f"count_{label}" for label in labels}
    assert set(configs) == {f"homeassistant/sensor/kiosk-1/{o}/config" for o in expected}
    ids = {c["unique_id"] for c in configs.values()}
    assert len(ids) == len(configs)
    for c in configs.values():
        assert c["state_topic"] == "edge-fer/kiosk-1/state"
        assert c["availability_topic"] == "edge-fer/kiosk-1/availability"
        assert c["device"]["identifiers"] == ["edge_fer_kiosk-1"]


def test_a_full_queue_drops_and_counts_and_never_blocks():
    """Broker away: events pile up to the queue's size, then the oldest are dropped, counted,
    and handing one over stays a matter of microseconds."""
    sink = mq.MqttSink(mq.MqttOptions(url=f"mqtt://127.0.0.1:{free_port()}", device="q",
                                      queue_size=50))
    sink.start(["happy", "sad"])
    try:
        wait_for(lambda: sink.status()["error"], 10, "the refused connection to show")
        assert sink.status()["state"] == "connecting"
        t0 = time.perf_counter()
        for i in range(500):
            sink.on_event(TrackEvent("appear", i, i, time.monotonic(), "happy", 0.9))
        per_call = (time.perf_counter() - t0) / 500
        status = sink.status()
        assert status["queued"] == 50 and status["dropped"] == 450, status
        assert per_call < 0.005, per_call
    finally:
        sink.close()
    assert sink.status()["state"] == "stopped"


def test_state_counts_and_dominant():
    faces = [TrackedFace(1, (0, 0, 10, 10), "happy", 0.9), TrackedFace(2, (0, 0, 9, 9), "sad", 0.6),
             TrackedFace(3, (0, 0, 9, 9), "sad", 0.5)]
    result = FrameResult(7, 1.0, 1.05, None, faces)

    class Stats:
        fps, latency_p50_ms = 12.345, 40.0

    s = mq.state_payload(result, Stats, ["happy", "sad", "neutral"], now=100.0)
    assert s == {"faces": 3, "counts": {"happy": 1, "sad": 2, "neutral": 0}, "dominant": "sad",
                 "fps": 12.35, "latency_ms": 50.0, "latency_p50_ms": 40.0, "frame": 7,
                 "time": 100.0}


# --- against the broker ------------------------------------------------------------------------

def test_two_devices_publish_what_their_results_say_and_forget_removes_one(
        broker, clips, tmp_path, labels, default_model):
    """Two runs on one broker at once, one with aggregate faces: each publishes availability,
    state, events and discovery under its own device, matching its own results file; the
    broker keeps their retained messages apart, and `mqtt forget` removes one device only."""
    with Subscriber(broker.port) as sub:
        runs = {}
        for device, clip, extra in (("hall", clips["three"], []),
                                    ("door", clips["one"], ["--faces-api", "aggregate"])):
            results = tmp_path / f"{device}.jsonl"
            runs[device] = (spawn_run(run_args(clip, broker.url, device, "--model", default_model,
                                               "--results", results, *extra), tmp_path, env=ENV),
                            results)
        procs = {d: ctx.__enter__() for d, (ctx, _) in runs.items()}
        try:
            for device, proc in procs.items():
                rc, out, err = finish(proc)
                assert rc == 0, err[-3000:]
                assert "Traceback" not in err
        finally:
            for ctx, _ in runs.values():
                ctx.__exit__(None, None, None)
        for device, (_, results) in runs.items():
            base = f"edge-fer/{device}"
            sub.wait(f"{base}/availability", b"offline")  # the clean stop says so itself
            avail = [m.payload for m in sub.on(f"{base}/availability")]
            assert avail[0] == b"online" and avail[-1] == b"offline", avail
            check_against_results(sub, device, results, labels, full=device == "hall")
            configs = {m.topic: m.json() for m in sub.under(f"homeassistant/sensor/{device}/")}
            assert len(configs) == 4 + len(labels), sorted(configs)
            assert all(c["device"]["identifiers"] == [f"edge_fer_{device}"] for c in configs.values())
        # Nothing of one device under the other's topics.
        assert not [m for m in sub.under("edge-fer/") if m.topic.split("/")[1] not in runs]

    kept = retained(broker.port)
    for device in runs:
        assert kept[f"edge-fer/{device}/availability"] == b"offline"
        state = json.loads(kept[f"edge-fer/{device}/state"])
        assert state["frame"] == max(frames_of(runs[device][1]))
        assert sum(t.startswith(f"homeassistant/sensor/{device}/") for t in kept) == 4 + len(labels)

    from conftest import run_cli

    r = run_cli("mqtt", "forget", "--mqtt", broker.url, "--mqtt-device", "door", env=ENV)
    assert r.returncode == 0, r.stderr
    cleared = r.stdout.split()
    assert "edge-fer/door/state" in cleared and "edge-fer/door/availability" in cleared
    kept = retained(broker.port)
    assert not [t for t in kept if "/door/" in t], kept
    assert sum(t.startswith("homeassistant/sensor/hall/") for t in kept) == 4 + len(labels)


def test_last_will_says_offline_after_sigkill(broker, clips, tmp_path, default_model):
    with Subscriber(broker.port) as sub, spawn_run(
            run_args(clips["long"], broker.url, "will", "--model", default_model, *LIVE),
            tmp_path, env=ENV) as proc:
        sub.wait("edge-fer/will/availability", b"online", timeout=60)
        sub.wait("edge-fer/will/state", timeout=30)
        alive(proc)
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        sub.wait("edge-fer/will/availability", b"offline", after=killed_at, timeout=30)
    assert retained(broker.port)["edge-fer/will/availability"] == b"offline"


def test_broker_down_at_start_and_restarted_mid_run(tmp_path, clips, default_model):
    """The run starts with no broker and goes on meanwhile (/api/stats says so), connects once
    it is up, rides a broker restart (reconnects, announces availability and discovery again),
    and its pace does not drop while the broker is away."""
    broker = Mosquitto(tmp_path / "broker")
    port = free_port()
    stats_url = f"http://127.0.0.1:{port}/api/stats"
    short = Path(tempfile.mkdtemp(prefix="efm-"))  # an AF_UNIX path fits in 108 bytes
    with NotifySocket(short) as notify, spawn_run(
            run_args(clips["long"], broker.url, "restart", "--model", default_model,
                     "--serve", f"127.0.0.1:{port}", *LIVE), tmp_path,
            # As systemd runs it: its status (checked every 0.2 s here) names the MQTT state.
            env={**ENV, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "600000"}) as proc:
        try:
            def mqtt_state(want):
                alive(proc)
                stats = get_json(stats_url)
                return stats if stats and stats.get("mqtt", {}).get("state") == want else None

            down = wait_for(lambda: mqtt_state("connecting") if (get_json(stats_url) or {}).get(
                "frames_processed") else None, 60, "frames with no broker")
            assert down["mqtt"]["error"] and not down["mqtt"]["connected"]
            wait_for(lambda: [m for m in notify.messages("STATUS=fps=") if "mqtt=connecting" in m],
                     30, "systemd's status to say mqtt=connecting")
            broker.start()
            with Subscriber(broker.port) as sub:
                sub.wait("edge-fer/restart/availability", b"online", timeout=60)
                sub.wait("edge-fer/restart/state", timeout=30)
                before = mqtt_state("connected")
                assert before is not None and before["mqtt"]["connects"] == 1
                broker.stop()
                outage = wait_for(lambda: mqtt_state("reconnecting"), 30,
                                  "the run to notice the broker gone")
                # Away for 20 frames or more: the pipeline keeps its pace (a live source, 10 fps).
                during = wait_for(lambda: mqtt_state("reconnecting")
                                  if outage["frames_processed"] + 20
                                  <= get_json(stats_url)["frames_processed"] else None,
                                  30, "frames while the broker is away")
                assert during["fps"] >= 0.8 * PACE, during
                restarted_at = time.monotonic()
                broker.start()
                sub.wait("edge-fer/restart/availability", b"online", after=restarted_at,
                         timeout=60)
                sub.wait("homeassistant/sensor/restart/faces/config", after=restarted_at,
                         timeout=30)
                sub.wait("edge-fer/restart/state", after=restarted_at, timeout=30)
                after = wait_for(lambda: mqtt_state("connected"), 30, "connected again")
                assert after["mqtt"]["connects"] == 2
                wait_for(lambda: [m for m in notify.messages("STATUS=fps=")
                                  if m.endswith("mqtt=connected")], 30, "mqtt=connected")
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    metrics = r.read().decode()
                assert "edge_fer_mqtt_connected 1.0" in metrics
                assert "edge_fer_mqtt_connects_total 2.0" in metrics
                assert after["fps"] >= 0.8 * PACE, after
                # Home Assistant restarting asks for discovery again.
                asked_at = time.monotonic()
                sub.client.publish("homeassistant/status", b"online", qos=1)
                sub.wait("homeassistant/sensor/restart/fps/config", after=asked_at, timeout=30)
                out, err = stop_run(proc)
                sub.wait("edge-fer/restart/availability", b"offline", after=asked_at, timeout=30)
            assert proc.returncode == 0, err[-3000:]
            assert "MQTT: cannot reach mqtt://127.0.0.1" in err and "again after" in err, err
        finally:
            broker.stop()
            shutil.rmtree(short, ignore_errors=True)


def test_wrong_password_one_line_and_the_documented_exit(tmp_path, clips, default_model):
    users = {"kiosk": "right-password-123"}
    with Mosquitto(tmp_path / "broker", users=users) as broker:
        args = run_args(clips["one"], broker.url, "auth", "--model", default_model)
        wrong = {**ENV, "EDGE_FER_MQTT_USERNAME": "kiosk", "EDGE_FER_MQTT_PASSWORD": "wrong-pass-456"}
        from conftest import run_cli

        # By default the run goes on without MQTT and ends with 7 (an output not written), as
        # for a full disk: one warning when it happens, the summary and the closing error say it.
        r = run_cli("run", *args, env=wrong)
        assert r.returncode == 7, r.stderr[-3000:]
        refused = [ln for ln in r.stderr.splitlines() if "refused the connection" in ln]
        assert len(refused) == 2 and "not authorized" in refused[0].lower(), r.stderr
        assert "WARNING" in refused[0] and "the run goes on without it" in refused[0]
        assert refused[1].startswith("edge-fer: error: not everything asked for was written: MQTT")
        assert "frames processed" in r.stdout and "stopped: end of source" in r.stdout
        assert "NOT WRITTEN: MQTT: the broker" in r.stdout
        assert "wrong-pass-456" not in r.stdout + r.stderr and "Traceback" not in r.stderr
        # --mqtt-required: the run stops with 8, in one line.
        r = run_cli("run", *args, "--mqtt-required", env=wrong)
        assert r.returncode == 8, r.stderr[-3000:]
        err = [ln for ln in r.stderr.splitlines() if ln.startswith("edge-fer: error:")]
        assert len(err) == 1 and "refused the connection" in err[0], r.stderr
        assert "wrong-pass-456" not in r.stdout + r.stderr and "Traceback" not in r.stderr
        # The right credentials from the config file (the environment's would win).
        config = tmp_path / "config.toml"
        config.write_text('[mqtt]\nusername = "kiosk"\npassword = "right-password-123"\n')
        config.chmod(0o600)
        with Subscriber(broker.port, auth=next(iter(users.items()))) as sub:
            r = run_cli("run", *args, "--config", config, env={})
            assert r.returncode == 0, r.stderr[-3000:]
            sub.wait("edge-fer/auth/availability", b"offline")
            assert sub.on("edge-fer/auth/state")
        assert "right-password-123" not in r.stdout + r.stderr


def test_tls_with_a_ca_made_here(tmp_path, clips, default_model):
    certs = make_ca(tmp_path / "ca")
    with Mosquitto(tmp_path / "broker", tls=certs) as broker, Subscriber(broker.port) as sub:
        url = f"mqtts://127.0.0.1:{broker.tls_port}"
        from conftest import run_cli

        r = run_cli("run", *run_args(clips["one"], url, "tls", "--model", default_model,
                                     "--mqtt-ca", certs["ca"]), env=ENV)
        assert r.returncode == 0, r.stderr[-3000:]
        sub.wait("edge-fer/tls/availability", b"offline")
        assert sub.on("edge-fer/tls/state") and sub.on("homeassistant/sensor/tls/faces/config")
        # The system's CAs do not know ours: one line, the run goes on, exit 7.
        r = run_cli("run", *run_args(clips["one"], url, "tls2", "--model", default_model), env=ENV)
        assert r.returncode == 7, r.stderr[-3000:]
        tls = [ln for ln in r.stderr.splitlines() if "TLS with" in ln]
        assert len(tls) == 2 and "self-signed certificate" in tls[0], r.stderr
        assert "the run goes on without it" in tls[0] and tls[1].startswith("edge-fer: error:")
        assert not sub.under("edge-fer/tls2/")
        # A CA file for a plain mqtt:// broker is a mistake worth saying at once.
        r = run_cli("run", *run_args(clips["one"], broker.url, "x", "--mqtt-ca", certs["ca"]),
                    env=ENV)
        assert r.returncode == 2 and "mqtts://" in r.stderr, r.stderr


def test_stream_publishes_like_run(broker, clips, default_model, labels):
    """`edge_fer.stream(mqtt=...)`: the Python API publishes as `run --mqtt` does."""
    import edge_fer

    with Subscriber(broker.port) as sub:
        with edge_fer.stream(clips["one"].path, model=default_model, mqtt=broker.url,
                             mqtt_device="api") as results:
            frames = {r.index: r.faces for r in results}
        sub.wait("edge-fer/api/availability", b"offline")
        last = sub.on("edge-fer/api/state")[-1].json()
        assert last["frame"] == max(frames) and last["faces"] == len(frames[max(frames)])
        assert {e.json()["event"] for e in sub.on("edge-fer/api/events")} >= {"appear", "leave"}
        assert len(sub.under("homeassistant/sensor/api/")) == 4 + len(labels)


def test_a_stalled_broker_does_not_slow_the_run(broker, clips, tmp_path, default_model):
    """The broker stops reading (SIGSTOP: the connection stays open, nothing is acknowledged):
    the run keeps its pace while messages wait in the bounded queue, and once the broker goes on
    (SIGCONT) the newest state arrives."""
    port = free_port()
    stats_url = f"http://127.0.0.1:{port}/api/stats"
    with Subscriber(broker.port) as sub, spawn_run(
            run_args(clips["long"], broker.url, "slow", "--model", default_model,
                     "--serve", f"127.0.0.1:{port}", *LIVE), tmp_path, env=ENV) as proc:
        sub.wait("edge-fer/slow/availability", b"online", timeout=60)
        sub.wait("edge-fer/slow/state", timeout=30)
        broker.proc.send_signal(signal.SIGSTOP)
        try:
            start = get_json(stats_url)
            during = wait_for(lambda: alive(proc) and (lambda s: s if s["frames_processed"]
                                                       >= start["frames_processed"] + 30
                                                       else None)(get_json(stats_url)),
                              30, "frames while the broker is stalled")
            assert during["fps"] >= 0.8 * PACE, during
            assert during["mqtt"]["published"] > start["mqtt"]["published"]  # handed over, unacked
        finally:
            resumed_at = time.monotonic()
            broker.proc.send_signal(signal.SIGCONT)
        sub.wait("edge-fer/slow/state", after=resumed_at, timeout=30)
        stop_run(proc)
        sub.wait("edge-fer/slow/availability", b"offline", after=resumed_at, timeout=30)
    assert proc.returncode == 0


def test_credentials_are_file_keys_only(tmp_path):
    """`[mqtt] username`/`password` are accepted in the file, not options of `run`, and a
    password others can read is warned about."""
    from edge_fer.cli import run
    from edge_fer.config import ConfigError, default_map, load_config

    config = tmp_path / "c.toml"
    config.write_text('[mqtt]\nmqtt = "mqtt://127.0.0.1"\nusername = "k"\npassword = "p4ss"\n')
    config.chmod(0o644)
    cfg = load_config(config, run)
    assert cfg.get("mqtt", "password") == "p4ss"
    assert default_map(cfg) == {"mqtt": "mqtt://127.0.0.1"}
    assert any("'mqtt.password'" in w and "chmod 600" in w for w in cfg.warnings)
    assert not {"username", "password", "mqtt_username", "mqtt_password"} & {p.name for p in run.params}
    config.write_text('[mqtt]\npasword = "x"\n')
    with pytest.raises(ConfigError) as err:
        load_config(config, run)
    assert "did you mean 'password'?" in str(err.value)


def test_forget_without_a_broker_says_so_in_one_line():
    from conftest import assert_one_line_error, run_cli

    r = run_cli("mqtt", "forget", "--mqtt", f"mqtt://127.0.0.1:{free_port()}", "--mqtt-device",
                "gone", env=ENV)
    assert_one_line_error(r, "cannot reach the MQTT broker mqtt://127.0.0.1", code=8)
    assert_one_line_error(run_cli("mqtt", "forget", env=ENV), "--mqtt URL", code=2)
