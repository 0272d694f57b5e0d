"""Events as HTTP POSTs of their JSON to a webhook (a video management system, Node-RED, a chat bot).

Each event is one POST with ``Content-Type: application/json``, the same object as its line in the
events log. A 2xx answer delivers it; a refused connection, a timeout, a 5xx, 408 or 429 is retried
with exponential backoff (events wait in the camera's spool meanwhile); 400, 413, 415 and 422 mean
the receiver will never take that event, so it is dropped and counted. With a secret, every POST
carries ``X-Occ-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed with the secret>``
(GitHub's scheme); a receiver recomputes it over the bytes it got and compares with
``hmac.compare_digest``. ``X-Occ-Event-Id`` lets it drop a repeat (delivery is at least once).
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from .sinks import _plain
from .spool import DeliveryError

SIGNATURE_HEADER = "X-Occ-Signature-256"
EVENT_ID_HEADER = "X-Occ-Event-Id"
REFUSED_FOR_GOOD = (400, 413, 415, 422)  # the event itself is unacceptable: retrying cannot help


@dataclass
class WebhookConfig:
    """Where and how events are POSTed (``[sinks.webhook]`` in the service configuration).

    Attributes:
        url: the receiver (http:// or https://).
        timeout: seconds one POST may take before it counts as failed.
        backoff: first wait after a failed POST, s (doubled up to ``max_backoff``).
        max_backoff: longest wait between tries, s.
        secret_env: name of the environment variable holding the HMAC secret ("": unsigned).
        spool: folder of the spools; each camera's is a subfolder named after it.
        max_spooled: events each camera's spool holds while the receiver is away; later ones are dropped (counted).
    """

    url: str
    timeout: float = 5.0
    backoff: float = 1.0
    max_backoff: float = 60.0
    secret_env: str = ""
    spool: str = "spool/webhook"
    max_spooled: int = 10000

    def secret(self) -> bytes | None:
        """The HMAC key from the environment, or None when unsigned."""
        return os.environ[self.secret_env].encode() if self.secret_env else None


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Occ-Signature-256`` value of a body: ``sha256=`` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a POST turned into a GET elsewhere would lose the event
        return None


class WebhookDelivery:
    """POSTs one event per call (see the module docstring for the protocol)."""

    def __init__(self, config: WebhookConfig):
        self.config = config
        self.secret = config.secret()
        self._opener = urllib.request.build_opener(_NoRedirects)

    def __call__(self, record: dict[str, Any]) -> None:
        body = json.dumps(record, default=_plain).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "occ", EVENT_ID_HEADER: str(record.get("event_id", ""))}
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = signature(self.secret, body)
        request = urllib.request.Request(self.config.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.config.timeout) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"HTTP {exc.code}", permanent=exc.code in REFUSED_FOR_GOOD) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise DeliveryError(str(getattr(exc, "reason", None) or exc)) from None
