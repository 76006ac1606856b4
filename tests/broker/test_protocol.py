"""Media types, @context sources and every ProblemDetails case the edge produces."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from starlette.testclient import TestClient

from datamodels.context import link_header
from twin_service.broker import Store
from twin_service.broker._http import MAX_BODY_BYTES
from twin_service.mqtt_server import free_port

from .conftest import BASE, ENERGY_LINK, MEASUREMENT_ID, assert_problem, measurement

ENTITIES = f"{BASE}/entities"


def test_content_type_and_context_rules(client: TestClient) -> None:
    with_context = {**measurement(), "@context": "https://example.org/ctx.jsonld"}
    assert_problem(client.post(ENTITIES, json=with_context), 400, "BadRequestData")
    assert_problem(client.post(ENTITIES, json=measurement(), headers={"Content-Type": "application/ld+json"}),
                   400, "BadRequestData")
    both = client.post(ENTITIES, content=json.dumps(with_context),
                       headers={**ENERGY_LINK, "Content-Type": "application/ld+json"})
    assert_problem(both, 400, "BadRequestData")
    for content_type in ("text/plain", "application/xml", None):
        headers = {"Content-Type": content_type} if content_type else {}
        answer = client.post(ENTITIES, content=json.dumps(measurement()).encode(), headers=headers)
        assert_problem(answer, 415, "InvalidRequest")
    assert_problem(client.post(ENTITIES, json=measurement(), headers={"Link": "ctx.jsonld"}), 400, "BadRequestData")
    charset = client.post(ENTITIES, content=json.dumps(measurement()),
                          headers={**ENERGY_LINK, "Content-Type": "application/json; charset=utf-8"})
    assert charset.status_code == 201


def test_accept_negotiation(client: TestClient) -> None:
    client.post(ENTITIES, json=measurement(), headers=ENERGY_LINK).raise_for_status()
    url = f"{ENTITIES}/{MEASUREMENT_ID}"
    assert_problem(client.get(url, headers={"Accept": "text/html"}), 406, "InvalidRequest")
    assert_problem(client.get(f"{BASE}/types", headers={"Accept": "application/geo+json"}), 406, "InvalidRequest")
    assert client.get(url, headers={"Accept": "*/*"}).headers["content-type"].startswith("application/json")
    preferred = client.get(url, headers={"Accept": "application/json;q=0.5, application/ld+json"})
    assert preferred.headers["content-type"].startswith("application/ld+json")
    # No Link on the request: the response names the core context.
    assert "ngsi-ld-core-context-v1.8" in client.get(url).headers["link"]
    assert "ngsi-ld-core-context-v1.8" in client.get(url, headers={"Accept": "application/ld+json"}).json()["@context"]


def test_malformed_json_and_oversize_bodies(client: TestClient) -> None:
    headers = {"Content-Type": "application/json"}
    assert_problem(client.post(ENTITIES, content=b'{"id": "urn:x:1",', headers=headers), 400, "InvalidRequest")
    assert_problem(client.post(ENTITIES, content=b"", headers=headers), 400, "InvalidRequest")
    huge = measurement(comment={"type": "Property", "value": "x" * MAX_BODY_BYTES})
    assert_problem(client.post(ENTITIES, json=huge, headers=ENERGY_LINK), 413, "InvalidRequest")


def test_unknown_routes_and_methods(client: TestClient) -> None:
    assert_problem(client.get("/ngsi-ld/v1/nothing"), 404, "ResourceNotFound")
    assert_problem(client.get(f"{ENTITIES}/{MEASUREMENT_ID}/attrs/x/y"), 404, "ResourceNotFound")
    assert_problem(client.get(f"{ENTITIES}/{MEASUREMENT_ID}/attrs/x"), 405, "InvalidRequest")
    wrong = client.put(ENTITIES, json=[])
    assert_problem(wrong, 405, "InvalidRequest")
    assert set(wrong.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_not_yet_supported_query_features_are_refused(client: TestClient) -> None:
    for param in ("csf", "scopeQ"):
        answer = client.get(ENTITIES, params={"type": "ThreePhaseAcMeasurement", param: "x"})
        assert_problem(answer, 501, "OperationNotSupported")


def test_internal_errors_become_problem_details(client: TestClient, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Store, "get_entity", broken)
    body = assert_problem(client.get(f"{ENTITIES}/{MEASUREMENT_ID}"), 500, "InternalError")
    assert "disk on fire" in body["detail"]
    assert any("internal error" in r.getMessage() and r.exc_info for r in caplog.records)
    monkeypatch.undo()
    assert client.get("/version").status_code == 200  # still serving


class ContextServer:
    """A local HTTP server publishing one user @context (a context that is not vendored), counting fetches."""

    def __init__(self) -> None:
        document = json.dumps({"@context": {"voltage": "https://example.org/terms/voltage",
                                            "Meter": "https://example.org/terms/Meter"}}).encode()
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/ld+json")
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/context.jsonld"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def context_server() -> Iterator[ContextServer]:
    server = ContextServer()
    yield server
    server.stop()


def test_remote_context_is_fetched_once_and_survives_restart(make_client: Any,
                                                             context_server: ContextServer) -> None:
    client = make_client()
    link = {"Link": link_header(context_server.url)}
    entity = {"id": "urn:ngsi-ld:Meter:1", "type": "Meter", "voltage": {"type": "Property", "value": 230}}
    assert client.post(ENTITIES, json=entity, headers=link).status_code == 201
    assert "https://example.org/terms/voltage" in client.get(f"{ENTITIES}/urn:ngsi-ld:Meter:1").json()
    assert client.get(f"{ENTITIES}/urn:ngsi-ld:Meter:1", headers=link).json() == entity
    assert context_server.fetches == 1

    context_server.stop()  # offline from now on: the restarted broker must use its stored copy
    restarted = make_client()
    assert restarted.get(f"{ENTITIES}/urn:ngsi-ld:Meter:1", headers=link).json() == entity


def test_unreachable_context_is_503(client: TestClient) -> None:
    link = {"Link": link_header(f"http://127.0.0.1:{free_port()}/gone.jsonld")}
    assert_problem(client.post(ENTITIES, json=measurement(), headers=link), 503, "LdContextNotAvailable")
    assert_problem(client.get(ENTITIES, params={"type": "X"}, headers=link), 503, "LdContextNotAvailable")
