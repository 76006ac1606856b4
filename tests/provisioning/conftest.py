"""Provisioning fixtures: a running agent and the embedded NGSI-LD broker (entities and subscriptions)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.agent.support import make_agent
from twin_service.agent import Agent
from twin_service.mqtt_server import free_port


def serve(app: Any) -> tuple[str, uvicorn.Server, threading.Thread]:
    """Run an ASGI app on a free port in a thread; return its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, thread


class _TenantSubscriptions:
    """`broker.subscriptions[tenant]`: the tenant's subscriptions as the real broker lists them, by id."""

    def __init__(self, url: str) -> None:
        self._url = url

    def __getitem__(self, tenant: str) -> dict[str, dict[str, Any]]:
        listed = httpx.get(f"{self._url}/ngsi-ld/v1/subscriptions", headers={"NGSILD-Tenant": tenant},
                           params={"limit": 1000})
        assert listed.status_code == 200, listed.text
        return {sub["id"]: sub for sub in listed.json()}


@dataclass
class SubscriptionBroker:
    """The real embedded NGSI-LD broker, with a view of its subscriptions per tenant."""

    url: str

    @property
    def subscriptions(self) -> _TenantSubscriptions:
        return _TenantSubscriptions(self.url)


@pytest.fixture
def subscription_broker(tmp_path: Path) -> Iterator[SubscriptionBroker]:
    from twin_service.broker import create_app

    url, server, thread = serve(create_app(tmp_path / "subscription-broker"))
    yield SubscriptionBroker(url)
    server.should_exit = True
    thread.join(5)


@pytest.fixture
def embedded_broker(tmp_path: Path) -> Iterator[str]:
    from twin_service.broker import create_app

    url, server, thread = serve(create_app(tmp_path / "broker"))
    yield url
    server.should_exit = True
    thread.join(5)


@pytest.fixture
def agent_for(tmp_path: Path, mqtt_server: Any) -> Iterator[Any]:
    """A factory: an agent writing to the given broker URL (stopped at teardown)."""
    started: list[Agent] = []

    def make(broker_url: str) -> Agent:
        agent = make_agent(tmp_path / f"agent{len(started)}", mqtt_server.host, mqtt_server.port, broker_url)
        started.append(agent)
        return agent

    yield make
    for agent in started:
        agent.stop()


@pytest.fixture
def publish_meter(mqtt_server: Any) -> Iterator[Any]:
    """Publish at QoS 1 like the meter firmware (the agent tests' `publish`)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"prov-meter-{free_port()}")
    client.connect(mqtt_server.host, mqtt_server.port)
    client.loop_start()

    def send(topic: str, payload: str) -> None:
        client.publish(topic, payload, qos=1).wait_for_publish(5)

    yield send
    client.loop_stop()
    client.disconnect()
