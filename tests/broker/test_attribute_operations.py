"""Append, update, partial update, attribute delete, merge-patch, replace, batch create/update/delete."""

from __future__ import annotations

from starlette.testclient import TestClient

from .conftest import BASE, ENERGY_LINK, MEASUREMENT_ID, assert_problem, measurement

ENTITY = f"{BASE}/entities/{MEASUREMENT_ID}"
ATTRS = f"{ENTITY}/attrs"
OPS = f"{BASE}/entityOperations"
CURRENT = {"type": "Property", "value": {"L1": 5.0, "L2": 5.1, "L3": 4.9}, "unitCode": "AMP"}


def _get(client: TestClient) -> dict:
    answer = client.get(ENTITY, headers=ENERGY_LINK, params={"options": "sysAttrs"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_append_adds_and_overwrites_unless_no_overwrite(client: TestClient) -> None:
    client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    created_at = _get(client)["frequency"]["createdAt"]
    answer = client.post(ATTRS, json={"phaseCurrent": CURRENT, "frequency": {"type": "Property", "value": 49.9}},
                         headers=ENERGY_LINK)
    assert answer.status_code == 204, answer.text
    body = _get(client)
    assert body["phaseCurrent"]["value"]["L2"] == 5.1 and body["frequency"]["value"] == 49.9
    assert body["frequency"]["createdAt"] == created_at  # overwritten, not recreated
    kept = client.post(ATTRS, params={"options": "noOverwrite"}, headers=ENERGY_LINK,
                       json={"frequency": {"type": "Property", "value": 1.0}, "powerFactor": {
                           "type": "Property", "value": 0.98}})
    assert kept.status_code == 207
    assert kept.json() == {"updated": ["powerFactor"],
                           "notUpdated": [{"attributeName": "frequency",
                                           "reason": "attribute exists and options=noOverwrite"}]}
    assert _get(client)["frequency"]["value"] == 49.9
    assert_problem(client.post(f"{BASE}/entities/urn:x:nobody/attrs", json={"a": {"type": "Property", "value": 1}}),
                   404, "ResourceNotFound")


def test_update_changes_existing_attributes_only(client: TestClient) -> None:
    client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    answer = client.patch(ATTRS, json={"frequency": {"type": "Property", "value": 50.1}}, headers=ENERGY_LINK)
    assert answer.status_code == 204
    mixed = client.patch(ATTRS, headers=ENERGY_LINK, json={
        "frequency": {"type": "Property", "value": 50.2}, "phaseCurrent": CURRENT})
    assert mixed.status_code == 207
    assert mixed.json()["updated"] == ["frequency"]
    assert mixed.json()["notUpdated"][0]["attributeName"] == "phaseCurrent"
    body = _get(client)
    assert body["frequency"]["value"] == 50.2 and "phaseCurrent" not in body
    assert "unitCode" not in body["frequency"]  # an update replaces the attribute as a whole


def test_partial_attribute_update_merges_members(client: TestClient) -> None:
    client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    answer = client.patch(f"{ATTRS}/phaseVoltage", headers=ENERGY_LINK,
                          json={"value": {"L1": 240.0, "L2": 241.0, "L3": 239.0},
                                "observedAt": "2026-11-24T11:00:00Z"})
    assert answer.status_code == 204, answer.text
    voltage = _get(client)["phaseVoltage"]
    assert voltage["value"]["L1"] == 240.0 and voltage["unitCode"] == "VLT"  # untouched members stay
    assert voltage["observedAt"] == "2026-11-24T11:00:00.000Z"
    merge_patch = client.patch(f"{ATTRS}/frequency", content=b'{"value": 49.8}',
                               headers={**ENERGY_LINK, "Content-Type": "application/merge-patch+json"})
    assert merge_patch.status_code == 204
    assert _get(client)["frequency"]["value"] == 49.8
    assert_problem(client.patch(f"{ATTRS}/phaseCurrent", json={"value": 1}, headers=ENERGY_LINK),
                   404, "ResourceNotFound")
    assert_problem(client.patch(f"{ATTRS}/frequency", json={"value": None}, headers=ENERGY_LINK),
                   400, "BadRequestData")


def test_delete_attribute(client: TestClient) -> None:
    client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    assert client.delete(f"{ATTRS}/frequency", headers=ENERGY_LINK).status_code == 204
    assert "frequency" not in _get(client)
    assert_problem(client.delete(f"{ATTRS}/frequency", headers=ENERGY_LINK), 404, "ResourceNotFound")


def test_merge_patch_entity(client: TestClient) -> None:
    client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    answer = client.patch(ENTITY, headers=ENERGY_LINK, json={
        "frequency": {"value": 50.3}, "phaseCurrent": CURRENT, "refDevice": "urn:ngsi-ld:null"})
    assert answer.status_code == 204, answer.text
    body = _get(client)
    assert body["frequency"]["value"] == 50.3 and body["frequency"]["unitCode"] == "HTZ"
    assert body["phaseCurrent"]["unitCode"] == "AMP"
    assert "refDevice" not in body
    assert_problem(client.patch(ENTITY, json={"type": "Device"}, headers=ENERGY_LINK), 400, "BadRequestData")
    assert_problem(client.patch(f"{BASE}/entities/urn:x:none", json={"a": {"value": 1}}), 404, "ResourceNotFound")


def test_replace_entity(client: TestClient) -> None:
    client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    answer = client.put(ENTITY, headers=ENERGY_LINK, json={"type": "ThreePhaseAcMeasurement",
                                                           "phaseCurrent": CURRENT})
    assert answer.status_code == 204, answer.text
    body = client.get(ENTITY, headers=ENERGY_LINK).json()
    assert set(body) == {"id", "type", "phaseCurrent"}
    assert_problem(client.put(ENTITY, json={"id": "urn:x:other", "type": "T"}, headers=ENERGY_LINK),
                   400, "BadRequestData")


def test_batch_create_update_delete(client: TestClient) -> None:
    second = "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-002"
    created = client.post(f"{OPS}/create", headers=ENERGY_LINK,
                          json=[measurement(), measurement(entity_id=second)])
    assert created.status_code == 201 and created.json() == [MEASUREMENT_ID, second]
    again = client.post(f"{OPS}/create", headers=ENERGY_LINK,
                        json=[measurement(), measurement(entity_id="urn:ngsi-ld:ThreePhaseAcMeasurement:m3")])
    assert again.status_code == 207
    assert again.json()["success"] == ["urn:ngsi-ld:ThreePhaseAcMeasurement:m3"]
    assert again.json()["errors"][0]["entityId"] == MEASUREMENT_ID
    assert again.json()["errors"][0]["error"]["type"].endswith("/AlreadyExists")

    fragment = {"id": second, "type": "ThreePhaseAcMeasurement", "frequency": {"type": "Property", "value": 49.0}}
    assert client.post(f"{OPS}/update", json=[fragment], headers=ENERGY_LINK).status_code == 204
    assert client.get(f"{BASE}/entities/{second}", headers=ENERGY_LINK).json()["frequency"]["value"] == 49.0
    assert client.get(f"{BASE}/entities/{second}", headers=ENERGY_LINK).json()["phaseVoltage"]["value"]["L1"] == 230
    missing = client.post(f"{OPS}/update", headers=ENERGY_LINK,
                          json=[fragment, {**fragment, "id": "urn:ngsi-ld:ThreePhaseAcMeasurement:none"}])
    assert missing.status_code == 207 and missing.json()["errors"][0]["error"]["type"].endswith("ResourceNotFound")

    deleted = client.post(f"{OPS}/delete", json=[MEASUREMENT_ID, "urn:x:none"])
    assert deleted.status_code == 207 and deleted.json()["success"] == [MEASUREMENT_ID]
    assert client.post(f"{OPS}/delete", json=[second]).status_code == 204
    assert client.get(f"{BASE}/entities/{second}").status_code == 404
    assert_problem(client.post(f"{OPS}/delete", json={"id": second}), 400, "BadRequestData")


def test_attribute_writes_go_to_history(client: TestClient) -> None:
    client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    for n, value in enumerate((50.1, 50.2)):
        client.patch(f"{ATTRS}/frequency", headers=ENERGY_LINK,
                     json={"value": value, "observedAt": f"2026-11-24T10:00:0{n + 1}.000Z"}).raise_for_status()
    history = client.get(f"{BASE}/temporal/entities/{MEASUREMENT_ID}", headers=ENERGY_LINK,
                         params={"attrs": "frequency", "options": "temporalValues"}).json()
    assert [v for v, _ in history["frequency"]["values"]] == [50.0, 50.1, 50.2]
