"""A real Mosquitto broker for the MQTT tests, started on a free 127.0.0.1 port from a config
file the test writes (never the system's service), and a real paho subscriber.

Mosquitto comes from Debian's packages (ci/kiosk-deps.sh installs it in CI). Without the
binary the tests install it when they run as root, skip with the reason otherwise, and fail
under CI, where a skipped broker test would hide a missing install step.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from kiosk_helpers import free_port, wait_for

PACKAGES = ("mosquitto", "mosquitto-clients")


def _mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)),
        None)


def mosquitto_or_skip() -> str:
    """The path of the mosquitto binary, installing Debian's package as root when missing."""
    found = _mosquitto()
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
        if subprocess.run(install, capture_output=True, env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, env=env)
            subprocess.run(install, capture_output=True, env=env)
        found = _mosquitto()
    if found is None:
        why = ("needs Debian's mosquitto (apt-get install mosquitto mosquitto-clients, as "
               "ci/kiosk-deps.sh does): not installed" + ("" if os.geteuid() == 0 else
                                                          " and not root to install it"))
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the MQTT tests cannot run in CI: {why}")
        pytest.skip(why)
    return found


def make_ca(folder: Path, host: str = "127.0.0.1") -> dict[str, Path]:
    """A self-signed CA and a server certificate for `host` signed by it (openssl CLI):
    {"ca": ..., "cert": ..., "key": ...}."""
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make a test CA")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "server.key",
                                                        "server.csr", "server.pem"))
    ext = folder / "san.ext"
    ext.write_text(f"subjectAltName=IP:{host}\nbasicConstraints=CA:FALSE\n")

    def openssl(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=edge-fer test CA", "-keyout", ca_key, "-out", ca)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}", "-keyout", key,
            "-out", csr)
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "2", "-extfile", ext, "-out", cert)
    return {"ca": ca, "cert": cert, "key": key}


class Mosquitto:
    """One broker process: a plain listener on `port` (and a TLS one on `tls_port` when given
    certificates), anonymous access unless `users` (name -> password) is given."""

    def __init__(self, folder: Path, *, users: dict[str, str] | None = None,
                 tls: dict[str, Path] | None = None):
        self.binary = mosquitto_or_skip()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.log = self.folder / "mosquitto.log"
        lines = ["per_listener_settings false", "persistence false",
                 # Started as root, mosquitto would switch to its own user, who cannot read
                 # the test's files.
                 "user root", f"log_dest file {self.log}", "log_type all",
                 f"listener {self.port} 127.0.0.1"]
        if tls:
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {tls['ca']}",
                      f"certfile {tls['cert']}", f"keyfile {tls['key']}"]
        if users:
            passwd = self.folder / "passwd"
            passwd.touch(mode=0o600)
            for name, password in users.items():
                subprocess.run([shutil.which("mosquitto_passwd") or "mosquitto_passwd", "-b",
                                str(passwd), name, password], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "Mosquitto":
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto ended ({self.proc.returncode}): "
                                     f"{self.proc.stdout.read()} {self._log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(listening, 20, "mosquitto to listen")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def _log_tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log.exists() else ""

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self):
        return json.loads(self.payload)


class Subscriber:
    """A real paho client subscribed to `topics` on `port`, keeping every message; it
    reconnects and subscribes again when the broker comes back."""

    def __init__(self, port: int, topics=("#",), auth: tuple[str, str] | None = None):
        import paho.mqtt.client as paho

        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                                  client_id=f"test-sub-{os.getpid()}-{time.monotonic_ns()}")
        self.client.reconnect_delay_set(0.2, 1)
        if auth:
            self.client.username_pw_set(*auth)

        def on_connect(c, userdata, flags, reason_code, properties):
            if not reason_code.is_failure:
                c.subscribe([(t, 1) for t in topics])

        def on_subscribe(c, userdata, mid, reason_codes, properties):
            self.connected.set()

        def on_message(c, userdata, msg):
            with self._lock:
                self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain),
                                              time.monotonic()))

        self.client.on_connect, self.client.on_subscribe = on_connect, on_subscribe
        self.client.on_message = on_message
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(20), "the test subscriber could not subscribe"

    def on(self, topic: str, after: float = 0.0) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic and m.at >= after]

    def under(self, prefix: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.startswith(prefix)]

    def wait(self, topic: str, payload: bytes | None = None, timeout: float = 30,
             after: float = 0.0) -> Received:
        """The first message on `topic` (with `payload`, if given) that came after `after`."""
        def found():
            return next((m for m in self.on(topic, after)
                         if payload is None or m.payload == payload), None)

        return wait_for(found, timeout, f"{topic} {payload!r}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def retained(port: int, topics=("#",), timeout: float = 20) -> dict[str, bytes]:
    """What the broker keeps now: topic -> retained payload, read by a fresh subscriber (the
    broker sends a subscription's retained messages at once, and a marker message of our own
    after them says they are all in)."""
    marker = f"test/marker/{time.monotonic_ns()}"
    with Subscriber(port, (*topics, marker)) as sub:
        sub.client.publish(marker, b"x", qos=1)
        sub.wait(marker, timeout=timeout)
        return {m.topic: m.payload for m in sub.messages if m.retain and m.topic != marker}
