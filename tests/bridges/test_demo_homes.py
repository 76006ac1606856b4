"""`energytwin demo --homes 2`: the simulated homes reach the twin through the bridge, with per-device MQTT logins."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from datamodels.context import context_for, link_header
from datamodels.validation import validate_entity
from energytwin.demo import DEMO_SITE, DemoOptions, start_demo
from energytwin.stack import StackConfig
from tests.bridges.conftest import wait
from twin_service.mqtt_server import find_mosquitto, free_port


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed (the ACL needs it or amqtt's plugin)")
def test_demo_homes_reach_the_twin(tmp_path: Path) -> None:
    cfg = StackConfig(data_dir=tmp_path, mqtt_port=free_port(), broker_port=free_port(), agent_port=free_port(),
                      quality_port=0, web_port=0, access_port=0, mqtt_prefer="mosquitto", mqtt_auth=True)
    running = start_demo(DemoOptions(stack=cfg, meters=1, homes=2))
    try:
        homes = running.part("homes")
        assert homes.battery_entity_ids == ["urn:ngsi-ld:BatteryStatus:home-001",
                                            "urn:ngsi-ld:BatteryStatus:home-002"]
        assert homes.wait_for_batteries(cfg.broker_url, DEMO_SITE.service, timeout_s=30)
        for entity_id in homes.pv_entity_ids + homes.battery_entity_ids:
            entity_type = entity_id.split(":")[2]
            got = wait(lambda eid=entity_id, et=entity_type: _get(cfg.broker_url, eid, et))
            validate_entity(got)
        assert homes.site_path is not None and "home-002" in homes.site_path.read_text()
        assert any("energytwin inverter scan" in line for line in running.messages)
    finally:
        running.stop()


def _get(broker_url: str, entity_id: str, entity_type: str) -> dict | None:
    response = httpx.get(f"{broker_url}/ngsi-ld/v1/entities/{entity_id}",
                         headers={"NGSILD-Tenant": DEMO_SITE.service, "Link": link_header(context_for(entity_type)[0])})
    if response.status_code != 200:
        return None
    body = response.json()
    return body if "temperature" in body or "statusPercent" in body else None
