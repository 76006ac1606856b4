"""The whole production stack under Docker: up, provision the example inventory, one meter reading end to end.

Skipped where no Docker engine runs (tests/conftest.py). To run it on a machine with Docker and Compose v2:

    .venv/bin/python -m pytest -m docker tests/production -p no:cacheprovider --timeout 900

It builds the energytwin image, starts every service with test passwords, waits for every health check, runs
`energytwin provision` with provisioning/examples/site.yaml, publishes one reading over MQTT with the meter
account, then expects the entity in Orion-LD, the row in CrateDB (through QuantumLeap, full precision) and
Grafana's data source healthy. It tears the stack down with its volumes at the end.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from datamodels.measures import MEASUREMENT_TYPE, measurement_id
from kernel import ports

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "provisioning" / "examples" / "site.yaml"
PROJECT = "energytwin-test"
TEST_ENV = {
    "MQTT_METER_USERNAME": "meter",
    "MQTT_METER_PASSWORD": "test-meter-pw",
    "MQTT_AGENT_USERNAME": "iot-agent",
    "MQTT_AGENT_PASSWORD": "test-agent-pw",
    "GRAFANA_ADMIN_PASSWORD": "test-grafana-pw",
}

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def _compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "docker",
            "compose",
            "-p",
            PROJECT,
            "-f",
            str(ROOT / "docker-compose.fiware.yml"),
            "--env-file",
            str(ROOT / ".env.example"),
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=840,
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[None]:
    import os

    env = {**os.environ, **TEST_ENV}
    up = _compose("up", "-d", "--build", "--wait", "--wait-timeout", "600", env=env)
    try:
        assert up.returncode == 0, up.stderr + _compose("ps", "-a", env=env).stdout
        yield
    finally:
        _compose("down", "-v", "--remove-orphans", env=env)


def _eventually(check, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, AssertionError, KeyError, IndexError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            pytest.fail(f"{check.__name__} not true after {timeout_s} s")
        time.sleep(2)


def test_reading_reaches_orion_quantumleap_and_grafana(stack) -> None:
    import yaml
    from paho.mqtt import publish

    inventory = yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))
    tenant = inventory["tenants"][0]
    apikey, device = tenant["groups"][0]["apikey"], tenant["sites"][0]["meters"][0]["device_id"]
    provision = subprocess.run(
        [
            str(ROOT / ".venv/bin/energytwin"),
            "provision",
            str(INVENTORY),
            "--agent-url",
            f"http://localhost:{ports.AGENT_NORTH_PORT}",
            "--broker-url",
            f"http://localhost:{ports.BROKER_PORT}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert provision.returncode == 0, provision.stdout + provision.stderr

    energy_kwh = 123456.0125  # needs more than a 32-bit real's 7 digits
    publish.single(
        f"/json/{apikey}/{device}/attrs",
        json.dumps({"v": {"L1": 230, "L2": 229.5, "L3": 231.25}, "f": 50.01, "eait": energy_kwh}),
        hostname="localhost",
        port=ports.MQTT_PORT,
        qos=1,
        auth={"username": TEST_ENV["MQTT_METER_USERNAME"], "password": TEST_ENV["MQTT_METER_PASSWORD"]},
    )

    def in_orion():
        r = httpx.get(
            f"http://localhost:{ports.BROKER_PORT}/ngsi-ld/v1/entities/{measurement_id(device)}",
            headers={"NGSILD-Tenant": tenant["service"]},
            timeout=5,
        )
        return r.status_code == 200 and r.json()["totalActiveEnergyImport"]["value"] == energy_kwh

    _eventually(in_orion)

    def in_crate():
        stmt = (
            f'SELECT totalactiveenergyimport FROM "mt{tenant["service"].lower()}".'
            f'"et{MEASUREMENT_TYPE.lower()}" WHERE entity_id = ?'
        )
        r = httpx.post(
            f"http://localhost:{ports.CRATE_HTTP_PORT}/_sql",
            json={"stmt": stmt, "args": [measurement_id(device)]},
            timeout=5,
        )
        return r.json()["rows"] and r.json()["rows"][-1][0] == energy_kwh

    _eventually(in_crate)

    auth = ("admin", TEST_ENV["GRAFANA_ADMIN_PASSWORD"])
    health = httpx.get(
        f"http://localhost:{ports.GRAFANA_PORT}/api/datasources/uid/cratedb/health", auth=auth, timeout=10
    )
    assert health.status_code == 200, health.text
    boards = httpx.get(
        f"http://localhost:{ports.GRAFANA_PORT}/api/search?tag=energytwin", auth=auth, timeout=10
    )
    assert {b["title"] for b in boards.json()} == {"Meter", "Site overview"}
