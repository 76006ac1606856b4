"""Scenarios from the ADE9000 model through the real firmware (MicroPython) and the embedded stack.

The meter is stepped deterministically (`SimulatedMeter.step(seconds)`): the model sees the stated durations while
the test runs in seconds. The firmware stamps TimeInstant with the host clock, so records' timestamps are
compressed; what is asserted (property, phase, severity, one record, closed at the end) does not depend on them.
The clean week is a synthetic series written into the broker with its own observedAt times (stated: no meter
runs for a week), which the analytics receive through their subscription like any update.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from click.testing import CliRunner

from datamodels.context import ALERT_CONTEXT, context_for, link_header
from datamodels.validation import validate_entity
from energytwin.demo import DEMO_APIKEY, DEMO_SITE, provision_demo
from energytwin.stack import EmbeddedStack, StackConfig
from firmware.emulator.simulated_meter import PhaseLoad, SimulatedMeter
from fiware_client import parse_time
from tests.polling import wait_until
from twin_service.mqtt_server import free_port
from twin_service.quality._limits import SiteLimits
from twin_service.quality._report import build_report, fetch_readings
from twin_service.quality.commands import quality

from .support import T0, entity

pytestmark = pytest.mark.slow

NORMAL = PhaseLoad(voltage_v=230.0, current_a=10.0, angle_deg=10.0, thd_voltage=0.02)
DEVICES = ["pq-dip", "pq-overvoltage", "pq-unbalance", "pq-thd", "pq-frequency"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    cfg = StackConfig(data_dir=tmp_path_factory.mktemp("pq-stack"), mqtt_port=free_port(), broker_port=free_port(),
                      agent_port=free_port(), quality_port=0, web_port=0,
                      quality_tenant=DEMO_SITE.service)
    running = EmbeddedStack(cfg)
    running.start()
    provision_demo(cfg.agent_url, cfg.broker_url, DEVICES)
    _wait(lambda: _health(running)["subscription"]["id"], 30, "the analytics' subscription")
    yield running
    running.stop()


def _health(stack: EmbeddedStack) -> dict:
    return httpx.get(f"{stack.quality_url}/health", timeout=5).json()



def _wait(predicate, timeout_s: float, what: str):
    return wait_until(predicate, timeout_s, what, poll_s=0.05)


def _records(stack: EmbeddedStack, device: str) -> list[dict]:
    r = httpx.get(f"{stack.config.broker_url}/ngsi-ld/v1/entities", params={"type": "Anomaly", "limit": 1000},
                  headers={"NGSILD-Tenant": DEMO_SITE.service, "Link": link_header(ALERT_CONTEXT)})
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    return [e for e in r.json() if e["detectedBy"]["object"] == f"urn:ngsi-ld:Device:{device}"]


class Meter:
    """A SimulatedMeter stepped in model time; each step waits until the analytics judged its reading."""

    def __init__(self, stack: EmbeddedStack, device: str) -> None:
        cfg = stack.config
        self.stack = stack
        self.device = device
        self.sim = SimulatedMeter(device_id=device, apikey=DEMO_APIKEY, mqtt_host=cfg.host, mqtt_port=cfg.mqtt_port,
                                  period_s=1.0, loads=(NORMAL, NORMAL, NORMAL))
        # Stepped model time runs ahead of the wall clock (ten 60 s steps in seconds); the agent refuses a
        # TimeInstant over 5 min ahead of its clock (future_timestamp), so the meter's clock starts 20 min back.
        self.sim.harness.start_utc_s = time.time() - self.sim.model.simulated_time_s - 1200

    def step(self, seconds: float = 1.0, times: int = 1) -> None:
        for _ in range(times):
            assert self.sim.step(seconds), "the firmware did not publish"
            sent = parse_time(self.sim.published[-1][1]["TimeInstant"])
            _wait(lambda sent=sent: (t := _health(self.stack)["meters"].get(self.device)) and parse_time(t) >= sent,
                  20, f"the analytics to judge {self.device} at {sent}")

    def close(self) -> None:
        self.sim.stop()


def _one_closed_record(stack: EmbeddedStack, device: str) -> dict:
    records = _records(stack, device)
    assert len(records) == 1, [r["id"] for r in records]
    record = records[0]
    validate_entity(record)
    assert record["status"]["value"] == "closed"
    assert record["validTo"]
    return record


def run_scenario(stack: EmbeddedStack, device: str, change, restore, seconds: float, times: int) -> dict:
    meter = Meter(stack, device)
    try:
        meter.step(2.0, 2)
        change(meter.sim)
        meter.step(seconds, times)
        assert _records(stack, device) and _records(stack, device)[0]["status"]["value"] == "open"
        restore(meter.sim)
        meter.step(2.0, 2)
    finally:
        meter.close()
    return _one_closed_record(stack, device)


def test_two_second_dip_on_l2(stack: EmbeddedStack) -> None:
    record = run_scenario(stack, "pq-dip", lambda m: m.set_load(2, PhaseLoad(120.0, 10.0, 10.0, 0.02)),
                          lambda m: m.set_load(2, NORMAL), 1.0, 2)
    assert (record["anomalousProperty"]["value"], record["phase"]["value"]) == ("phaseVoltage", "L2")
    assert record["severity"]["value"] == "high"  # 120 V = 52 % of Un
    assert record["thresholdBreach"]["value"][0]["thresholdType"] == "LOWER"
    assert min(b["measuredValue"] for b in record["thresholdBreach"]["value"]) == pytest.approx(120.0, abs=0.2)


def test_ten_minute_over_voltage_on_l1(stack: EmbeddedStack) -> None:
    record = run_scenario(stack, "pq-overvoltage", lambda m: m.set_load(1, PhaseLoad(260.0, 10.0, 10.0, 0.02)),
                          lambda m: m.set_load(1, NORMAL), 60.0, 10)
    assert (record["anomalousProperty"]["value"], record["phase"]["value"]) == ("phaseVoltage", "L1")
    assert record["severity"]["value"] == "medium"  # 260 V = 113 % of Un
    assert record["thresholdBreach"]["value"][0]["thresholdValue"] == pytest.approx(253.0)
    assert "260.0 V" in record["description"]["value"]


def test_three_percent_unbalance(stack: EmbeddedStack) -> None:
    # L3 at 209.9 V, the others at 230 V: u2 = 20.1 / (3·230 − 20.1) = 3.0 % (tests/quality/test_formulas.py).
    record = run_scenario(stack, "pq-unbalance", lambda m: m.set_load(3, PhaseLoad(209.9, 10.0, 10.0, 0.02)),
                          lambda m: m.set_load(3, NORMAL), 2.0, 3)
    assert (record["anomalousProperty"]["value"], record["phase"]["value"]) == ("voltageUnbalance", "all")
    assert record["severity"]["value"] == "medium"
    assert max(b["measuredValue"] for b in record["thresholdBreach"]["value"]) == pytest.approx(0.030, abs=5e-4)


def test_nine_percent_voltage_thd_on_l3(stack: EmbeddedStack) -> None:
    record = run_scenario(stack, "pq-thd", lambda m: m.set_load(3, PhaseLoad(230.0, 10.0, 10.0, 0.09)),
                          lambda m: m.set_load(3, NORMAL), 2.0, 3)
    assert (record["anomalousProperty"]["value"], record["phase"]["value"]) == ("thdVoltage", "L3")
    assert record["severity"]["value"] == "medium"
    assert max(b["measuredValue"] for b in record["thresholdBreach"]["value"]) == pytest.approx(0.09, abs=1e-3)


def test_frequency_50_6_hz(stack: EmbeddedStack) -> None:
    record = run_scenario(stack, "pq-frequency", lambda m: m.set_frequency(50.6), lambda m: m.set_frequency(50.0),
                          2.0, 3)
    assert (record["anomalousProperty"]["value"], record["phase"]["value"]) == ("frequency", "all")
    assert record["severity"]["value"] == "medium"
    assert record["thresholdBreach"]["value"][0]["thresholdType"] == "UPPER"
    assert max(b["measuredValue"] for b in record["thresholdBreach"]["value"]) == pytest.approx(50.6, abs=0.01)


def test_clean_week_through_the_broker_produces_no_record(stack: EmbeddedStack, tmp_path) -> None:
    """A synthetic week (one reading per 10 min, ordinary variation) written to the broker: no record; the report
    over the broker's temporal API finds every characteristic 100 % within its limit."""
    device = "pq-clean-week"
    broker = stack.config.broker_url
    headers = {"NGSILD-Tenant": DEMO_SITE.service, "Content-Type": "application/ld+json"}
    last = None
    with httpx.Client(timeout=10) as client:
        for k in range(7 * 144):
            at = T0 + timedelta(minutes=10 * k)
            wobble = (k % 7 - 3) * 1.5  # 225.5 … 234.5 V
            e = entity(device, at, v=(230 + wobble, 231 - wobble, 229 + wobble / 2), f=50 + (k % 5 - 2) * 0.02,
                       thd=(0.03, 0.04, 0.05))
            e["@context"] = context_for("ThreePhaseAcMeasurement")
            r = client.post(f"{broker}/ngsi-ld/v1/entityOperations/upsert", content=json.dumps([e]), headers=headers)
            assert r.status_code in (201, 204), r.text
            last = at
    _wait(lambda: (t := _health(stack)["meters"].get(device)) and parse_time(t) >= last, 60,
          "the analytics to judge the last reading of the week")
    assert _records(stack, device) == []
    weekly = build_report(fetch_readings(broker, DEMO_SITE.service, device, T0, T0 + timedelta(days=7)), device,
                          T0, T0 + timedelta(days=7), SiteLimits())
    assert weekly.readings == 1008
    for row in weekly.rows:
        assert (row.valid_intervals, row.within, row.compliant) == (1008, 1008, True), row
    chart = tmp_path / "clean-week.png"
    result = CliRunner().invoke(quality, ["report", "--meter", device, "--week", "2026-W02", "--broker-url", broker,
                                          "--tenant", DEMO_SITE.service, "--chart", str(chart)])
    assert result.exit_code == 0, result.output
    assert "Supply voltage (10-min rms)" in result.output and "NOT compliant" not in result.output
    assert "100.00%" in result.output and "RMS events: 0" in result.output
    assert chart.read_bytes()[:4] == b"\x89PNG"
