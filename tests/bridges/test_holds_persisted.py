"""Held commands survive a restart of the bridge: saved in the state file, written again once the device answers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bridges.sunspec.bridge import Bridge, BridgeThread
from bridges.sunspec.holds_store import load_holds
from bridges.sunspec.simulator import HomeConfig
from bridges.sunspec.site import parse_site
from tests.bridges.conftest import wait


def test_a_hold_is_restored_after_a_bridge_restart_and_a_broken_file_is_not_fatal(
        tmp_path: Path, sunspec_server, commander, mqtt_server) -> None:
    server = sunspec_server(HomeConfig())
    home = server.homes[0]
    state = tmp_path / "data" / "holds.json"
    site = parse_site(f"mqtt: {{host: {mqtt_server.host}, port: {mqtt_server.port}}}\napikey: key-p\n"
                      f"poll_interval_s: 0.2\nwatchdog: {{state_path: {state}}}\n"
                      f"devices:\n  - id: p1\n    port: {server.port}\n")
    running = BridgeThread(Bridge(site)).start()
    try:
        wait(lambda: running.bridge.workers_by_agent_id.get("p1-pv") and
             running.bridge.workers_by_agent_id.get("p1-battery"))
        time.sleep(0.3)  # the bridge's /cmd subscriptions are sent, not yet acknowledged (as test_watchdog)
        assert commander("key-p", "p1-battery", {"batteryPowerSetpoint": -1500})["batteryPowerSetpoint"]["ok"]
        assert commander("key-p", "p1-pv", {"pvPowerLimit": 30})["pvPowerLimit"]["ok"]
        assert load_holds(state) == {"p1": {"batteryPowerSetpoint": -1500.0, "pvPowerLimit": 30.0}}
        assert commander("key-p", "p1-pv", {"pvPowerLimit": None})["pvPowerLimit"]["ok"]
        assert load_holds(state) == {"p1": {"batteryPowerSetpoint": -1500.0}}
    finally:
        running.stop()
    home.models[124].points["StorCtl_Mod"].set_value(0)  # the device's timer fired while the bridge was down
    again = BridgeThread(Bridge(site)).start()
    try:
        wait(lambda: home.models[124].points["StorCtl_Mod"].value == 2)  # DISCHARGE again
        wait(lambda: home.battery_w == pytest.approx(-1500))
        assert again.bridge.total("holds_restored_total") == 1
        assert again.bridge.worker("p1").controls.holds["batteryPowerSetpoint"].value == -1500
    finally:
        again.stop()
    state.write_text(json.dumps({"version": 1, "devices": {"p1": {"batteryPowerSetpoint": "lots"}}}))
    assert load_holds(state) == {}  # logged, ignored: the bridge starts without holds
