"""Requests at the edges of ETSI GS CIM 009 V1.8.1, each written from the clause it cites.

What the specification refuses must be refused in its own error shape (ProblemDetails with the type its error
table names), and nothing a client sends may make the broker answer 500.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from .conftest import BASE, Receiver, assert_problem

ENTITY_ID = "urn:ngsi-ld:Meter:strict-1"
SUBSCRIPTION = {"type": "Subscription", "entities": [{"type": "Meter"}],
                "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}}}


def entity(entity_id: str = ENTITY_ID, **attrs: Any) -> dict[str, Any]:
    return {"id": entity_id, "type": "Meter", **attrs}


def create(client: TestClient, body: Any, content_type: str = "application/json") -> Any:
    return client.post(f"{BASE}/entities", content=json.dumps(body), headers={"Content-Type": content_type})


# -- ids: every header encodable, an id that is not a URI is 400 (§4.6.2, RFC 3987) ---------------------------
def test_an_id_with_non_ascii_characters_gets_a_percent_encoded_location(client: TestClient) -> None:
    """An IRI id (RFC 3987) is accepted; its Location header is percent-encoded (RFC 3986 §2.1), and that URL
    retrieves the entity."""
    entity_id = "urn:ngsi-ld:Meter:casa-peña-€"
    response = create(client, entity(entity_id))
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location == f"{BASE}/entities/" + quote(entity_id, safe=":")
    assert location.isascii()
    fetched = client.get(location)
    assert fetched.status_code == 200 and fetched.json()["id"] == entity_id


@pytest.mark.parametrize("entity_id", [
    "urn:ngsi-ld:Meter:a\u200bb",  # zero-width space: invisible
    "urn:ngsi-ld:Meter:a\u202eb",  # right-to-left override: RFC 3987 §4.1 forbids bidi controls
    "urn:ngsi-ld:Meter:a\u00a0b",  # no-break space
    "urn:ngsi-ld:Meter:a\x01b",  # a control character
    "not a uri",
    "meter-1",  # no scheme
])
def test_an_id_that_is_not_a_uri_is_bad_request_data(client: TestClient, entity_id: str) -> None:
    assert_problem(create(client, entity(entity_id)), 400, "BadRequestData")
    batch = client.post(f"{BASE}/entityOperations/upsert", json=[entity(entity_id)])
    assert batch.status_code == 207, batch.text
    assert batch.json()["errors"][0]["error"]["type"].endswith("/BadRequestData")


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("resource", ["entities", "subscriptions"])
def test_get_or_delete_with_an_id_that_is_not_a_uri_is_400_not_404(client: TestClient, method: str,
                                                                     resource: str) -> None:
    """§6.5.3 / §6.11.3: a malformed id is a bad request (BadRequestData), not a missing resource."""
    client.post(f"{BASE}/entities", json=entity())  # the tenant exists
    for bad in ("not-a-uri", quote("urn:ngsi-ld:Meter:a\u200bb")):
        assert_problem(client.request(method, f"{BASE}/{resource}/{bad}"), 400, "BadRequestData")


# -- validation the specification requires --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["datasetId", "instanceId", "observedAt", "unitCode", "value", "object",
                                  "https://uri.etsi.org/ngsi-ld/observedAt", "@id"])
def test_core_terms_cannot_name_an_attribute(client: TestClient, name: str) -> None:
    """§4.5.1: "Terms defined in the Core Context as non-reified Properties ... shall not be used as Attribute
    names"."""
    assert_problem(create(client, entity(**{name: {"type": "Property", "value": 1}})), 400, "BadRequestData")


@pytest.mark.parametrize("operation", ["append", "update", "merge", "replace entity", "replace attribute",
                                       "temporal", "batch upsert"])
