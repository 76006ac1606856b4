"""Broker fixtures: the app in-process (Starlette TestClient, i.e. httpx) and on a real uvicorn server."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

with warnings.catch_warnings():
    # Starlette 1.x nudges TestClient users towards the httpx2 fork; httpx is what the project pins and uses.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from datamodels.context import ENERGY_CONTEXT, link_header
from twin_service.broker import create_app
from twin_service.mqtt_server import free_port

BASE = "/ngsi-ld/v1"
ENERGY_LINK = {"Link": link_header(ENERGY_CONTEXT)}
MEASUREMENT_ID = "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001"


def measurement(entity_id: str = MEASUREMENT_ID, voltage_v: float = 230.0,
                observed_at: str = "2026-11-24T10:00:00.000Z", **extra: Any) -> dict[str, Any]:
    """A normalized ThreePhaseAcMeasurement as the IoT Agent writes it (terms from the SDM Energy context)."""
    return {
        "id": entity_id,
        "type": "ThreePhaseAcMeasurement",
        "phaseVoltage": {"type": "Property", "value": {"L1": voltage_v, "L2": voltage_v + 1, "L3": voltage_v - 1},
                         "unitCode": "VLT", "observedAt": observed_at},
        "frequency": {"type": "Property", "value": 50.0, "unitCode": "HTZ", "observedAt": observed_at},
        "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:meter-001"},
        **extra,
    }


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def make_client(data_dir: Path) -> Iterator[Callable[[], TestClient]]:
    """Build clients on fresh apps over the same data directory (a new app = a broker restart)."""
    clients: list[TestClient] = []

    def make() -> TestClient:
        client = TestClient(create_app(data_dir), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[[], TestClient]) -> TestClient:
    return make_client()


@dataclass(frozen=True)
class LiveBroker:
    url: str
    data_dir: Path


@pytest.fixture
def live_broker(tmp_path: Path) -> Iterator[LiveBroker]:
    """The broker on a real uvicorn server on a free port, as `energytwin up` runs it."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(tmp_path / "live"), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start the broker")
        time.sleep(0.02)
    yield LiveBroker(f"http://127.0.0.1:{port}", tmp_path / "live")
    server.should_exit = True
    thread.join(timeout=10)


def assert_problem(response: Any, status: int, error_type: str) -> dict[str, Any]:
    """The response is NGSI-LD ProblemDetails of that type and status; returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["type"] == f"https://uri.etsi.org/ngsi-ld/errors/{error_type}", body
    assert isinstance(body["title"], str) and body["title"]
    return body


@dataclass
class Received:
    """One notification as a receiver got it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


class Receiver:
    """A local HTTP server standing in for a subscriber: records notifications, answers scripted statuses."""

    def __init__(self) -> None:
        import http.server
        import json

        self.received: list[Received] = []
        self.statuses: list[int] = []  # consumed one per request; 200 when empty
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver._lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                       body, time.monotonic()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout_s: float = 5.0, path: str | None = None) -> list[Received]:
        """The notifications received so far once there are at least `count` (on `path`), or fail."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                got = [r for r in self.received if path is None or r.path == path]
            if len(got) >= count or time.monotonic() > deadline:
                assert len(got) >= count, f"expected {count} notifications, got {len(got)}: {got}"
                return got
            time.sleep(0.01)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()
