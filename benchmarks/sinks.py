"""What the remote event sinks cost the frame loop, and what idle connections cost a /metrics scrape.

    occ-bench sinks --json benchmarks/results/sinks-DATE-cpu.json

- ``spool_append_ms``: one event spooled for a sink (the only work the camera's loop does for it:
  one small file written and renamed), over ``appends`` events into a real folder;
  ``spool_append_fsync_ms`` the same with an fsync of the file and its folder per event (``Spool(sync=True)``).
- ``scrape_ms``: a full /metrics request (connect, request, answer) with no other client, and with
  ``idle_connections`` clients connected that never send a byte. Aim: under 100 ms either way.
- ``outage`` (``--outage-s SECONDS``, off by default): a steady stream of events (``rate_hz``) through
  both real sinks, each behind its real spool at the service's default timeout and backoff, while
  a local webhook receiver is stopped and a mosquitto broker is killed (SIGKILL) for the outage,
  then both come back. Per sink: events sent, received (counted once per event id), lost,
  repeated, the spool's peak, and after the server came back the wait for its first delivery and
  for the last event that waited (``backlog_cleared_s``: the largest delivery delay after it came
  back). Aim: none lost.
"""
from __future__ import annotations

import json
import socket
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from occ.runtime.events import MetricsServer, MqttConfig, ServiceMetrics, Spool, WebhookConfig, open_remote_sinks

from .sink_servers import Broker, Receiver, Subscriber, broker_problem, mosquitto_binary, wait_for
from .training_runs import commit, machine

SCRAPE_AIM_MS = 100.0


def _stats(values_s: list[float]) -> dict[str, float]:
    ms = np.asarray(values_s) * 1000
    return {"p50": round(float(np.median(ms)), 3), "p99": round(float(np.quantile(ms, 0.99)), 3), "max": round(float(ms.max()), 3)}


def spool_append_cost(appends: int = 1000, sync: bool = False, folder: str | Path | None = None) -> dict[str, float]:
    """Milliseconds per :meth:`Spool.append` of a typical event record."""
    record = {"type": "opened", "event_id": "gate-20261206T020000Z-0001", "camera": "gate", "start_frame": 1234, "peak_frame": 1240,
              "peak_score": 3.21, "start_time": "2026-12-06T02:00:00Z", "end_time": None, "frames": 7}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        spool = Spool(Path(tmp) / "spool", max_events=appends + 1, sync=sync)
        costs = []
        for i in range(appends):
            started = time.perf_counter()
            spool.append({**record, "start_frame": i})
            costs.append(time.perf_counter() - started)
    return _stats(costs)


def scrape_cost(idle_connections: int, scrapes: int = 50) -> dict[str, float]:
    """Milliseconds per /metrics request while ``idle_connections`` clients hold silent connections."""
    metrics = ServiceMetrics("m.onnx")
    for name in ("gate", "yard"):
        metrics.camera(name)
    server = MetricsServer(metrics.render, port=0)
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(idle_connections)]
    try:
        costs = []
        for _ in range(scrapes):
            started = time.perf_counter()
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=30).read()
            costs.append(time.perf_counter() - started)
    finally:
        for connection in idle:
            connection.close()
        server.close()
    return _stats(costs)


def _delivery(sent: dict[str, float], arrivals: list[tuple[str, float]], restored: float) -> dict:
    """What one sink delivered of ``sent`` (event id: time put), from ``(event id, arrival time)``
    pairs; the delays counted from ``restored``, when its server came back."""
    first: dict[str, float] = {}
    for event_id, at in arrivals:
        first.setdefault(event_id, at)
    received = [i for i in sent if i in first]
    waited = [first[i] for i in received if sent[i] < restored]  # put before the server was back: spooled
    after = [at for _, at in arrivals if at >= restored]
    return {"sent": len(sent), "received": len(received), "lost": len(sent) - len(received),
            "duplicates": len(arrivals) - len(first), "unexpected": len(set(first) - set(sent)),
            "first_delivery_after_restore_s": round(min(after) - restored, 3) if after else None,
            "backlog_cleared_s": round(max(waited) - restored, 3) if waited else None}


