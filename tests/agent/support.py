"""Helpers shared by the agent tests: the recording broker, tenant headers, standard provisioning."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from twin_service.agent import Agent, AgentConfig
from twin_service.mqtt_server import free_port

SERVICE = "energytwin"
SERVICE_PATH = "/"
HEADERS = {"fiware-service": SERVICE, "fiware-servicepath": SERVICE_PATH}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class RecordingBroker:
    """An HTTP server that records every request and answers `status` (+ `answer` body) to each."""

    url: str
    requests: list[RecordedRequest] = field(default_factory=list)
    status: int = 204
    answer: dict | None = None
    delay_s: float = 0.0  # answer this late (a slow broker)

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[RecordedRequest]:
        """Block until `count` requests arrived; fail the test otherwise."""
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"broker got {len(self.requests)} requests, expected {count}: {self.requests}")
            time.sleep(0.01)
        return self.requests[:count]

    def wait_for_fragments(self, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """Block until `count` entity fragments arrived, however the agent batched them into requests."""
        deadline = time.monotonic() + timeout_s
        while True:
            fragments = [fragment for request in list(self.requests) for fragment in request.body]
            if len(fragments) >= count:
                return fragments[:count]
            if time.monotonic() > deadline:
                pytest.fail(f"broker got {len(fragments)} fragments, expected {count}: {self.requests}")
            time.sleep(0.01)


def make_agent(data_dir: Path, mqtt_host: str, mqtt_port: int, broker_url: str, **overrides: Any) -> Agent:
    """An agent on a free north port, started and subscribed."""
    config = AgentConfig(
        data_dir=data_dir,
        north_port=free_port(),
        mqtt_host=mqtt_host,
        mqtt_port=mqtt_port,
        broker_url=broker_url,
        **overrides,
    )
    agent = Agent(config)
    agent.start()
    assert agent.wait_ready(10), "agent did not subscribe to the MQTT broker"
    return agent


def provision_meter(
    client: httpx.Client, apikey: str = "meterkey", device_id: str = "meter-001", **device: Any
) -> None:
    """The project's standard provisioning: a ThreePhaseAcMeasurement group with timestamps, one device."""
    group = {
        "apikey": apikey,
        "resource": "/iot/json",
        "entity_type": "ThreePhaseAcMeasurement",
        "timestamp": True,
        "autoprovision": False,  # unknown devices must stay unknown in these tests (FIWARE default: true)
    }
    response = client.post("/iot/services", json={"services": [group]}, headers=HEADERS)
    assert response.status_code in (201, 409), response.text
    body = {"device_id": device_id, "protocol": "IoTA-JSON", "transport": "MQTT", **device}
    response = client.post("/iot/devices", json={"devices": [body]}, headers=HEADERS)
    assert response.status_code == 201, response.text
