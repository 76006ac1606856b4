"""The attribute types of ETSI GS CIM 009 V1.8.1 beyond Property/Relationship/GeoProperty: LanguageProperty
(§4.5.18, §5.2.32, `lang=` §4.15), VocabProperty (§4.5.20, §5.2.35), JsonProperty (§4.5.24, §5.2.38),
ListProperty (§5.2.36) and ListRelationship (§5.2.37); stored, rendered (normalized, concise, keyValues),
queried with q, updated and kept in history."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from .conftest import BASE, ENERGY_LINK, Receiver, assert_problem

ENTITIES = f"{BASE}/entities"
SITE = "urn:ngsi-ld:Building:grand-place"


def _site() -> dict[str, object]:
    """The spec's LanguageProperty example (a Brussels street in French and Dutch) on a building with a meter."""
    return {
        "id": SITE, "type": "Building",
        "street": {"type": "LanguageProperty", "languageMap": {"fr": "Grand Place", "nl": "Grote Markt"}},
        "category": {"type": "VocabProperty", "vocab": ["commercial", "office"]},
        "meterConfig": {"type": "JsonProperty", "json": {"ctRatio": 200, "phases": ["L1", "L2", "L3"],
                                                         "@id": "not-expanded"}},
        "tariffPeriods": {"type": "ListProperty", "valueList": ["P1", "P2", "P3"]},
        "meters": {"type": "ListRelationship", "objectList": [{"object": "urn:ngsi-ld:Device:m1"},
                                                              {"object": "urn:ngsi-ld:Device:m2"}]},
    }


@pytest.fixture
def site(client: TestClient) -> TestClient:
    created = client.post(ENTITIES, json=_site(), headers=ENERGY_LINK)
    assert created.status_code == 201, created.text
    return client


def _get(client: TestClient, **params: str) -> dict[str, object]:
    answer = client.get(f"{ENTITIES}/{SITE}", params=params, headers=ENERGY_LINK)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_normalized_round_trip(site: TestClient) -> None:
    """What was written comes back in the normalized representation, vocab terms compacted again."""
    entity = _get(site)
    assert {k: v for k, v in entity.items() if k not in ("id", "type")} == {
        k: v for k, v in _site().items() if k not in ("id", "type")}
    stored = site.app.state.broker.store.get_entity("", SITE)  # vocab terms are stored expanded, like types
    assert stored.attrs["https://uri.etsi.org/ngsi-ld/default-context/category"]["vocab"] == [
        "https://uri.etsi.org/ngsi-ld/default-context/commercial", "https://uri.etsi.org/ngsi-ld/default-context/office"]


def test_key_values_and_concise(site: TestClient) -> None:
    """§4.5.3 concise and §4.5.4 simplified representations of each type."""
    simple = _get(site, options="keyValues")
    assert simple["street"] == {"fr": "Grand Place", "nl": "Grote Markt"}
    assert simple["category"] == ["commercial", "office"]
    assert simple["meterConfig"]["ctRatio"] == 200
    assert simple["tariffPeriods"] == ["P1", "P2", "P3"]
    assert simple["meters"] == ["urn:ngsi-ld:Device:m1", "urn:ngsi-ld:Device:m2"]
    concise = _get(site, options="concise")
    assert concise["street"] == {"languageMap": {"fr": "Grand Place", "nl": "Grote Markt"}}
    assert concise["tariffPeriods"] == {"valueList": ["P1", "P2", "P3"]}


def test_lang_parameter(site: TestClient) -> None:
    """§4.15: with lang, a LanguageProperty is rendered as a Property in the chosen language with `lang`."""
    assert _get(site, lang="nl")["street"] == {"type": "Property", "value": "Grote Markt", "lang": "nl"}
    assert _get(site, lang="de,fr;q=0.5,nl;q=0.2")["street"]["lang"] == "fr"
    assert _get(site, lang="de")["street"]["lang"] == "fr"  # no match: the first entry
    assert _get(site, lang="nl", options="keyValues")["street"] == "Grote Markt"
    assert _get(site, lang="*")["street"]["type"] == "LanguageProperty"
    assert_problem(site.get(f"{ENTITIES}/{SITE}", params={"lang": "n l"}), 400, "BadRequestData")


def test_q_over_the_new_types(site: TestClient) -> None:
    def hits(q: str) -> int:
        answer = site.get(ENTITIES, params={"type": "Building", "q": q}, headers=ENERGY_LINK)
        assert answer.status_code == 200, answer.text
        return len(answer.json())

    assert hits('street[nl]=="Grote Markt"') == 1
    assert hits('street[fr]=="Grote Markt"') == 0
    assert hits('street=="Grote Markt"') == 1  # any language
    assert hits("street~=Place") == 1
    assert hits('tariffPeriods=="P2"') == 1
    assert hits("meters==urn:ngsi-ld:Device:m2") == 1
    assert hits("meterConfig[ctRatio]>100") == 1


def test_updates_keep_the_type(site: TestClient) -> None:
    """§5.6.4 partial attribute update and §5.6.17 merge with concise members of the new types."""
    url = f"{ENTITIES}/{SITE}/attrs"
    assert site.patch(f"{url}/street", json={"languageMap": {"en": "Grand Square"}},
                      headers=ENERGY_LINK).status_code == 204
    assert _get(site)["street"] == {"type": "LanguageProperty", "languageMap": {"en": "Grand Square"}}
    assert site.patch(f"{ENTITIES}/{SITE}", json={"tariffPeriods": {"valueList": ["P1"]}},
                      headers=ENERGY_LINK).status_code == 204
    assert _get(site)["tariffPeriods"] == {"type": "ListProperty", "valueList": ["P1"]}
    assert site.patch(f"{url}/category", json={"vocab": "retail"}, headers=ENERGY_LINK).status_code == 204
    assert _get(site)["category"] == {"type": "VocabProperty", "vocab": "retail"}
    append = {"meters": {"type": "ListRelationship", "objectList": ["urn:ngsi-ld:Device:m3"]}}
    assert site.post(url, json=append, headers=ENERGY_LINK).status_code == 204
    assert _get(site)["meters"]["objectList"] == [{"object": "urn:ngsi-ld:Device:m3"}]


