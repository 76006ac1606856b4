"""The temporal provision API (ETSI GS CIM 009 V1.8.1 §5.6.11-§5.6.16) and `timeproperty` (§6.3.9), with the
ETSI test suite's vehicle example (data/temporalEntities/2020-08-vehicle-temporal-representation.jsonld) written
with the default context instead of the test suite's remote one."""

from __future__ import annotations

import time
from typing import Any

from starlette.testclient import TestClient

from .conftest import BASE, ENERGY_LINK, MEASUREMENT_ID, assert_problem, measurement

TEMPORAL = f"{BASE}/temporal/entities"
VEHICLE = "urn:ngsi-ld:Vehicle:randomUUID"


def _vehicle() -> dict[str, Any]:
    def instances(*pairs: tuple[int, str]) -> list[dict[str, Any]]:
        return [{"type": "Property", "value": v, "observedAt": f"2020-08-01T{t}:00Z"} for v, t in pairs]

    return {"id": VEHICLE, "type": "Vehicle",
            "speed": instances((120, "12:03"), (80, "12:05"), (100, "12:07")),
            "fuelLevel": instances((67, "12:03"), (53, "13:05"), (40, "14:07"))}


def _values(client: TestClient, attr: str, **params: str) -> list[Any]:
    answer = client.get(f"{TEMPORAL}/{VEHICLE}", params={"attrs": attr, **params})
    assert answer.status_code == 200, answer.text
    return [i["value"] for i in answer.json().get(attr, [])]


def test_create_update_and_read_back(client: TestClient) -> None:
    """§5.6.11: 201 with Location when the temporal representation is new, 204 when instances are added."""
    created = client.post(TEMPORAL, json=_vehicle())
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{TEMPORAL}/{VEHICLE}"
    assert _values(client, "speed") == [120, 80, 100]
    assert _values(client, "fuelLevel", timerel="before", timeAt="2020-08-01T13:00:00Z") == [67]
    more = {"id": VEHICLE, "type": "Vehicle", "speed": {"type": "Property", "value": 90,
                                                         "observedAt": "2020-08-01T12:09:00Z"}}
    assert client.post(TEMPORAL, json=more).status_code == 204
    assert _values(client, "speed") == [120, 80, 100, 90]
    assert client.get(f"{BASE}/entities/{VEHICLE}").status_code == 404  # the current state is not touched
    assert_problem(client.post(TEMPORAL, json={"id": VEHICLE, "type": "Bus", "speed": {
        "type": "Property", "value": 1}}), 400, "BadRequestData")
    assert_problem(client.post(TEMPORAL, json={"id": "not a uri", "type": "Vehicle"}), 400, "BadRequestData")
    assert_problem(client.post(TEMPORAL, json={"id": VEHICLE, "type": "Vehicle", "speed": {"unitCode": "KMH"}}),
                   400, "BadRequestData")


def test_add_attributes_and_delete(client: TestClient) -> None:
    """§5.6.12 add instances, §5.6.15 delete one instance, §5.6.13 delete an attribute, §5.6.16 the entity."""
    client.post(TEMPORAL, json=_vehicle()).raise_for_status()
    added = client.post(f"{TEMPORAL}/{VEHICLE}/attrs", json={"speed": [
        {"type": "Property", "value": 70, "observedAt": "2020-08-01T12:11:00Z"}]})
    assert added.status_code == 204, added.text
    assert _values(client, "speed") == [120, 80, 100, 70]
    speeds = client.get(f"{TEMPORAL}/{VEHICLE}", params={"attrs": "speed"}).json()["speed"]
    second = speeds[1]["instanceId"]
    assert client.delete(f"{TEMPORAL}/{VEHICLE}/attrs/speed/{second}").status_code == 204
    assert _values(client, "speed") == [120, 100, 70]
    assert_problem(client.delete(f"{TEMPORAL}/{VEHICLE}/attrs/speed/{second}"), 404, "ResourceNotFound")
    assert_problem(client.delete(f"{TEMPORAL}/{VEHICLE}/attrs/speed/garbage"), 400, "BadRequestData")
    assert_problem(client.patch(f"{TEMPORAL}/{VEHICLE}/attrs/speed/{speeds[0]['instanceId']}",
                                json={"type": "Property", "value": 1}), 501, "OperationNotSupported")
    assert client.delete(f"{TEMPORAL}/{VEHICLE}/attrs/fuelLevel").status_code == 204
    assert "fuelLevel" not in client.get(f"{TEMPORAL}/{VEHICLE}").json()
    assert_problem(client.delete(f"{TEMPORAL}/{VEHICLE}/attrs/fuelLevel"), 404, "ResourceNotFound")
    assert client.delete(f"{TEMPORAL}/{VEHICLE}").status_code == 204
    assert_problem(client.get(f"{TEMPORAL}/{VEHICLE}"), 404, "ResourceNotFound")
    assert_problem(client.delete(f"{TEMPORAL}/{VEHICLE}"), 404, "ResourceNotFound")
    assert_problem(client.post(f"{TEMPORAL}/{VEHICLE}/attrs", json={"speed": {"type": "Property", "value": 1}}),
                   404, "ResourceNotFound")