def outage_loss(outage_s: float, rate_hz: float = 10.0, lead_s: float = 5.0, tail_s: float = 10.0, settle_s: float | None = None,
                backoff: float | None = None, max_backoff: float | None = None, folder: str | Path | None = None) -> dict:
    """Both sinks through an outage of their servers (see the module docstring).

    Args:
        outage_s: seconds the receiver is stopped and the broker dead.
        rate_hz: events put per second, before, during and after the outage.
        lead_s, tail_s: seconds of events before and after it.
        settle_s: seconds to wait after the last event for every one to arrive (default: the
            outage plus two of the longest backoffs plus 30 s).
        backoff, max_backoff: both sinks' backoff, s (default: each sink's configuration default).
        folder: where the spools and the broker's files go (a temporary folder in it).

    Raises:
        RuntimeError: no mosquitto or no paho-mqtt here.
    """
    problem = broker_problem()
    if problem:
        raise RuntimeError(problem)
    timing = {k: v for k, v in (("backoff", backoff), ("max_backoff", max_backoff)) if v is not None}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        broker, receiver = Broker(Path(tmp) / "broker", mosquitto_binary()), Receiver()
        broker.start()
        subscriber = Subscriber(broker.port, client_id="occ-bench-outage")
        sinks = []
        try:
            if not subscriber.subscribed.wait(10):
                raise RuntimeError(f"mosquitto on port {broker.port} did not take a subscription within 10 s")
            broker.wait_saved()  # the subscriber's session outlives the kill
            webhook = WebhookConfig(url=receiver.url, spool=str(Path(tmp) / "spool" / "webhook"), **timing)
            mqtt = MqttConfig(host="127.0.0.1", port=broker.port, spool=str(Path(tmp) / "spool" / "mqtt"), **timing)
            sinks = open_remote_sinks("gate", mqtt=mqtt, webhook=webhook)
            wait_for(lambda: sinks[0].deliver.client.is_connected(), 10, "the MQTT sink to connect")
            sent: dict[str, float] = {}
            peaks = {sink.name: 0 for sink in sinks}
            timeline = {}

            def stream(seconds: float) -> None:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    record = {"type": "opened", "event_id": f"gate-{len(sent):06d}", "camera": "gate", "peak_score": 1.5}
                    sent[record["event_id"]] = time.monotonic()
                    for sink in sinks:
                        sink.put(record)  # one past the spool's bound is dropped: counted as lost and in ``dropped``
                        peaks[sink.name] = max(peaks[sink.name], len(sink.spool))
                    time.sleep(1 / rate_hz)

            stream(lead_s)
            receiver.stop()
            broker.kill()
            timeline["down"] = time.monotonic()
            stream(outage_s)
            receiver.start()
            broker.start()
            timeline["up"] = time.monotonic()
            stream(tail_s)
            longest = max(sink.max_backoff for sink in sinks)
            settle = settle_s if settle_s is not None else outage_s + 2 * longest + 30
            events_topic = mqtt.topic("gate", "events")

            def mqtt_arrivals() -> list[tuple[str, float]]:
                return [(json.loads(payload)["event_id"], at) for (topic, payload, _), at in zip(list(subscriber.messages), list(subscriber.arrivals))
                        if topic == events_topic]

            def webhook_arrivals() -> list[tuple[str, float]]:
                return [(json.loads(body)["event_id"], at) for (body, _), at in zip(list(receiver.received), list(receiver.arrivals))]

            def all_arrived() -> bool:
                return all(set(sent) <= {i for i, _ in arrivals()} for arrivals in (mqtt_arrivals, webhook_arrivals))

            try:
                wait_for(all_arrived, settle, "every event at both servers")
            except AssertionError:
                pass  # what did not arrive is counted as lost
            time.sleep(1.0)  # a repeat sent just before the last original still arrives
            results = {}
            for sink, arrivals in zip(sinks, (mqtt_arrivals(), webhook_arrivals())):
                restored = timeline["up"]
                results[sink.name] = {**_delivery(sent, arrivals, restored), "spool_peak": peaks[sink.name], "spool_left": len(sink.spool),
                                      "dropped": sink.spool.dropped, "failed_deliveries": sink.health.errors,
                                      "backoff_s": sink.backoff, "max_backoff_s": sink.max_backoff}
        finally:
            for sink in sinks:
                sink.close(drain_s=0)
            subscriber.close()
            receiver.stop()
            broker.stop()
    return {"outage_s": round(timeline["up"] - timeline["down"], 2), "asked_outage_s": outage_s, "rate_hz": rate_hz, "lead_s": lead_s,
            "tail_s": tail_s, "events": len(sent), "sinks": results, "lost": sum(r["lost"] for r in results.values())}


def run(appends: int = 1000, idle_connections: int = 100, outage_s: float = 0.0, rate_hz: float = 10.0) -> dict:
    idle = scrape_cost(idle_connections)
    command = f"occ-bench sinks --appends {appends} --idle {idle_connections}"
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "commit": commit(), "command": command,
              "spool_append_ms": spool_append_cost(appends), "spool_append_fsync_ms": spool_append_cost(appends, sync=True), "appends": appends,
              "scrape_ms": {"idle_0": scrape_cost(0), f"idle_{idle_connections}": idle}, "idle_connections": idle_connections,
              "aims": {"scrape_ms_max": SCRAPE_AIM_MS}, "passed": idle["max"] < SCRAPE_AIM_MS}
    if outage_s > 0:
        result["command"] = f"{command} --outage-s {outage_s:g} --rate {rate_hz:g}"
        result["outage"] = outage_loss(outage_s, rate_hz)
        result["aims"]["outage_lost"] = 0
        result["passed"] = result["passed"] and result["outage"]["lost"] == 0
    return result
