"""The watchdog against the simulated inverter's revert timer, with time running 120 times faster."""

from __future__ import annotations

import time

import pytest

from bridges.sunspec.bridge import Bridge, BridgeThread
from bridges.sunspec.simulator import HomeConfig
from bridges.sunspec.site import parse_site
from tests.bridges.conftest import wait, write_until_reverted

SPEED = 120.0


def fast_clock():
    start = time.time()
    return lambda: start + (time.time() - start) * SPEED


def test_a_held_setpoint_survives_the_device_revert_timer_and_an_unpreventable_revert_is_reported(
        sunspec_server, commander, mqtt_server) -> None:
    clock = fast_clock()
    server = sunspec_server(HomeConfig(revert_s=60), clock=clock)  # the device reverts after 60 s (0.5 s real)
    home = server.homes[0]
    site = parse_site(f"mqtt: {{host: {mqtt_server.host}, port: {mqtt_server.port}}}\napikey: key-w\n"
                      f"poll_interval_s: 0.2\nwatchdog: {{margin: 0.5, minimum_s: 1}}\n"
                      f"devices:\n  - id: w1\n    port: {server.port}\n")
    running = BridgeThread(Bridge(site, clock=clock, speed=SPEED)).start()
    try:
        wait(lambda: running.bridge.workers_by_agent_id.get("w1-battery"))
        time.sleep(0.3)
        assert commander("key-w", "w1-battery", {"batteryPowerSetpoint": 1500})["batteryPowerSetpoint"]["ok"]
        held_from = clock()
        while clock() - held_from < 8 * 60:  # 8 revert periods of the device
            assert home.battery_w == pytest.approx(1500), "the hold was lost"
            time.sleep(0.05)
        worker = running.bridge.worker("w1")
        assert home.reverts == 0 and worker.controls.reasserts >= 8
        assert running.bridge.total("reverts_total") == 0

        # Someone else puts the battery back to auto: a revert the watchdog could not prevent.
        write_until_reverted(running, server.port, home, 124, "StorCtl_Mod", 0)
        assert running.bridge.total("reverts_total") >= 1, "no revert reported in 10 s of writes"
        wait(lambda: home.battery_w == pytest.approx(1500))  # re-asserted
        assert worker.controls.last_revert == "batteryPowerSetpoint"
        payloads = []
        for topic, items in running.bridge.uplink.buffer.take(10_000):
            payloads.extend(items)
        assert not payloads  # MQTT was up all along: nothing waited in the offline buffer
    finally:
        running.stop()
