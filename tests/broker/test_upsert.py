"""Batch upsert as the IoT Agent uses it: fragments in time order, 201 / 204 / 207, update vs replace."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from datamodels.context import CORE_CONTEXT, ENERGY_CONTEXT
from twin_service.broker import Store

from .conftest import BASE, ENERGY_LINK, MEASUREMENT_ID, assert_problem, measurement

UPSERT = f"{BASE}/entityOperations/upsert"
LD = {"Content-Type": "application/ld+json"}
PHASE_VOLTAGE = "https://smartdatamodels.org/dataModel.Energy/phaseVoltage"


def _fragment(voltage_v: float, observed_at: str) -> dict:
    """One measure as the IoT Agent sends it (ld+json, @context per entity, only the measured attributes)."""
    entity = measurement(voltage_v=voltage_v, observed_at=observed_at)
    del entity["refDevice"]
    return {**entity, "@context": [ENERGY_CONTEXT, CORE_CONTEXT]}


def test_offline_replay_applies_fragments_in_order_and_keeps_each_in_history(client: TestClient,
                                                                             data_dir: Path) -> None:
    times = ["2026-11-24T10:00:00.000Z", "2026-11-24T10:00:01.000Z", "2026-11-24T10:00:02.000Z"]
    fragments = [_fragment(230.0 + n, t) for n, t in enumerate(times)]
    # The agent's exact path: slash before the query string.
    answer = client.post(f"{UPSERT}/?options=update", json=fragments, headers={**LD, "NGSILD-Tenant": "site_a"})
    assert answer.status_code == 201, answer.text
    assert answer.json() == [MEASUREMENT_ID]

    got = client.get(f"{BASE}/entities/{MEASUREMENT_ID}", headers={**ENERGY_LINK, "NGSILD-Tenant": "site_a"})
    assert got.json()["phaseVoltage"]["value"] == {"L1": 232.0, "L2": 233.0, "L3": 231.0}
    assert got.json()["phaseVoltage"]["observedAt"] == times[-1]

    history = Store(data_dir).history("site_a", MEASUREMENT_ID, PHASE_VOLTAGE)
    assert [h.observed_at for h in history] == times
    assert [h.attribute["value"]["L1"] for h in history] == [230.0, 231.0, 232.0]
    assert [h.operation for h in history] == ["create", "update", "update"]


def test_201_only_for_created_ids_then_204_when_all_exist(client: TestClient) -> None:
    first = client.post(UPSERT, json=[measurement()], headers=ENERGY_LINK)
    assert first.status_code == 201 and first.json() == [MEASUREMENT_ID]
    second_id = "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-002"
    mixed = client.post(UPSERT, json=[measurement(), measurement(entity_id=second_id)], headers=ENERGY_LINK)
    assert mixed.status_code == 201 and mixed.json() == [second_id]
    again = client.post(UPSERT, params={"options": "update"}, json=[measurement(), measurement(entity_id=second_id)],
                        headers=ENERGY_LINK)
    assert again.status_code == 204 and again.content == b""


def test_207_reports_each_refused_entity_and_applies_the_others(client: TestClient) -> None:
    good = measurement()
    bad_id = measurement(entity_id="not a uri")
    bad_attr = measurement(entity_id="urn:ngsi-ld:ThreePhaseAcMeasurement:meter-003", frequency={"unitCode": "HTZ"})
    answer = client.post(UPSERT, json=[good, bad_id, bad_attr], headers=ENERGY_LINK)
    assert answer.status_code == 207, answer.text
    body = answer.json()
    assert body["success"] == [MEASUREMENT_ID]
    assert [e["entityId"] for e in body["errors"]] == ["not a uri", "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-003"]
    for error in body["errors"]:
        assert error["error"]["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    assert client.get(f"{BASE}/entities/{MEASUREMENT_ID}").status_code == 200


def test_ld_json_entity_without_context_is_refused_in_207(client: TestClient) -> None:
    # What the IoT Agent sends when IOTA_JSON_LD_CONTEXT is unset (docs/compatibility.md, docs/production.md).
    answer = client.post(UPSERT + "/?options=update", json=[measurement()], headers=LD)
    assert answer.status_code == 207
    assert answer.json()["errors"][0]["error"]["title"] == "@context missing"


def test_update_merges_and_replace_replaces(client: TestClient) -> None:
    client.post(UPSERT, json=[measurement()], headers=ENERGY_LINK).raise_for_status()
    url = f"{BASE}/entities/{MEASUREMENT_ID}"
    created_at = client.get(url, params={"options": "sysAttrs"}).json()["createdAt"]
    patch = {"id": MEASUREMENT_ID, "type": "ThreePhaseAcMeasurement",
             "frequency": {"type": "Property", "value": 49.9, "unitCode": "HTZ"}}

    assert client.post(UPSERT, params={"options": "update"}, json=[patch], headers=ENERGY_LINK).status_code == 204
    merged = client.get(url, headers=ENERGY_LINK).json()
    assert merged["frequency"]["value"] == 49.9 and "refDevice" in merged and "phaseVoltage" in merged

    assert client.post(UPSERT, params={"options": "replace"}, json=[patch], headers=ENERGY_LINK).status_code == 204
    replaced = client.get(url, params={"options": "sysAttrs"}, headers=ENERGY_LINK).json()
    assert set(replaced) == {"id", "type", "createdAt", "modifiedAt", "frequency"}
    assert replaced["createdAt"] == created_at

    other_type = {**patch, "type": "Device"}
    answer = client.post(UPSERT, params={"options": "update"}, json=[other_type], headers=ENERGY_LINK)
    assert answer.status_code == 207


def test_invalid_batches(client: TestClient) -> None:
    assert_problem(client.post(UPSERT, json=measurement(), headers=ENERGY_LINK), 400, "BadRequestData")
    assert_problem(client.post(UPSERT, json=[], headers=ENERGY_LINK), 400, "BadRequestData")
    assert_problem(client.post(UPSERT, params={"options": "merge"}, json=[measurement()]), 400, "BadRequestData")
    assert_problem(client.get(UPSERT), 405, "InvalidRequest")
