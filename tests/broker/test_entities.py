"""Entity create / retrieve / query / delete, and how @context shapes what comes back."""

from __future__ import annotations

from starlette.testclient import TestClient

from datamodels.context import CORE_CONTEXT, ENERGY_CONTEXT

from .conftest import BASE, ENERGY_LINK, MEASUREMENT_ID, assert_problem, measurement

SDM_ENERGY = "https://smartdatamodels.org/dataModel.Energy/"


def test_create_with_link_header_round_trips(client: TestClient) -> None:
    created = client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{BASE}/entities/{MEASUREMENT_ID}"
    assert created.content == b""

    got = client.get(f"{BASE}/entities/{MEASUREMENT_ID}", headers=ENERGY_LINK)
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("application/json")
    assert got.headers["link"] == ENERGY_LINK["Link"]
    body = got.json()
    assert "@context" not in body
    assert body["type"] == "ThreePhaseAcMeasurement"
    assert body["phaseVoltage"] == {"type": "Property", "value": {"L1": 230.0, "L2": 231.0, "L3": 229.0},
                                    "unitCode": "VLT", "observedAt": "2026-11-24T10:00:00.000Z"}
    assert body["refDevice"] == {"type": "Relationship", "object": "urn:ngsi-ld:Device:meter-001"}
    assert "createdAt" not in body and "createdAt" not in body["frequency"]


def test_create_with_body_context_and_read_as_json_ld(client: TestClient) -> None:
    entity = {**measurement(), "@context": [ENERGY_CONTEXT, CORE_CONTEXT]}
    created = client.post(f"{BASE}/entities", json=entity, headers={"Content-Type": "application/ld+json"})
    assert created.status_code == 201, created.text

    got = client.get(f"{BASE}/entities/{MEASUREMENT_ID}",
                     headers={**ENERGY_LINK, "Accept": "application/ld+json"})
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("application/ld+json")
    assert "link" not in got.headers
    body = got.json()
    assert body["@context"] == ENERGY_CONTEXT
    assert body["frequency"]["value"] == 50.0


def test_without_context_sdm_terms_come_back_as_iris(client: TestClient) -> None:
    extra = {"location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.5, 47.4]}}}
    client.post(f"{BASE}/entities", json=measurement(**extra), headers=ENERGY_LINK).raise_for_status()

    body = client.get(f"{BASE}/entities/{MEASUREMENT_ID}").json()
    assert body["type"] == SDM_ENERGY + "ThreePhaseAcMeasurement"
    assert SDM_ENERGY + "phaseVoltage" in body and "phaseVoltage" not in body
    assert body["location"]["value"]["coordinates"] == [8.5, 47.4]  # core terms always compact
    # Property values stay opaque: their keys are not IRIs although L1 is an Energy term.
    assert body[SDM_ENERGY + "phaseVoltage"]["value"] == {"L1": 230.0, "L2": 231.0, "L3": 229.0}


def test_unknown_terms_use_the_default_vocab(client: TestClient) -> None:
    entity = {"id": "urn:ngsi-ld:Thing:1", "type": "Thing", "colour": {"type": "Property", "value": "red"}}
    client.post(f"{BASE}/entities", json=entity).raise_for_status()
    assert client.get(f"{BASE}/entities/urn:ngsi-ld:Thing:1").json() == entity
    # With the Energy context the same short names still resolve through the core @vocab.
    assert client.get(f"{BASE}/entities/urn:ngsi-ld:Thing:1", headers=ENERGY_LINK).json()["colour"]["value"] == "red"
    query = client.get(f"{BASE}/entities", params={"type": "https://uri.etsi.org/ngsi-ld/default-context/Thing"})
    assert [e["id"] for e in query.json()] == ["urn:ngsi-ld:Thing:1"]


def test_sys_attrs_key_values_and_attrs(client: TestClient) -> None:
    client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    url = f"{BASE}/entities/{MEASUREMENT_ID}"

    sys_attrs = client.get(url, params={"options": "sysAttrs"}, headers=ENERGY_LINK).json()
    assert sys_attrs["createdAt"].endswith("Z") and sys_attrs["modifiedAt"] == sys_attrs["createdAt"]
    assert sys_attrs["frequency"]["createdAt"] == sys_attrs["createdAt"]

    key_values = client.get(url, params={"options": "keyValues"}, headers=ENERGY_LINK).json()
    assert key_values == {"id": MEASUREMENT_ID, "type": "ThreePhaseAcMeasurement",
                          "phaseVoltage": {"L1": 230.0, "L2": 231.0, "L3": 229.0}, "frequency": 50.0,
                          "refDevice": "urn:ngsi-ld:Device:meter-001"}

    only = client.get(url, params={"attrs": "frequency"}, headers=ENERGY_LINK).json()
    assert set(only) == {"id", "type", "frequency"}
    assert_problem(client.get(url, params={"options": "fancy"}), 400, "InvalidRequest")  # §6.3.7


def test_conflicts_and_invalid_entities(client: TestClient) -> None:
    client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    assert_problem(client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK), 409, "AlreadyExists")
    assert_problem(client.post(f"{BASE}/entities", json=measurement(entity_id="meter 1")), 400, "BadRequestData")
    assert_problem(client.post(f"{BASE}/entities", json=measurement(entity_id="meter-1")), 400, "BadRequestData")
    no_type = measurement(entity_id="urn:ngsi-ld:X:1")
    del no_type["type"]
    assert_problem(client.post(f"{BASE}/entities", json=no_type), 400, "BadRequestData")
    concise_without_value = measurement(entity_id="urn:ngsi-ld:X:2", frequency={"unitCode": "HTZ"})
    assert_problem(client.post(f"{BASE}/entities", json=concise_without_value), 400, "BadRequestData")
    bad_time = measurement(entity_id="urn:ngsi-ld:X:3", observed_at="yesterday")
    assert_problem(client.post(f"{BASE}/entities", json=bad_time), 400, "BadRequestData")
    bad_object = measurement(entity_id="urn:ngsi-ld:X:4", refDevice={"type": "Relationship", "object": "meter"})
    assert_problem(client.post(f"{BASE}/entities", json=bad_object), 400, "BadRequestData")
    assert_problem(client.post(f"{BASE}/entities", json=[measurement()]), 400, "BadRequestData")
    assert client.get(f"{BASE}/entities", params={"type": "ThreePhaseAcMeasurement", "count": "true"},
                      headers=ENERGY_LINK).headers["NGSILD-Results-Count"] == "1"


