"""Events to an MQTT broker (Home Assistant, Node-RED), with paho-mqtt (``pip install 'occ[mqtt]'``).

Each camera has its own connection and three topics under ``<topic_prefix>/<camera>/``:

- ``events``: every event record (opened, closed), the same object as its line in the events log;
  QoS 1 by default, not retained (a subscriber that joins later must not see old alarms as new).
- ``state``: the camera's latest event record, retained: a dashboard that subscribes sees at once
  whether an event is open.
- ``availability``: ``online`` (retained) once connected; ``offline`` (retained) when the service
  stops, and as the connection's last will when it dies without saying so (the broker publishes it).

An event counts as delivered once the broker has acknowledged it (PUBACK at QoS 1); until then it
waits in the camera's spool, across a broker restart or a service restart.
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Any

from .episodes import camera_slug
from .sinks import _plain
from .spool import DeliveryError

ONLINE, OFFLINE = "online", "offline"


@dataclass
class MqttConfig:
    """The broker and topics (``[sinks.mqtt]`` in the service configuration).

    Attributes:
        host: the broker's address.
        port: its TCP port (1883; 8883 with TLS).
        topic_prefix: topics are ``<topic_prefix>/<camera>/events``, ``…/state`` and ``…/availability``.
        qos: MQTT quality of service for events: 0, 1 or 2 (0 can lose events on a broken connection).
        keepalive: seconds between pings; the broker publishes the last will after 1.5 times this without one.
        username: "" for an anonymous broker.
        password_env: name of the environment variable holding the password.
        tls: connect with TLS, checking the broker's certificate against the system's CAs.
        timeout: seconds the broker may take to acknowledge an event before it is tried again.
        backoff: first wait after a failed delivery, s (doubled up to ``max_backoff``).
        max_backoff: longest wait between tries, s.
        spool: folder of the spools; each camera's is a subfolder named after it.
        max_spooled: events each camera's spool holds while the broker is away; later ones are dropped (counted).
    """

    host: str
    port: int = 1883
    topic_prefix: str = "occ"
    qos: int = 1
    keepalive: int = 30
    username: str = ""
    password_env: str = ""
    tls: bool = False
    timeout: float = 5.0
    backoff: float = 0.5
    max_backoff: float = 30.0
    spool: str = "spool/mqtt"
    max_spooled: int = 10000

    def topic(self, camera: str, leaf: str) -> str:
        return f"{self.topic_prefix}/{camera_slug(camera)}/{leaf}"


def paho_missing() -> str | None:
    """Why the MQTT sink cannot run here (paho-mqtt not installed), or None."""
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        return "needs paho-mqtt: pip install 'occ[mqtt]'"
    return None


class MqttDelivery:
    """One camera's connection to the broker; calling it publishes one event and waits for the broker's
    acknowledgement. The connection is made, and remade after a loss, by paho's network thread."""

    def __init__(self, config: MqttConfig, camera: str):
        import paho.mqtt.client as mqtt

        self.config, self.camera = config, camera
        self.events_topic, self.state_topic = config.topic(camera, "events"), config.topic(camera, "state")
        self.availability_topic = config.topic(camera, "availability")
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"occ-{socket.gethostname()}-{camera_slug(camera)}")
        client.will_set(self.availability_topic, OFFLINE, qos=1, retain=True)
        if config.username:
            client.username_pw_set(config.username, os.environ.get(config.password_env) if config.password_env else None)
        if config.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(config.max_backoff)))
        client.on_connect = self._connected
        self.client = client
        client.connect_async(config.host, config.port, config.keepalive)
        client.loop_start()

    def _connected(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.publish(self.availability_topic, ONLINE, qos=1, retain=True)

    def __call__(self, record: dict[str, Any]) -> None:
        if not self.client.is_connected():
            raise DeliveryError(f"not connected to {self.config.host}:{self.config.port}")
        body = json.dumps(record, default=_plain).encode()
        for topic, retain in ((self.events_topic, False), (self.state_topic, True)):
            try:
                sent = self.client.publish(topic, body, qos=self.config.qos, retain=retain)
                sent.wait_for_publish(self.config.timeout)
            except (RuntimeError, ValueError) as exc:  # not queued: the connection went away meanwhile
                raise DeliveryError(f"{self.config.host}:{self.config.port}: {exc}") from None
            if not sent.is_published():
                raise DeliveryError(f"{self.config.host}:{self.config.port} did not acknowledge within {self.config.timeout:g} s")

    def close(self) -> None:
        """Say ``offline`` (retained) while the broker listens, then disconnect."""
        if self.client.is_connected():
            try:
                self.client.publish(self.availability_topic, OFFLINE, qos=1, retain=True).wait_for_publish(self.config.timeout)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
