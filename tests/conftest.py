"""Shared fixtures: real services on free ephemeral ports and temporary data directories."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import pytest

from twin_service.mqtt_server import MqttServer, free_port, start_mqtt_server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip Docker-marked tests unless a Docker engine answers; run the benchmark smoke tests last (their scripts
    run in the background meanwhile, see `pytest_collection_finish`)."""
    if shutil.which("docker") is None or not _docker_engine_running():
        skip = pytest.mark.skip(reason="needs a running Docker engine (none here); see docs/production.md")
        for item in items:
            if "docker" in item.keywords:
                item.add_marker(skip)
    items.sort(key=lambda item: item.path.name == _BENCH_SMOKE)


_BENCH_SMOKE = "test_bench_smoke.py"


def _bench_smoke_module(session: pytest.Session) -> ModuleType | None:
    for item in getattr(session, "items", ()):
        if item.path.name == _BENCH_SMOKE and isinstance(item, pytest.Function):
            return item.module
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the `--quick` benchmark scripts as soon as the selected tests are known, so they use the core the
    other tests leave idle (tests/bench/test_bench_smoke.py says why and how)."""
    if session.config.option.collectonly:
        return
    module = _bench_smoke_module(session)
    if module is not None:
        module.start_in_background([item.callspec.params["script"] for item in session.items
                                    if item.path.name == _BENCH_SMOKE and hasattr(item, "callspec")])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A session stopped early (-x, Ctrl-C) leaves no benchmark running."""
    module = _bench_smoke_module(session)
    if module is not None:
        module.stop_background()


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