def test_core_terms_cannot_name_an_attribute_in_any_write(client: TestClient, operation: str) -> None:
    """§4.5.1 holds for every operation that names attributes, not only for Create Entity."""
    client.post(f"{BASE}/entities", json=entity(speed={"type": "Property", "value": 1}))
    attr = {"observedAt": {"type": "Property", "value": 1}}
    url = f"{BASE}/entities/{ENTITY_ID}"
    response = {
        "append": lambda: client.post(f"{url}/attrs", json=attr),
        "update": lambda: client.patch(f"{url}/attrs", json=attr),
        "merge": lambda: client.patch(url, json=attr),
        "replace entity": lambda: client.put(url, json=entity(**attr)),
        "replace attribute": lambda: client.put(f"{url}/attrs/observedAt", json=attr["observedAt"]),
        "temporal": lambda: client.post(f"{BASE}/temporal/entities", json=entity("urn:ngsi-ld:Meter:t", **attr)),
        "batch upsert": lambda: client.post(f"{BASE}/entityOperations/upsert", json=[entity(**attr)]),
    }[operation]()
    if operation == "batch upsert":
        assert response.status_code == 207 and "BadRequestData" in response.text, response.text
    else:
        assert_problem(response, 400, "BadRequestData")


def test_system_attributes_sent_back_are_ignored(client: TestClient) -> None:
    """createdAt/modifiedAt are the broker's (§4.8): a retrieved entity posted back with them keeps the
    broker's times."""
    response = create(client, entity(createdAt="2000-01-01T00:00:00.000Z", speed={"type": "Property", "value": 1}))
    assert response.status_code == 201
    got = client.get(f"{BASE}/entities/{ENTITY_ID}", params={"options": "sysAttrs"}).json()
    assert got["createdAt"] != "2000-01-01T00:00:00.000Z"


def test_a_relationship_has_no_unit_code(client: TestClient) -> None:
    """§4.5.3.2: a Relationship shall never include unitCode, as Relationships are unitless."""
    body = entity(isIn={"type": "Relationship", "object": "urn:ngsi-ld:Site:1", "unitCode": "MTR"})
    assert_problem(create(client, body), 400, "BadRequestData")
    ok = entity(isIn={"type": "Relationship", "object": "urn:ngsi-ld:Site:1", "objectType": "Site"})
    assert create(client, ok).status_code == 201


@pytest.mark.parametrize("entity_type", ["type", "id", "1Meter", "@type"])
def test_an_entity_type_is_a_term_or_a_uri(client: TestClient, entity_type: str) -> None:
    """§4.6.2: a type name is a URI or a term; a term begins with a letter and a core keyword is no type."""
    assert_problem(create(client, {"id": ENTITY_ID, "type": entity_type}), 400, "BadRequestData")


@pytest.mark.parametrize("observed_at", ["2026-11-24T10:00:00+02:00", "2026-11-24T10:00:00+00:00",
                                         "2026-11-24T10:00:00"])
def test_observed_at_must_be_utc_with_z(client: TestClient, observed_at: str) -> None:
    """§4.6.3: DateTimes in payloads are UTC with the Z designator; an offset is refused, not converted."""
    body = entity(speed={"type": "Property", "value": 1, "observedAt": observed_at})
    assert_problem(create(client, body), 400, "BadRequestData")
    body["speed"]["observedAt"] = "2026-11-24T10:00:00.000Z"
    assert create(client, body).status_code == 201


@pytest.mark.parametrize("attrs", [
    {"speed": None},
    {"speed": {"type": "Property", "value": None}},
    {"isIn": {"type": "Relationship", "object": None}},
    {"speed": {"type": "Property", "value": 1, "accuracy": None}},
])
def test_null_is_not_a_value(client: TestClient, attrs: dict[str, Any]) -> None:
    """§4.5.2.2 / §4.5.3.2: value and object are mandatory; JSON null is no NGSI-LD value (only merge-patch reads
    null, as urn:ngsi-ld:null, to delete)."""
    assert_problem(create(client, entity(**attrs)), 400, "BadRequestData")


