"""Geo-queries (ETSI GS CIM 009 V1.8.1 §4.10) and the GeoJSON representation (§4.5.16, §6.3.15).

Three meters in Madrid: Puerta del Sol, Plaza Mayor (~450 m west of it) and Retiro park (~1.6 km east), plus a
site polygon around the first two. Distances were checked against the haversine formula.
"""

from __future__ import annotations

import json
import math

import pytest
from starlette.testclient import TestClient

from .conftest import BASE, ENERGY_LINK, assert_problem, measurement

ENTITIES = f"{BASE}/entities"
SOL = [-3.7038, 40.4168]
MAYOR = [-3.7074, 40.4155]
RETIRO = [-3.6846, 40.4153]
SITE = [[[-3.7100, 40.4140], [-3.7000, 40.4140], [-3.7000, 40.4180], [-3.7100, 40.4180], [-3.7100, 40.4140]]]


def _point(coordinates: list[float]) -> dict[str, object]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": coordinates}}


def _haversine_m(a: list[float], b: list[float]) -> float:
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


@pytest.fixture
def city(client: TestClient) -> TestClient:
    batch = [measurement(entity_id=f"urn:ngsi-ld:ThreePhaseAcMeasurement:{name}", location=_point(where))
             for name, where in (("sol", SOL), ("mayor", MAYOR), ("retiro", RETIRO))]
    batch.append(measurement(entity_id="urn:ngsi-ld:ThreePhaseAcMeasurement:nowhere"))  # no location
    batch.append({"id": "urn:ngsi-ld:Site:centre", "type": "Site",
                  "location": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": SITE}}})
    assert client.post(f"{BASE}/entityOperations/upsert", json=batch, headers=ENERGY_LINK).status_code == 201
    return client


def _names(client: TestClient, **params: str) -> list[str]:
    answer = client.get(ENTITIES, params=params, headers=ENERGY_LINK)
    assert answer.status_code == 200, answer.text
    return [e["id"].rsplit(":", 1)[1] for e in answer.json()]


def test_near_max_and_min_distance(city: TestClient) -> None:
    """§4.10: near;maxDistance==m and near;minDistance==m, distances in metres from the reference Point."""
    sol_mayor = _haversine_m(SOL, MAYOR)
    assert 300 < sol_mayor < 400
    point = {"geometry": "Point", "coordinates": json.dumps(SOL)}
    assert _names(city, type="ThreePhaseAcMeasurement", georel="near;maxDistance==500", **point) == ["sol", "mayor"]
    assert _names(city, type="ThreePhaseAcMeasurement", georel=f"near;maxDistance=={sol_mayor - 5:.0f}",
                  **point) == ["sol"]
    assert _names(city, type="ThreePhaseAcMeasurement", georel="near;minDistance==1000", **point) == ["retiro"]
    assert _names(city, georel="near;minDistance==100;maxDistance==1000", **point) == ["mayor"]  # geo alone selects


def test_topological_relations(city: TestClient) -> None:
    polygon = {"geometry": "Polygon", "coordinates": json.dumps(SITE)}
    assert _names(city, type="ThreePhaseAcMeasurement", georel="within", **polygon) == ["sol", "mayor"]
    assert _names(city, type="ThreePhaseAcMeasurement", georel="disjoint", **polygon) == ["retiro"]
    assert _names(city, type="Site", georel="equals", **polygon) == ["centre"]
    sol = {"geometry": "Point", "coordinates": json.dumps(SOL)}
    assert _names(city, type="Site", georel="contains", **sol) == ["centre"]
    assert _names(city, georel="intersects", **sol) == ["sol", "centre"]
    overlapping = [[[-3.7050, 40.4100], [-3.6900, 40.4100], [-3.6900, 40.4160], [-3.7050, 40.4160],
                    [-3.7050, 40.4100]]]
    assert _names(city, type="Site", georel="overlaps", geometry="Polygon",
                  coordinates=json.dumps(overlapping)) == ["centre"]
    # another GeoProperty than location
    assert _names(city, type="Site", georel="within", geoproperty="observationSpace", **polygon) == []


def test_geo_query_errors(city: TestClient) -> None:
    """§4.10: georel, geometry and coordinates go together; malformed ones are 400 BadRequestData."""
    base = {"type": "ThreePhaseAcMeasurement"}
    for params in ({"georel": "near;maxDistance==10"},
                   {"georel": "near", "geometry": "Point", "coordinates": "[1,2]"},
                   {"georel": "near;maxDistance==-1", "geometry": "Point", "coordinates": "[1,2]"},
                   {"georel": "within;maxDistance==1", "geometry": "Polygon", "coordinates": json.dumps(SITE)},
                   {"georel": "beside", "geometry": "Point", "coordinates": "[1,2]"},
                   {"georel": "within", "geometry": "Circle", "coordinates": "[1,2]"},
                   {"georel": "within", "geometry": "Polygon", "coordinates": "[1,2"},
                   {"georel": "within", "geometry": "Polygon", "coordinates": "[1,2]"},
                   {"georel": "within", "geometry": "Polygon",  # a self-intersecting "bow tie"
                    "coordinates": "[[[0,0],[1,1],[1,0],[0,1],[0,0]]]"},
                   {"georel": "intersects", "geometry": "LineString", "coordinates": "[[1,2]]"},
                   {"georel": "intersects", "geometry": "Point", "coordinates": "[]"},
                   {"geoproperty": "location"}):
        assert_problem(city.get(ENTITIES, params={**base, **params}), 400, "BadRequestData")


def test_geo_query_in_post_query(city: TestClient) -> None:
    """§5.2.23 Query.geoQ (§5.2.13 GeoQuery): coordinates as a JSON array."""
    query = {"type": "Query", "entities": [{"type": "ThreePhaseAcMeasurement"}],
             "geoQ": {"geometry": "Point", "coordinates": RETIRO, "georel": "near;maxDistance==100"}}
    answer = city.post(f"{BASE}/entityOperations/query", json=query, headers=ENERGY_LINK)
    assert [e["id"] for e in answer.json()] == ["urn:ngsi-ld:ThreePhaseAcMeasurement:retiro"]


def test_geojson_representation(city: TestClient) -> None:
    """§4.5.16: Accept application/geo+json answers a FeatureCollection (query) or a Feature (retrieve)."""
    geo = {**ENERGY_LINK, "Accept": "application/geo+json"}
    answer = city.get(ENTITIES, params={"type": "ThreePhaseAcMeasurement", "options": "keyValues"}, headers=geo)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/geo+json")
    collection = answer.json()
    assert collection["type"] == "FeatureCollection"
    assert collection["@context"] == ENERGY_LINK["Link"].split(">")[0][1:]  # in the body, as the ETSI suite expects
    sol = collection["features"][0]
    assert sol["type"] == "Feature" and sol["id"] == "urn:ngsi-ld:ThreePhaseAcMeasurement:sol"
    assert sol["geometry"] == {"type": "Point", "coordinates": SOL}
    assert sol["properties"]["type"] == "ThreePhaseAcMeasurement"
    assert sol["properties"]["frequency"] == 50.0
    assert collection["features"][3]["geometry"] is None  # the meter without a location
    one = city.get(f"{ENTITIES}/urn:ngsi-ld:Site:centre", headers=geo).json()
    assert one["type"] == "Feature" and one["geometry"]["type"] == "Polygon"
    assert one["properties"]["location"]["type"] == "GeoProperty"  # normalized attributes stay in properties
    other = city.get(f"{ENTITIES}/urn:ngsi-ld:Site:centre", params={"geometryProperty": "observationSpace"},
                     headers=geo).json()
    assert other["geometry"] is None
