"""The forecast service against the real embedded broker: history in, EnergyForecast entities out, valid."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from datamodels.validation import validate_entity
from forecasting.service import forecast_load, hourly_energy
from twin_service.mqtt_server import free_port, wait_for_port


def test_hourly_energy_from_a_counter_with_a_gap_and_a_reset():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = [start + timedelta(minutes=30 * k) for k in range(9)]  # 0 .. 4 h
    counter = [10.0 + 0.5 * k for k in range(9)]  # 1 kWh per hour
    counter[8] = 0.0  # reset in the last hour
    out = hourly_energy(times, counter, start, 6)
    assert out[:3] == pytest.approx([1.0, 1.0, 1.0])
    assert np.isnan(out[3]) and np.isnan(out[4]) and np.isnan(out[5])


def test_forecast_load_uses_the_profile_or_falls_back():
    issue = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
    rng = np.random.default_rng(3)
    shape = np.sin(np.linspace(0, np.pi, 24)) + 0.5
    days = shape * rng.lognormal(0, 0.3, (35, 24))
    result = forecast_load(days, issue)
    assert not result.fallback and result.values.shape == (24,)
    # A random walk: yesterday is the best guess, the profile loses and is not used.
    walk = np.cumsum(rng.normal(0, 1, 35 * 24)).reshape(35, 24) + 100
    assert forecast_load(walk, issue).fallback


@pytest.fixture(scope="module")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--port", str(port), "--data-dir",
                             str(tmp_path_factory.mktemp("broker")), "--log-level", "warning"])
    try:
        wait_for_port("127.0.0.1", port, timeout_s=20, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_run_once_writes_a_valid_forecast_per_meter(broker_url: str):
    from fiware_client import NgsiLdClient
    from forecasting.service import run_once

    issue = datetime(2026, 3, 2, tzinfo=UTC)
    meter = "urn:ngsi-ld:ThreePhaseAcMeasurement:fc-meter"
    rng = np.random.default_rng(4)
    total = 0.0
    with NgsiLdClient(broker_url, tenant="forecast-test") as client:
        for k in range(21 * 24, 0, -1):
            at = issue - timedelta(hours=k)
            total += 0.2 + 0.3 * np.sin(np.pi * at.hour / 24) * rng.uniform(0.8, 1.2)
            client.upsert_entities([{"id": meter, "type": "ThreePhaseAcMeasurement", "totalActiveEnergyImport": {
                "type": "Property", "value": round(total, 3), "unitCode": "KWH",
                "observedAt": at.strftime("%Y-%m-%dT%H:%M:%SZ")}}], update=True)
        written = run_once(client, issue)
        assert len(written) == 1
        stored = client.get_entity(written[0]["id"])
    validate_entity(stored)
    assert len(stored["hourlyValues"]["value"]) == 24
    assert stored["refTarget"]["object"] == meter
