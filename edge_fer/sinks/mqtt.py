"""MQTT: a run's availability, state and face events on a broker, with Home Assistant discovery.

Topics, under `edge-fer/<device>/` (docs/fleet.md has the table with every payload field):

- `availability`: `online`, retained; the broker's last will and a clean stop say `offline`.
- `state`: JSON, retained, once a second and whenever the faces, their labels or the dominant
  label change.
- `events`: JSON for each track event (appear, label change, leave with its dwell time); not
  retained.
- `<prefix>/sensor/<device>/<object>/config`: retained Home Assistant discovery configs, sent on
  every connection and again when Home Assistant says `online` on `<prefix>/status`.

The sink never blocks the pipeline: `on_result` and `on_event` only put messages in a bounded
queue (the oldest dropped and counted when it is full). One thread, `edge-fer-mqtt`, owns the
paho client: it connects (retrying with backoff while the run goes on without it), publishes,
and after a broker restart reconnects and announces availability and discovery again.

No picture ever leaves the device here; with `aggregate` the events carry no boxes and no
track ids either (the `--faces-api aggregate` rule).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import urlsplit

from edge_fer import __version__
from edge_fer.errors import InputError, OutputError, ServerError, UsageError
from edge_fer.results import FrameResult, StatsSnapshot, TrackEvent
from edge_fer.sinks.base import Every, Sink

try:
    import paho.mqtt.client as paho
except ModuleNotFoundError:  # the [mqtt] extra is not installed: said when MQTT is asked for
    paho = None

log = logging.getLogger(__name__)

#: Broker URL schemes: whether TLS is on, and the default port.
SCHEMES = {"mqtt": (False, 1883), "mqtts": (True, 8883)}
#: Where a run's own topics live: `edge-fer/<device>/availability`, `/state`, `/events`.
TOPIC_ROOT = "edge-fer"
#: Home Assistant's default discovery prefix.
DEFAULT_PREFIX = "homeassistant"
#: Environment variables the user name and password are read from (the config file's
#: `[mqtt] username` and `password` are the other place; never the command line).
USERNAME_ENV, PASSWORD_ENV = "EDGE_FER_MQTT_USERNAME", "EDGE_FER_MQTT_PASSWORD"
#: Seconds between connection attempts: doubled after each failure up to the maximum.
RETRY_MIN_S, RETRY_MAX_S = 0.5, 30.0
#: Seconds between retained state messages while nothing changes.
STATE_INTERVAL_S = 1.0
#: Seconds the network loop waits for traffic per round (also how soon queued messages go out).
LOOP_S = 0.05

#: What `MqttSink.status()` holds that `/metrics` exports (as `edge_fer_mqtt_<key>`): key ->
#: (Prometheus kind, help).
STATUS_METRICS = {
    "connected": ("gauge", "1 while connected to the MQTT broker."),
    "published": ("counter", "MQTT messages handed to the broker connection."),
    "dropped": ("counter", "MQTT messages dropped because the queue was full (broker away or slow)."),
    "queued": ("gauge", "MQTT events waiting for the broker."),
    "connects": ("counter", "Successful connections to the MQTT broker (1 + reconnections)."),
}

URL_WORDS = '"mqtt://HOST[:PORT]" (port 1883) or "mqtts://HOST[:PORT]" (TLS, port 8883)'
DEVICE_WORDS = "1 to 64 letters, digits, '-' or '_' (e.g. \"kiosk-hall\")"
PREFIX_WORDS = "topic levels of letters, digits, '-' or '_' separated by '/' (e.g. \"homeassistant\")"

_DEVICE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PREFIX = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")


class BrokerError(ServerError):
    """The MQTT broker refused the credentials or the TLS handshake failed, and the run was
    told to stop then (`--mqtt-required`); exit code 8, as for any server that refuses us."""


@dataclass(frozen=True)
class Broker:
    """Where the broker is, from an `mqtt://` or `mqtts://` URL."""

    tls: bool
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def parse_broker(url: str) -> Broker:
    """The broker of `url`; ValueError with the reason (never repeating the URL, which could
    hold a password) when it is not `mqtt[s]://HOST[:PORT]`."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("empty")
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError(f"the scheme must be mqtt or mqtts, not {parts.scheme or 'none'!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"the URL holds a user or password, which the command line would show to "
                         f"every user of the machine: put them in [mqtt] username and password "
                         f"of the config file or in ${USERNAME_ENV} and ${PASSWORD_ENV}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a broker URL has no path or query")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port must be 1-65535") from None
    if not parts.hostname:
        raise ValueError("no host")
    tls, default_port = SCHEMES[parts.scheme.lower()]
    if port == 0:
        raise ValueError("the port must be 1-65535")
    return Broker(tls, parts.hostname, port or default_port)


