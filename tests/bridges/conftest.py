"""Bridge fixtures: simulated SunSpec homes (pymodbus servers from pysunspec2 models) on free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator

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
