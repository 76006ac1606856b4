"""Simulated SunSpec home -> bridge -> Mosquitto -> embedded IoT Agent -> embedded broker: the twin, commands, faults.

Everything is real and on sockets: pymodbus server and client, Mosquitto (or amqtt), the agent, the broker. The
entities the twin ends up with are validated against the vendored official SDM schemas.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from bridges.sunspec.bridge import Bridge, BridgeThread
from bridges.sunspec.models import point_offset
from bridges.sunspec.simulator import HomeConfig
from bridges.sunspec.site import parse_site
from bridges.sunspec.transport import Endpoint, ModbusLink
from datamodels.context import context_for, link_header
from datamodels.der import battery_entity_id, der_device_entity_id, pv_entity_id
from datamodels.validation import validate_entity
from tests.agent.support import make_agent
from tests.bridges.conftest import wait
from twin_service.mqtt_server import free_port

broker_app = pytest.importorskip("twin_service.broker")


@pytest.fixture
def twin(tmp_path: Path, mqtt_server: Any) -> Iterator[dict[str, Any]]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(broker_app.create_app(tmp_path / "broker"), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait(lambda: server.started)
    broker_url = f"http://127.0.0.1:{port}"
    agent = make_agent(tmp_path / "agent", mqtt_server.host, mqtt_server.port, broker_url)
    yield {"broker": broker_url, "agent": agent.north_url, "mqtt": mqtt_server}
    agent.stop()
    server.should_exit = True
    thread.join(timeout=5)


def measured(broker_url: str, entity_id: str, entity_type: str) -> dict[str, Any] | None:
    """The entity once a reading has landed: provisioning creates it first with its command attributes only."""
    found = entity(broker_url, entity_id, entity_type)
    return found if found is not None and "dateObserved" in found else None


def entity(broker_url: str, entity_id: str, entity_type: str) -> dict[str, Any] | None:
    response = httpx.get(f"{broker_url}/ngsi-ld/v1/entities/{entity_id}",
                         headers={"NGSILD-Tenant": "energytwin", "Link": link_header(context_for(entity_type)[0])})
    return response.json() if response.status_code == 200 else None


async def _write_other_client(port: int, address: int, value: int) -> None:
    link = ModbusLink(Endpoint(port=port))
    try:
        await link.write(address, [value], 1)
    finally:
        link.close()


def _anomalies(broker_url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{broker_url}/ngsi-ld/v1/entities", params={"type": "Anomaly"},
                         headers={"NGSILD-Tenant": "energytwin", "Link": link_header(context_for("Anomaly")[0])})
    return response.json() if response.status_code == 200 else []


def site_yaml(twin: dict[str, Any], devices: list[tuple[str, int, int]], apikey: str, poll_s: float = 0.3) -> str:
    lines = [f"mqtt: {{host: {twin['mqtt'].host}, port: {twin['mqtt'].port}}}",
             f"agent: {{url: {twin['agent']}, service: energytwin}}",
             f"broker: {{url: {twin['broker']}}}", f"apikey: {apikey}", f"poll_interval_s: {poll_s}", "devices:"]
    for device_id, port, unit in devices:
        lines += [f"  - id: {device_id}", f"    port: {port}", f"    unit: {unit}", "    timeout_s: 0.3"]
    return "\n".join(lines)


def test_home_reaches_the_twin_as_valid_sdm_entities_and_takes_commands(twin, sunspec_server, commander) -> None:
    server = sunspec_server(HomeConfig(soc_pct=40.0))
    site = parse_site(site_yaml(twin, [("home-001", server.port, 1)], "key-a"))
    running = BridgeThread(Bridge(site)).start()
    try:
        pv = wait(lambda: measured(twin["broker"], pv_entity_id("home-001"), "PhotovoltaicMeasurement"))
        battery = wait(lambda: measured(twin["broker"], battery_entity_id("home-001"), "BatteryStatus"))
        device = wait(lambda: entity(twin["broker"], der_device_entity_id("home-001"), "Device"))
        for found in (pv, battery, device):
            validate_entity(found)  # the official SDM schemas, offline
        assert pv["activePower"]["unitCode"] == "KWT" and battery["statusPercent"]["value"] == pytest.approx(0.4, abs=0.01)
        assert battery["deviceState"]["value"] == "ok" and device["serialNumber"]["value"] == "SIM0001"

        result = commander("key-a", "home-001-battery", {"batteryPowerSetpoint": -2000})
        assert result == {"batteryPowerSetpoint": {"ok": True, "written": -2000.0, "readBack": -2000.0,
                                                   "unitCode": "WTT"}}
        home = server.homes[0]
        wait(lambda: home.battery_w == pytest.approx(-2000))  # the simulated battery discharges at 2 kW
        wait(lambda: (entity(twin["broker"], battery_entity_id("home-001"), "BatteryStatus") or {})
             .get("controlState", {}).get("value") == "holding:batteryPowerSetpoint")

        # Another client puts the battery back to auto: the bridge reports it as an SDM Anomaly and re-asserts.
        asyncio.run(_write_other_client(server.port, home.addresses[124] + point_offset(124, "StorCtl_Mod"), 0))
        anomaly = wait(lambda: _anomalies(twin["broker"]))[0]
        validate_entity(anomaly)
        assert anomaly["anomalousProperty"]["value"] == "batteryPowerSetpoint"
        assert anomaly["detectedBy"]["object"] == der_device_entity_id("home-001")
        assert anomaly["thresholdBreach"]["value"][0]["measuredValue"] == 0
        wait(lambda: home.battery_w == pytest.approx(-2000))

        too_much = commander("key-a", "home-001-battery", {"batteryPowerSetpoint": 9000})
        assert too_much["batteryPowerSetpoint"]["ok"] is False
        assert "outside the battery's limits" in too_much["batteryPowerSetpoint"]["error"]
        assert home.battery_w == pytest.approx(-2000)  # nothing clamped, nothing changed

        curtail = commander("key-a", "home-001-pv", {"pvPowerLimit": 40})
        assert curtail["pvPowerLimit"]["ok"] and curtail["pvPowerLimit"]["readBack"] == 40
        export = commander("key-a", "home-001-pv", {"exportLimit": 1000})
        assert export["exportLimit"] == {"ok": True, "written": 1000.0, "readBack": 1000.0, "unitCode": "WTT"}
        wrong = commander("key-a", "home-001-pv", {"batteryPowerSetpoint": 100})
        assert "PhotovoltaicMeasurement takes" in wrong["batteryPowerSetpoint"]["error"]
        back = commander("key-a", "home-001-battery", {"batteryPowerSetpoint": None})
        assert back["batteryPowerSetpoint"]["ok"] and back["batteryPowerSetpoint"]["readBack"] == 0
        assert running.bridge.total("commands_failed_total") == 2
    finally:
        running.stop()


def test_faults_are_logged_counted_shown_in_the_twin_and_never_stop_the_others(twin, sunspec_server, commander,
                                                                              caplog) -> None:
    good = sunspec_server(HomeConfig())
    broken = sunspec_server(HomeConfig(unit_id=1, sf_not_implemented=("W_SF",)),
                            HomeConfig(unit_id=2, declared_length={123: 30}),
                            HomeConfig(unit_id=3, refuse_writes=True))
    plain = sunspec_server(HomeConfig(sunspec=False))
    devices = [("good", good.port, 1), ("sf", broken.port, 1), ("longmap", broken.port, 2),
               ("refuses", broken.port, 3), ("wrongunit", broken.port, 7), ("plain", plain.port, 1),
               ("gone", 1, 1)]
    running = BridgeThread(Bridge(parse_site(site_yaml(twin, devices, "key-f")))).start()
    bridge = running.bridge
    broker = twin["broker"]
    try:
        def state(device_id: str) -> str | None:
            found = entity(broker, der_device_entity_id(device_id), "Device")
            return found["deviceState"]["value"] if found else None

        wait(lambda: state("gone") == "fault:no-response" and state("plain") == "fault:not-sunspec"
             and state("wrongunit") == "fault:no-response", 15)
        assert wait(lambda: state("sf")) == "degraded:sf-not-implemented"
        assert wait(lambda: state("longmap")) == "degraded:map-mismatch"
        pv_sf = wait(lambda: entity(broker, pv_entity_id("sf"), "PhotovoltaicMeasurement"))
        assert "activePower" not in pv_sf and pv_sf["deviceState"]["value"] == "degraded:sf-not-implemented"
        refused = commander("key-f", "refuses-battery", {"batteryPowerSetpoint": 1000})
        assert refused["batteryPowerSetpoint"]["ok"] is False
        assert "exception-4" in refused["batteryPowerSetpoint"]["error"]
        no_cap = commander("key-f", "longmap-pv", {"pvPowerLimit": 50})
        assert "no usable SunSpec model 123" in no_cap["pvPowerLimit"]["error"]
        polls = bridge.total("polls_total", "good")
        wait(lambda: bridge.total("polls_total", "good") >= polls + 3)  # the good device never waited on the rest
        assert wait(lambda: entity(broker, battery_entity_id("good"), "BatteryStatus"))["deviceState"]["value"] == "ok"
        assert bridge.total("faults_total", "gone", "no-response") >= 2
        assert bridge.total("faults_total", "plain", "not-sunspec") >= 2
        assert bridge.total("problems_total", "sf", "sf-not-implemented") >= 1
        assert bridge.total("problems_total", "longmap", "map-mismatch") >= 1
    finally:
        running.stop()
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("bridges")]
    gone_lines = [line for line in logged if line.startswith("gone ") and "fault:no-response" in line]
    assert len(gone_lines) == 1, "a lasting fault is logged once, when the state changes"
    assert "unit id" in gone_lines[0]
    for device_id, state in (("plain", "fault:not-sunspec"), ("wrongunit", "fault:no-response"),
                             ("sf", "degraded:sf-not-implemented"), ("longmap", "degraded:map-mismatch")):
        assert sum(line.startswith(f"{device_id} ") and state in line for line in logged) == 1, (device_id, logged)
    assert any(line.startswith("refuses: command batteryPowerSetpoint=1000 failed") and "exception-4" in line
               for line in logged)
