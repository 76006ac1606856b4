"""Provisioning API semantics of the FIWARE IoT Agent (statuses, bodies, error names), on the real ASGI app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.agent.support import HEADERS
from twin_service.agent.metrics import Metrics
from twin_service.agent.north import create_north_app
from twin_service.agent.registry import Registry, UnknownSender

GROUP = {
    "apikey": "meterkey",
    "resource": "/iot/json",
    "entity_type": "ThreePhaseAcMeasurement",
    "timestamp": True,
    "autoprovision": False,
}
DEVICE = {"device_id": "meter-001", "protocol": "IoTA-JSON", "transport": "MQTT"}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry.sqlite")
    yield reg
    reg.close()


@pytest.fixture
def api(registry: Registry) -> TestClient:
    return TestClient(create_north_app(registry, Metrics(), 4041))


def test_group_create_list_duplicate(api: TestClient) -> None:
    created = api.post("/iot/services", json={"services": [GROUP]}, headers=HEADERS)
    assert (created.status_code, created.json()) == (201, {})
    again = api.post("/iot/services", json={"services": [GROUP]}, headers=HEADERS)
    assert again.status_code == 409
    assert again.json()["name"] == "DUPLICATE_GROUP"
    assert "meterkey" in again.json()["message"]
    listed = api.get("/iot/services", headers=HEADERS).json()
    assert listed["count"] == 1
    assert listed["services"][0] | GROUP == listed["services"][0]
    assert listed["services"][0]["service"] == "energytwin"
    assert listed["services"][0]["subservice"] == "/"


def test_groups_alias_uses_groups_key(api: TestClient) -> None:
    assert api.post("/iot/groups", json={"groups": [GROUP]}, headers=HEADERS).status_code == 201
    listed = api.get("/iot/groups", headers=HEADERS).json()
    assert listed["count"] == 1 and listed["groups"][0]["apikey"] == "meterkey"


def test_groups_are_scoped_by_service_and_servicepath(api: TestClient) -> None:
    api.post("/iot/services", json={"services": [GROUP]}, headers=HEADERS)
    other = {"fiware-service": "other", "fiware-servicepath": "/"}
    assert api.get("/iot/services", headers=other).json() == {"count": 0, "services": []}
    subpath = {"fiware-service": "energytwin", "fiware-servicepath": "/site-b"}
    assert api.get("/iot/services", headers=subpath).json()["count"] == 0
    all_paths = {"fiware-service": "energytwin", "fiware-servicepath": "/*"}
    assert api.get("/iot/services", headers=all_paths).json()["count"] == 1


def test_group_update_and_delete(api: TestClient) -> None:
    api.post("/iot/services", json={"services": [GROUP]}, headers=HEADERS)
    key = {"resource": "/iot/json", "apikey": "meterkey"}
    updated = api.put("/iot/services", params=key, json={"entity_type": "Device"}, headers=HEADERS)
    assert updated.status_code == 204
    assert api.get("/iot/services", headers=HEADERS).json()["services"][0]["entity_type"] == "Device"
    assert api.delete("/iot/services", params=key, headers=HEADERS).status_code == 204
    gone = api.delete("/iot/services", params=key, headers=HEADERS)
    assert gone.status_code == 404 and gone.json()["name"] == "DEVICE_GROUP_NOT_FOUND"
    missing = api.put("/iot/services", params=key, json={"entity_type": "X"}, headers=HEADERS)
    assert missing.status_code == 404 and missing.json()["name"] == "DEVICE_GROUP_NOT_FOUND"


def test_group_put_without_query_is_missing_headers(api: TestClient) -> None:
    response = api.put("/iot/services", params={"resource": "/iot/json"}, json={}, headers=HEADERS)
    assert response.status_code == 400
    assert response.json()["name"] == "MISSING_HEADERS" and "apikey" in response.json()["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/iot/services"),
        ("GET", "/iot/services"),
        ("POST", "/iot/devices"),
        ("GET", "/iot/devices"),
        ("GET", "/iot/devices/x"),
        ("PUT", "/iot/devices/x"),
        ("DELETE", "/iot/devices/x"),
        ("DELETE", "/iot/services"),
    ],
)
def test_missing_headers(api: TestClient, method: str, path: str) -> None:
    response = api.request(method, path, json={}, headers={"fiware-service": "energytwin"})
    assert response.status_code == 400
    assert response.json() == {
        "name": "MISSING_HEADERS",
        "message": 'Some headers were missing from the request: ["fiware-servicepath"]',
    }


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"services": [{"resource": "/iot/json"}]}, "services.0.apikey"),
        ({"services": [{"apikey": "k", "resource": "/iot/json", "timestamp": "yes"}]}, "timestamp"),
        ({"services": []}, "services"),
        ({"service": [GROUP]}, "service"),
        ([GROUP], "body"),
    ],
)
def test_group_body_validation(api: TestClient, body: object, says: str) -> None:
    response = api.post("/iot/services", json=body, headers=HEADERS)
    assert response.status_code == 400
    assert response.json()["name"] == "WRONG_SYNTAX"
    assert says in response.json()["message"]


def test_invalid_json_body_is_wrong_syntax(api: TestClient) -> None:
    response = api.post(
        "/iot/devices", content=b"{nope", headers={**HEADERS, "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["name"] == "WRONG_SYNTAX"


def test_device_lifecycle(api: TestClient) -> None:
    api.post("/iot/services", json={"services": [GROUP]}, headers=HEADERS)
    created = api.post("/iot/devices", json={"devices": [DEVICE]}, headers=HEADERS)
    assert (created.status_code, created.json()) == (201, {})
    duplicate = api.post("/iot/devices", json={"devices": [DEVICE]}, headers=HEADERS)
    assert duplicate.status_code == 409 and duplicate.json()["name"] == "DUPLICATE_DEVICE_ID"

    listed = api.get("/iot/devices", headers=HEADERS).json()
    assert listed["count"] == 1
    device = listed["devices"][0]
    assert device["device_id"] == "meter-001"
    assert device["service"] == "energytwin" and device["service_path"] == "/"
    # entity type inherited from the group, default LD entity name as node-lib builds it
    assert device["entity_type"] == "ThreePhaseAcMeasurement"
    assert device["entity_name"] == "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001"
    assert api.get("/iot/devices/meter-001", headers=HEADERS).json() == device

    attrs = [{"object_id": "t", "name": "temperature", "type": "Number"}]
    assert api.put("/iot/devices/meter-001", json={"attributes": attrs}, headers=HEADERS).status_code == 204
    assert api.get("/iot/devices/meter-001", headers=HEADERS).json()["attributes"] == attrs
    renamed = api.put("/iot/devices/meter-001", json={"device_id": "other"}, headers=HEADERS)
    assert renamed.status_code == 400

    assert api.delete("/iot/devices/meter-001", headers=HEADERS).status_code == 204
    for method in ("GET", "DELETE"):
        gone = api.request(method, "/iot/devices/meter-001", headers=HEADERS)
        assert gone.status_code == 404
        assert gone.json() == {"name": "DEVICE_NOT_FOUND", "message": "No device was found with id:meter-001"}
    assert api.put("/iot/devices/meter-001", json={}, headers=HEADERS).status_code == 404


def test_device_list_paging(api: TestClient) -> None:
    devices = [{"device_id": f"m{i}", "entity_type": "ThreePhaseAcMeasurement"} for i in range(5)]
    api.post("/iot/devices", json={"devices": devices}, headers=HEADERS)
    page = api.get("/iot/devices", params={"limit": 2, "offset": 1}, headers=HEADERS).json()
    assert page["count"] == 5
    assert [d["device_id"] for d in page["devices"]] == ["m1", "m2"]


def test_device_batch_is_all_or_nothing(api: TestClient) -> None:
    api.post("/iot/devices", json={"devices": [DEVICE]}, headers=HEADERS)
    batch = {"devices": [{"device_id": "fresh"}, DEVICE]}
    assert api.post("/iot/devices", json=batch, headers=HEADERS).status_code == 409
    assert api.get("/iot/devices/fresh", headers=HEADERS).status_code == 404


@pytest.mark.parametrize("bad_id", ["a/b", "a+b", "a#", "x<y"])
def test_device_ids_that_cannot_be_topics_are_refused(api: TestClient, bad_id: str) -> None:
    response = api.post("/iot/devices", json={"devices": [{"device_id": bad_id}]}, headers=HEADERS)
    assert response.status_code == 400 and response.json()["name"] == "WRONG_SYNTAX"


def test_about_and_metrics(api: TestClient) -> None:
    about = api.get("/iot/about").json()
    assert about["port"] == 4041 and about["baseRoot"] == "/" and "version" in about and "libVersion" in about
    metrics = api.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE energytwin_agent_rejected_total counter" in metrics.text


def test_registry_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    first = Registry(path)
    api = TestClient(create_north_app(first, Metrics(), 4041))
    api.post("/iot/services", json={"services": [GROUP]}, headers=HEADERS)
    api.post("/iot/devices", json={"devices": [DEVICE]}, headers=HEADERS)
    first.close()
    second = Registry(path)
    resolved = second.resolve("meterkey", "meter-001")
    assert resolved.entity_id == "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001"
    assert resolved.timestamp is True and resolved.service == "energytwin"
    with pytest.raises(UnknownSender) as unknown:
        second.resolve("meterkey", "meter-999")
    assert unknown.value.reason == "unknown_device"
    with pytest.raises(UnknownSender) as no_key:
        second.resolve("nokey", "meter-001")
    assert no_key.value.reason == "unknown_apikey"
    second.close()


def test_static_numbers_are_kept_as_the_fiware_agent_keeps_them(api: TestClient, registry: Registry) -> None:
    """JavaScript reads 400.0 as 400: static values come back and reach the entity as integers (node-lib 4.14)."""
    statics = [{"name": "ctPrimaryCurrent", "type": "Number", "value": 400.0},
               {"name": "nominalFrequency", "type": "Number", "value": 50.5},
               {"name": "location", "type": "GeoProperty", "value": {"type": "Point", "coordinates": [11.0, 48.25]}}]
    api.post("/iot/services", json={"services": [GROUP]}, headers=HEADERS)
    created = api.post("/iot/devices", headers=HEADERS,
                       json={"devices": [{**DEVICE, "apikey": "meterkey", "static_attributes": statics}]})
    assert created.status_code == 201
    listed = api.get("/iot/devices/meter-001", headers=HEADERS).json()["static_attributes"]
    values = [s["value"] for s in listed]
    assert values == [400, 50.5, {"type": "Point", "coordinates": [11, 48.25]}]
    assert type(values[0]) is int and type(values[2]["coordinates"][0]) is int
    resolved = registry.resolve("meterkey", "meter-001")
    assert [type(s.value) for s in resolved.static_attributes] == [int, float, dict]


def test_device_put_replaces_the_lists_it_names_and_keeps_the_rest(api: TestClient) -> None:
    """As node-lib's handleUpdateDevice: each field given replaces the stored one; fields not given stay."""
    api.post("/iot/services", json={"services": [GROUP]}, headers=HEADERS)
    device = {**DEVICE, "apikey": "meterkey", "timestamp": True,
              "attributes": [{"object_id": "f", "name": "frequency", "type": "Number"}],
              "static_attributes": [{"name": "a", "type": "Text", "value": "1"},
                                    {"name": "b", "type": "Text", "value": "2"}]}
    api.post("/iot/devices", json={"devices": [device]}, headers=HEADERS)
    put = api.put("/iot/devices/meter-001", headers=HEADERS,
                  json={"static_attributes": [{"name": "b", "type": "Text", "value": "3"}]})
    assert put.status_code == 204
    stored = api.get("/iot/devices/meter-001", headers=HEADERS).json()
    assert stored["static_attributes"] == [{"name": "b", "type": "Text", "value": "3"}]
    assert stored["attributes"] == [{"object_id": "f", "name": "frequency", "type": "Number"}]
    assert stored["timestamp"] is True