def check_device(value: str) -> None:
    if not isinstance(value, str) or not _DEVICE.fullmatch(value.strip()):
        raise ValueError("not a device id")


def check_prefix(value: str) -> None:
    if not isinstance(value, str) or not _PREFIX.fullmatch(value.strip()):
        raise ValueError("not a topic prefix")


def default_device() -> str:
    """The host's name as a device id (its first label, other characters as `-`)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0])[:64]
    return name or "edge-fer"


@dataclass
class MqttOptions:
    """Where and how a run publishes over MQTT (`edge-fer run --mqtt URL` and the `[mqtt]`
    section of the config file)."""

    url: str
    """`mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]` (TLS)."""
    device: str | None = None
    """The device id in the topics and in Home Assistant; None: the host's name."""
    prefix: str = DEFAULT_PREFIX
    """Home Assistant's discovery prefix."""
    ca_file: str | None = None
    """PEM CA certificate(s) an `mqtts://` broker is verified with; None: the system's CAs."""
    username: str | None = None
    """User name (from the config file or $EDGE_FER_MQTT_USERNAME)."""
    password: str | None = field(default=None, repr=False)
    """Password (from the config file or $EDGE_FER_MQTT_PASSWORD); never logged."""
    required: bool = False
    """Stop the run (BrokerError, exit 8) when the broker refuses the credentials or TLS fails;
    otherwise the run goes on without MQTT and its output failure is reported at the end."""
    aggregate: bool = False
    """Events without boxes, track ids or scores (`--faces-api aggregate`)."""
    queue_size: int = 256
    """Messages held while the broker is away or slow; past that the oldest are dropped."""
    keepalive: int = 30
    """Seconds between keep-alive pings; the last will fires after 1.5 times this."""
    retry_max_s: float = RETRY_MAX_S
    """The longest wait between two connection attempts."""


@dataclass(frozen=True)
class Topics:
    """The topics of one device."""

    device: str
    prefix: str = DEFAULT_PREFIX

    @property
    def base(self) -> str:
        return f"{TOPIC_ROOT}/{self.device}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def ha_status(self) -> str:
        return f"{self.prefix}/status"

    def config(self, component: str, obj: str) -> str:
        return f"{self.prefix}/{component}/{self.device}/{obj}/config"


# --- payloads ---------------------------------------------------------------------------------

