"""Every role x every endpoint through the access layer: the expected answer, and no foreign id in any body or
notification; bad tokens refused with 401 ProblemDetails."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from access._tokens import LocalIssuer
from datamodels.context import ENERGY_CONTEXT, link_header
from datamodels.measures import device_entity_id, measurement_id

from .conftest import Guarded, free_port

NGSI = "/ngsi-ld/v1"
MINE, FOREIGN = "meter-001", "meter-002"
OTHERS = ("meter-002", "meter-003")  # never in a member's or device's answers
HEADERS = {"Content-Type": "application/json", "Link": link_header(ENERGY_CONTEXT)}


def _measurement(device: str, minute: int, power_w: float) -> dict:
    at = f"2026-10-01T10:{minute:02d}:00Z"
    return {"id": measurement_id(device), "type": "ThreePhaseAcMeasurement",
            "activePower": {"type": "Property", "value": {"L1": power_w, "L2": power_w, "L3": power_w},
                            "observedAt": at, "unitCode": "WTT"}}


def _anomaly_id(device: str) -> str:
    return f"urn:ngsi-ld:Anomaly:{device}:voltageLow-L1-20261001T100000000Z"  # as twin_service/quality names them


def _anomaly(device: str) -> dict:
    """An Anomaly whose id does not end with the meter's id: it is the member's through `detectedBy`."""
    return {"id": _anomaly_id(device), "type": "Anomaly",
            "anomalousProperty": {"type": "Property", "value": "phaseVoltage"},
            "dateDetected": {"type": "Property", "value": {"@type": "DateTime", "@value": "2026-10-01T10:00:00Z"}},
            "detectedBy": {"type": "Relationship", "object": device_entity_id(device)},
            "severity": {"type": "Property", "value": "medium"}}


@pytest.fixture(scope="module")
def seeded(guarded: Guarded) -> Guarded:
    entities = [_measurement(d, 0, 100.0) for d in ("meter-001", "meter-002", "meter-003")]
    entities += [{"id": device_entity_id(d), "type": "Device",
                  "controlledProperty": {"type": "Property", "value": ["energy"]}} for d in ("meter-001", "meter-002")]
    entities += [_anomaly(d) for d in ("meter-001", "meter-002")]
    r = httpx.post(guarded.broker_url + NGSI + "/entityOperations/upsert", json=entities, headers=HEADERS)
    assert r.status_code in (201, 204), r.text
    for minute in (1, 2):
        r = httpx.post(guarded.broker_url + NGSI + "/entityOperations/upsert",
                       json=[_measurement(d, minute, 100.0 + minute) for d in ("meter-001", "meter-002")],
                       headers=HEADERS)
        assert r.status_code in (201, 204), r.text
    return guarded


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path.endswith("/member"):  # the other roles' subscriptions (unfiltered) go to /notify
            self.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/notify"
    server.shutdown()


def _token(g: Guarded, role: str) -> str:
    devices = [MINE] if role in ("member", "device") else None
    return g.issuer.token(f"{role}-user", role, member="ana" if role == "member" else None, devices=devices)


def _subscription(receiver: str) -> dict:
    return {"type": "Subscription", "entities": [{"type": "ThreePhaseAcMeasurement"}],
            "watchedAttributes": ["activePower"],
            "notification": {"endpoint": {"uri": receiver, "accept": "application/json"}}}


# (name, method, path, body) — the endpoints every role is tried on.
def _endpoints(receiver: str) -> list[tuple[str, str, str, object]]:
    q = "timerel=after&timeAt=2026-10-01T00:00:00Z"
    return [
        ("version", "GET", "/version", None),
        ("query", "GET", f"{NGSI}/entities?type=ThreePhaseAcMeasurement", None),
        ("query ids", "GET", (f"{NGSI}/entities?id={measurement_id(MINE)},{measurement_id(FOREIGN)}"
                              "&type=ThreePhaseAcMeasurement"), None),
        ("query devices", "GET", f"{NGSI}/entities?type=Device", None),
        ("own entity", "GET", f"{NGSI}/entities/{measurement_id(MINE)}", None),
        ("foreign entity", "GET", f"{NGSI}/entities/{measurement_id(FOREIGN)}", None),
        ("batch query", "POST", f"{NGSI}/entityOperations/query",
         {"type": "Query", "entities": [{"type": "ThreePhaseAcMeasurement"}]}),
        ("temporal query", "GET", f"{NGSI}/temporal/entities?type=ThreePhaseAcMeasurement&{q}", None),
        ("temporal own", "GET", f"{NGSI}/temporal/entities/{measurement_id(MINE)}?{q}", None),
        ("temporal foreign", "GET", f"{NGSI}/temporal/entities/{measurement_id(FOREIGN)}?{q}", None),
        ("temporal post query", "POST", f"{NGSI}/temporal/entityOperations/query",
         {"type": "Query", "entities": [{"type": "ThreePhaseAcMeasurement"}],
          "temporalQ": {"timerel": "after", "timeAt": "2026-10-01T00:00:00Z"}}),
        ("types", "GET", f"{NGSI}/types", None),
        ("type info", "GET", f"{NGSI}/types/ThreePhaseAcMeasurement", None),
        ("attributes", "GET", f"{NGSI}/attributes", None),
        ("contexts", "GET", f"{NGSI}/jsonldContexts", None),
        ("subscribe", "POST", f"{NGSI}/subscriptions", _subscription(receiver)),
        ("subscriptions", "GET", f"{NGSI}/subscriptions", None),
        ("write own", "PATCH", f"{NGSI}/entities/{measurement_id(MINE)}/attrs",
         {"activePower": {"type": "Property", "value": {"L1": 1.0, "L2": 1.0, "L3": 1.0},
                          "observedAt": "2026-10-01T10:05:00Z"}}),
        ("write foreign", "PATCH", f"{NGSI}/entities/{measurement_id(FOREIGN)}/attrs",
         {"activePower": {"type": "Property", "value": {"L1": 1.0, "L2": 1.0, "L3": 1.0}}}),
        ("upsert foreign", "POST", f"{NGSI}/entityOperations/upsert", [_measurement(FOREIGN, 9, 5.0)]),
        ("unknown path", "GET", "/admin/everything", None),
        ("query count", "GET", f"{NGSI}/entities?type=ThreePhaseAcMeasurement&count=true", None),
        ("foreign attribute", "GET", f"{NGSI}/entities/{measurement_id(FOREIGN)}?attrs=activePower", None),
        ("temporal aggregated", "GET", (f"{NGSI}/temporal/entities?type=ThreePhaseAcMeasurement&{q}"
                                        "&aggrMethods=avg&aggrPeriodDuration=PT1H&attrs=activePower"), None),
        ("temporal lastN", "GET", f"{NGSI}/temporal/entities?type=ThreePhaseAcMeasurement&{q}&lastN=1", None),
        ("foreign type query", "GET", f"{NGSI}/entities?type=Device&q=controlledProperty==%22energy%22", None),
        ("anomalies", "GET", f"{NGSI}/entities?type=Anomaly", None),
        ("anomalies projected", "GET", f"{NGSI}/entities?type=Anomaly&attrs=severity", None),
        ("own anomaly", "GET", f"{NGSI}/entities/{_anomaly_id(MINE)}", None),
        ("foreign anomaly", "GET", f"{NGSI}/entities/{_anomaly_id(FOREIGN)}", None),
        ("own anomaly temporal", "GET", f"{NGSI}/temporal/entities/{_anomaly_id(MINE)}", None),
        ("geojson query", "GET", f"{NGSI}/entities?type=ThreePhaseAcMeasurement", None),
        ("pep metrics", "GET", "/pep/metrics", None),
        ("temporal write", "POST", f"{NGSI}/temporal/entities", _measurement(MINE, 9, 5.0)),
    ]


EXTRA_HEADERS = {"geojson query": {"Accept": "application/geo+json"}}


OK = {200, 201, 204, 207}
# role -> endpoint -> expected status class ("ok" or a status).
EXPECTED: dict[str, dict[str, object]] = {
    "member": {"version": "ok", "query": "ok", "query ids": "ok", "query devices": "ok", "own entity": "ok",
               "foreign entity": 403, "batch query": "ok", "temporal query": "ok", "temporal own": "ok",
               "temporal foreign": 403, "temporal post query": "ok", "types": "ok", "type info": "ok",
               "attributes": "ok", "contexts": "ok", "subscribe": "ok", "subscriptions": "ok",
               "write own": 403, "write foreign": 403, "upsert foreign": 403, "unknown path": 403},
    "device": {"version": "ok", "query": "ok", "query ids": "ok", "query devices": "ok", "own entity": "ok",
               "foreign entity": 403, "batch query": "ok", "temporal query": 403, "temporal own": 403,
               "temporal foreign": 403, "temporal post query": 403, "types": 403, "type info": 403,
               "attributes": 403, "contexts": 403, "subscribe": 403, "subscriptions": 403,
               "write own": "ok", "write foreign": 403, "upsert foreign": 403, "unknown path": 403},
    "public": {name: 403 for name in (
        "query", "query ids", "query devices", "own entity", "foreign entity", "batch query", "temporal query",
        "temporal own", "temporal foreign", "temporal post query", "types", "type info", "attributes",
        "contexts", "subscribe", "subscriptions", "write own", "write foreign", "upsert foreign",
        "unknown path")} | {"version": "ok"},
    "manager": {"version": "ok", "query": "ok", "query ids": "ok", "query devices": "ok", "own entity": "ok",
                "foreign entity": "ok", "batch query": "ok", "temporal query": "ok", "temporal own": "ok",
                "temporal foreign": "ok", "temporal post query": "ok", "types": "ok", "type info": "ok",
                "attributes": "ok", "contexts": "ok", "subscribe": "ok", "subscriptions": "ok",
                "write own": 403, "write foreign": 403, "upsert foreign": 403, "unknown path": 403},
    "control-centre": {"version": "ok", "query": "ok", "query ids": "ok", "query devices": "ok",
                       "own entity": "ok", "foreign entity": "ok", "batch query": "ok", "temporal query": "ok",
                       "temporal own": "ok", "temporal foreign": "ok", "temporal post query": "ok",
                       "types": "ok", "type info": "ok", "attributes": "ok", "contexts": "ok",
                       "subscribe": "ok", "subscriptions": "ok", "write own": "ok", "write foreign": "ok",
                       "upsert foreign": "ok", "unknown path": 403},
}
NEW = ("query count", "foreign attribute", "temporal aggregated", "temporal lastN", "foreign type query")
_NEW_EXPECTED = {
    "member": ["ok", 403, "ok", "ok", "ok"], "device": ["ok", 403, 403, 403, "ok"], "public": [403] * 5,
    "manager": ["ok"] * 5, "control-centre": ["ok"] * 5}
for _role, _wants in _NEW_EXPECTED.items():
    EXPECTED[_role].update(zip(NEW, _wants, strict=True))
# Anomalies: a member's are the Anomaly entities `detectedBy` their meter's Device (not matched by id shape).
ANOMALY = ("anomalies", "anomalies projected", "own anomaly", "foreign anomaly", "own anomaly temporal",
           "geojson query")
_ANOMALY_EXPECTED = {
    "member": ["ok", "ok", "ok", 403, "ok", "ok"], "device": ["ok", "ok", "ok", 403, 403, "ok"],
    "public": [403] * 6, "manager": ["ok"] * 6, "control-centre": ["ok"] * 6}
for _role, _wants in _ANOMALY_EXPECTED.items():
    EXPECTED[_role].update(zip(ANOMALY, _wants, strict=True))
# The stack's own services (role service): everything the control centre may do here, but not the PEP's
# counters; nobody but admin rewrites history.
EXPECTED["service"] = dict(EXPECTED["control-centre"])
for _role, _wants in EXPECTED.items():
    _wants["pep metrics"] = "ok" if _role == "control-centre" else 403
    _wants["temporal write"] = 403
MUST_SHOW_MINE = {"query": measurement_id(MINE), "temporal query": measurement_id(MINE),
                  "batch query": measurement_id(MINE), "anomalies": _anomaly_id(MINE),
                  "anomalies projected": _anomaly_id(MINE), "own anomaly": _anomaly_id(MINE),
                  "geojson query": measurement_id(MINE)}
SCOPED = ("member", "device")


def _call(g: Guarded, token: str | None, method: str, path: str, body: object,
          extra: dict[str, str] | None = None) -> httpx.Response:
    headers = dict(HEADERS) | (extra or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    client = _CLIENTS.get(g.pep_url)
    if client is None:  # one kept-alive connection pool for the module: a fresh TCP connection per call costs more
        client = _CLIENTS[g.pep_url] = httpx.Client(timeout=10)
    return client.request(method, g.pep_url + path, headers=headers,
                          content=None if body is None else json.dumps(body))


_CLIENTS: dict[str, httpx.Client] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    for client in _CLIENTS.values():
        client.close()
    _CLIENTS.clear()


@pytest.mark.parametrize("role", list(EXPECTED))
def test_every_endpoint_as(role: str, seeded: Guarded, receiver: str):
    token = _token(seeded, role)
    failures = []
    for name, method, path, body in _endpoints(receiver):
        r = _call(seeded, token, method, path, body, EXTRA_HEADERS.get(name))
        want = EXPECTED[role][name]
        if (want == "ok" and r.status_code not in OK) or (want != "ok" and r.status_code != want):
            failures.append(f"{name}: {method} {path} -> {r.status_code} (want {want}): {r.text[:200]}")
        if r.status_code >= 400:
            problem = r.json()
            assert {"type", "title", "status"} <= problem.keys(), (name, problem)
        if role in SCOPED:
            assert "/pep/relay/" not in r.text, (name, r.text[:300])  # the relay's key stays the PEP's
            if r.status_code < 300:
                assert "ngsild-results-count" not in r.headers, name  # it would count the others' entities
            for other in OTHERS:
                if other in r.text or any(other in v for v in r.headers.values()):
                    failures.append(f"{name}: foreign id {other} in the answer to a {role}: {r.text[:300]}")
        if role in SCOPED and want == "ok" and name in MUST_SHOW_MINE:
            assert MUST_SHOW_MINE[name] in r.text, (name, r.text[:300])  # filtered, not emptied
        if name == "geojson query" and want == "ok":
            assert r.json()["type"] == "FeatureCollection", r.text[:300]
    assert not failures, "\n".join(failures)


def test_notifications_are_filtered(seeded: Guarded, receiver: str):
    """A member's subscription on every meter: only the member's meter reaches the receiver."""
    _Receiver.received.clear()
    member = _token(seeded, "member")
    r = _call(seeded, member, "POST", f"{NGSI}/subscriptions", _subscription(receiver + "/member"))
    assert r.status_code == 201, r.text
    sid = r.headers["location"].rsplit("/", 1)[-1]
    listed = _call(seeded, member, "GET", f"{NGSI}/subscriptions/{sid}", None).json()
    assert listed["notification"]["endpoint"]["uri"] == receiver + "/member"  # the relay stays invisible
    for minute in (20, 21):
        r = httpx.post(seeded.broker_url + NGSI + "/entityOperations/upsert", headers=HEADERS,
                       json=[_measurement(d, minute, 50.0 + minute) for d in ("meter-002", "meter-001", "meter-003")])
        assert r.status_code in (201, 204), r.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(
            measurement_id(MINE) in json.dumps(n) and "10:21" in json.dumps(n) for n in _Receiver.received):
        time.sleep(0.1)
    text = json.dumps(_Receiver.received)
    assert measurement_id(MINE) in text, "the member's own meter was never notified"
    for other in OTHERS:
        assert other not in text
    # Another member does not see (nor may delete) this subscription.
    bea = seeded.issuer.token("bea", "member", devices=["meter-002"])
    assert _call(seeded, bea, "GET", f"{NGSI}/subscriptions/{sid}", None).status_code == 403
    assert sid not in _call(seeded, bea, "GET", f"{NGSI}/subscriptions", None).text
    assert _call(seeded, bea, "DELETE", f"{NGSI}/subscriptions/{sid}", None).status_code == 403
    relays = seeded.data_dir / "access" / f"pep-{seeded.pep_url.rsplit(':', 1)[-1]}-relays.json"
    assert sid in relays.read_text()
    assert _call(seeded, member, "DELETE", f"{NGSI}/subscriptions/{sid}", None).status_code == 204
    assert sid not in relays.read_text()  # the relay went with its subscription


def _hs256(claims: dict, kid: str, secret: bytes) -> str:
    """The key-confusion attack, signed by hand (PyJWT itself refuses an asymmetric key as an HMAC secret)."""
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")
    signing_input = b64(json.dumps({"alg": "HS256", "kid": kid}).encode()) + b"." + b64(json.dumps(claims).encode())
    return (signing_input + b"." + b64(hmac.new(secret, signing_input, hashlib.sha256).digest())).decode()


def _bad_tokens(g: Guarded) -> dict[str, str | None]:
    now = int(time.time())
    claims = {"iss": g.issuer.issuer, "aud": "energytwin", "sub": "x", "role": "admin", "exp": now + 600}
    other_key = ec.generate_private_key(ec.SECP256R1())
    kid = jwt.get_unverified_header(g.issuer.token("x", "admin"))["kid"]
    jwks = json.loads(g.issuer.jwks_path.read_text())["keys"][0]
    return {
        "none": None,
        "garbage": "not.a.jwt",
        "expired": g.issuer.token("x", "admin", lifetime_s=-3600),
        "forged": jwt.encode(claims, other_key, algorithm="ES256", headers={"kid": kid}),
        "other community": LocalIssuer(g.data_dir, audience="another-community").token("x", "admin"),
        "other issuer": LocalIssuer(g.data_dir, issuer="https://evil.example").token("x", "admin"),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "hs256 with the public key": _hs256(claims, kid, json.dumps(jwks).encode()),
        "no role": jwt.encode({k: v for k, v in claims.items() if k != "role"}, other_key, algorithm="ES256"),
    }


def test_bad_tokens_are_refused(seeded: Guarded):
    for name, token in _bad_tokens(seeded).items():
        r = _call(seeded, token, "GET", f"{NGSI}/entities?type=ThreePhaseAcMeasurement", None)
        assert r.status_code == 401, (name, r.status_code, r.text)
        body = r.json()
        assert body["status"] == 401 and body["title"] == "Unauthorized" and body["detail"], (name, body)
        assert r.headers["www-authenticate"].startswith("Bearer"), name
        assert "meter-00" not in r.text, name


def test_a_token_bound_to_a_tenant_reaches_that_tenant_only(seeded: Guarded):
    """meter-001 of one community is not meter-001 of another: a token with a `tenant` claim reads its own."""
    for tenant, watts in (("community-a", 11.0), ("community-b", 22.0)):
        r = httpx.post(seeded.broker_url + NGSI + "/entityOperations/upsert", json=[_measurement(MINE, 0, watts)],
                       headers={**HEADERS, "NGSILD-Tenant": tenant})
        assert r.status_code in (201, 204), r.text
    token = seeded.issuer.token("ana", "member", devices=[MINE], tenant="community-a")
    url = f"{NGSI}/entities/{measurement_id(MINE)}"
    mine = _call(seeded, token, "GET", url, None)  # no tenant header: the token's
    assert mine.status_code == 200 and mine.json()["activePower"]["value"]["L1"] == 11.0, mine.text
    other = httpx.get(seeded.pep_url + url, headers={**HEADERS, "Authorization": f"Bearer {token}",
                                                     "NGSILD-Tenant": "community-b"}, timeout=10)
    assert other.status_code == 403 and "community-a" in other.json()["detail"], other.text
    assert "22.0" not in other.text


def test_notifications_stay_filtered_in_every_format_and_after_a_patch(seeded: Guarded, receiver: str):
    """keyValues and concise notifications, and a subscription whose entities are PATCHed to name a foreign
    meter by id: the receiver still gets the member's meter only."""
    _Receiver.received.clear()
    member = _token(seeded, "member")
    sids = []
    for fmt in ("keyValues", "concise"):
        body = _subscription(receiver + "/member")
        body["notification"]["format"] = fmt
        r = _call(seeded, member, "POST", f"{NGSI}/subscriptions", body)
        assert r.status_code == 201, r.text
        sids.append(r.headers["location"].rsplit("/", 1)[-1])
    patch = {"entities": [{"id": measurement_id(FOREIGN), "type": "ThreePhaseAcMeasurement"},
                          {"id": measurement_id(MINE), "type": "ThreePhaseAcMeasurement"}],
             "notification": {"endpoint": {"uri": receiver + "/member", "accept": "application/json"}}}
    r = _call(seeded, member, "PATCH", f"{NGSI}/subscriptions/{sids[0]}", patch)
    assert r.status_code == 204, r.text
    r = httpx.post(seeded.broker_url + NGSI + "/entityOperations/upsert", headers=HEADERS,
                   json=[_measurement(d, 30, 77.0) for d in ("meter-002", "meter-001", "meter-003")])
    assert r.status_code in (201, 204), r.text
    def after_upsert(sid: str) -> list[dict]:  # 77.0 W: this upsert's value, in every format
        return [n for n in _Receiver.received if n.get("subscriptionId", "").endswith(sid) and "77.0" in json.dumps(n)]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(after_upsert(sid) for sid in sids):
        time.sleep(0.1)
    assert all(after_upsert(sid) for sid in sids), _Receiver.received
    text = json.dumps(_Receiver.received)
    assert measurement_id(MINE) in text and not any(other in text for other in OTHERS), text[:500]
    for sid in sids:
        assert _call(seeded, member, "DELETE", f"{NGSI}/subscriptions/{sid}", None).status_code == 204


