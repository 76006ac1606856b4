"""The whole stack, steered: simulated SunSpec batteries -> bridge -> MQTT -> IoT Agent -> broker -> fleet
controller -> batteryPowerSetpoint (NGSI-LD PATCH) -> broker -> agent -> MQTT /cmd -> bridge -> Modbus write.

Every part is the real one on sockets (pymodbus SunSpec simulators, Mosquitto or amqtt, the embedded agent and
broker, the bridge, the controller). The simulated batteries run on a clock SPEED times faster than the wall
(their SoC integrates power over that clock), so the SoCs move tens of points in seconds; the bridge, the agent
and the controller run in real time. Every command that reaches a device is read off the MQTT broker itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import uvicorn

from bridges.sunspec.bridge import Bridge, BridgeThread
from bridges.sunspec.simulator import HomeConfig, SimulatedHome, scaled, start_in_thread
from bridges.sunspec.site import parse_site
from fiware_client import NgsiLdClient, NonexistentTenant
from fleet.service import ControllerConfig, FleetController
from tests.agent.support import make_agent
from tests.polling import wait_until
from twin_service.mqtt_server import free_port

broker_app = pytest.importorskip("twin_service.broker")

SPEED = 1200.0  # simulated seconds per wall second
APIKEY = "fleet-key"
SILENT = "urn:ngsi-ld:BatteryStatus:home-s"
LIMITED = "urn:ngsi-ld:BatteryStatus:home-a"


class FastClock:
    def __init__(self) -> None:
        self.start = time.time()

    def __call__(self) -> float:
        return self.start + (time.time() - self.start) * SPEED


@pytest.fixture
def twin(tmp_path: Path, mqtt_server: Any) -> Iterator[dict[str, Any]]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(broker_app.create_app(tmp_path / "broker"), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, "the broker")
    broker_url = f"http://127.0.0.1:{port}"
    agent = make_agent(tmp_path / "agent", mqtt_server.host, mqtt_server.port, broker_url)
    yield {"broker": broker_url, "agent": agent.north_url, "mqtt": mqtt_server}
    agent.stop()
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture
def commands_on_the_wire(mqtt_server: Any) -> Iterator[list[tuple[float, str, Any]]]:
    """Every `/<apikey>/<device>/cmd` the agent publishes: (wall time, device id, batteryPowerSetpoint value)."""
    seen: list[tuple[float, str, Any]] = []

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        payload = json.loads(message.payload)
        if "batteryPowerSetpoint" in payload:
            seen.append((time.time(), message.topic.split("/")[2], payload["batteryPowerSetpoint"]))

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fleet-wiretap-{time.monotonic_ns()}")
    client.on_message = on_message
    client.connect(mqtt_server.host, mqtt_server.port)
    client.subscribe(f"/{APIKEY}/+/cmd", qos=1)
    client.loop_start()
    yield seen
    client.loop_stop()
    client.disconnect()


def site_yaml(twin: dict[str, Any], devices: list[tuple[str, int, int]]) -> str:
    lines = [f"mqtt: {{host: {twin['mqtt'].host}, port: {twin['mqtt'].port}}}",
             f"agent: {{url: {twin['agent']}, service: energytwin}}", f"broker: {{url: {twin['broker']}}}",
             f"apikey: {APIKEY}", "poll_interval_s: 0.25", "devices:"]
    for device_id, port, unit in devices:
        lines += [f"  - id: {device_id}", f"    port: {port}", f"    unit: {unit}", "    timeout_s: 0.5"]
    return "\n".join(lines)


def soc(home: SimulatedHome) -> float:
    """The simulated battery's own state of charge, fraction 0..1 (the ground truth, not the twin's copy)."""
    return float(scaled(home.models[802], "SoC")) / 100.0


def weighted_mean(homes: list[SimulatedHome]) -> float:
    capacity = sum(home.config.battery_wh for home in homes)
    return sum(home.config.battery_wh * soc(home) for home in homes) / capacity


def spread(homes: list[SimulatedHome]) -> float:
    socs = [soc(home) for home in homes]
    return max(socs) - min(socs)


@pytest.mark.slow
def test_controller_steers_simulated_batteries_through_the_whole_stack(
        twin: dict[str, Any], commands_on_the_wire: list[tuple[float, str, Any]]) -> None:
    clock = FastClock()
    # Solar noon 12 h from now: the homes sit in the night for the whole test (a few simulated hours), so what
    # moves their SoC is the controller's setpoints only (without one, a battery covers its 500 W house load).
    night = {"solar_noon_utc_h": (clock() % 86400) / 3600.0 + 12.0, "revert_s": 60_000}
    a = HomeConfig(unit_id=1, soc_pct=20.0, battery_wh=5000, battery_max_w=1500, serial="FLEETA", **night)
    b = HomeConfig(unit_id=2, soc_pct=85.0, battery_wh=10000, battery_max_w=5000, serial="FLEETB", **night)
    c = HomeConfig(unit_id=3, soc_pct=40.0, battery_wh=7500, battery_max_w=3750, serial="FLEETC", **night)
    steered = [SimulatedHome(config, clock=clock) for config in (a, b, c)]
    silent = SimulatedHome(HomeConfig(unit_id=1, soc_pct=95.0, battery_wh=10000, serial="FLEETS", **night),
                           clock=clock)
    limits_w = {"home-a": 1500, "home-b": 5000, "home-c": 3750, "home-s": 5000}
    main_server, silent_server = start_in_thread(steered), start_in_thread(silent)
    # The silent home has its own bridge, so stopping that bridge silences it in the twin (no reading, no
    # deviceState: its entity keeps its last SoC, only getting older), while the others keep reporting.
    bridge = BridgeThread(Bridge(parse_site(site_yaml(twin, [
        ("home-a", main_server.port, 1), ("home-b", main_server.port, 2), ("home-c", main_server.port, 3)])))).start()
    silent_bridge = BridgeThread(Bridge(parse_site(site_yaml(twin, [("home-s", silent_server.port, 1)])))).start()
    controller = None
    try:
        with NgsiLdClient(twin["broker"], tenant="energytwin") as client:
            def commandable() -> int:
                try:  # a battery takes the command once its agent put the command attribute on its entity
                    return len(client.query_entities(type="BatteryStatus", attrs=["batteryPowerSetpoint"]))
                except NonexistentTenant:  # before the first entity
                    return 0

            wait_until(lambda: commandable() == 4, 20, "four commandable batteries in the twin")
        start_spread, start_mean = spread(steered), weighted_mean(steered)
        start_fleet_mean = weighted_mean([*steered, silent])
        controller = FleetController(ControllerConfig(twin["broker"], "energytwin", period_s=0.5, stale_periods=4,
                                                      gain_per_h=2.0, deadband=0.01)).start()
        wait_until(lambda: controller.health()["live"] == 4, 10, "four batteries in the mean")
        # The full battery pulls the fleet's mean up: (5*20 + 10*85 + 7.5*40 + 10*95) / 32.5 ≈ 67 %.
        assert controller.health()["meanSoc"] > weighted_mean(steered) + 0.1
        wait_until(lambda: any(device.startswith("home-s") for _, device, _ in commands_on_the_wire), 5,
                   "a command reaching the full battery")

        silent_bridge.stop()
        silenced_at = time.time()
        wait_until(lambda: SILENT in (controller.last_cycle.excluded if controller.last_cycle else {}), 10,
                   "the silent battery leaving the mean")
        left_at = time.time()
        reason = controller.last_cycle.excluded[SILENT]
        assert reason.startswith("silent for"), reason
        # It left after stale_periods * period_s of silence (2 s), not before, and not much later.
        assert 1.5 <= left_at - silenced_at <= 6.0
        assert controller.health()["batteries"][SILENT]["excluded"] == reason

        # Converging toward the mean of the live batteries: the low ones charge, the high one discharges.
        wait_until(lambda: spread(steered) < 0.05, 20, "the SoC spread below 5 points")
        assert spread(steered) < start_spread / 10
        mean_now = weighted_mean(steered)
        assert controller.health()["meanSoc"] == pytest.approx(mean_now, abs=0.03)
        # While the full battery was in the mean it fed the others (their mean rose from ~55 % toward the fleet's
        # ~67 %); balancing itself never changes the total of the batteries in the mean: each cycle's setpoints
        # add up to zero (to the watt each is rounded by).
        assert mean_now > start_mean + 0.02 and start_fleet_mean > start_mean + 0.1
        assert abs(sum(command.power_w for command in controller.last_cycle.commands)) <= 3

        # The silent battery got no command once it left the mean (the agent published none for it).
        late = [value for at, device, value in commands_on_the_wire
                if device.startswith("home-s") and at > left_at + 0.5]
        assert late == []
        # Limits held: every setpoint that reached a device was whole watts inside its battery's rating, and
        # the limited battery was driven at its limit while far below the mean (it asked more than 1.5 kW).
        values = [(device.removesuffix("-battery"), value) for _, device, value in commands_on_the_wire]
        assert values and all(isinstance(v, int) for _, v in values), values[:5]
        for home, value in values:
            assert -limits_w[home] <= value <= limits_w[home], (home, value)
        assert max(v for d, v in values if d.startswith("home-a")) == 1500
        assert any(v < 0 for d, v in values if d.startswith("home-b"))
        # Every command went through: the twin took every PATCH, the bridge wrote and verified every setpoint.
        assert controller.metrics.commands_refused == 0
        assert controller.metrics.command_results_failed == 0
        assert bridge.bridge.total("commands_failed_total") == 0
        assert bridge.bridge.total("commands_total") > 0
        assert controller.health()["batteries"][LIMITED]["commandStatus"] in ("OK", "PENDING")

        # The silent battery's gateway comes back: its next reading brings it back into the mean, and commands.
        silent_bridge = BridgeThread(Bridge(parse_site(site_yaml(twin, [("home-s", silent_server.port, 1)])))).start()
        wait_until(lambda: controller.health()["live"] == 4, 10, "the silent battery rejoining the mean")
        rejoined_at = time.time()
        wait_until(lambda: any(device == "home-s-battery" and at > rejoined_at
                               for at, device, _ in commands_on_the_wire), 5, "a command for the rejoined battery")
        assert controller.metrics.batteries_left_mean == 1
    finally:
        if controller is not None:
            controller.stop()
        bridge.stop()
        silent_bridge.stop()  # a second stop does nothing
        main_server.stop()
        silent_server.stop()
