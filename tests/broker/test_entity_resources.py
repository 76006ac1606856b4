"""Entity resources as ETSI GS CIM 009 V1.8.1 binds them: trailing slashes, id/idPattern queries without a type,
POST /entityOperations/query and /merge, Purge Entities (DELETE /entities)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from .conftest import BASE, ENERGY_LINK, MEASUREMENT_ID, assert_problem, measurement

ENTITIES = f"{BASE}/entities"
OPS = f"{BASE}/entityOperations"


def _meter(n: int) -> str:
    return f"urn:ngsi-ld:ThreePhaseAcMeasurement:m{n:02d}"


@pytest.fixture
def meters(client: TestClient) -> TestClient:
    """Four meters (L1 voltage 230, 240, 250, 260) and one Device."""
    batch = [measurement(entity_id=_meter(n), voltage_v=230.0 + 10 * n) for n in range(4)]
    batch.append({"id": "urn:ngsi-ld:Device:d1", "type": "Device",
                  "name": {"type": "Property", "value": "meter one"}})
    assert client.post(f"{OPS}/upsert", json=batch, headers=ENERGY_LINK).status_code == 201
    return client


def test_trailing_slash_is_served_on_every_resource(client: TestClient) -> None:
    """§6.1 paths carry no trailing slash; clients add one (ngsildclient creates with POST /entities/)."""
    created = client.post(f"{ENTITIES}/", json=measurement(), headers=ENERGY_LINK)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{ENTITIES}/{MEASUREMENT_ID}"
    assert client.get(f"{ENTITIES}/{MEASUREMENT_ID}/", headers=ENERGY_LINK).json()["id"] == MEASUREMENT_ID
    patch = {"frequency": {"type": "Property", "value": 49.9}}
    assert client.patch(f"{ENTITIES}/{MEASUREMENT_ID}/attrs/", json=patch, headers=ENERGY_LINK).status_code == 204
    assert client.post(f"{OPS}/upsert/?options=update", json=[measurement()],
                       headers=ENERGY_LINK).status_code == 204
    assert client.get(f"{BASE}/types/").status_code == 200
    assert client.get(f"{BASE}/subscriptions/").json() == []
    assert client.get(f"{BASE}/temporal/entities/{MEASUREMENT_ID}/").status_code == 200
    assert client.delete(f"{ENTITIES}/{MEASUREMENT_ID}/").status_code == 204
    assert_problem(client.get(f"{BASE}/nothing/"), 404, "ResourceNotFound")
    # an id ending in a slash, percent-encoded, keeps it
    slashed = {"id": "http://example.org/site/", "type": "Site"}
    assert client.post(ENTITIES, json=slashed).status_code == 201
    assert client.get(f"{ENTITIES}/http:%2F%2Fexample.org%2Fsite%2F").json()["id"] == "http://example.org/site/"


def test_id_and_id_pattern_select_without_a_type(meters: TestClient) -> None:
    """§5.7.2: the entity selection may be ids or an id pattern alone (no type)."""
    by_id = meters.get(ENTITIES, params={"id": f"{_meter(1)},urn:ngsi-ld:Device:d1"})
    assert [e["id"] for e in by_id.json()] == [_meter(1), "urn:ngsi-ld:Device:d1"]
    pattern = meters.get(ENTITIES, params={"idPattern": ".*"})
    assert len(pattern.json()) == 5
    assert [e["id"] for e in meters.get(ENTITIES, params={"idPattern": "m0[23]$"}).json()] == [_meter(2), _meter(3)]
    assert_problem(meters.get(ENTITIES, params={"idPattern": "("}), 400, "BadRequestData")


def test_query_via_post(meters: TestClient) -> None:
    """§5.7.2 / §6.23: POST /entityOperations/query takes a Query (§5.2.23): entities ORed, attrs, q."""
    query = {"type": "Query", "entities": [{"type": "ThreePhaseAcMeasurement", "idPattern": "m0[0-2]$"},
                                           {"id": "urn:ngsi-ld:Device:d1"}],
             "attrs": ["phaseVoltage", "name"], "q": "phaseVoltage[L1]>235|name"}
    answer = meters.post(f"{OPS}/query?count=true", json=query, headers=ENERGY_LINK)
    assert answer.status_code == 200, answer.text
    assert [e["id"] for e in answer.json()] == [_meter(1), _meter(2), "urn:ngsi-ld:Device:d1"]
    assert answer.headers["NGSILD-Results-Count"] == "3"
    assert set(answer.json()[0]) == {"id", "type", "phaseVoltage"}
    key_values = meters.post(f"{OPS}/query?options=keyValues&limit=1",
                             json={"type": "Query", "entities": [{"type": "Device"}]}, headers=ENERGY_LINK)
    assert key_values.json() == [{"id": "urn:ngsi-ld:Device:d1", "type": "Device", "name": "meter one"}]
    ld = {"type": "Query", "entities": [{"type": "Device"}], "@context": ENERGY_LINK["Link"].split(">")[0][1:]}
    answer = meters.post(f"{OPS}/query", json=ld, headers={"Content-Type": "application/ld+json"})
    assert [e["id"] for e in answer.json()] == ["urn:ngsi-ld:Device:d1"]
    assert_problem(meters.post(f"{OPS}/query", json={"type": "Query"}), 400, "BadRequestData")
    assert_problem(meters.post(f"{OPS}/query", json={"type": "Subscription", "entities": [{"type": "Device"}]}),
                   400, "BadRequestData")
    assert_problem(meters.post(f"{OPS}/query", json={"entities": [{"type": 3}]}), 400, "BadRequestData")
    assert_problem(meters.post(f"{OPS}/query", json=[]), 400, "BadRequestData")


def test_batch_merge(meters: TestClient) -> None:
    """§5.6.20 Batch Entity Merge: each entity merge-patched (§5.6.17); missing ones reported in a 207."""
    merge = [{"id": _meter(0), "type": "ThreePhaseAcMeasurement", "frequency": 49.8,
              "powerFactor": {"type": "Property", "value": 0.95}},
             {"id": "urn:ngsi-ld:Device:d1", "name": "urn:ngsi-ld:null"}]
    assert meters.post(f"{OPS}/merge", json=merge, headers=ENERGY_LINK).status_code == 204
    merged = meters.get(f"{ENTITIES}/{_meter(0)}", headers=ENERGY_LINK).json()
    assert merged["frequency"]["value"] == 49.8 and merged["frequency"]["unitCode"] == "HTZ"
    assert merged["powerFactor"]["value"] == 0.95
    assert "name" not in meters.get(f"{ENTITIES}/urn:ngsi-ld:Device:d1", headers=ENERGY_LINK).json()
    partly = meters.post(f"{OPS}/merge", json=[{"id": _meter(1), "frequency": 50.1},
                                                {"id": "urn:ngsi-ld:Device:nope", "name": "x"},
                                                {"id": "not a uri"}], headers=ENERGY_LINK)
    assert partly.status_code == 207
    body = partly.json()
    assert body["success"] == [_meter(1)]
    assert [(e["entityId"], e["error"]["type"].rsplit("/", 1)[1]) for e in body["errors"]] == [
        ("urn:ngsi-ld:Device:nope", "ResourceNotFound"), ("not a uri", "BadRequestData")]


def test_purge_entities(meters: TestClient) -> None:
    """§5.6.21 Purge Entities: DELETE /entities with a selection deletes what it selects; 204."""
    assert meters.delete(ENTITIES, params={"type": "ThreePhaseAcMeasurement", "q": "phaseVoltage[L1]>245"},
                         headers=ENERGY_LINK).status_code == 204
    left = meters.get(ENTITIES, params={"idPattern": ".*"})
    assert [e["id"] for e in left.json()] == [_meter(0), _meter(1), "urn:ngsi-ld:Device:d1"]
    assert meters.delete(ENTITIES, params={"type": "Device"}).status_code == 204
    assert meters.delete(ENTITIES, params={"type": "Device"}).status_code == 204  # nothing left: still 204
    assert [e["id"] for e in meters.get(ENTITIES, params={"idPattern": ".*"}).json()] == [_meter(0), _meter(1)]
    assert_problem(meters.delete(ENTITIES), 400, "BadRequestData")  # would wipe the tenant
    # the deleted entities keep their history, ended by deletedAt
    history = meters.get(f"{BASE}/temporal/entities/{_meter(3)}", params={"options": "sysAttrs"})
    assert history.status_code == 200 and "deletedAt" in history.json()


def test_id_that_is_not_a_uri_is_bad_request(client: TestClient) -> None:
    """§6.5.3: the entityId path segment must be a URI; anything else is 400 BadRequestData, not 404."""
    assert_problem(client.get(f"{ENTITIES}/not-a-uri"), 400, "BadRequestData")
    assert_problem(client.delete(f"{ENTITIES}/not-a-uri"), 400, "BadRequestData")


def test_replace_attribute(meters: TestClient) -> None:
    """§5.6.19 Replace Attribute (PUT /entities/{id}/attrs/{attr}): the attribute becomes the body as a whole."""
    url = f"{ENTITIES}/{_meter(0)}/attrs/frequency"
    assert meters.put(url, json={"type": "Property", "value": 49.7}, headers=ENERGY_LINK).status_code == 204
    assert meters.get(f"{ENTITIES}/{_meter(0)}", headers=ENERGY_LINK).json()["frequency"] == {
        "type": "Property", "value": 49.7}  # unitCode and observedAt went with the old attribute
    assert_problem(meters.put(f"{ENTITIES}/{_meter(0)}/attrs/nothing", json={"type": "Property", "value": 1},
                              headers=ENERGY_LINK), 404, "ResourceNotFound")
    assert_problem(meters.put(url, json={"type": "Property"}, headers=ENERGY_LINK), 400, "BadRequestData")


def test_delete_attribute_by_dataset_id(client: TestClient) -> None:
    """§5.6.5: datasetId names the instance deleted; deleteAll deletes every instance (here: the one)."""
    entity = measurement(powerFactor={"type": "Property", "value": 0.9, "datasetId": "urn:ngsi-ld:Dataset:meter"})
    client.post(ENTITIES, json=entity, headers=ENERGY_LINK).raise_for_status()
    url = f"{ENTITIES}/{MEASUREMENT_ID}/attrs/powerFactor"
    assert_problem(client.delete(url, params={"datasetId": "urn:ngsi-ld:Dataset:other"}, headers=ENERGY_LINK),
                   404, "ResourceNotFound")
    assert_problem(client.delete(url, params={"datasetId": "urn:x:1", "deleteAll": "true"}, headers=ENERGY_LINK),
                   400, "BadRequestData")
    assert client.delete(url, params={"datasetId": "urn:ngsi-ld:Dataset:meter"},
                         headers=ENERGY_LINK).status_code == 204
    freq = f"{ENTITIES}/{MEASUREMENT_ID}/attrs/frequency"
    assert client.delete(freq, params={"deleteAll": "true"}, headers=ENERGY_LINK).status_code == 204
    assert set(client.get(f"{ENTITIES}/{MEASUREMENT_ID}", headers=ENERGY_LINK).json()) == {
        "id", "type", "phaseVoltage", "refDevice"}


def test_type_expressions(meters: TestClient) -> None:
    """§4.17 entity type selection: `,` and `|` are OR, `;` is AND, parentheses group. Entities here have one type,
    so an AND of two different types selects nothing."""
    def ids(expression: str) -> list[str]:
        answer = meters.get(ENTITIES, params={"type": expression}, headers=ENERGY_LINK)
        assert answer.status_code == 200, answer.text
        return [e["id"].rsplit(":", 1)[1] for e in answer.json()]

    assert ids("Device") == ["d1"]
    assert ids("Device|ThreePhaseAcMeasurement") == ["m00", "m01", "m02", "m03", "d1"]
    assert ids("(Device|Building);Device") == ["d1"]
    assert ids("Device;ThreePhaseAcMeasurement") == []
    assert ids("(Device;Building),ThreePhaseAcMeasurement") == ["m00", "m01", "m02", "m03"]
    for bad in ("(Device", "Device|", "Device)"):
        assert_problem(meters.get(ENTITIES, params={"type": bad}), 400, "BadRequestData")
    query = {"type": "Query", "entities": [{"type": "Device|Building"}]}
    assert [e["id"] for e in meters.post(f"{OPS}/query", json=query, headers=ENERGY_LINK).json()] == [
        "urn:ngsi-ld:Device:d1"]
