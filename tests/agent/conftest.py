"""Agent test fixtures: a recording stand-in for the NGSI-LD broker, a running agent, an MQTT publisher."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.agent.support import RecordedRequest, RecordingBroker, make_agent
from twin_service.agent import Agent
from twin_service.mqtt_server import free_port


@pytest.fixture
def recording_broker() -> Iterator[RecordingBroker]:
    port = free_port()
    recorder = RecordingBroker(url=f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if recorder.delay_s:
                time.sleep(recorder.delay_s)
            if recorder.status >= 500:  # a failing broker: answer without recording, as if nothing was stored
                self.send_response(recorder.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            recorder.requests.append(
                RecordedRequest(
                    "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw)
                )
            )
            body = json.dumps(recorder.answer).encode() if recorder.answer else b""
            self.send_response(recorder.status)
            if body:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield recorder
    server.shutdown()
    server.server_close()


@pytest.fixture
def agent(tmp_path: Path, mqtt_server: Any, recording_broker: RecordingBroker) -> Iterator[Agent]:
    running = make_agent(tmp_path / "var", mqtt_server.host, mqtt_server.port, recording_broker.url)
    yield running
    running.stop()


@pytest.fixture
def north(agent: Agent) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=agent.north_url, timeout=10) as client:
        yield client


@pytest.fixture
def publish(mqtt_server: Any) -> Iterator[Callable[[str, bytes | str], None]]:
    """Publish at QoS 1 and wait for the broker's PUBACK, like the meter firmware."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-meter-{free_port()}")
    client.connect(mqtt_server.host, mqtt_server.port)
    client.loop_start()

    def send(topic: str, payload: bytes | str) -> None:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=5)
        assert info.is_published()

    yield send
    client.disconnect()
    client.loop_stop()