def test_an_attribute_carries_no_embedded_context(client: TestClient) -> None:
    """§5.5.7: an attribute with its own @context is BadRequestData."""
    body = entity(speed={"type": "Property", "value": 1, "@context": {"speed": "https://evil.example/speed"}})
    assert_problem(create(client, body), 400, "BadRequestData")


def test_a_scoped_context_in_the_user_context_is_refused(client: TestClient) -> None:
    """A term with its own @context (JSON-LD 1.1 scoped context) would rename the sub-attributes of one
    attribute: an embedded @context by another route (§5.5.7), refused rather than silently misapplied."""
    body = {**entity(), "@context": [{"speed": {"@id": "https://example.org/speed",
                                                 "@context": {"accuracy": "https://example.org/acc"}}}]}
    assert_problem(create(client, body, "application/ld+json"), 400, "BadRequestData")


@pytest.mark.parametrize("params", [{"pick": "speed", "attrs": "speed"}, {"omit": "speed", "attrs": "speed"},
                                    {"pick": ""}, {"omit": ","}])
def test_pick_and_omit_exclude_attrs_and_cannot_be_empty(client: TestClient, params: dict[str, str]) -> None:
    """§4.21 (projection): pick/omit name what to keep or drop; combined with attrs, or empty, they are bad."""
    client.post(f"{BASE}/entities", json=entity(speed={"type": "Property", "value": 1}))
    assert_problem(client.get(f"{BASE}/entities", params={"type": "Meter", **params}), 400, "BadRequestData")
    assert_problem(client.get(f"{BASE}/entities/{ENTITY_ID}", params=params), 400, "BadRequestData")


@pytest.mark.parametrize("change", [
    {"id": ""},
    {"notification": {**SUBSCRIPTION["notification"], "pick": ["speed"], "attributes": ["speed"]}},
    {"notification": {**SUBSCRIPTION["notification"], "omit": ["speed"], "attributes": ["speed"]}},
    {"notification": {**SUBSCRIPTION["notification"], "showChanges": True, "format": "keyValues"}},
    {"expiresAt": "2099-01-01T00:00:00+01:00"},
])
def test_invalid_subscriptions_are_refused(client: TestClient, change: dict[str, Any]) -> None:
    """§5.2.12 Subscription / §5.2.14 NotificationParams: an empty id is no URI; attributes is the older form of
    pick/omit, never beside them; showChanges needs a format with room for previousValue; DateTimes are Z."""
    assert_problem(client.post(f"{BASE}/subscriptions", json={**SUBSCRIPTION, **change}), 400, "BadRequestData")


# -- answers that differ from the specification ---------------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"   ", b"{broken", b"\xff\xfe"])
def test_empty_or_unreadable_body_is_invalid_request(client: TestClient, content: bytes) -> None:
    """§6.3.4 / error table: a payload that is not JSON makes the request InvalidRequest (not BadRequestData)."""
    response = client.post(f"{BASE}/entities", content=content, headers={"Content-Type": "application/json"})
    assert_problem(response, 400, "InvalidRequest")


@pytest.mark.parametrize("params", [{"format": "fancy"}, {"options": "fancy"}, {"options": "keyValues,fancy"}])
def test_bad_format_or_options_is_invalid_request(client: TestClient, params: dict[str, str]) -> None:
    client.post(f"{BASE}/entities", json=entity())
    assert_problem(client.get(f"{BASE}/entities", params={"type": "Meter", **params}), 400, "InvalidRequest")
    assert_problem(client.get(f"{BASE}/entities/{ENTITY_ID}", params=params), 400, "InvalidRequest")


