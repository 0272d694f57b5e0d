"""Events on their way to a remote sink (MQTT, a webhook): a bounded on-disk spool and the thread
that empties it.

The camera's loop only appends to the spool (one small file, written atomically); a background
thread per sink delivers the oldest spooled event, removes it once the sink has acknowledged it,
and waits with exponential backoff while the sink is unreachable. A slow or dead sink therefore
never slows the frame loop, and events wait on disk (across a service restart too) until it comes
back. Delivery is at least once: an event acknowledged by the sink but not yet removed when the
service stops is sent again on the next start, so receivers de-duplicate by ``event_id`` and ``type``.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from ..files import write_atomic
from .sinks import SinkHealth, _plain

log = logging.getLogger("occ.sinks")

_RECORD = re.compile(r"^(\d{12})\.json$")


class DeliveryError(Exception):
    """A sink did not take an event. ``permanent``: it never will (the event is dropped, counted)."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.strerror, self.permanent = message, permanent  # strerror: read by SinkHealth's warning


class Spool:
    """A folder of spooled events, one file each (``000000000042.json``), oldest first.

    The first ``max_events`` undelivered events are kept; an event that arrives while the spool is
    full, or that cannot be written (disk full), is dropped and counted (:attr:`dropped`, exported
    as ``occ_sink_dropped_events_total``). Files left by an earlier run are taken up again in their order.

    Args:
        folder: the spool's folder (created).
        max_events: most events held.
        on_error: called with the spool's name when a write fails (for metrics).
        sync: fsync every event (survives a power cut, but costs the camera's loop milliseconds per
            event on an SD card); without it an event survives a crash or restart of the service,
            like a line of the events log.
    """

    def __init__(self, folder: str | Path, max_events: int = 10000, on_error: Callable[[str], None] | None = None,
                 sync: bool = False):
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_events, self.sync = max_events, sync
        self.dropped = 0
        self.health = SinkHealth(str(self.folder), on_error)
        self._changed = threading.Condition()
        for leftover in self.folder.glob(".*.tmp"):  # a write cut off by a crash: never renamed, never acknowledged
            leftover.unlink(missing_ok=True)
        self._queue: deque[int] = deque(sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := _RECORD.match(p.name))))
        self._next = self._queue[-1] + 1 if self._queue else 0

    def __len__(self) -> int:
        with self._changed:
            return len(self._queue)

    def _path(self, number: int) -> Path:
        return self.folder / f"{number:012d}.json"

    def append(self, record: dict[str, Any]) -> bool:
        """Spool one event; False when it was dropped (the spool is full, or the disk is)."""
        payload = json.dumps(record, default=_plain).encode()
        with self._changed:
            if len(self._queue) >= self.max_events:
                self.dropped += 1
                return False
            number = self._next
            try:
                write_atomic(self._path(number), payload, sync=self.sync)
            except OSError as exc:
                self.health.failed(exc, "event dropped; ")
                self.dropped += 1
                return False
            self.health.recovered()
            self._next += 1
            self._queue.append(number)
            self._changed.notify_all()
        return True

    def oldest(self, timeout: float = 0.0) -> tuple[int, dict[str, Any]] | None:
        """The oldest spooled event and its number, waiting up to ``timeout`` s for one; None if none."""
        with self._changed:
            if not self._queue:
                self._changed.wait(timeout)
            while self._queue:
                number = self._queue[0]
                try:
                    return number, json.loads(self._path(number).read_bytes())
                except (OSError, ValueError) as exc:  # removed or damaged by hand: not deliverable
                    log.error(f"spooled event {self._path(number)} cannot be read ({exc}); dropped", extra={"path": str(self.folder)})
                    self._queue.popleft()
                    self._path(number).unlink(missing_ok=True)
                    self.dropped += 1
        return None

    def remove(self, number: int, dropped: bool = False) -> None:
        """Forget a delivered event, or (``dropped``) one the sink refused for good (counted)."""
        with self._changed:
            if self._queue and self._queue[0] == number:
                self._queue.popleft()
            self._path(number).unlink(missing_ok=True)
            self.dropped += int(dropped)
            self._changed.notify_all()

    def wake(self) -> None:
        """Wake a thread waiting in :meth:`oldest` (to stop it)."""
        with self._changed:
            self._changed.notify_all()


class SpooledSink:
    """One remote sink of one camera: events go to its :class:`Spool`; a thread delivers them.

    Args:
        name: the sink's name in metrics and logs (``mqtt``, ``webhook``).
        spool: where events wait.
        deliver: sends one event; raises :class:`DeliveryError` (or ``OSError``) when the sink did not take it.
        backoff: first wait after a failed delivery, s; doubled after each further failure.
        max_backoff: longest wait between tries, s.
        close: releases the transport (called once the thread has stopped).
        on_error: called with ``name`` on every failed delivery (for metrics).
    """

    def __init__(self, name: str, spool: Spool, deliver: Callable[[dict[str, Any]], None], backoff: float = 1.0,
                 max_backoff: float = 60.0, close: Callable[[], None] = lambda: None, on_error: Callable[[str], None] | None = None):
        self.name, self.spool, self.deliver = name, spool, deliver
        self.backoff, self.max_backoff = backoff, max_backoff
        self.delivered = 0
        self.health = SinkHealth(name, on_error)
        self._close_transport = close
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"occ sink {name}", daemon=True)
        self._thread.start()

    def put(self, record: dict[str, Any]) -> bool:
        """Spool one event for delivery (the frame loop's only cost); False when it was dropped."""
        return self.spool.append(record)

    def _run(self) -> None:
        delay = self.backoff
        while not self._stop.is_set():
            item = self.spool.oldest(timeout=1.0)
            if item is None:
                continue
            number, record = item
            try:
                self.deliver(record)
            except (DeliveryError, OSError) as exc:
                if getattr(exc, "permanent", False):
                    log.error(f"{self.name} refused event {record.get('event_id')} ({exc}); dropped", extra={"camera": record.get("camera")})
                    self.spool.remove(number, dropped=True)
                    continue
                self.health.failed(exc, f"{len(self.spool)} event(s) spooled; ")
                self._stop.wait(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            self.spool.remove(number)
            self.delivered += 1
            self.health.recovered()
            delay = self.backoff

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the spool to empty; True when it did."""
        deadline = time.monotonic() + timeout
        while len(self.spool) and time.monotonic() < deadline:
            time.sleep(0.05)
        return not len(self.spool)

    def close(self, drain_s: float = 2.0) -> None:
        """Deliver what the sink takes within ``drain_s`` s, then stop; the rest stays spooled for the next start."""
        self.drain(drain_s)
        self._stop.set()
        self.spool.wake()
        self._thread.join(timeout=30)
        self._close_transport()
        if len(self.spool):
            log.warning(f"{len(self.spool)} event(s) still spooled for {self.name} in {self.spool.folder}; sent on the next start",
                        extra={"path": str(self.spool.folder)})
