"""Modbus RTU on a serial line: pymodbus' serial server and client on two ptys joined like a null-modem cable."""

from __future__ import annotations

import asyncio
import os
import select
import threading
import time
import tty
from collections.abc import Iterator

import pytest
from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer

from bridges.sunspec.controls import DeviceControls
from bridges.sunspec.discovery import discover
from bridges.sunspec.reader import decode, read_models
from bridges.sunspec.simulator import HomeConfig, SimulatedHome, _KnownUnitsOnly
from bridges.sunspec.transport import Endpoint, ModbusFault, ModbusLink
from datamodels.der import BATTERY_TYPE


@pytest.fixture
def serial_line() -> Iterator[tuple[str, SimulatedHome]]:
    """(client tty path, the simulated home answering as unit 5 on the other end)."""
    ends = []
    for _ in range(2):
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        ends.append((master, slave, os.ttyname(slave)))
    stop = threading.Event()

    def null_modem() -> None:
        a, b = ends[0][0], ends[1][0]
        while not stop.is_set():
            ready, _, _ = select.select([a, b], [], [], 0.05)
            for fd in ready:
                try:
                    os.write(b if fd == a else a, os.read(fd, 4096))
                except OSError:
                    return

    home = SimulatedHome(HomeConfig(unit_id=5))
    loop = asyncio.new_event_loop()
    holder: dict = {}

    async def start() -> None:
        server = ModbusSerialServer([home.sim_device()], framer=FramerType.RTU, port=ends[0][2], baudrate=19200,
                                    ignore_missing_devices=True)
        server.context = _KnownUnitsOnly(server.context)
        await server.serve_forever(background=True)
        holder["server"] = server

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    threading.Thread(target=null_modem, daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    deadline = time.monotonic() + 5
    while "server" not in holder and time.monotonic() < deadline:
        time.sleep(0.02)
    yield ends[1][2], home
    asyncio.run_coroutine_threadsafe(holder["server"].shutdown(), loop).result(timeout=5)
    loop.call_soon_threadsafe(loop.stop)
    stop.set()
    for master, slave, _ in ends:
        os.close(master)
        os.close(slave)


def test_rtu_discovery_reading_and_a_verified_write(serial_line) -> None:
    path, home = serial_line

    async def session() -> tuple:
        link = ModbusLink(Endpoint("rtu", serial_port=path, baudrate=19200, timeout_s=0.5))
        try:
            device_map = await discover(link, 5)
            decoded = decode(device_map, await read_models(link, device_map))
            controls = DeviceControls("serial", link, time.time)
            controls.device_map = device_map
            result = await controls.execute("batteryPowerSetpoint", 2500)
            try:
                await discover(link, 6)  # nobody has unit 6 on this line
                silent = False
            except ModbusFault as fault:
                silent = fault.kind == "no-response"
            return device_map, decoded, result, silent
        finally:
            link.close()

    device_map, decoded, result, silent = asyncio.run(session())
    assert [m.model_id for m in device_map.models] == [1, 101, 120, 121, 123, 124, 802]
    assert decoded.values[BATTERY_TYPE]["statusPercent"] == pytest.approx(0.5, abs=0.01)
    assert result == {"ok": True, "written": 2500.0, "readBack": 2500.0, "unitCode": "WTT"}
    assert home.writes == 2 and silent
