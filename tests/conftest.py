"""Shared fixtures: real services on free ephemeral ports and temporary data directories."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from twin_service.mqtt_server import MqttServer, free_port, start_mqtt_server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip Docker-marked tests unless a Docker engine answers."""
    if shutil.which("docker") is None or not _docker_engine_running():
        skip = pytest.mark.skip(reason="needs a running Docker engine (none here); see docs/production.md")
        for item in items:
            if "docker" in item.keywords:
                item.add_marker(skip)


def _docker_engine_running() -> bool:
    import subprocess

    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass(frozen=True)
class MqttEndpoint:
    host: str
    port: int
    kind: str


@pytest.fixture(scope="session")
def mqtt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MqttEndpoint]:
    """A real MQTT broker (Mosquitto when installed, else amqtt) on a free port, shared by the session."""
    workdir = tmp_path_factory.mktemp("mqtt")
    server: MqttServer = start_mqtt_server(workdir, port=free_port())
    yield MqttEndpoint(server.host, server.port, server.kind)
    server.stop()
