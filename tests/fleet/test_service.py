"""The live controller against the real embedded broker: subscription, query, PATCHed commands, failures."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from datamodels.context import CORE_CONTEXT
from fiware_client import NgsiLdClient
from fleet.service import FLEET_ENTITY_ID, RELEASE_VALUE, SUBSCRIPTION_IDS, ControllerConfig, FleetController
from tests.polling import wait_until
from twin_service.mqtt_server import free_port, wait_for_port

COMMAND = "batteryPowerSetpoint"


def start_broker(port: int, data_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--port", str(port), "--data-dir",
                             str(data_dir), "--log-level", "warning"])
    wait_for_port("127.0.0.1", port, timeout_s=20, proc=proc)
    return proc


@pytest.fixture(scope="module")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = start_broker(port, tmp_path_factory.mktemp("broker"))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def now_iso(offset_s: float = 0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_s))


def battery(home: str, soc: float, *, age_s: float = 0.0, max_w: float | None = 5000) -> dict:
    """A BatteryStatus as the agent writes it for the bridge, with the command attribute the agent provisions."""
    at = now_iso(-age_s)
    entity = {"id": f"urn:ngsi-ld:BatteryStatus:{home}", "type": "BatteryStatus",
              "statusPercent": {"type": "Property", "value": soc, "observedAt": at},
              "energyCapacity": {"type": "Property", "value": 10_000, "unitCode": "WHR", "observedAt": at},
              "refBattery": {"type": "Relationship", "object": f"urn:ngsi-ld:Device:{home}"},
              COMMAND: {"type": "Property", "value": 0}}
    if max_w is not None:
        entity["maxChargePower"] = {"type": "Property", "value": max_w, "unitCode": "WTT", "observedAt": at}
    return entity


def setpoint(client: NgsiLdClient, home: str) -> object:
    return client.get_entity(f"urn:ngsi-ld:BatteryStatus:{home}")[COMMAND]["value"]


def test_steers_through_the_twin_and_handles_silent_limitless_and_notified_batteries(broker_url: str):
    tenant = "fleet-live"
    with NgsiLdClient(broker_url, tenant=tenant) as client:
        client.upsert_entities([battery("low", 0.2), battery("high", 0.8), battery("silent", 1.0, age_s=600),
                                battery("nolimits", 0.5, max_w=None)])
        controller = FleetController(ControllerConfig(broker_url, tenant, period_s=0.5, stale_periods=4,
                                                      resync_periods=1000)).start()
        try:
            wait_until(lambda: setpoint(client, "low") == 1500 and setpoint(client, "high") == -1500, 10,
                       "the initial query's batteries commanded (0.5/h x 10 kWh x 0.3 = 1.5 kW each way)")
            assert setpoint(client, "silent") == 0 and setpoint(client, "nolimits") == 0  # never commanded
            health = controller.health()
            assert health["meanSoc"] == pytest.approx(0.5)
            assert "silent for" in health["batteries"]["urn:ngsi-ld:BatteryStatus:silent"]["excluded"]
            assert "no maxChargePower" in health["batteries"]["urn:ngsi-ld:BatteryStatus:nolimits"]["excluded"]
            low = client.get_entity("urn:ngsi-ld:BatteryStatus:low")
            assert low["fleetMeanStatusPercent"]["value"] == pytest.approx(0.5)
            assert low["fleetControlState"]["value"].startswith("steered: SoC 20.0% below fleet mean 50.0%")
            assert client.get_entity("urn:ngsi-ld:BatteryStatus:silent")["fleetControlState"]["value"].startswith(
                "excluded: silent for")
            # The fleet entity (core @context, read by id) carries the capacity-weighted mean for views.
            fleet = client.get_entity(FLEET_ENTITY_ID, context=CORE_CONTEXT)
            assert fleet["type"] == "BatteryFleet" and fleet["batteriesLive"]["value"] == 2
            assert fleet["fleetMeanStatusPercent"]["value"] == pytest.approx(0.5)
            assert fleet["fleetStatusPercentSpread"]["value"] == pytest.approx(0.6)
            assert fleet["fleetPowerSetpoint"]["value"] == 0 and fleet["energyCapacity"]["value"] == 20_000
            assert fleet["batteriesExcluded"]["value"] == 2
            assert "urn:ngsi-ld:BatteryStatus:silent: silent for" in fleet["excludedBatteries"]["value"]

            # A notification (no re-query: resync every 1000 periods) brings the silent battery back, full.
            client.upsert_entities([battery("silent", 1.0)], update=True)
            wait_until(lambda: setpoint(client, "silent") < 0, 10, "the returned full battery discharging")
            assert controller.metrics.notifications >= 1
            assert controller.health()["meanSoc"] == pytest.approx(2.0 / 3.0)

            metrics = httpx.get(f"http://127.0.0.1:{controller.port}/metrics").text
            assert "energytwin_fleet_batteries_left_mean_total 2" in metrics
            bad = httpx.post(f"http://127.0.0.1:{controller.port}/notify", content=b"{not json")
            assert bad.status_code == 400 and bad.json()["type"].endswith("BadRequestData")
            assert controller.metrics.notifications_invalid == 1
        finally:
            controller.stop()
        # A clean stop releases every commanded battery back to the inverter's own mode.
        assert setpoint(client, "low") == RELEASE_VALUE and setpoint(client, "nolimits") == 0
        subscriptions = {s["id"]: s for s in client.query_subscriptions()}
        assert set(SUBSCRIPTION_IDS.values()) <= set(subscriptions)

        # A restart reuses the same two subscriptions (its endpoint moved: replaced, not duplicated).
        again = FleetController(ControllerConfig(broker_url, tenant, period_s=0.5, stale_periods=100,
                                                 release_on_exit=False)).start()
        try:
            # mean (0.2 + 0.8 + 1.0) / 3: 0.5/h x 10 kWh x (2/3 - 0.2) = 2.333 kW
            wait_until(lambda: setpoint(client, "low") == 2333, 10, "the restarted controller commanding")
        finally:
            again.stop()
        after = client.query_subscriptions()
        assert len(after) == len(subscriptions)
        assert {s["notification"]["endpoint"]["uri"] for s in after if s["id"] in SUBSCRIPTION_IDS.values()} == {
            again.notify_url}


def test_a_command_the_entity_does_not_take_is_counted_not_fatal(broker_url: str):
    tenant = "fleet-nocommand"
    with NgsiLdClient(broker_url, tenant=tenant) as client:
        entities = [battery("a", 0.1), battery("b", 0.9)]
        for entity in entities:
            del entity[COMMAND]  # provisioned without the command: the broker answers 207 notUpdated
        client.upsert_entities(entities)
        controller = FleetController(ControllerConfig(broker_url, tenant, period_s=0.3, stale_periods=100, publish=False)).start()
        try:
            wait_until(lambda: controller.metrics.commands_refused >= 4, 10, "refused commands counted")
            assert controller.metrics.cycles >= 2 and controller.metrics.commands_sent == 0
        finally:
            controller.stop()


def test_broker_down_then_up_no_crash_and_steering_resumes(tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    controller = FleetController(ControllerConfig(url, "fleet-outage", period_s=0.3, stale_periods=100,
                                                  max_backoff_s=0.6)).start()
    try:
        wait_until(lambda: controller.metrics.cycles_skipped >= 2, 15, "cycles skipped while the broker is down")
        assert controller.health()["status"] == "broker-unreachable" and controller.metrics.commands_sent == 0
        proc = start_broker(port, tmp_path / "broker")
        try:
            with NgsiLdClient(url, tenant="fleet-outage") as client:
                client.upsert_entities([battery("a", 0.3), battery("b", 0.7)])
                wait_until(lambda: setpoint(client, "a") == 1000, 15, "commands once the broker is back")
            # the health flag follows the cycle that sent the commands: allow it that cycle
            wait_until(lambda: controller.health()["status"] == "ok", 5, "health ok once the broker is back")
            assert controller.subscribed
        finally:
            controller.stop()
            proc.terminate()
            proc.wait(10)
    finally:
        controller.stop()
