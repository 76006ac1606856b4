"""The q language, paging with count, keyValues/simplified/concise, pick/omit, /types and /attributes."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from .conftest import BASE, ENERGY_LINK, assert_problem, measurement

ENTITIES = f"{BASE}/entities"
UPSERT = f"{BASE}/entityOperations/upsert"


def _meter(n: int) -> str:
    return f"urn:ngsi-ld:ThreePhaseAcMeasurement:meter-{n:03d}"


@pytest.fixture
def fleet(client: TestClient) -> TestClient:
    """Five meters: L1 voltage 228, 238, 248, 258, 268; names 'meter-n'; meter 4 has an alarm sub-attribute."""
    batch = []
    for n in range(5):
        entity = measurement(entity_id=_meter(n), voltage_v=228.0 + 10 * n,
                             observed_at=f"2026-11-24T10:0{n}:00.000Z",
                             name={"type": "Property", "value": f"meter-{n}"},
                             tags={"type": "Property", "value": ["site-a" if n % 2 else "site-b", "pilot"]})
        if n == 4:
            entity["frequency"]["quality"] = {"type": "Property", "value": "suspect"}
        batch.append(entity)
    assert client.post(UPSERT, json=batch, headers=ENERGY_LINK).status_code == 201
    return client


def _ids(client: TestClient, q: str, **params: str) -> list[int]:
    answer = client.get(ENTITIES, params={"type": "ThreePhaseAcMeasurement", "q": q, **params}, headers=ENERGY_LINK)
    assert answer.status_code == 200, answer.text
    return [int(e["id"][-3:]) for e in answer.json()]


@pytest.mark.parametrize(("q", "expected"), [
    ("phaseVoltage[L1]>250", [3, 4]),
    ("phaseVoltage[L1]>=248", [2, 3, 4]),
    ("phaseVoltage[L2]<240", [0, 1]),
    ("phaseVoltage[L1]==238..258", [1, 2, 3]),
    ("phaseVoltage[L1]!=238..258", [0, 4]),
    ("phaseVoltage[L1]==228,268", [0, 4]),
    ('name=="meter-2"', [2]),
    ('name!="meter-2"', [0, 1, 3, 4]),
    ("name~=meter-[13]", [1, 3]),
    ("name!~=meter-[13]", [0, 2, 4]),
    ('tags=="site-a"', [1, 3]),
    ("phaseVoltage[L1]>250;name~=4", [4]),
    ("phaseVoltage[L1]<230|phaseVoltage[L1]>260", [0, 4]),
    ("(phaseVoltage[L1]<230|phaseVoltage[L1]>260);name==\"meter-0\"", [0]),
    ("name==\"meter-1\"|(phaseVoltage[L1]>250;phaseVoltage[L1]<260)", [1, 3]),
    ("frequency.quality", [4]),
    ('frequency.quality=="suspect"', [4]),
    ("phaseVoltage.observedAt>=2026-11-24T10:03:00Z", [3, 4]),
    ("phaseVoltage.unitCode==\"VLT\"", [0, 1, 2, 3, 4]),
    ("refDevice==urn:ngsi-ld:Device:meter-001", [0, 1, 2, 3, 4]),
    ("frequency==50", [0, 1, 2, 3, 4]),
    ("frequency>50", []),
    ("nonexistent", []),
    ("name>5", []),  # a string never orders against a number
])
def test_q_language(fleet: TestClient, q: str, expected: list[int]) -> None:
    assert _ids(fleet, q) == expected


def test_q_alone_is_a_valid_query_and_pages_with_count(fleet: TestClient) -> None:
    answer = fleet.get(ENTITIES, params={"q": "phaseVoltage[L1]>230", "limit": "2", "offset": "1", "count": "true"},
                       headers=ENERGY_LINK)
    assert answer.status_code == 200
    assert answer.headers["ngsild-results-count"] == "4"
    assert [e["id"] for e in answer.json()] == [_meter(2), _meter(3)]


@pytest.mark.parametrize("q", ["phaseVoltage[L1>2", "(a==1", "a==", "a>1..2", "name~=(", 'a=="x', ";a==1"])
def test_invalid_q_is_bad_request(fleet: TestClient, q: str) -> None:
    answer = fleet.get(ENTITIES, params={"type": "ThreePhaseAcMeasurement", "q": q}, headers=ENERGY_LINK)
    assert_problem(answer, 400, "BadRequestData")


def test_representations(fleet: TestClient) -> None:
    url = f"{ENTITIES}/{_meter(4)}"
    simplified = fleet.get(url, params={"format": "simplified", "attrs": "frequency,refDevice"},
                           headers=ENERGY_LINK).json()
    assert simplified == {"id": _meter(4), "type": "ThreePhaseAcMeasurement", "frequency": 50.0,
                          "refDevice": "urn:ngsi-ld:Device:meter-001"}
    concise = fleet.get(url, params={"options": "concise"}, headers=ENERGY_LINK).json()
    assert concise["name"] == "meter-4"
    assert concise["phaseVoltage"] == {"value": {"L1": 268.0, "L2": 269.0, "L3": 267.0}, "unitCode": "VLT",
                                       "observedAt": "2026-11-24T10:04:00.000Z"}
    assert concise["frequency"]["quality"] == "suspect"
    assert concise["refDevice"] == {"object": "urn:ngsi-ld:Device:meter-001"}
    picked = fleet.get(url, params={"pick": "id,frequency"}, headers=ENERGY_LINK).json()
    assert set(picked) == {"id", "frequency"}
    omitted = fleet.get(url, params={"omit": "type,phaseVoltage,tags,name"}, headers=ENERGY_LINK).json()
    assert set(omitted) == {"id", "frequency", "refDevice"}
    assert_problem(fleet.get(url, params={"options": "keyValues,concise"}), 400, "BadRequestData")


def test_types_and_attributes(fleet: TestClient) -> None:
    fleet.post(ENTITIES, json={"id": "urn:ngsi-ld:Device:meter-001", "type": "Device",
                               "name": {"type": "Property", "value": "ADE9000 board"}},
               headers=ENERGY_LINK).raise_for_status()
    types = fleet.get(f"{BASE}/types", headers=ENERGY_LINK).json()
    assert types["type"] == "EntityTypeList" and types["id"].startswith("urn:ngsi-ld:EntityTypeList:")
    assert sorted(types["typeList"]) == ["Device", "ThreePhaseAcMeasurement"]
    info = fleet.get(f"{BASE}/types/ThreePhaseAcMeasurement", headers=ENERGY_LINK).json()
    assert info["entityCount"] == 5 and info["typeName"] == "ThreePhaseAcMeasurement"
    details = {d["attributeName"]: d["attributeTypes"] for d in info["attributeDetails"]}
    assert details["refDevice"] == ["Relationship"] and details["phaseVoltage"] == ["Property"]
    detailed = fleet.get(f"{BASE}/types", params={"details": "true"}, headers=ENERGY_LINK).json()
    assert {t["typeName"] for t in detailed} == {"Device", "ThreePhaseAcMeasurement"}
    attributes = fleet.get(f"{BASE}/attributes", headers=ENERGY_LINK).json()
    assert {"phaseVoltage", "frequency", "refDevice", "name", "tags"} <= set(attributes["attributeList"])
    name = fleet.get(f"{BASE}/attributes/name", headers=ENERGY_LINK).json()
    assert name["attributeCount"] == 6 and sorted(name["typeNames"]) == ["Device", "ThreePhaseAcMeasurement"]
    assert_problem(fleet.get(f"{BASE}/types/Nothing"), 404, "ResourceNotFound")
    assert_problem(fleet.get(f"{BASE}/attributes/nothing"), 404, "ResourceNotFound")
    assert fleet.get(f"{BASE}/types", headers={"NGSILD-Tenant": "elsewhere"}).status_code == 404
