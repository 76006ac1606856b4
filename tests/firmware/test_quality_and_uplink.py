"""Power-quality status bits, unbalanced loads, uplink options and the clock, under real MicroPython."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from firmware.emulator.ade9000_model import PhaseInput
from firmware.emulator.harness import MeterConfig, MeterHarness

NO_FLAGS = dict.fromkeys(
    ("dipL1", "dipL2", "dipL3", "swellL1", "swellL2", "swellL3", "overcurrent", "phaseSequenceError"), False
)


def last(meter: MeterHarness) -> dict:
    return meter.published[-1].payload


def test_clean_supply_raises_no_flag(meter: MeterHarness) -> None:
    meter.cycle(1.0)
    assert last(meter)["pq"] == NO_FLAGS


def test_steady_dip_on_l2_sets_dip_flag_until_it_ends(meter: MeterHarness) -> None:
    meter.model.set_phase(1, PhaseInput(180.0, 10.0))  # below 90 % of 230 V = 207 V
    meter.cycle(1.0)
    assert last(meter)["pq"] == {**NO_FLAGS, "dipL2": True}
    assert last(meter)["v"]["L2"] == pytest.approx(180.0, abs=1e-3)
    meter.model.set_phase(1, PhaseInput(230.0, 10.0))
    meter.cycle(1.0)
    assert last(meter)["pq"] == NO_FLAGS  # delivered once, cleared in the chip (write-1-to-clear)


def test_short_swell_between_two_samples_is_not_missed(meter: MeterHarness) -> None:
    meter.cycle(1.0)
    meter.model.voltage_event(0, 260.0, 0.1)  # 5 cycles at 113 % of nominal, gone before the next sample
    meter.cycle(1.0)
    assert last(meter)["pq"] == {**NO_FLAGS, "swellL1": True}
    assert last(meter)["v"]["L1"] == pytest.approx(230.0, abs=1e-3)
    meter.model.voltage_event(2, 215.0, 0.1)  # 93 %: neither a dip nor a swell
    meter.cycle(1.0)
    assert last(meter)["pq"] == NO_FLAGS


def test_one_cycle_dip_is_shorter_than_the_configured_two_cycles(meter: MeterHarness) -> None:
    meter.model.voltage_event(2, 150.0, 0.02)  # one 50 Hz cycle; DIP_CYC = 2 (config PQ_CYCLES)
    meter.cycle(1.0)
    assert last(meter)["pq"]["dipL3"] is False


def test_overcurrent_and_phase_sequence(meter: MeterHarness) -> None:
    meter.model.set_phase(2, PhaseInput(230.0, 95.0))  # above OVERCURRENT_A = 80 A
    meter.cycle(1.0)
    assert last(meter)["pq"] == {**NO_FLAGS, "overcurrent": True}
    meter.model.set_phase(2, PhaseInput(230.0, 10.0))
    meter.model.set_negative_sequence(True)  # L2 and L3 swapped at the terminals
    meter.cycle(1.0)
    doc = last(meter)
    assert doc["pq"] == {**NO_FLAGS, "phaseSequenceError": True}
    assert doc["avv"]["L12"] == pytest.approx(240.0, abs=0.03)  # VA -> VB now 240°


def test_unbalanced_wye_hand_computed(meter: MeterHarness) -> None:
    for k, (volts, amps) in enumerate(((235.0, 10.0), (225.0, 15.0), (230.0, 20.0))):
        meter.model.set_phase(k, PhaseInput(volts, amps, 0.0, 0.03, 0.12))
    meter.cycle(1.0)
    doc = last(meter)
    # |In| = sqrt(Ia² + Ib² + Ic² - IaIb - IbIc - IcIa) for currents 120° apart (docs/power-quality.md §2.3)
    assert doc["i"]["N"] == pytest.approx(8.660254, abs=1e-3)
    # |Vab| = sqrt(Va² + Vb² + Va·Vb) for voltages 120° apart (docs/power-quality.md §2.1); the angle register counts
    # 0.0176° at 50 Hz, worth up to Va·Vb·sin 120°/|Vab| · 0.0176° = 0.035 V here.
    assert doc["vll"]["L12"] == pytest.approx(398.4031, abs=0.04)
    assert doc["vll"]["L23"] == pytest.approx(394.0495, abs=0.04)
    assert doc["vll"]["L31"] == pytest.approx(402.7096, abs=0.04)
    assert doc["p"] == pytest.approx({"L1": 2350.0, "L2": 3375.0, "L3": 4600.0}, abs=0.03)
    assert doc["pt"] == pytest.approx(10325.0, abs=0.1)
    assert doc["thdv"]["L2"] == pytest.approx(0.03, abs=1e-6) and doc["thdi"]["L3"] == pytest.approx(0.12, abs=1e-6)


def test_apparent_and_reactive_energy_follow_the_direction(meter: MeterHarness) -> None:
    meter.model.set_phase(0, PhaseInput(230.0, 10.0, 36.87))  # 1840 W, 1380 var, 2300 VA
    meter.model.set_phase(1, PhaseInput(230.0, 10.0, 180.0 + 36.87))  # exporting 1840 W
    meter.cycle(3600.0)
    doc = last(meter)
    assert doc["esi"]["L1"] == pytest.approx(2.3, abs=1e-5) and doc["ese"]["L1"] == 0.0
    assert doc["eri"]["L1"] == pytest.approx(1.38, abs=1e-4)
    assert doc["ese"]["L2"] == pytest.approx(2.3, abs=1e-5) and doc["esi"]["L2"] == 0.0
    assert doc["eae"]["L2"] == pytest.approx(1.84, abs=1e-4)
    assert doc["ere"]["L2"] == pytest.approx(1.38, abs=1e-4)  # 180° + 36.87°: sin < 0


def test_mqtt_credentials_tls_and_keepalive_reach_the_connect() -> None:
    config = MeterConfig(mqtt_user="meter-7", mqtt_password="s3cret", mqtt_tls=True, mqtt_keepalive_s=30)
    with MeterHarness(config) as meter:
        meter.boot()
        meter.cycle(1.0)
        connect = meter.mqtt_connects[0]
        assert (connect["user"], connect["password"], connect["keepalive"], connect["tls"]) == (
            "meter-7", "s3cret", 30, True)
        assert connect["port"] == 1883  # MQTT_PORT as configured (8883 is the docs' advice with TLS)
        meter.run("meter.uplink._last_io_ms -= 16000\nmeter.uplink.keep_alive()")  # idle > keepalive / 2
        assert meter.mqtt_pings == 1
        meter.run("meter.uplink.keep_alive()")  # just pinged: not again
        assert meter.mqtt_pings == 1


def test_reconnect_backs_off_exponentially_with_jitter(meter: MeterHarness) -> None:
    meter.broker_reachable = False
    meter.run("meter.uplink.connected = False")
    for _ in range(120):
        meter.cycle(1.0)
    attempts = len(meter.mqtt_connects)
    # Waits of 1, 2, 4, 8, 16, 32, 64 s (+0-50 % jitter) fit 4 to 7 attempts in 2 minutes, not 120.
    assert 4 <= attempts <= 7
    assert meter.eval("meter.uplink.failures") == attempts
    meter.broker_reachable = True
    meter.run_for(200.0)
    assert meter.eval("meter.buffer.count") == 0 and last(meter)["ds"] == "ok"


def test_payload_sizes_stay_small(meter: MeterHarness) -> None:
    meter.cycle(1.0)
    live = len(json.dumps(last(meter), separators=(",", ":")))
    meter.wifi_connected = False
    meter.run_for(10.0)
    meter.wifi_connected = True
    meter.cycle(1.0)
    assert live < 1400
    largest = meter.eval("meter.uplink.largest")
    assert largest < 1400  # a replay batch of 4 records: built in one allocation on the ESP32's heap


def test_without_ntp_no_timeinstant_is_invented(meter: MeterHarness) -> None:
    with MeterHarness(MeterConfig(device_id="meter-no-ntp"), start_utc_s=1_780_000_000.0) as h:
        h.ntp_available = False
        h.boot()
        h.cycle(1.0)
        doc = last(h)
        assert doc["clk"] is False and "TimeInstant" not in doc and doc["p"]["L1"] == 0.0
        # Offline while unsynced: records carry RTC time (2000-01-01 based) until NTP tells the truth.
        h.wifi_connected = False
        h.run_for(5.0)
        h.wifi_connected = True
        h.ntp_available = True
        h.advance(60.0)  # the NTP retry interval
        h.fire_timer()
        assert h.step() is True
        replay = [d for m in h.published if isinstance(m.payload, list) for d in m.payload]
        assert replay and all(d["clk"] is True for d in replay)
        stamps = [datetime.strptime(d["TimeInstant"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) for d in replay]
        assert stamps == sorted(stamps)
        assert stamps[-1].timestamp() == pytest.approx(h.utc_s(), abs=0.002)  # shifted to true UTC
        assert stamps[0].year == 2026
