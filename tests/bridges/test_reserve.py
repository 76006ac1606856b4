"""A single-client inverter: the bridge holds its only connection and re-serves the registers read-only."""

from __future__ import annotations

import asyncio

import pytest

from bridges.sunspec.bridge import Bridge, BridgeThread
from bridges.sunspec.commands import scan_device
from bridges.sunspec.simulator import HomeConfig, free_port
from bridges.sunspec.site import parse_site
from bridges.sunspec.transport import Endpoint, ModbusFault, ModbusLink
from tests.bridges.conftest import wait


def test_other_readers_read_the_mirror_while_the_inverter_takes_one_client(sunspec_server, mqtt_server) -> None:
    server = sunspec_server(HomeConfig(unit_id=4, single_client=True, soc_pct=66.0))
    mirror_port = free_port()
    site = parse_site(f"mqtt: {{host: {mqtt_server.host}, port: {mqtt_server.port}}}\napikey: key-r\n"
                      f"poll_interval_s: 0.2\ndevices:\n  - id: solo\n    port: {server.port}\n    unit: 4\n"
                      f"    reserve_port: {mirror_port}\n")
    running = BridgeThread(Bridge(site)).start()
    try:
        worker = running.bridge.worker("solo")
        wait(lambda: worker.state == "ok" and worker.mirror is not None and worker.mirror.reads == 0
             and worker.mirror._image is not None)
        with pytest.raises(ModbusFault):  # the inverter itself drops a second client
            asyncio.run(scan_device(Endpoint(port=server.port, timeout_s=0.5), 4))
        mirrored = asyncio.run(scan_device(Endpoint(port=mirror_port, timeout_s=2), 4))
        assert [m["id"] for m in mirrored["models"]] == [1, 101, 120, 121, 123, 124, 802]
        assert mirrored["values"]["BatteryStatus"]["statusPercent"] == pytest.approx(0.66, abs=0.01)
        assert worker.state == "ok"  # the bridge's own connection was never disturbed

        async def write() -> str:
            link = ModbusLink(Endpoint(port=mirror_port))
            try:
                await link.write(40000 + 200, [1], 4)
            except ModbusFault as fault:
                return fault.kind
            finally:
                link.close()
            return "accepted"

        assert asyncio.run(write()) == "exception-1"
    finally:
        running.stop()