def test_history_of_the_new_types(site: TestClient) -> None:
    site.patch(f"{ENTITIES}/{SITE}/attrs/street", json={"languageMap": {"en": "Grand Square"}},
               headers=ENERGY_LINK).raise_for_status()
    history = site.get(f"{BASE}/temporal/entities/{SITE}", params={"attrs": "street"}, headers=ENERGY_LINK).json()
    assert [{k: v for k, v in i.items() if k != "instanceId"} for i in history["street"]] == [
        {"type": "LanguageProperty", "languageMap": {"fr": "Grand Place", "nl": "Grote Markt"}},
        {"type": "LanguageProperty", "languageMap": {"en": "Grand Square"}}]


@pytest.mark.parametrize("attribute", [
    {"type": "LanguageProperty", "value": "Grand Place"},
    {"type": "LanguageProperty", "languageMap": "Grand Place"},
    {"type": "LanguageProperty", "languageMap": {"not a tag": "x"}},
    {"type": "LanguageProperty", "languageMap": {"fr": 3}},
    {"type": "VocabProperty", "vocab": 3},
    {"type": "VocabProperty", "vocab": []},
    {"type": "JsonProperty", "value": {"a": 1}},
    {"type": "ListProperty", "valueList": "P1"},
    {"type": "ListRelationship", "objectList": ["not a uri"]},
    {"type": "ListRelationship", "objectList": []},
    {"type": "TextProperty", "value": "x"},
])
def test_malformed_attributes_are_bad_request(client: TestClient, attribute: dict[str, object]) -> None:
    body = {"id": SITE, "type": "Building", "thing": attribute}
    assert_problem(client.post(ENTITIES, json=body, headers=ENERGY_LINK), 400, "BadRequestData")


def test_subscription_lang(client: TestClient, receiver: Receiver) -> None:
    """§5.2.12 Subscription.lang: notified LanguageProperties are in that language (as `lang=` renders them)."""
    sub = {"type": "Subscription", "entities": [{"type": "Building"}], "lang": "nl",
           "notification": {"endpoint": {"uri": f"{receiver.url}/n", "accept": "application/json"}}}
    assert client.post(f"{BASE}/subscriptions", json=sub, headers=ENERGY_LINK).status_code == 201
    client.post(ENTITIES, json=_site(), headers=ENERGY_LINK).raise_for_status()
    street = receiver.wait_for(1)[0].body["data"][0]["street"]
    assert street == {"type": "Property", "value": "Grote Markt", "lang": "nl"}
    assert client.get(f"{BASE}/subscriptions", headers=ENERGY_LINK).json()[0]["lang"] == "nl"
    bad = {**sub, "lang": 3}
    assert_problem(client.post(f"{BASE}/subscriptions", json=bad, headers=ENERGY_LINK), 400, "BadRequestData")


def test_concise_input(client: TestClient) -> None:
    """§4.5.3: the concise representation is accepted in requests; each attribute's type follows from its shape
    (the spec's Vehicle example, concise)."""
    concise = {
        "id": "urn:ngsi-ld:Vehicle:A4567", "type": "Vehicle",
        "brandName": "Mercedes",
        "street": {"languageMap": {"fr": "Grand Place", "nl": "Grote Markt"}},
        "isParked": {"object": "urn:ngsi-ld:OffStreetParking:Downtown1", "observedAt": "2017-07-29T12:00:04Z",
                     "providedBy": {"object": "urn:ngsi-ld:Person:Bob"}},
        "location": {"type": "Point", "coordinates": [-8.5, 41.2]},
        "speed": {"value": 80, "unitCode": "KMH", "accuracy": 0.5},
        "tags": ["a", "b"],
    }
    assert client.post(ENTITIES, json=concise, headers=ENERGY_LINK).status_code == 201
    entity = client.get(f"{ENTITIES}/urn:ngsi-ld:Vehicle:A4567", headers=ENERGY_LINK).json()
    assert entity["brandName"] == {"type": "Property", "value": "Mercedes"}
    assert entity["street"]["type"] == "LanguageProperty"
    assert entity["isParked"] == {"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:Downtown1",
                                  "observedAt": "2017-07-29T12:00:04.000Z",
                                  "providedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Person:Bob"}}
    assert entity["location"] == {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [-8.5, 41.2]}}
    assert entity["speed"] == {"type": "Property", "value": 80, "unitCode": "KMH",
                               "accuracy": {"type": "Property", "value": 0.5}}
    assert entity["tags"] == {"type": "Property", "value": ["a", "b"]}
    assert client.get(f"{ENTITIES}/urn:ngsi-ld:Vehicle:A4567", params={"options": "concise"},
                      headers=ENERGY_LINK).json()["brandName"] == "Mercedes"
    for bad in ({"unitCode": "KMH"}, {"value": 1, "object": "urn:x:1"}, None):
        body = {"id": "urn:ngsi-ld:Vehicle:B1", "type": "Vehicle", "speed": bad}
        assert_problem(client.post(ENTITIES, json=body, headers=ENERGY_LINK), 400, "BadRequestData")
