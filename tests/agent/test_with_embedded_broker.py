"""Meter -> MQTT -> agent -> the project's embedded NGSI-LD broker: the twin holds the meter's reading."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from datamodels.context import ENERGY_CONTEXT, link_header
from tests.agent.support import make_agent, provision_meter
from twin_service.mqtt_server import free_port

broker = pytest.importorskip("twin_service.broker")


@pytest.fixture
def broker_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            broker.create_app(tmp_path / "broker"), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "embedded broker did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)


def test_reading_reaches_the_embedded_broker(
    tmp_path: Path, mqtt_server: Any, broker_url: str, publish: Any
) -> None:
    agent = make_agent(tmp_path / "agent", mqtt_server.host, mqtt_server.port, broker_url)
    try:
        with httpx.Client(base_url=agent.north_url) as client:
            provision_meter(client)
        publish(
            "/json/meterkey/meter-001/attrs",
            json.dumps({"v": {"L1": 230.5, "L2": 229.5, "L3": 231.0}, "TimeInstant": "2026-11-24T10:00:00Z"}),
        )
        ok = ("200", "201", "204")
        assert _wait(lambda: sum(agent.metrics.value("upserts_total", status=code) for code in ok) >= 1)
        got = httpx.get(
            f"{broker_url}/ngsi-ld/v1/entities/urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001",
            headers={
                "Link": link_header(ENERGY_CONTEXT),
                "NGSILD-Tenant": "energytwin",
                "Accept": "application/json",
            },
        )
        assert got.status_code == 200, got.text
        voltage = got.json()["phaseVoltage"]
        assert voltage["value"] == {"L1": 230.5, "L2": 229.5, "L3": 231.0}
        assert voltage["unitCode"] == "VLT"
        assert voltage["observedAt"] == "2026-11-24T10:00:00.000Z"
    finally:
        agent.stop()


def _wait(condition: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False