def _object_id(label: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", label.lower())


def discovery_configs(topics: Topics, labels: Sequence[str], model: str = "") -> dict[str, dict]:
    """Home Assistant discovery: config topic -> payload, for the sensors faces, dominant
    emotion, fps, latency and one count per label, all of one device."""
    device = {"identifiers": [f"edge_fer_{topics.device}"], "name": f"edge-fer {topics.device}",
              "manufacturer": "edge-fer", "model": model or "edge-fer", "sw_version": __version__}
    common = {"state_topic": topics.state, "availability_topic": topics.availability,
              "payload_available": "online", "payload_not_available": "offline",
              "device": device}
    sensors: dict[str, dict] = {
        "faces": {"name": "Faces", "value_template": "{{ value_json.faces }}",
                  "unit_of_measurement": "faces", "state_class": "measurement",
                  "icon": "mdi:face-recognition"},
        "dominant": {"name": "Dominant emotion",
                     "value_template": "{{ value_json.dominant or 'none' }}",
                     "icon": "mdi:emoticon-outline"},
        "fps": {"name": "FPS", "value_template": "{{ value_json.fps }}",
                "unit_of_measurement": "fps", "state_class": "measurement",
                "entity_category": "diagnostic", "icon": "mdi:speedometer"},
        "latency": {"name": "Latency", "value_template": "{{ value_json.latency_ms }}",
                    "unit_of_measurement": "ms", "device_class": "duration",
                    "state_class": "measurement", "entity_category": "diagnostic"},
    }
    for label in labels:
        sensors[f"count_{_object_id(label)}"] = {
            "name": f"{label.capitalize()} faces",
            "value_template": f"{{{{ value_json.counts[{json.dumps(label)}] | default(0) }}}}",
            "unit_of_measurement": "faces", "state_class": "measurement",
            "icon": "mdi:emoticon-outline"}
    return {topics.config("sensor", obj): {**spec, **common,
                                           "unique_id": f"edge_fer_{topics.device}_{obj}"}
            for obj, spec in sensors.items()}


def label_counts(result: FrameResult, labels: Sequence[str]) -> dict[str, int]:
    """Faces per smoothed label in `result`, every label present (0 when none)."""
    counts = {label: 0 for label in labels}
    for face in result.faces:
        counts[face.label] = counts.get(face.label, 0) + 1
    return counts


def dominant_label(result: FrameResult) -> str | None:
    """The label most faces show; a tie goes to the label with the higher summed score."""
    weight: dict[str, tuple[int, float]] = {}
    for face in result.faces:
        n, s = weight.get(face.label, (0, 0.0))
        weight[face.label] = (n + 1, s + float(face.score))
    return max(weight, key=weight.__getitem__) if weight else None


def state_payload(result: FrameResult, stats: StatsSnapshot, labels: Sequence[str],
                  now: float | None = None) -> dict[str, Any]:
    """The retained `state`: the newest frame's faces per label and the run's pace."""
    return {"faces": len(result.faces), "counts": label_counts(result, labels),
            "dominant": dominant_label(result), "fps": round(float(stats.fps), 2),
            "latency_ms": round(result.latency_ms, 1),
            "latency_p50_ms": (None if stats.latency_p50_ms is None
                               else round(stats.latency_p50_ms, 1)),
            "frame": result.index, "time": round(time.time() if now is None else now, 3)}


def event_payload(event: TrackEvent, dwell_s: float | None, aggregate: bool,
                  now: float | None = None) -> dict[str, Any]:
    """One `events` message. Full: the track, its box and scores too; aggregate: only what
    happened, the label and the dwell time."""
    wall = (time.time() if now is None else now) - max(0.0, time.monotonic() - event.at)
    out: dict[str, Any] = {"event": event.kind, "label": event.label, "previous": event.previous,
                           "frame": event.frame_index, "time": round(wall, 3)}
    if event.kind == "leave":
        out["dwell_s"] = None if dwell_s is None else round(dwell_s, 3)
    if not aggregate:
        rec = event.to_dict()
        out.update(track=rec["track"], score=rec["score"], box=rec["box"], scores=rec["scores"])
    return out


# --- the client -------------------------------------------------------------------------------

def _require_paho() -> None:
    if paho is None:
        raise UsageError("MQTT needs the paho-mqtt package: pip install 'edge-fer[mqtt]'")


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca_file)
    except FileNotFoundError:
        raise InputError(f"MQTT CA file {ca_file} does not exist") from None
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"MQTT CA file {ca_file} is not a PEM certificate: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None


def make_client(options: MqttOptions, broker: Broker, device: str, *, will: str | None = None):
    """A paho client (callback API version 2, MQTT 3.1.1) with the credentials, TLS and, when
    `will` is a topic, the retained `offline` last will; not connected yet."""
    _require_paho()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"edge-fer-{device}",
                         protocol=paho.MQTTv311)
    if options.username or options.password:
        client.username_pw_set(options.username or "", options.password)
    if broker.tls:
        client.tls_set_context(_tls_context(options.ca_file))
    elif options.ca_file:
        raise UsageError("an MQTT CA file is for an mqtts:// broker: use mqtts://")
    if will:
        client.will_set(will, "offline", qos=1, retain=True)
    client.connect_timeout = 5.0
    client.max_inflight_messages_set(20)
    client.max_queued_messages_set(options.queue_size)
    client.connect_async(broker.host, broker.port, options.keepalive)
    return client