def test_a_members_anomaly_notifications_carry_only_its_meter(seeded: Guarded, receiver: str):
    """An Anomaly subscription notifying only `severity`: the PEP keeps `detectedBy` in it, so the relay can tell
    the member's anomalies (delivered) from another meter's (dropped)."""
    _Receiver.received.clear()
    member = _token(seeded, "member")
    body = {"type": "Subscription", "entities": [{"type": "Anomaly"}], "watchedAttributes": ["severity"],
            "notification": {"attributes": ["severity"], "format": "keyValues",
                             "endpoint": {"uri": receiver + "/member", "accept": "application/json"}}}
    r = _call(seeded, member, "POST", f"{NGSI}/subscriptions", body)
    assert r.status_code == 201, r.text
    sid = r.headers["location"].rsplit("/", 1)[-1]
    listed = _call(seeded, member, "GET", f"{NGSI}/subscriptions/{sid}", None).json()
    assert listed["notification"]["endpoint"]["uri"] == receiver + "/member"
    changed = [{**_anomaly(d), "severity": {"type": "Property", "value": "critical"}} for d in ("meter-002", MINE)]
    r = httpx.post(seeded.broker_url + NGSI + "/entityOperations/upsert", headers=HEADERS, json=changed)
    assert r.status_code in (201, 204), r.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "critical" not in json.dumps(_Receiver.received):
        time.sleep(0.1)
    text = json.dumps(_Receiver.received)
    assert _anomaly_id(MINE) in text and "critical" in text, text[:500]
    assert not any(other in text for other in OTHERS), text[:500]
    assert _call(seeded, member, "DELETE", f"{NGSI}/subscriptions/{sid}", None).status_code == 204