@pytest.mark.parametrize("params", [{"join": "flat"}, {"join": "inline"}, {"joinLevel": "2"}])
def test_join_is_refused_with_501_not_ignored(client: TestClient, params: dict[str, str]) -> None:
    """§4.5.23 linked entity retrieval is not implemented: an ignored join would answer a different document."""
    client.post(f"{BASE}/entities", json=entity())
    response = client.get(f"{BASE}/entities", params={"type": "Meter", **params})
    assert_problem(response, 501, "OperationNotSupported")
    assert_problem(client.get(f"{BASE}/entities/{ENTITY_ID}", params=params), 501, "OperationNotSupported")


@pytest.mark.parametrize("operation", ["create", "upsert", "update", "merge"])
@pytest.mark.parametrize("item", [None, 7, "urn:ngsi-ld:Meter:x"])
def test_a_batch_item_that_is_not_an_entity_fails_the_whole_request(client: TestClient, operation: str,
                                                                     item: Any) -> None:
    """§6.14-§6.17, §6.31: the payload is an array of entities; one item that is no JSON object makes the
    request bad as a whole (400), and nothing of it is applied."""
    client.post(f"{BASE}/entities", json=entity("urn:ngsi-ld:Meter:other"))  # the tenant exists
    body = [entity(speed={"type": "Property", "value": 1}), item]
    assert_problem(client.post(f"{BASE}/entityOperations/{operation}", json=body), 400, "BadRequestData")
    assert client.get(f"{BASE}/entities/{ENTITY_ID}").status_code == 404


def test_subscription_q_is_percent_decoded(client: TestClient, receiver: Receiver) -> None:
    """§4.9: q in a payload is written as in a URI parameter, percent-encoded; `%22` is a quote. The q is
    returned as written, and matches as decoded."""
    q = "name==%22casa%20pe%C3%B1a%22"
    notification = {"endpoint": {"uri": receiver.url + "/notify"}}
    response = client.post(f"{BASE}/subscriptions", json={**SUBSCRIPTION, "q": q, "notification": notification})
    assert response.status_code == 201, response.text
    assert client.get(response.headers["location"]).json()["q"] == q
    client.post(f"{BASE}/entities", json=entity("urn:ngsi-ld:Meter:no", name={"type": "Property", "value": "x"}))
    client.post(f"{BASE}/entities", json=entity(name={"type": "Property", "value": "casa peña"}))
    receiver.wait_for(1)
    time.sleep(0.3)
    assert [e["id"] for r in receiver.received for e in r.body["data"]] == [ENTITY_ID]


def test_query_pages_are_linked_next_and_prev(client: TestClient) -> None:
    """§6.3.13 (pagination): Link headers with rel="next" and rel="prev" (RFC 8288) lead to the other pages;
    NGSILD-Results-Count counts every match, not the page."""
    for i in range(5):
        client.post(f"{BASE}/entities", json=entity(f"urn:ngsi-ld:Meter:p{i}", n={"type": "Property", "value": i}))
    first = client.get(f"{BASE}/entities", params={"type": "Meter", "q": "n>0", "limit": 2, "count": "true"})
    assert first.headers["NGSILD-Results-Count"] == "4"
    links = _links(first)
    assert "prev" not in links and "offset=2" in links["next"] and "limit=2" in links["next"]
    second = client.get(links["next"])
    assert [e["id"] for e in second.json()] == ["urn:ngsi-ld:Meter:p3", "urn:ngsi-ld:Meter:p4"]
    assert "next" not in _links(second) and "offset=0" in _links(second)["prev"]
    assert "rel=\"http://www.w3.org/ns/json-ld#context\"" in ",".join(second.headers.get_list("link"))


def test_subscription_pages_are_linked_and_counted(client: TestClient) -> None:
    for _ in range(3):
        client.post(f"{BASE}/subscriptions", json=SUBSCRIPTION)
    page = client.get(f"{BASE}/subscriptions", params={"limit": 2, "count": "true"})
    assert page.headers["NGSILD-Results-Count"] == "3" and len(page.json()) == 2
    rest = client.get(_links(page)["next"])
    assert len(rest.json()) == 1 and "next" not in _links(rest)