def _tls_reason(exc: ssl.SSLError) -> str:
    return getattr(exc, "verify_message", None) or exc.reason or str(exc)


class MqttSink(Sink):
    """Publishes a run to an MQTT broker (see the module's doc); call `start(labels, model)` once
    the model is loaded, add it to the pipeline's sinks, and `close()` it at the end.

    `status()` says how it goes (what `/api/stats` shows under `mqtt`)."""

    def __init__(self, options: MqttOptions):
        _require_paho()
        try:
            self.broker = parse_broker(options.url)
        except ValueError as exc:
            raise UsageError(f"--mqtt: {exc}: allowed {URL_WORDS}") from None
        self.options = options
        self.device = (options.device or default_device()).strip()
        try:
            check_device(self.device)
            check_prefix(options.prefix)
        except ValueError:
            raise UsageError(f"MQTT device {self.device!r} or prefix {options.prefix!r}: allowed "
                             f"{DEVICE_WORDS}, and {PREFIX_WORDS}") from None
        self.topics = Topics(self.device, options.prefix.strip())
        self._client = make_client(options, self.broker, self.device,
                                   will=self.topics.availability)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self.labels: list[str] = []
        self.model = ""
        self._lock = threading.Lock()
        self._events: deque[str] = deque()
        self._state: str | None = None  # the newest state, republished on each connection
        self._state_new = False
        self._state_due = Every(STATE_INTERVAL_S)
        self._state_key: tuple | None = None
        self._last: tuple[FrameResult, StatsSnapshot] | None = None  # not yet published
        self._appeared: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._open = False  # a socket to the broker is open (CONNACK may not have come yet)
        self._connected = False
        self._announce = False
        self._refused: str | None = None
        self._failure: str | None = None
        self._failure_raised = False
        self._ever_connected = False
        self._down_since: float | None = None
        self.error: str | None = None
        """Why the broker is not reachable now (or the failure that ended MQTT), else None."""
        self.published = 0
        """Messages handed to the broker connection."""
        self.dropped = 0
        """Messages dropped: the queue was full (broker away or slow)."""
        self.connects = 0
        """Successful connections (1 + reconnections)."""

    # --- the pipeline's side (never blocks) ----------------------------------------------------

    def start(self, labels: Sequence[str], model: str = "") -> "MqttSink":
        """Start connecting; `labels` and `model` are what discovery announces."""
        self.labels, self.model = list(labels), model
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="edge-fer-mqtt", daemon=True)
            self._thread.start()
        return self

    def on_result(self, result: FrameResult, stats: StatsSnapshot) -> None:
        self._raise_failure()
        counts = label_counts(result, self.labels)
        key = (len(result.faces), tuple(counts.items()), dominant_label(result))
        if key != self._state_key or self._state_due():
            self._state_key = key
            self._set_state(result, stats)
            self._last = None
        else:
            self._last = (result, stats)

    def on_summary(self, summary) -> None:
        self._raise_failure()  # a failure after the last frame still counts
        # The retained state ends as the run's last frame was, even within the second.
        if self._last is not None:
            self._set_state(*self._last)
            self._last = None

    def _set_state(self, result: FrameResult, stats: StatsSnapshot) -> None:
        payload = json.dumps(state_payload(result, stats, self.labels))
        with self._lock:
            self._state, self._state_new = payload, True

    def on_event(self, event: TrackEvent) -> None:
        dwell = None
        if event.kind == "appear":
            self._appeared[event.track_id] = event.at
        elif event.kind == "leave":
            start = self._appeared.pop(event.track_id, None)
            dwell = None if start is None else event.at - start
        payload = json.dumps(event_payload(event, dwell, self.options.aggregate))
        with self._lock:
            if len(self._events) >= self.options.queue_size:
                self._events.popleft()
                self.dropped += 1
            self._events.append(payload)

    def _raise_failure(self) -> None:
        if self._failure is None or self._failure_raised:
            return
        self._failure_raised = True
        if self.options.required:
            raise BrokerError(self._failure)
        raise OutputError(f"MQTT: {self._failure}")

    def close(self) -> None:
        """Say `offline`, disconnect and end the thread; safe to call twice. Raises the failure
        (refused, TLS) that came too late for `on_result` and `on_summary` to raise it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._raise_failure()

    # --- status ----------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """`connecting` (not connected yet), `connected`, `reconnecting` (lost, retrying),
        `failed` (refused: nothing more is published) or `stopped`."""
        if self._failure is not None:
            return "failed"
        if self._connected:
            return "connected"
        if self._stop.is_set():
            return "stopped"
        return "reconnecting" if self._ever_connected else "connecting"

    def status(self) -> dict[str, Any]:
        """The connection and its counters (`/api/stats`'s `mqtt`)."""
        with self._lock:
            queued = len(self._events)
        return {"broker": self.broker.url, "device": self.device, "state": self.state,
                "connected": self._connected, "error": self.error, "published": self.published,
                "dropped": self.dropped, "queued": queued, "connects": self.connects}

    # --- the thread: all paho calls happen here ------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = (f"the broker {self.broker.url} refused the connection "
                             f"({reason_code}): check [mqtt] username and password in the config "
                             f"file, or ${USERNAME_ENV} and ${PASSWORD_ENV}")
            return
        self._connected = self._ever_connected = True
        self.connects += 1
        self._announce = True
        if self._down_since is not None:
            log.warning("MQTT: connected to %s again after %.0f s", self.broker.url,
                        time.monotonic() - self._down_since)
        else:
            log.info("MQTT: connected to %s as %s", self.broker.url, self.device)
        self._down_since, self.error = None, None
        client.subscribe(self.topics.ha_status, qos=1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected = False

    def _on_message(self, client, userdata, message) -> None:
        if message.topic == self.topics.ha_status and message.payload == b"online":
            log.info("MQTT: Home Assistant came online: sending discovery again")
            self._announce = True

    def _lost(self, why: str) -> None:
        self._open = self._connected = False
        self.error = why
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("MQTT: %s %s (%s); retrying while the run goes on", "lost" if
                        self._ever_connected else "cannot reach", self.broker.url, why)

    def _fail(self, why: str) -> None:
        self._failure = self.error = why
        self._open = self._connected = False

    def _run(self) -> None:
        delay = RETRY_MIN_S
        try:
            while not self._stop.is_set():
                if not self._open:
                    try:
                        self._client.reconnect()
                        self._open = True
                    except ssl.SSLError as exc:
                        self._fail(f"TLS with {self.broker.url} failed ({_tls_reason(exc)}): "
                                   f"check the broker's certificate and --mqtt-ca")
                        return
                    except OSError as exc:
                        self._lost(exc.strerror or str(exc) or type(exc).__name__)
                        if self._stop.wait(delay):
                            break
                        delay = min(delay * 2, self.options.retry_max_s)
                        continue
                rc = self._client.loop(LOOP_S)
                if self._refused:
                    self._fail(self._refused)
                    self._client.disconnect()
                    return
                if rc != paho.MQTT_ERR_SUCCESS:
                    self._lost(paho.error_string(rc))
                    if self._stop.wait(delay):
                        break
                    delay = min(delay * 2, self.options.retry_max_s)
                    continue
                if self._connected:
                    delay = RETRY_MIN_S
                    self._pump()
            self._goodbye()
        except Exception:  # noqa: BLE001 - MQTT must not take the run with it; said once
            log.exception("MQTT thread failed")
            self._fail("the MQTT thread failed (see the log)")

    def _publish(self, topic: str, payload: str | bytes, retain: bool) -> bool:
        """False when the connection went away (the message is not sent)."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == paho.MQTT_ERR_SUCCESS:
            self.published += 1
            return True
        if info.rc == paho.MQTT_ERR_QUEUE_SIZE:
            self.dropped += 1  # a slow broker: its queue is full
            return True
        return False

    def _pump(self) -> None:
        if self._announce:
            self._announce = False
            self._publish(self.topics.availability, "online", True)
            for topic, config in discovery_configs(self.topics, self.labels, self.model).items():
                self._publish(topic, json.dumps(config), True)
            with self._lock:
                self._state_new = self._state is not None
        with self._lock:
            state, self._state_new = (self._state if self._state_new else None), False
        if state is not None and not self._publish(self.topics.state, state, True):
            with self._lock:
                self._state_new = True
            return
        while True:
            with self._lock:
                if not self._events:
                    return
                payload = self._events.popleft()
            if not self._publish(self.topics.events, payload, False):
                with self._lock:
                    self._events.appendleft(payload)
                return

    def _goodbye(self) -> None:
        """Flush what is queued, say `offline` (retained) and disconnect cleanly, within a few
        seconds: a clean stop sends no last will, so this message is the one that tells. A short
        run can end before the broker has answered: that answer is waited for too."""
        deadline = time.monotonic() + 3.0
        while self._open and not self._connected and time.monotonic() < deadline:
            if self._client.loop(LOOP_S) != paho.MQTT_ERR_SUCCESS or self._refused:
                break
        if self._refused:
            self._fail(self._refused)
        if not self._connected:
            return
        self._pump()
        info = self._client.publish(self.topics.availability, "offline", qos=1, retain=True)
        deadline = time.monotonic() + 3.0
        while (self._connected and time.monotonic() < deadline
               and (self._client.want_write() or not info.is_published())):
            if self._client.loop(LOOP_S) != paho.MQTT_ERR_SUCCESS:
                break
        self._client.disconnect()
        self._connected = False


def clear_retained(options: MqttOptions, timeout: float = 10.0) -> list[str]:
    """Publish empty retained payloads to every retained topic of the device: its discovery
    configs under `options.prefix` (Home Assistant removes those entities) and its
    availability and state. Returns the topics cleared; ServerError if the broker is not
    reachable or refuses us in time."""
    try:
        broker = parse_broker(options.url)
    except ValueError as exc:
        raise UsageError(f"--mqtt: {exc}: allowed {URL_WORDS}") from None
    device = (options.device or default_device()).strip()
    topics = Topics(device, options.prefix.strip())
    client = make_client(options, broker, device)
    found: dict[str, bytes] = {}
    marker = f"{topics.base}/forget/{os.getpid()}-{time.monotonic_ns()}"
    done = threading.Event()
    refused: list[str] = []

    def on_connect(c, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            refused.append(str(reason_code))
            return
        c.subscribe([(topics.config("+", "+"), 1), (f"{topics.base}/#", 1)])

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        # The broker sends a subscription's retained messages before it handles anything we
        # send later: once our own marker comes back, every retained topic is in.
        c.publish(marker, b"", qos=1)

    def on_message(c, userdata, message):
        if message.topic == marker:
            done.set()
        elif message.retain and message.payload:
            found[message.topic] = message.payload

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    deadline = time.monotonic() + timeout
    try:
        client.reconnect()
    except ssl.SSLError as exc:
        raise ServerError(f"TLS with {broker.url} failed ({_tls_reason(exc)})") from None
    except OSError as exc:
        raise ServerError(f"cannot reach the MQTT broker {broker.url}: "
                          f"{exc.strerror or exc}") from None
    try:
        while not done.is_set():
            if refused:
                raise ServerError(f"the broker {broker.url} refused the connection ({refused[0]})")
            if time.monotonic() > deadline or client.loop(LOOP_S) != paho.MQTT_ERR_SUCCESS:
                raise ServerError(f"the MQTT broker {broker.url} did not answer within "
                                  f"{timeout:g} s")
        infos = [client.publish(t, b"", qos=1, retain=True) for t in sorted(found)]
        while not all(i.is_published() for i in infos):
            if time.monotonic() > deadline or client.loop(LOOP_S) != paho.MQTT_ERR_SUCCESS:
                raise ServerError(f"the MQTT broker {broker.url} did not acknowledge the clearing "
                                  f"within {timeout:g} s")
    finally:
        client.disconnect()
    return sorted(found)
