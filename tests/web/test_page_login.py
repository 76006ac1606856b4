"""The page's login and role checks over HTTP, against the real embedded broker and the local issuer's users:
every page endpoint (HTML, JSON, SSE) refuses without a session, a member sees only their own meters (never a
foreign id in any body), public and device roles are refused, a forged or expired token is refused, logout ends
the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from access import LocalIssuer
from access._users import UserError, UserStore
from fiware_client import NgsiLdClient
from tests.broker_process import broker_process
from twin_service.web import PageAuth, WebConfig, create_app

TENANT = "web-login-test"
T = "2026-12-06T12:00:00.000Z"


@pytest.fixture(scope="module")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with broker_process(tmp_path_factory.mktemp("broker")) as url:
        meters = [{"id": f"urn:ngsi-ld:ThreePhaseAcMeasurement:{d}", "type": "ThreePhaseAcMeasurement",
                   "totalActivePower": {"type": "Property", "value": 1000.0 + i, "unitCode": "WTT", "observedAt": T}}
                  for i, d in enumerate(("meter-001", "meter-002"))]
        with NgsiLdClient(url, tenant=TENANT) as client:  # the same @context the page reads with
            client.upsert_entities(meters)
        yield url


@pytest.fixture(scope="module")
def page(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, LocalIssuer]]:
    data = tmp_path_factory.mktemp("access")
    issuer = LocalIssuer(data)
    users = UserStore(data)
    users.add("ana", "member", secret="ana-secret", devices=["meter-001"])
    users.add("boss", "manager", secret="boss-secret")
    users.add("screen", "public", secret="screen-secret")

    def login(name: str, secret: str) -> str:
        user = users.check(name, secret)
        return issuer.token(user.name, user.role, member=user.member, devices=user.devices, cups=user.cups)

    auth = PageAuth(verify=issuer.verifier().verify, login=login, secure_cookie=False)
    app = create_app(WebConfig(broker_url=broker_url, tenant=TENANT, auth=auth), subscribe=False)
    with TestClient(app, follow_redirects=False) as client:
        yield client, issuer


PAGE_ENDPOINTS = ["/", "/meters/meter-001", "/api/meters", "/api/meters/meter-001",
                  "/api/meters/meter-001/history", "/api/stream", "/api/measures", "/api/me"]


def _log_in(client: TestClient, user: str, secret: str) -> None:
    client.cookies.clear()
    r = client.post("/login", data={"user": user, "secret": secret})
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_without_a_session_every_page_endpoint_is_refused(page) -> None:
    client, _ = page
    client.cookies.clear()
    for path in PAGE_ENDPOINTS:
        r = client.get(path)
        if path.startswith("/api/"):
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"].startswith("Bearer") and r.json()["title"] == "Unauthorized"
            assert r.headers["content-type"] == "application/problem+json"  # ProblemDetails, like the NGSI-LD API
            assert {k: r.json()[k] for k in ("type", "status")} == {"type": "urn:energytwin:errors:Unauthorized",
                                                                   "status": 401}
        else:
            assert r.status_code == 303 and r.headers["location"] == "/login", path
    assert client.get("/login").status_code == 200
    assert client.get("/health").status_code == 200


def test_a_wrong_secret_forged_or_expired_token_is_refused(page) -> None:
    client, issuer = page
    client.cookies.clear()
    r = client.post("/login", data={"user": "ana", "secret": "nope"})
    assert r.status_code == 401 and "wrong secret" in r.text and "set-cookie" not in r.headers
    good = issuer.token("ana", "member", devices=["meter-001"])
    head, body, sig = good.split(".")
    forged = f"{head}.{body}.{sig[:-4]}AAAA"
    expired = issuer.token("ana", "member", devices=["meter-001"], lifetime_s=-120)
    other = LocalIssuer(Path(issuer.data_dir) / "elsewhere").token("ana", "manager")
    for token in (forged, expired, other, "not-a-jwt"):
        r = client.get("/api/meters", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, token
        assert client.post("/login", data={"token": token}).status_code == 401


def test_a_member_sees_only_their_own_meter(page) -> None:
    client, _ = page
    _log_in(client, "ana", "ana-secret")
    r = client.get("/api/meters")
    assert r.status_code == 200
    assert [m["device"] for m in r.json()["meters"]] == ["meter-001"]
    assert "meter-002" not in r.text
    assert client.get("/api/meters/meter-001").status_code == 200
    for path in ("/api/meters/meter-002", "/api/meters/meter-002/history", "/meters/meter-002",
                 "/api/meters/meter-999"):  # unknown or foreign: the same 403, existence is not told
        r = client.get(path)
        assert r.status_code == 403 and "meter-002" not in r.text, path
        if path.startswith("/api/"):
            assert r.json()["status"] == 403 and r.json()["type"] == "urn:energytwin:errors:Forbidden", path
    me = client.get("/api/me").json()
    assert me == {"subject": "ana", "role": "member", "member": "ana", "accessControl": True}


def test_a_manager_sees_every_meter_and_a_bearer_token_works_without_cookie(page) -> None:
    client, issuer = page
    _log_in(client, "boss", "boss-secret")
    assert [m["device"] for m in client.get("/api/meters").json()["meters"]] == ["meter-001", "meter-002"]
    client.cookies.clear()
    token = issuer.token("ops", "control-centre")
    r = client.get("/api/meters/meter-002", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["reading"]["device"] == "meter-002"


def test_public_and_device_roles_see_no_meter(page) -> None:
    client, issuer = page
    _log_in(client, "screen", "screen-secret")
    for path in PAGE_ENDPOINTS:  # the public role gets its own screen at / (and who it is), no meter anywhere
        r = client.get(path)
        assert r.status_code == (200 if path in ("/", "/api/me") else 403) and "meter-00" not in r.text, path
    assert 'id="public"' in client.get("/").text
    client.cookies.clear()
    device = issuer.token("meter-001", "device", devices=["meter-001"])
    assert client.get("/api/meters", headers={"Authorization": f"Bearer {device}"}).status_code == 403


def test_logout_ends_the_session(page) -> None:
    client, _ = page
    _log_in(client, "ana", "ana-secret")
    assert client.get("/api/me").status_code == 200
    r = client.post("/logout")
    assert r.status_code == 303 and "Max-Age=0" in r.headers["set-cookie"]
    client.cookies.clear()  # what the browser does with Max-Age=0
    assert client.get("/api/me").status_code == 401


def test_unknown_user_cannot_log_in(page) -> None:
    client, _ = page
    client.cookies.clear()
    assert client.post("/login", data={"user": "mallory", "secret": "x"}).status_code == 401
    assert client.post("/login", content=b"[1]", headers={"content-type": "application/json"}).status_code == 400
    with pytest.raises(UserError):
        UserStore(Path("/nonexistent")).check("mallory", "x")
