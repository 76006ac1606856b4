"""IoT Agent commands through the embedded broker and a real MQTT broker: an NGSI-LD attribute update of a
command becomes `{"<cmd>": value}` on `/<apikey>/<device>/cmd`; the device's `/cmdexe` answer becomes
`<cmd>_status` / `<cmd>_info` on the entity; no answer is EXPIRED; bad results are counted, never fatal."""

from __future__ import annotations

import json
import queue
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from fiware_client import NgsiLdClient
from tests.agent.support import HEADERS, make_agent
from tests.agent.test_with_embedded_broker import broker_url  # noqa: F401  (fixture)
from twin_service.mqtt_server import free_port

TENANT = "energytwin"
ENTITY = "urn:ngsi-ld:BatteryStatus:home-1-battery"


@pytest.fixture
def device(mqtt_server: Any) -> Any:
    """A device's MQTT client subscribed to its /cmd topic; received commands land in `.commands`."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-device-{free_port()}")
    client.commands = queue.Queue()  # type: ignore[attr-defined]
    client.on_message = lambda c, u, m: c.commands.put((m.topic, json.loads(m.payload)))
    client.connect(mqtt_server.host, mqtt_server.port)
    client.loop_start()
    client.subscribe("/batkey/home-1-battery/cmd", qos=1)
    time.sleep(0.2)
    yield client
    client.disconnect()
    client.loop_stop()


def _provision(north: httpx.Client) -> None:
    group = {"apikey": "batkey", "resource": "/iot/json", "entity_type": "BatteryStatus", "autoprovision": False}
    assert north.post("/iot/services", json={"services": [group]}, headers=HEADERS).status_code in (201, 409)
    body = {"device_id": "home-1-battery", "entity_name": ENTITY, "entity_type": "BatteryStatus",
            "protocol": "IoTA-JSON", "transport": "MQTT",
            "commands": [{"object_id": "batteryPowerSetpoint", "name": "batteryPowerSetpoint", "type": "command"}]}
    response = north.post("/iot/devices", json={"devices": [body]}, headers=HEADERS)
    assert response.status_code == 201, response.text


def _wait(condition: Any, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def _attr(twin: NgsiLdClient, name: str) -> Any:
    return twin.get_entity(ENTITY).get(name, {}).get("value")


def test_command_round_trip_ok_error_expired_and_release(tmp_path: Path, mqtt_server: Any, broker_url: str,  # noqa: F811
                                                         device: Any, publish: Any) -> None:
    agent = make_agent(tmp_path / "agent", mqtt_server.host, mqtt_server.port, broker_url, command_timeout_s=1.5)
    try:
        with httpx.Client(base_url=agent.north_url) as north:
            _provision(north)
        assert agent.commands.wait_ready(10)
        with NgsiLdClient(broker_url, TENANT) as twin:
            # provisioning put the command attributes on the entity, so a plain PATCH works
            assert _attr(twin, "batteryPowerSetpoint_status") == "UNKNOWN"
            twin.update_attrs(ENTITY, {"batteryPowerSetpoint": {"type": "Property", "value": 1500}})
            topic, payload = device.commands.get(timeout=10)
            assert (topic, payload) == ("/batkey/home-1-battery/cmd", {"batteryPowerSetpoint": 1500})
            assert _wait(lambda: _attr(twin, "batteryPowerSetpoint_status") == "PENDING")
            result = {"ok": True, "written": 1500, "readBack": 1500, "unitCode": "WTT"}
            publish("/batkey/home-1-battery/cmdexe", json.dumps({"batteryPowerSetpoint": result}))
            assert _wait(lambda: _attr(twin, "batteryPowerSetpoint_status") == "OK")
            assert _attr(twin, "batteryPowerSetpoint_info") == result

            twin.update_attrs(ENTITY, {"batteryPowerSetpoint": {"type": "Property", "value": 99999}})
            assert device.commands.get(timeout=10)[1] == {"batteryPowerSetpoint": 99999}
            publish("/json/batkey/home-1-battery/cmdexe",
                    json.dumps({"batteryPowerSetpoint": {"ok": False, "error": "beyond WChaMax 5000 W"}}))
            assert _wait(lambda: _attr(twin, "batteryPowerSetpoint_status") == "ERROR")

            twin.update_attrs(ENTITY, {"batteryPowerSetpoint": {"type": "Property", "value": 200}})
            assert device.commands.get(timeout=10)[1] == {"batteryPowerSetpoint": 200}
            assert _wait(lambda: _attr(twin, "batteryPowerSetpoint_status") == "EXPIRED")  # nobody answered

            # release: the NGSI-LD null deletes the attribute -> {"cmd": null}; the empty attribute comes back
            twin.update_attrs(ENTITY, {"batteryPowerSetpoint": {"type": "Property", "value": "urn:ngsi-ld:null"}})
            assert device.commands.get(timeout=10)[1] == {"batteryPowerSetpoint": None}
            assert _wait(lambda: _attr(twin, "batteryPowerSetpoint") == "")
            twin.update_attrs(ENTITY, {"batteryPowerSetpoint": {"type": "Property", "value": 100}})
            assert device.commands.get(timeout=10)[1] == {"batteryPowerSetpoint": 100}
        for result in ("sent", "ok", "error", "expired"):
            assert agent.metrics.value("commands_total", result=result) >= 1, result
    finally:
        agent.stop()


def test_bad_command_results_are_counted_and_the_agent_continues(tmp_path: Path, mqtt_server: Any,
                                                                  broker_url: str, publish: Any) -> None:  # noqa: F811
    agent = make_agent(tmp_path / "agent", mqtt_server.host, mqtt_server.port, broker_url)
    try:
        with httpx.Client(base_url=agent.north_url) as north:
            _provision(north)
            assert agent.commands.wait_ready(10)
            publish("/batkey/home-1-battery/cmdexe", "not json")
            publish("/batkey/home-1-battery/cmdexe", "[1, 2]")
            publish("/batkey/nobody/cmdexe", json.dumps({"batteryPowerSetpoint": "OK"}))
            publish("/batkey/home-1-battery/cmdexe", json.dumps({"selfDestruct": "OK"}))
            for reason in ("invalid_json", "not_an_object", "unknown_device", "unknown_command"):
                _wait(lambda r=reason: agent.metrics.value("rejected_total", reason=r) == 1)
            response = north.post("/notify/commands", content="[]", headers={"Content-Type": "application/json"})
            assert response.status_code == 400 and response.json()["name"] == "WRONG_SYNTAX"
            assert north.get("/iot/about").status_code == 200
    finally:
        agent.stop()
