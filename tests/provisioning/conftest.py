"""Provisioning fixtures: a running agent, the embedded NGSI-LD broker, and a broker stand-in with subscriptions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

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


@dataclass
class SubscriptionBroker:
    """The NGSI-LD `/subscriptions` routes the provisioning uses, per tenant, with every request recorded."""

    url: str = ""
    subscriptions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    writes: list[tuple[str, str]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def listing(request: Request) -> Response:
            tenant = request.headers.get("NGSILD-Tenant", "")
            if request.method == "GET":
                return JSONResponse(list(self.subscriptions.get(tenant, {}).values()))
            body = await request.json()
            self.writes.append(("POST", body["id"]))
            bucket = self.subscriptions.setdefault(tenant, {})
            if body["id"] in bucket:
                return JSONResponse({"type": "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists"}, status_code=409)
            bucket[body["id"]] = {k: v for k, v in body.items() if k != "@context"}
            return Response(status_code=201, headers={"Location": f"/ngsi-ld/v1/subscriptions/{body['id']}"})

        async def one(request: Request) -> Response:
            tenant = request.headers.get("NGSILD-Tenant", "")
            sub_id = request.path_params["sub_id"]
            self.writes.append(("DELETE", sub_id))
            if self.subscriptions.get(tenant, {}).pop(sub_id, None) is None:
                return JSONResponse({"type": "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"}, status_code=404)
            return Response(status_code=204)

        return Starlette(routes=[
            Route("/ngsi-ld/v1/subscriptions", listing, methods=["GET", "POST"]),
            Route("/ngsi-ld/v1/subscriptions/{sub_id:path}", one, methods=["DELETE"]),
        ])


@pytest.fixture
def subscription_broker() -> Iterator[SubscriptionBroker]:
    stub = SubscriptionBroker()
    stub.url, server, thread = serve(stub.app())
    yield stub
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