def _links(response: Any) -> dict[str, str]:
    """rel -> target of the paging Link headers."""
    out = {}
    for header in response.headers.get_list("link"):
        for value in header.split(", <"):
            target, _, params = value.strip().lstrip("<").partition(">")
            for rel in ("next", "prev"):
                if f'rel="{rel}"' in params:
                    out[rel] = target
    return out


def test_compaction_uses_the_core_prefix_when_no_term_fits(client: TestClient) -> None:
    """JSON-LD IRI compaction (used by §5.5.7): an IRI no term of the reader's context names, under the core
    context's `ngsi-ld` prefix, comes back as `ngsi-ld:…`, not as the full IRI."""
    client.post(f"{BASE}/entities", json=entity(speed={"type": "Property", "value": 1}))  # default-context/speed
    body = {"@context": [{"speed": "https://example.org/speed"}]}
    got = client.post(f"{BASE}/entityOperations/query", json={"type": "Query", "entities": [{"type": "Meter"}],
                                                               **body},
                      headers={"Content-Type": "application/ld+json"})
    assert got.status_code == 200, got.text
    assert "ngsi-ld:default-context/speed" in got.json()[0]
    plain = client.get(f"{BASE}/entities/{ENTITY_ID}").json()
    assert "speed" in plain  # with the core context alone the @vocab gives the short name


@pytest.mark.parametrize("params", [{"options": "keyValues"}, {"options": "temporalValues,fancy"},
                                    {"format": "keyValues"}])
def test_invalid_temporal_options_are_invalid_request(client: TestClient, params: dict[str, str]) -> None:
    """§6.18.3.1: temporal queries know temporalValues, aggregatedValues and sysAttrs (format simplified/
    normalized/temporalValues/aggregatedValues); any other value is a malformed request."""
    client.post(f"{BASE}/entities", json=entity(speed={"type": "Property", "value": 1}))
    response = client.get(f"{BASE}/temporal/entities", params={"type": "Meter", "timerel": "after",
                                                               "timeAt": "2000-01-01T00:00:00Z", **params})
    assert_problem(response, 400, "InvalidRequest")


def test_notifications_to_a_json_ld_endpoint_carry_the_context_and_sys_attrs(client: TestClient,
                                                                            receiver: Receiver) -> None:
    """§5.2.15 / §6.3.x: a receiver accepting application/ld+json gets the @context in the notification body
    (application/json: in a Link header instead); notification.sysAttrs adds createdAt and modifiedAt to the
    entity and its attributes (§4.8), also on later updates, where createdAt keeps the creation time."""
    for path, accept in (("/ld", "application/ld+json"), ("/json", "application/json")):
        notification = {"sysAttrs": True, "endpoint": {"uri": receiver.url + path, "accept": accept}}
        assert client.post(f"{BASE}/subscriptions", json={**SUBSCRIPTION, "notification": notification}
                           ).status_code == 201
    client.post(f"{BASE}/entities", json=entity(speed={"type": "Property", "value": 1}))
    client.patch(f"{BASE}/entities/{ENTITY_ID}/attrs", json={"speed": {"type": "Property", "value": 2}})
    as_ld = receiver.wait_for(2, path="/ld")
    as_json = receiver.wait_for(2, path="/json")
    assert "ngsi-ld-core-context" in json.dumps(as_ld[0].body["@context"])
    assert as_ld[0].headers["content-type"].startswith("application/ld+json")
    assert "@context" not in as_json[0].body and "ngsi-ld-core-context" in as_json[0].headers["link"]
    created, updated = (r.body["data"][0] for r in as_ld)
    for notified in (created, updated):
        assert notified["createdAt"] and notified["modifiedAt"] and notified["speed"]["createdAt"]
    assert updated["createdAt"] == created["createdAt"] and updated["speed"]["value"] == 2
    assert updated["modifiedAt"] >= created["modifiedAt"]


