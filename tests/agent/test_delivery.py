"""Delivery guarantees: batching with per-device order, broker down or slow, kill -9 of the agent, QoS 1 acks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.support import RecordingBroker, make_agent, provision_meter
from twin_service.agent import Agent
from twin_service.mqtt_server import free_port, wait_for_port

Publish = Callable[[str, bytes | str], None]


def _measure(n: int) -> str:
    return json.dumps({"pt": float(n), "TimeInstant": f"2026-11-24T10:{n // 60:02d}:{n % 60:02d}Z"})


def _values_per_device(broker: RecordingBroker) -> dict[str, list[float]]:
    seen: dict[str, list[float]] = {}
    for request in broker.requests:
        for fragment in request.body:
            if "totalActivePower" in fragment:
                seen.setdefault(fragment["id"], []).append(fragment["totalActivePower"]["value"])
    return seen


def _wait(condition: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_messages_arriving_together_become_one_upsert_in_per_device_order(
    agent: Agent, north: httpx.Client, publish: Publish, recording_broker: RecordingBroker
) -> None:
    for meter in ("m1", "m2", "m3"):
        provision_meter(north, device_id=meter)
    recording_broker.delay_s = 0.3  # the first upsert is slow: the rest pile up and go out together
    for n in range(20):
        for meter in ("m1", "m2", "m3"):
            publish(f"/json/meterkey/{meter}/attrs", _measure(n))
    assert _wait(lambda: agent.metrics.value("messages_total") == 60)
    assert agent.flush(15)
    assert len(recording_broker.requests) < 60 / 2, "measures arriving together were not batched"
    per_device = _values_per_device(recording_broker)
    for meter in ("m1", "m2", "m3"):
        assert per_device[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{meter}"] == [float(n) for n in range(20)]
    assert agent.metrics.value("upserted_messages_total") == 60
    assert agent.metrics.value("acked_total") == 60


def test_broker_down_then_back_loses_nothing_and_keeps_order(
    agent: Agent, north: httpx.Client, publish: Publish, recording_broker: RecordingBroker
) -> None:
    provision_meter(north)
    recording_broker.status = 503
    for n in range(30):
        publish("/json/meterkey/meter-001/attrs", _measure(n))
    assert _wait(lambda: agent.metrics.value("acked_total") == 30), "messages were not acknowledged"
    assert _wait(lambda: agent.metrics.value("upserts_total", status="503") >= 1)
    metrics = north.get("/metrics").text
    assert "energytwin_agent_broker_up 0" in metrics
    assert "energytwin_agent_upsert_queue_depth 30" in metrics
    recording_broker.status = 204
    assert agent.flush(20)
    values = _values_per_device(recording_broker)["urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001"]
    assert values == [float(n) for n in range(30)]
    assert "energytwin_agent_broker_up 1" in north.get("/metrics").text


def test_one_bad_message_does_not_take_its_batch_down(
    agent: Agent, north: httpx.Client, publish: Publish, recording_broker: RecordingBroker
) -> None:
    provision_meter(north)
    recording_broker.delay_s = 0.2
    recording_broker.status = 400  # every upsert refused: each message is retried alone, then dropped
    for n in range(5):
        publish("/json/meterkey/meter-001/attrs", _measure(n))
    assert _wait(lambda: agent.metrics.value("messages_total") == 5)
    assert agent.flush(15)
    assert agent.metrics.value("upsert_dropped_total") == 5
    singles = [r for r in recording_broker.requests if len(r.body) == 1]
    assert len(singles) == 5


def _agent_process(tmp_path: Path, mqtt_server: Any, broker_url: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "twin_service.agent",
            "--north-port", str(port),
            "--mqtt-host", mqtt_server.host,
            "--mqtt-port", str(mqtt_server.port),
            "--broker-url", broker_url,
            "--data-dir", str(tmp_path / "var"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_port("127.0.0.1", port, timeout_s=15, proc=proc)
    return proc


def _metric(port: int, name: str) -> float:
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_kill_between_ack_and_broker_write_loses_nothing(
    tmp_path: Path, mqtt_server: Any, recording_broker: RecordingBroker, publish: Publish
) -> None:
    """Acknowledged messages are on disk: after kill -9 and a restart they all reach the broker, in order.

    Messages published while the agent is dead reach it too (persistent MQTT session, QoS 1).
    """
    port = free_port()
    dead_broker = f"http://127.0.0.1:{free_port()}"  # nothing listens: every upsert fails, the queue holds all
    proc = _agent_process(tmp_path, mqtt_server, dead_broker, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            provision_meter(client)
        assert _wait(lambda: "agent" in httpx.get(f"http://127.0.0.1:{port}/metrics").text)
        time.sleep(0.5)  # let the agent's subscription settle before publishing
        for n in range(40):
            publish("/json/meterkey/meter-001/attrs", _measure(n))
        assert _wait(lambda: _metric(port, "energytwin_agent_acked_total") == 40), "not all acknowledged"
        assert _metric(port, "energytwin_agent_upsert_queue_depth") == 40
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    for n in range(40, 50):  # the agent is dead: the MQTT broker keeps these for its session
        publish("/json/meterkey/meter-001/attrs", _measure(n))
    port = free_port()
    proc = _agent_process(tmp_path, mqtt_server, recording_broker.url, port)
    try:
        assert _wait(
            lambda: len(_values_per_device(recording_broker).get(
                "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001", [])) >= 50,
            20,
        ), _values_per_device(recording_broker)
        values = _values_per_device(recording_broker)["urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001"]
        assert values == [float(n) for n in range(50)]
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0].decode()
    assert proc.returncode == 0, output


@pytest.mark.parametrize("queue_max", [3])
def test_a_full_queue_sheds_new_messages_and_says_so(
    tmp_path: Path, mqtt_server: Any, publish: Publish, queue_max: int
) -> None:
    dead_broker = f"http://127.0.0.1:{free_port()}"
    agent = make_agent(tmp_path / "var", mqtt_server.host, mqtt_server.port, dead_broker,
                       max_queued_messages=queue_max)
    try:
        with httpx.Client(base_url=agent.north_url) as client:
            provision_meter(client)
        for n in range(5):
            publish("/json/meterkey/meter-001/attrs", _measure(n))
        assert _wait(lambda: agent.metrics.value("acked_total") == 5)
        assert agent.queue.depth() == queue_max
        assert agent.metrics.value("rejected_total", reason="queue_full") == 2
    finally:
        agent.stop()
