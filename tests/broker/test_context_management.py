"""@context management (ETSI GS CIM 009 V1.8.1 §5.13): hosting a context, listing, serving, deleting, reloading."""

from __future__ import annotations

from starlette.testclient import TestClient

from .conftest import BASE, assert_problem
from .test_protocol import ContextServer, context_server  # noqa: F401 (the fixture)

CONTEXTS = f"{BASE}/jsonldContexts"
LINK_REL = 'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
METER = {"id": "urn:ngsi-ld:Meter:1", "type": "Meter", "voltage": {"type": "Property", "value": 230.0}}


def _link(url: str) -> dict[str, str]:
    return {"Link": f"<{url}>; {LINK_REL}"}


def test_hosted_context_is_used_without_fetching(client: TestClient) -> None:
    """§5.13.2 Add @context: the broker hosts it; requests name it by URL, under any of the broker's host names."""
    document = {"@context": {"voltage": "https://example.org/terms/voltage", "Meter": "https://example.org/Meter"}}
    added = client.post(CONTEXTS, json=document)
    assert added.status_code == 201, added.text
    path = added.headers["location"]
    assert path.startswith(f"{CONTEXTS}/")
    local_id = path.rsplit("/", 1)[1]
    # another host name than the one it was added through: still resolved locally (nothing listens on port 9)
    url = f"http://127.0.0.1:9{path}"
    assert client.post(f"{BASE}/entities", json=METER, headers=_link(url)).status_code == 201
    stored = client.get(f"{BASE}/entities/{METER['id']}").json()
    assert stored["type"] == "https://example.org/Meter" and "https://example.org/terms/voltage" in stored
    assert client.get(f"{BASE}/entities/{METER['id']}", headers=_link(url)).json()["voltage"]["value"] == 230.0

    served = client.get(f"{CONTEXTS}/{local_id}")
    assert served.status_code == 200 and served.json() == document
    assert served.headers["content-type"].startswith("application/ld+json")
    assert client.get(CONTEXTS).json() == [f"http://testserver{path}"]
    [details] = client.get(CONTEXTS, params={"details": "true", "kind": "Hosted"}).json()
    assert details["localId"] == local_id and details["kind"] == "Hosted"
    assert client.get(CONTEXTS, params={"kind": "Cached"}).json() == []

    assert client.delete(f"{CONTEXTS}/{local_id}").status_code == 204
    assert_problem(client.get(f"{CONTEXTS}/{local_id}"), 404, "ResourceNotFound")
    # gone: naming it now means fetching it, which fails
    assert_problem(client.get(f"{BASE}/entities/{METER['id']}", headers=_link(url)), 503, "LdContextNotAvailable")


def test_cached_context_can_be_reloaded(client: TestClient, context_server: ContextServer) -> None:  # noqa: F811
    """§5.13.5 Delete and Reload @context: a fetched context is listed as Cached; reload=true fetches it again."""
    assert client.post(f"{BASE}/entities", json=METER, headers=_link(context_server.url)).status_code == 201
    assert context_server.fetches == 1
    assert client.get(CONTEXTS, params={"kind": "cached"}).json() == [context_server.url]
    encoded = context_server.url.replace("/", "%2F")
    assert client.get(f"{CONTEXTS}/{encoded}").json()["@context"]["voltage"] == "https://example.org/terms/voltage"
    assert client.delete(f"{CONTEXTS}/{encoded}", params={"reload": "true"}).status_code == 204
    assert context_server.fetches == 2
    assert client.delete(f"{CONTEXTS}/{encoded}").status_code == 204
    assert client.get(CONTEXTS).json() == []
    client.get(f"{BASE}/entities/{METER['id']}", headers=_link(context_server.url)).raise_for_status()
    assert context_server.fetches == 3  # forgotten: fetched when next named


def test_invalid_requests(client: TestClient) -> None:
    assert_problem(client.post(CONTEXTS, json={"voltage": "x"}), 400, "BadRequestData")
    assert_problem(client.post(CONTEXTS, json={"@context": 3}), 400, "BadRequestData")
    assert_problem(client.get(CONTEXTS, params={"kind": "borrowed"}), 400, "BadRequestData")
    assert_problem(client.get(f"{CONTEXTS}/nope"), 404, "ResourceNotFound")
    assert_problem(client.delete(f"{CONTEXTS}/nope"), 404, "ResourceNotFound")
    added = client.post(CONTEXTS, json={"@context": {"a": "https://example.org/a"}}).headers["location"]
    assert_problem(client.delete(added, params={"reload": "true"}), 400, "BadRequestData")
