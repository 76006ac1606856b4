"""`energytwin demo --homes 2` runs the fleet controller over the simulated homes' batteries."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from datamodels.context import context_for, link_header
from datamodels.validation import validate_entity
from energytwin.demo import DEMO_SITE, DemoOptions, start_demo
from energytwin.stack import StackConfig
from tests.polling import wait_until
from twin_service.mqtt_server import find_mosquitto, free_port


def _battery(broker_url: str, entity_id: str) -> dict | None:
    response = httpx.get(f"{broker_url}/ngsi-ld/v1/entities/{entity_id}",
                         headers={"NGSILD-Tenant": DEMO_SITE.service,
                                  "Link": link_header(context_for("BatteryStatus")[0])})
    body = response.json() if response.status_code == 200 else {}
    return body if "fleetMeanStatusPercent" in body and "statusPercent" in body else None


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed (the demo's ACL needs it)")
def test_demo_with_two_homes_steers_their_batteries_to_the_mean(tmp_path: Path) -> None:
    cfg = StackConfig(data_dir=tmp_path, mqtt_port=free_port(), broker_port=free_port(), agent_port=free_port(),
                      quality_port=0, web_port=0, access_port=0, mqtt_prefer="mosquitto", mqtt_auth=True)
    running = start_demo(DemoOptions(stack=cfg, meters=1, homes=2))
    try:
        fleet = running.part("fleet")
        assert any("fleet controller: every" in line for line in running.messages)
        controller = fleet.controller  # type: ignore[attr-defined]

        def both_live() -> dict | None:
            controller.wake()  # the next cycle now, not in 5 s
            health = controller.health()
            return health if health["live"] == 2 else None

        health = wait_until(both_live, 40, "both homes' batteries in the controller's mean")
        socs = [b["soc"] for b in health["batteries"].values()]
        # The demo's homes start at 30 % and 67 %: the mean is between, the lower one is told to charge.
        assert health["meanSoc"] == pytest.approx(sum(socs) / 2, abs=0.01)
        for entity_id in running.part("homes").battery_entity_ids:  # type: ignore[attr-defined]
            entity = wait_until(lambda eid=entity_id: _battery(cfg.broker_url, eid), 20, f"{entity_id} with the mean")
            assert 0 < entity["fleetMeanStatusPercent"]["value"] < 1
            assert entity["fleetControlState"]["value"].startswith("steered: SoC")
            validate_entity(entity)  # the controller's attributes keep the entity a valid SDM BatteryStatus
        # The fleet entity the page reads the mean from (core @context, by id).
        fleet_entity = httpx.get(f"{cfg.broker_url}/ngsi-ld/v1/entities/urn:ngsi-ld:BatteryFleet:fleet",
                                 headers={"NGSILD-Tenant": DEMO_SITE.service}).json()
        assert fleet_entity["type"] == "BatteryFleet" and fleet_entity["batteriesLive"]["value"] == 2
        assert 0 < fleet_entity["fleetMeanStatusPercent"]["value"] < 1
        low = min(health["batteries"].items(), key=lambda item: item[1]["soc"])[0]
        assert "below fleet mean" in _battery(cfg.broker_url, low)["fleetControlState"]["value"]
    finally:
        running.stop()
