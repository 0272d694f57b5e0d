"""Real servers for the event sinks, started on free loopback ports: a local webhook receiver and a
mosquitto broker that can die and come back, and a paho subscriber. ``occ-bench sinks --outage-s``
and tests/runtime/test_sinks.py start them the same way (numpy-free, torch-free)."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MOSQUITTO_MISSING = "mosquitto is not installed (make tools installs Debian's package as root): no real broker to test with"
PAHO_MISSING = "paho-mqtt is not installed (pip install 'occ[mqtt]')"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def mosquitto_binary() -> str | None:
    """The mosquitto executable (Debian puts it in /usr/sbin, off a user's PATH), or None."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def broker_problem() -> str | None:
    """Why no real broker can run here, or None."""
    if mosquitto_binary() is None:
        return MOSQUITTO_MISSING
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        return PAHO_MISSING
    return None


class Receiver:
    """A local webhook receiver: answers ``fail_first`` 500s, then 200s (or ``status``); records bodies and
    headers (``arrivals``: the monotonic time of each, aligned with ``received``); can go away and come
    back on the same port; can hang (never answer)."""

    def __init__(self, fail_first: int = 0, status: int = 200):
        self.fail_first, self.status, self.hang = fail_first, status, threading.Event()
        self.received: list[tuple[bytes, dict]] = []
        self.arrivals: list[float] = []
        self.answers: list[int] = []
        self.port = free_port()
        self.server = None
        self.start()

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if owner.hang.is_set():
                    time.sleep(3)
                status = 500 if len(owner.answers) < owner.fail_first else owner.status
                owner.answers.append(status)
                if status == 200:
                    owner.received.append((body, dict(self.headers)))
                    owner.arrivals.append(time.monotonic())
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def ids(self) -> list[str]:
        return [json.loads(body)["event_id"] for body, _ in self.received]


class Broker:
    """mosquitto on a free loopback port, with persistence (saved every second) so a subscriber's
    session outlives a broker killed with SIGKILL."""

    def __init__(self, folder: Path, binary: str):
        self.folder, self.binary, self.port = folder, binary, free_port()
        folder.mkdir(exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        user = pwd.getpwuid(os.geteuid()).pw_name  # as root, mosquitto would switch to a user that cannot write here
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser {user}\npersistence true\n"
                             f"persistence_location {folder}/\nautosave_interval 1\n")
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(listening, 10, "mosquitto to listen")

    def wait_saved(self) -> None:
        """Until the broker has saved its state (sessions, subscriptions) as it is now."""
        now = time.time()
        database = self.folder / "mosquitto.db"
        wait_for(lambda: database.exists() and database.stat().st_mtime > now, 10, "mosquitto to save its state")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class Subscriber:
    """A paho client on ``occ/#`` with a persistent session (QoS 1): what a broker queues while it is away
    arrives later. ``arrivals``: the monotonic time of each message, aligned with ``messages``."""

    def __init__(self, port: int, client_id: str = "test-subscriber", clean: bool = False):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.arrivals: list[float] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("occ/#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _message(self, client, userdata, message) -> None:
        self.messages.append((message.topic, message.payload, bool(message.retain)))
        self.arrivals.append(time.monotonic())

    def on(self, topic: str) -> list[bytes]:
        return [payload for t, payload, _ in list(self.messages) if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
