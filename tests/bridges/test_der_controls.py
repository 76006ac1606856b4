"""The production cap on a device with only the IEEE 1547 DER models: written through 704, kept by the watchdog."""

from __future__ import annotations

import asyncio
import time

import pytest

from bridges.sunspec.bridge import Bridge, BridgeThread
from bridges.sunspec.discovery import discover
from bridges.sunspec.models import encode_point, point_offset
from bridges.sunspec.reader import decode, read_models
from bridges.sunspec.simulator import HomeConfig
from bridges.sunspec.site import parse_site
from bridges.sunspec.transport import Endpoint, ModbusLink
from datamodels.der import PV_TYPE
from tests.bridges.conftest import wait, write_until_reverted

SPEED = 120.0


async def _decoded(port: int) -> dict:
    link = ModbusLink(Endpoint(port=port))
    try:
        device_map = await discover(link, 1)
        return decode(device_map, await read_models(link, device_map)).values
    finally:
        link.close()


def test_pv_limit_goes_to_704_is_read_back_held_against_its_timer_and_a_battery_setpoint_is_refused(
        sunspec_server, commander, mqtt_server) -> None:
    start = time.time()
    clock = lambda: start + (time.time() - start) * SPEED
    server = sunspec_server(HomeConfig(flavour="der", revert_s=60, solar_noon_utc_h=(start % 86400) / 3600),
                            clock=clock)
    home = server.homes[0]
    site = parse_site(f"mqtt: {{host: {mqtt_server.host}, port: {mqtt_server.port}}}\napikey: key-d\n"
                      f"poll_interval_s: 0.2\nwatchdog: {{margin: 0.5, minimum_s: 1}}\n"
                      f"devices:\n  - id: d1\n    port: {server.port}\n")
    running = BridgeThread(Bridge(site, clock=clock, speed=SPEED)).start()
    try:
        wait(lambda: running.bridge.workers_by_agent_id.get("d1-pv"))
        time.sleep(0.3)
        result = commander("key-d", "d1-pv", {"pvPowerLimit": 40})["pvPowerLimit"]
        assert result["ok"] and result["readBack"] == 40 and result["unitCode"] == "P1"
        controls = home.models[704]
        assert controls.points["WMaxLimPctEna"].value == 1 and controls.points["WMaxLimPct"].value == 40
        assert home.models[123].points["WMaxLim_Ena"].value == 0  # 123 is not served: untouched
        wait(lambda: home.pv_w <= 0.4 * home.config.pv_rated_w + 1)
        worker = running.bridge.worker("d1")
        assert asyncio.run(_decoded(server.port))[PV_TYPE]["pvPowerLimitActive"] == 40  # what a poll publishes

        held_from = clock()
        while clock() - held_from < 3 * 60:  # 3 periods of the device's 704 reversion timer
            assert controls.points["WMaxLimPctEna"].value == 1, "the 704 cap reverted"
            time.sleep(0.05)
        assert home.reverts == 0 and worker.controls.reasserts >= 3

        export = commander("key-d", "d1-pv", {"exportLimit": 1000})["exportLimit"]  # 1000 W of 4000 W: 25 %
        assert export["ok"] and controls.points["WMaxLimPct"].value == 25 and export["readBack"] == 1000

        battery = commander("key-d", "d1-battery", {"batteryPowerSetpoint": 500})["batteryPowerSetpoint"]
        assert not battery["ok"] and "124" in battery["error"]

        # Another client disables the cap: reported as a revert and re-asserted through 704.
        write_until_reverted(running, server.port, home, 704, "WMaxLimPctEna", 0)
        assert running.bridge.total("reverts_total") >= 1
        wait(lambda: controls.points["WMaxLimPctEna"].value == 1)
        assert worker.controls.last_revert in ("pvPowerLimit", "exportLimit")
    finally:
        running.stop()


def test_the_device_704_timer_reverts_to_its_reversion_values_without_a_watchdog(sunspec_server) -> None:
    now = [1_000_000.0]
    server = sunspec_server(HomeConfig(flavour="der", revert_s=60), clock=lambda: now[0])
    home = server.homes[0]
    base = home.addresses[704]
    assert home.write(base + point_offset(704, "WMaxLimPct"), encode_point(704, "WMaxLimPct", 30)) is None
    assert home.write(base + point_offset(704, "WMaxLimPctEna"), encode_point(704, "WMaxLimPctEna", 1)) is None
    now[0] += 20
    home.refresh()
    assert home.cap_pct() == pytest.approx(30)
    assert home.models[704].points["WMaxLimPctRvrtRem"].value == 40
    now[0] += 41
    home.refresh()
    assert home.cap_pct() == 100 and home.reverts == 1
    assert home.models[704].points["WMaxLimPctEna"].value == 0  # WMaxLimPctEnaRvrt
