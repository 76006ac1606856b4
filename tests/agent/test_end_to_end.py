"""Meter -> real MQTT broker -> agent -> recording NGSI-LD broker: the request the FIWARE agent would send (docs/compatibility.md)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from datamodels.context import context_for
from datamodels.measures import BY_OBJECT_ID
from tests.agent.support import HEADERS, RecordingBroker, make_agent, provision_meter
from twin_service.agent import Agent

Publish = Callable[[str, bytes | str], None]
TOPIC = "/json/meterkey/meter-001/attrs"


def _metric(client: httpx.Client, line_start: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_measure_becomes_the_upsert_the_fiware_agent_sends(
    agent: Agent, north: httpx.Client, publish: Publish, recording_broker: RecordingBroker
) -> None:
    provision_meter(north)
    payload = {
        "v": {"L1": 230.0, "L2": 231.0, "L3": 229.0},
        "i": {"L1": 5.1, "L2": 4.9, "L3": 5.0, "N": 0.2},
        "f": 50.01,
        "TimeInstant": "2026-11-24T10:00:00.000Z",
    }
    publish(TOPIC, json.dumps(payload))
    [request] = recording_broker.wait_for(1)

    assert request.path == "/ngsi-ld/v1/entityOperations/upsert/?options=update"
    assert request.headers["content-type"] == "application/ld+json"
    assert request.headers["ngsild-tenant"] == "energytwin"
    assert request.headers["ngsild-path"] == "/"
    assert request.headers["fiware-service"] == "energytwin"
    assert request.headers["fiware-servicepath"] == "/"
    [entity] = request.body
    assert entity["id"] == "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001"
    assert entity["type"] == "ThreePhaseAcMeasurement"
    assert entity["@context"] == context_for("ThreePhaseAcMeasurement")
    for object_id in ("v", "i", "f"):
        measure = BY_OBJECT_ID[object_id]
        assert entity[measure.attribute] == {
            "type": "Property",
            "value": payload[object_id],
            "unitCode": measure.unit_code,
            "observedAt": "2026-11-24T10:00:00.000Z",
        }
    assert "TimeInstant" not in entity
    assert _metric(north, "energytwin_agent_measures_total") == 3
    assert _metric(north, 'energytwin_agent_upserts_total{status="204"}') == 1


def test_offline_replay_is_one_upsert_of_time_ordered_fragments(
    agent: Agent, north: httpx.Client, publish: Publish, recording_broker: RecordingBroker
) -> None:
    provision_meter(north)
    replay = [{"pt": float(n), "TimeInstant": f"2026-11-24T10:00:0{n}Z"} for n in (3, 1, 2)]
    publish(TOPIC, json.dumps(replay))
    [request] = recording_broker.wait_for(1)
    assert [f["totalActivePower"]["value"] for f in request.body] == [1.0, 2.0, 3.0]
    assert {f["id"] for f in request.body} == {"urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001"}


@pytest.mark.parametrize(
    "topic",
    ["json/meterkey/meter-001/attrs", "/meterkey/meter-001/attrs", "/json/meterkey/meter-001/attrs/f"],
)
def test_every_topic_form_is_accepted(
    agent: Agent, north: httpx.Client, publish: Publish, recording_broker: RecordingBroker, topic: str
) -> None:
    provision_meter(north)
    publish(topic, "49.97" if topic.endswith("/f") else '{"f": 49.97}')
    [request] = recording_broker.wait_for(1)
    assert request.body[0]["frequency"]["value"] == 49.97


def test_bad_input_is_logged_counted_and_the_next_message_gets_through(
    agent: Agent,
    north: httpx.Client,
    publish: Publish,
    recording_broker: RecordingBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    provision_meter(north)
    caplog.set_level(logging.WARNING, logger="twin_service.agent")
    publish(TOPIC, b"{not json")
    publish("/json/meterkey/meter-404/attrs", '{"f": 50}')
    publish("/json/nokey/meter-001/attrs", '{"f": 50}')
    publish(TOPIC, '{"f": 50, "TimeInstant": "24.11.2026 10:00"}')
    publish(TOPIC, '"a string"')
    publish(TOPIC, b"x" * (64 * 1024 + 1))
    publish(TOPIC, '{"f": "fast", "pt": 1500, "TimeInstant": "2026-11-24T10:00:05Z"}')
    publish(TOPIC, '{"f": 50.02, "TimeInstant": "2026-11-24T10:00:06Z"}')

    first, second = recording_broker.wait_for_fragments(2)  # one request or two: the agent batches what waits
    assert set(first) == {
        "id",
        "type",
        "totalActivePower",
        "@context",
    }  # good measure of a mixed payload
    assert second["frequency"]["value"] == 50.02
    expected = {
        "invalid_json": 1,
        "unknown_device": 1,
        "unknown_apikey": 1,
        "bad_timestamp": 1,
        "not_an_object": 1,
        "oversize": 1,
        "bad_value": 1,
    }
    for reason, count in expected.items():
        assert agent.metrics.value("rejected_total", reason=reason) == count, reason
        assert _metric(north, f'energytwin_agent_rejected_total{{reason="{reason}"}}') == count
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert (
        "rejected invalid_json from device meter-001 (apikey meterkey) on /json/meterkey/meter-001/attrs"
        in logged
    )
    assert "rejected unknown_device from device meter-404" in logged
    assert "rejected oversize from device meter-001" in logged and "65537 bytes" in logged
    assert "rejected bad_value" in logged and "f: expected a number" in logged and "measure dropped" in logged


def test_repeated_rejections_are_logged_once_per_interval(
    agent: Agent,
    north: httpx.Client,
    publish: Publish,
    recording_broker: RecordingBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    provision_meter(north)
    caplog.set_level(logging.WARNING, logger="twin_service.agent")
    for _ in range(5):
        publish(TOPIC, b"garbage")
    publish(TOPIC, '{"f": 50}')
    recording_broker.wait_for(1)
    assert agent.metrics.value("rejected_total", reason="invalid_json") == 5
    assert sum("rejected invalid_json" in r.getMessage() for r in caplog.records) == 1


def test_broker_errors_are_logged_with_problem_details_and_counted(
    agent: Agent,
    north: httpx.Client,
    publish: Publish,
    recording_broker: RecordingBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    provision_meter(north)
    recording_broker.status = 400
    recording_broker.answer = {
        "type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
        "title": "Invalid attribute",
        "detail": "frequency",
    }
    caplog.set_level(logging.ERROR, logger="twin_service.agent")
    publish(TOPIC, '{"f": 50}')
    recording_broker.wait_for(1)
    assert agent.writer.drain(5)
    assert _metric(north, 'energytwin_agent_upserts_total{status="400"}') == 1
    assert any("BadRequestData" in r.getMessage() and "meter-001" in r.getMessage() for r in caplog.records)


def test_provisioning_survives_an_agent_restart(
    tmp_path: Path, mqtt_server: Any, recording_broker: RecordingBroker, publish: Publish
) -> None:
    first = make_agent(tmp_path / "var", mqtt_server.host, mqtt_server.port, recording_broker.url)
    with httpx.Client(base_url=first.north_url) as client:
        provision_meter(client, static_attributes=[{"name": "site", "type": "Text", "value": "plant-A"}])
    first.stop()
    second = make_agent(tmp_path / "var", mqtt_server.host, mqtt_server.port, recording_broker.url)
    try:
        with httpx.Client(base_url=second.north_url) as client:
            assert client.get("/iot/devices", headers=HEADERS).json()["count"] == 1
        publish(TOPIC, '{"f": 50.0, "TimeInstant": "2026-11-24T10:00:00Z"}')
        [request] = recording_broker.wait_for(1)
        assert request.body[0]["site"] == {
            "type": "Property",
            "value": "plant-A",
            "observedAt": "2026-11-24T10:00:00.000Z",
        }
    finally:
        second.stop()


def test_module_cli_starts_and_serves(
    tmp_path: Path, mqtt_server: Any, recording_broker: RecordingBroker
) -> None:
    import subprocess
    import sys

    from twin_service.mqtt_server import free_port, wait_for_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twin_service.agent",
            "--north-port",
            str(port),
            "--mqtt-host",
            mqtt_server.host,
            "--mqtt-port",
            str(mqtt_server.port),
            "--broker-url",
            recording_broker.url,
            "--data-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout_s=15, proc=proc)
        about = httpx.get(f"http://127.0.0.1:{port}/iot/about")
        assert about.status_code == 200 and about.json()["port"] == port
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0].decode()
    assert proc.returncode == 0, output
    assert (tmp_path / "agent-registry.sqlite").exists()
