"""Bridge fixtures: simulated SunSpec homes (pymodbus servers from pysunspec2 models) on free ports."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from bridges.sunspec.simulator import HomeConfig, RunningServer, SimulatedHome, start_in_thread


@pytest.fixture
def sunspec_server() -> Iterator[Callable[..., RunningServer]]:
    """Start simulators on demand: `sunspec_server(HomeConfig(...), ...)`; all stopped after the test."""
    running: list[RunningServer] = []

    def start(*configs: HomeConfig, framer=None, clock=None) -> RunningServer:
        homes = [SimulatedHome(config, **({"clock": clock} if clock else {})) for config in configs or (HomeConfig(),)]
        server = start_in_thread(homes, **({"framer": framer} if framer else {}))
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


def wait(predicate: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """Poll until `predicate()` is truthy; its value, or AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def commander(mqtt_server: Any) -> Iterator[Callable[..., dict[str, Any]]]:
    """Publish on /cmd as the agent would, and collect the bridge's /cmdexe answers."""
    answers: list[tuple[str, dict[str, Any]]] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"commander-{time.monotonic_ns()}")
    client.on_message = lambda c, u, m: answers.append((m.topic, json.loads(m.payload)))
    client.connect(mqtt_server.host, mqtt_server.port)
    client.subscribe("/+/+/cmdexe", qos=1)
    client.loop_start()
    time.sleep(0.2)

    def send(apikey: str, device_id: str, payload: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
        before = len(answers)
        client.publish(f"/{apikey}/{device_id}/cmd", json.dumps(payload), qos=1)
        topic = f"/{apikey}/{device_id}/cmdexe"
        return wait(lambda: next((a for t, a in answers[before:] if t == topic), None), timeout_s)

    yield send
    client.loop_stop()
    client.disconnect()




def write_until_reverted(running: Any, port: int, home: Any, model_id: int, point: str, raw: int,
                         timeout_s: float = 10.0) -> None:
    """Another Modbus client writes `point` until the bridge has reported a revert (or `timeout_s` passed).

    One write is not enough: a write landing between a poll's read and the watchdog's re-write in the same cycle
    is overwritten before any read can see it (harmless: the hold stands); on a loaded machine one did.
    """
    from bridges.sunspec.models import encode_point, point_offset
    from bridges.sunspec.transport import Endpoint, ModbusLink

    async def writes() -> None:
        link = ModbusLink(Endpoint(port=port))
        deadline = time.monotonic() + timeout_s
        while running.bridge.total("reverts_total") == 0 and time.monotonic() < deadline:
            await link.write(home.addresses[model_id] + point_offset(model_id, point),
                             encode_point(model_id, point, raw), 1)
            await asyncio.sleep(0.1)
        link.close()

    asyncio.run(writes())