def test_a_retrieved_subscription_has_the_spec_representation(client: TestClient) -> None:
    """§5.2.12: isActive as written, status active|paused|expired, notification.status ok|failed and
    timesSent; expiresAt in UTC."""
    body = {**SUBSCRIPTION, "isActive": False, "expiresAt": "2099-01-01T00:00:00Z"}
    location = client.post(f"{BASE}/subscriptions", json=body).headers["location"]
    got = client.get(location).json()
    assert got["type"] == "Subscription" and got["isActive"] is False and got["status"] == "paused"
    assert got["notification"]["status"] == "ok" and got["notification"]["timesSent"] == 0
    assert got["expiresAt"] == "2099-01-01T00:00:00.000Z"
    assert client.patch(location, json={"isActive": True}).status_code == 204
    assert client.get(location).json()["status"] == "active"


@pytest.mark.parametrize("pair", [{"key": "X-Site", "value": "casa peña"}, {"key": "X Site", "value": "a"},
                                  {"key": "X-Site", "value": "a\r\nInjected: 1"}])
def test_receiver_info_must_be_a_header_http_can_carry(client: TestClient, pair: dict[str, str]) -> None:
    """receiverInfo (§5.2.15 Endpoint) becomes headers of every notification: refused at creation when no HTTP
    header can carry it (RFC 9110 §5), instead of failing every notification later."""
    notification = {"endpoint": {"uri": "http://127.0.0.1:9/notify", "receiverInfo": [pair]}}
    response = client.post(f"{BASE}/subscriptions", json={**SUBSCRIPTION, "notification": notification})
    assert_problem(response, 400, "BadRequestData")


@pytest.fixture
def context_server() -> Any:
    """A local HTTP server answering every path with a small JSON-LD context document."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"@context": {"speed": "https://example.org/speed"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/ld+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_context_url_with_non_ascii_characters_is_echoed_percent_encoded(client: TestClient,
                                                                          context_server: str) -> None:
    """The Link header naming a body @context (an IRI) is written percent-encoded instead of failing (500)."""
    client.post(f"{BASE}/entities", json=entity(speed={"type": "Property", "value": 1}))
    query = {"type": "Query", "entities": [{"type": "Meter"}], "@context": f"{context_server}/contexto-ñ.jsonld"}
    response = client.post(f"{BASE}/entityOperations/query", json=query,
                           headers={"Content-Type": "application/ld+json", "Accept": "application/json"})
    assert response.status_code == 200, response.text
    assert "/contexto-%C3%B1.jsonld>" in response.headers["link"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/a\x00b", "http://127.0.0.1:9/a b", "ftp://example.org/c"])
def test_a_context_url_that_cannot_be_fetched_by_its_form_is_bad_request_data(client: TestClient,
                                                                              url: str) -> None:
    response = create(client, {**entity(), "@context": url}, "application/ld+json")
    assert_problem(response, 400, "BadRequestData")


@pytest.mark.parametrize(("options", "expected"), [({}, 2), ({"options": "noOverwrite"}, 1)])
def test_batch_update_overwrites_unless_no_overwrite(client: TestClient, options: dict[str, str],
                                                     expected: int) -> None:
    """§5.6.9 Batch Entity Update (Append Entity Attributes per entity, §5.6.3): existing attributes are
    replaced unless noOverwrite is given; attributes not there yet are added either way."""
    client.post(f"{BASE}/entities", json=entity(speed={"type": "Property", "value": 1}))
    body = [entity(speed={"type": "Property", "value": 2}, load={"type": "Property", "value": 7})]
    response = client.post(f"{BASE}/entityOperations/update", params=options, json=body)
    assert response.status_code == 204, response.text
    got = client.get(f"{BASE}/entities/{ENTITY_ID}", params={"options": "keyValues"}).json()
    assert got["speed"] == expected and got["load"] == 7
