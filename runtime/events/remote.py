"""A camera's remote sinks (MQTT, a webhook), each behind its own on-disk spool and delivery thread."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .episodes import camera_slug
from .mqtt import MqttConfig, MqttDelivery
from .spool import Spool, SpooledSink
from .webhook import WebhookConfig, WebhookDelivery


def open_remote_sinks(camera: str, mqtt: MqttConfig | None = None, webhook: WebhookConfig | None = None,
                      on_error: Callable[[str], None] | None = None) -> list[SpooledSink]:
    """The configured sinks of one camera, started; their spools are ``<spool>/<camera>``.

    Args:
        camera: the camera's name.
        mqtt: the broker, or None.
        webhook: the receiver, or None.
        on_error: called with the sink's name per failed delivery or spool write.
    """
    sinks = []
    for name, config in (("mqtt", mqtt), ("webhook", webhook)):
        if config is None:
            continue
        spool = Spool(Path(config.spool) / camera_slug(camera), config.max_spooled,
                      on_error=(lambda _path, name=name: on_error(name)) if on_error else None)
        deliver = MqttDelivery(config, camera) if name == "mqtt" else WebhookDelivery(config)
        sinks.append(SpooledSink(name, spool, deliver, config.backoff, config.max_backoff, close=getattr(deliver, "close", lambda: None),
                                 on_error=on_error))
    return sinks