def test_deleting_the_history_of_a_live_entity_keeps_it(client: TestClient) -> None:
    client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    assert client.delete(f"{TEMPORAL}/{MEASUREMENT_ID}").status_code == 204
    assert client.get(f"{BASE}/entities/{MEASUREMENT_ID}").status_code == 200
    history = client.get(f"{TEMPORAL}/{MEASUREMENT_ID}", headers=ENERGY_LINK).json()
    assert set(history) == {"id", "type"}
    client.patch(f"{BASE}/entities/{MEASUREMENT_ID}/attrs/frequency", json={"value": 49.9},
                 headers=ENERGY_LINK).raise_for_status()
    history = client.get(f"{TEMPORAL}/{MEASUREMENT_ID}", headers=ENERGY_LINK).json()
    assert [i["value"] for i in history["frequency"]] == [49.9]  # recording goes on


def test_timeproperty_modified_at(client: TestClient) -> None:
    """§6.3.9 timeproperty: with modifiedAt (or createdAt) the window applies to when the broker accepted each
    instance, not to observedAt. An instance is written once, so its createdAt is its modifiedAt."""
    client.post(TEMPORAL, json=_vehicle()).raise_for_status()  # observed in 2020, accepted now
    time.sleep(0.05)
    now = time.time()
    middle = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    time.sleep(0.05)
    client.post(f"{TEMPORAL}/{VEHICLE}/attrs", json={"speed": {"type": "Property", "value": 10,
                                                               "observedAt": "2019-01-01T00:00:00Z"}})
    assert _values(client, "speed", timerel="after", timeAt=middle, timeproperty="modifiedAt") == [10]
    assert _values(client, "speed", timerel="before", timeAt=middle, timeproperty="createdAt") == [120, 80, 100]
    assert _values(client, "speed", timerel="after", timeAt="2020-01-01T00:00:00Z") == [120, 80, 100]
    pairs = client.get(f"{TEMPORAL}/{VEHICLE}", params={"attrs": "speed", "timerel": "after", "timeAt": middle,
                                                         "timeproperty": "modifiedAt",
                                                         "options": "temporalValues"}).json()["speed"]["values"]
    assert [p[0] for p in pairs] == [10] and pairs[0][1] > middle  # the time given is the modifiedAt
    counted = client.get(f"{TEMPORAL}/{VEHICLE}", params={
        "attrs": "speed", "timerel": "before", "timeAt": middle, "timeproperty": "modifiedAt",
        "aggrMethods": "totalCount,max"}).json()["speed"]
    assert counted["totalCount"][0][0] == 3 and counted["max"][0][0] == 120
    assert_problem(client.get(f"{TEMPORAL}/{VEHICLE}", params={"timeproperty": "seenAt"}), 400, "BadRequestData")
    assert_problem(client.get(f"{TEMPORAL}/{VEHICLE}", params={"timeproperty": "deletedAt"}), 501,
                   "OperationNotSupported")


def test_query_via_post(client: TestClient) -> None:
    """§5.7.4 via POST (/temporal/entityOperations/query) with the ETSI test suite's Query bodies
    (data/temporalEntities/entity-operations-between-query.jsonld, temporalQ-json-aggrMethods-array-query.jsonld)."""
    client.post(TEMPORAL, json=_vehicle()).raise_for_status()
    url = f"{BASE}/temporal/entityOperations/query"
    between = {"type": "Query", "entities": [{"type": "Vehicle"}],
               "temporalQ": {"timerel": "between", "timeAt": "2020-08-01T12:04:00Z",
                             "endTimeAt": "2020-08-01T14:00:00Z"}}
    answer = client.post(url, json=between)
    assert answer.status_code == 200, answer.text
    [vehicle] = answer.json()
    assert [i["value"] for i in vehicle["speed"]] == [80, 100] and [i["value"] for i in vehicle["fuelLevel"]] == [53]
    averaged = {"type": "Query", "entities": [{"type": "Vehicle"}],
                "temporalQ": {"timerel": "after", "timeAt": "2020-08-01T12:00:00Z", "aggrMethods": ["avg"]}}
    answer = client.post(f"{url}?count=true", json=averaged)
    assert answer.headers["NGSILD-Results-Count"] == "1"
    assert answer.json()[0]["speed"]["avg"][0][0] == 100
    with_attrs = {**between, "attrs": ["speed"], "temporalQ": {**between["temporalQ"], "lastN": 1}}
    assert [i["value"] for i in client.post(url, json=with_attrs).json()[0]["speed"]] == [100]
    assert "fuelLevel" not in client.post(url, json=with_attrs).json()[0]
    ld = {**between, "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"}
    assert client.post(url, json=ld, headers={"Content-Type": "application/ld+json"}).status_code == 200
    assert_problem(client.post(url, json={"type": "Query", "entities": [{"type": "Vehicle"}]}), 400,
                   "BadRequestData")  # a temporal query needs timerel
    assert_problem(client.post(url, json={**between, "temporalQ": {"when": "now"}}), 400, "BadRequestData")
    assert_problem(client.post(url, json={**between, "q": "speed>1"}), 501, "OperationNotSupported")
    mixed = {**between, "entities": [{"type": "Vehicle"}, {"idPattern": "x"}]}
    assert_problem(client.post(url, json=mixed), 501, "OperationNotSupported")