def test_delete(client: TestClient) -> None:
    client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    assert client.delete(f"{BASE}/entities/{MEASUREMENT_ID}").status_code == 204
    assert_problem(client.get(f"{BASE}/entities/{MEASUREMENT_ID}"), 404, "ResourceNotFound")
    assert_problem(client.delete(f"{BASE}/entities/{MEASUREMENT_ID}"), 404, "ResourceNotFound")


def test_query_filters_paging_and_count(client: TestClient) -> None:
    for n in range(25):
        client.post(f"{BASE}/entities", json=measurement(entity_id=f"urn:ngsi-ld:ThreePhaseAcMeasurement:m{n:02d}"),
                    headers=ENERGY_LINK).raise_for_status()
    client.post(f"{BASE}/entities", json={"id": "urn:ngsi-ld:Device:d1", "type": "Device"}).raise_for_status()
    url = f"{BASE}/entities"
    typed = {"type": "ThreePhaseAcMeasurement"}

    first = client.get(url, params={**typed, "count": "true"}, headers=ENERGY_LINK)
    assert first.status_code == 200
    assert len(first.json()) == 20  # Orion-LD's default page
    assert first.headers["NGSILD-Results-Count"] == "25"
    assert first.headers.get_list("link")[0] == ENERGY_LINK["Link"]  # then the rel="next" page link (§6.3.13)
    rest = client.get(url, params={**typed, "offset": 20, "limit": 10}, headers=ENERGY_LINK).json()
    assert [e["id"][-3:] for e in rest] == ["m20", "m21", "m22", "m23", "m24"]
    assert "NGSILD-Results-Count" not in client.get(url, params=typed, headers=ENERGY_LINK).headers

    # The Device type does not match the Energy-context type, and without the context the type is another IRI.
    assert client.get(url, params=typed).json() == []
    ids = client.get(url, params={**typed, "id": "urn:ngsi-ld:ThreePhaseAcMeasurement:m03,urn:x:none"},
                     headers=ENERGY_LINK).json()
    assert [e["id"] for e in ids] == ["urn:ngsi-ld:ThreePhaseAcMeasurement:m03"]
    pattern = client.get(url, params={**typed, "idPattern": "m1[0-2]$"}, headers=ENERGY_LINK).json()
    assert [e["id"][-3:] for e in pattern] == ["m10", "m11", "m12"]
    by_attr = client.get(url, params={"attrs": "refDevice", "limit": 1000, "count": "true"}, headers=ENERGY_LINK)
    assert by_attr.headers["NGSILD-Results-Count"] == "25"
    assert set(by_attr.json()[0]) == {"id", "type", "refDevice"}
    assert [e["id"] for e in client.get(url, params={"type": "Device,Thing"}).json()] == ["urn:ngsi-ld:Device:d1"]

    assert_problem(client.get(url), 400, "BadRequestData")
    # id alone selects (ETSI GS CIM 009 V1.8.1 §5.7.2: no type needed; FiLiP's default get_entity_list sends it)
    assert [e["id"] for e in client.get(url, params={"id": "urn:ngsi-ld:Device:d1"}).json()] == [
        "urn:ngsi-ld:Device:d1"]
    assert_problem(client.get(url, params={**typed, "limit": 1001}), 400, "BadRequestData")
    assert_problem(client.get(url, params={**typed, "limit": -1}), 400, "BadRequestData")
    assert_problem(client.get(url, params={**typed, "idPattern": "("}), 400, "BadRequestData")
    assert client.get(url, params={**typed, "limit": 1000}).status_code == 200
    assert client.get(f"{url}/", params=typed, headers=ENERGY_LINK).status_code == 200
