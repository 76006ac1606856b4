"""iot_agent_config/ configures the production IoT Agent JSON with the measure table's mapping, nothing else."""

from __future__ import annotations

import json
import re
from pathlib import Path

from datamodels.context import context_for
from datamodels.measures import MEASUREMENT_TYPE, MEASURES
from provisioning.agent_bodies import DEFAULT_RESOURCE
from provisioning.agent_config_file import render

CONFIG = Path(__file__).resolve().parents[2] / "iot_agent_config"


def _env() -> dict[str, str]:
    pairs = {}
    for line in (CONFIG / "iotagent.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def test_committed_service_group_is_the_generated_one() -> None:
    assert (CONFIG / "service-group.json").read_text() == render(), "run: python -m provisioning.agent_config_file"


def test_service_group_maps_every_measure_of_the_table_with_its_unit() -> None:
    [group] = json.loads((CONFIG / "service-group.json").read_text())["services"]
    assert group["resource"] == DEFAULT_RESOURCE and group["entity_type"] == MEASUREMENT_TYPE
    assert group["timestamp"] is True and group["autoprovision"] is False
    mapped = {a["object_id"]: a for a in group["attributes"]}
    assert set(mapped) == {m.object_id for m in MEASURES}
    for measure in MEASURES:
        entry = mapped[measure.object_id]
        assert entry["name"] == measure.attribute
        unit = entry.get("metadata", {}).get("unitCode", {}).get("value")
        assert unit == measure.unit_code, measure.object_id


def test_env_file_selects_ngsi_ld_with_the_projects_context_and_the_same_ports() -> None:
    env = _env()
    assert env["IOTA_CB_NGSI_VERSION"] == "ld"
    assert env["IOTA_JSON_LD_CONTEXT"] in context_for(MEASUREMENT_TYPE)
    assert env["IOTA_DEFAULT_RESOURCE"] == DEFAULT_RESOURCE
    assert env["IOTA_TIMESTAMP"] == "true" and env["IOTA_NORTH_PORT"] == "4041"
    assert env["IOTA_MQTT_PORT"] == "1883"


def test_config_js_agrees_with_the_env_file() -> None:
    js = (CONFIG / "config.js").read_text()
    env = _env()
    assert f"jsonLdContext: '{env['IOTA_JSON_LD_CONTEXT']}'" in js
    assert f"defaultResource: '{env['IOTA_DEFAULT_RESOURCE']}'" in js
    assert "ngsiVersion: 'ld'" in js and "timestamp: true" in js
    assert re.search(r"server:\s*{\s*port:\s*4041", js)
    assert js.count("{") == js.count("}")


def test_the_embedded_agent_accepts_the_production_group_body(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from twin_service.agent.metrics import Metrics
    from twin_service.agent.north import create_north_app
    from twin_service.agent.registry import Registry

    registry = Registry(tmp_path / "r.sqlite")
    api = TestClient(create_north_app(registry, Metrics(), 4041))
    headers = {"fiware-service": "energytwin", "fiware-servicepath": "/"}
    response = api.post("/iot/services", content=(CONFIG / "service-group.json").read_bytes(),
                        headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    registry.close()
