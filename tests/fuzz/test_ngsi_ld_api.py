"""Property-based fuzzing of the broker's NGSI-LD request surface: never a 500, never a hang, errors as ProblemDetails.

Every request goes to the real app in-process (Starlette TestClient). Hypothesis draws ids, types, q, attrs,
limit/offset, temporal parameters, batch bodies and headers, biased towards what breaks parsers: huge integers,
Unicode digits, control characters, empty values, deep JSON. Example counts are bounded so the module runs in a
few seconds; `HYPOTHESIS_PROFILE=deep` runs 20x more.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from datamodels.context import ENERGY_CONTEXT, link_header
from twin_service.broker import create_app

BASE = "/ngsi-ld/v1"
LINK = {"Link": link_header(ENERGY_CONTEXT)}
EXAMPLES = 40 * (20 if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else 1)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
pytestmark = pytest.mark.timeout(90)  # a hang fails the test instead of stalling make test

SEED_ID = "urn:ngsi-ld:ThreePhaseAcMeasurement:fuzz-1"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = create_app(Path(tmp_path_factory.mktemp("fuzz")) / "var")
    with TestClient(app, raise_server_exceptions=False) as c:
        body = {"id": SEED_ID, "type": "ThreePhaseAcMeasurement",
                "frequency": {"type": "Property", "value": 50.0, "observedAt": "2026-12-01T10:00:00Z"}}
        assert c.post(f"{BASE}/entityOperations/upsert", json=[body], headers=LINK).status_code in (201, 204)
        yield c


# --- strategies -------------------------------------------------------------------------------------------------
nasty_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "0", "-1", "1e3", "1000000000000000000000", "9" * 400, "²", "٣", "NaN", "inf",
                     "null", "'", '"', ";", "==", "!=", "~=", "..", "a.b[c]", "(", ")", "|", "&", "%00", "\x00",
                     "urn:ngsi-ld:", "urn:ngsi-ld:T:1,urn:ngsi-ld:T:2", "*", "✓", "a" * 3000]),
)
integerish = st.one_of(st.integers(min_value=-(10**30), max_value=10**30).map(str), nasty_text)
instant = st.one_of(st.sampled_from(["2026-12-01T10:00:00Z", "2026-12-01", "2026-13-45T99:99:99Z", "yesterday",
                                     "2026-12-01T10:00:00+14:00", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                                     "2026-12-01T10:00:00.123456789Z"]), nasty_text)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**25), max_value=10**25)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


def _entity_like() -> st.SearchStrategy[object]:
    attribute = st.fixed_dictionaries({"type": st.sampled_from(["Property", "Relationship", "GeoProperty", "X"]),
                                       "value": json_values},
                                      optional={"observedAt": instant, "object": nasty_text, "unitCode": nasty_text})
    return st.one_of(
        json_values,
        st.fixed_dictionaries({"id": st.one_of(nasty_text, st.just(SEED_ID)),
                               "type": st.one_of(nasty_text, st.just("ThreePhaseAcMeasurement"))},
                              optional={"frequency": attribute, "@context": json_values,
                                        "phaseVoltage": attribute}),
    )


headers = st.fixed_dictionaries({}, optional={
    "NGSILD-Tenant": nasty_text, "Link": st.one_of(nasty_text, st.just(LINK["Link"])),
    "Accept": st.sampled_from(["application/json", "application/ld+json", "application/geo+json", "text/html",
                               "*/*", ";;", "application/json;q=abc"]),
    "NGSILD-Path": nasty_text,
})


def _safe_headers(h: dict[str, str]) -> dict[str, str]:
    # HTTP header values travel as latin-1 without CR/LF; the client itself refuses anything else.
    return {k: v for k, v in h.items() if v.isascii() and "\r" not in v and "\n" not in v and "\x00" not in v}


def check(response) -> None:  # type: ignore[no-untyped-def]
    """No server error: a 4xx, or 501 OperationNotSupported for a feature the broker declares it lacks."""
    status = response.status_code
    declared = status == 501 and response.json().get("type", "").endswith("/OperationNotSupported")
    assert status < 500 or declared, (status, response.text[:500])
    if status >= 400:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("type"), str) and isinstance(body.get("title"), str), body
        assert response.headers["content-type"].split(";")[0] in ("application/json", "application/problem+json")


# --- properties -------------------------------------------------------------------------------------------------
QUERY_KEYS = ["id", "type", "q", "attrs", "limit", "offset", "idPattern", "options", "count", "georel", "geometry",
              "coordinates", "geoproperty", "pick", "omit", "format", "csf", "scopeQ", "lang", "local", "details"]


@FUZZ
@given(params=st.dictionaries(st.sampled_from(QUERY_KEYS), st.one_of(nasty_text, integerish), max_size=5),
       hdrs=headers)
def test_entity_queries(client: TestClient, params: dict[str, str], hdrs: dict[str, str]) -> None:
    if "type" not in params and "id" not in params and "q" not in params:
        params["type"] = "ThreePhaseAcMeasurement"
    check(client.get(f"{BASE}/entities", params=params, headers=_safe_headers(hdrs)))


@FUZZ
@given(offset=integerish, limit=integerish)
def test_paging_parameters(client: TestClient, offset: str, limit: str) -> None:
    check(client.get(f"{BASE}/entities", params={"type": "ThreePhaseAcMeasurement", "offset": offset,
                                                 "limit": limit}, headers=LINK))
    check(client.get(f"{BASE}/subscriptions", params={"offset": offset, "limit": limit}))


def test_the_reported_offset_is_a_400() -> None:
    with TestClient(create_app(Path(os.environ.get("TMPDIR", "/tmp")) / f"fuzz-{os.getpid()}"),
                    raise_server_exceptions=False) as c:
        response = c.get(f"{BASE}/entities", params={"type": "T", "offset": "1000000000000000000000"})
        assert response.status_code == 400 and "offset" in response.json()["title"]
        assert c.get(f"{BASE}/entities", params={"type": "T", "limit": "²"}).status_code == 400


@FUZZ
@given(entity_id=nasty_text, attr=nasty_text, params=st.dictionaries(st.sampled_from(["attrs", "options", "pick",
       "omit", "format", "geometryProperty", "lang"]), nasty_text, max_size=3), hdrs=headers)
def test_entity_paths(client: TestClient, entity_id: str, attr: str, params: dict[str, str],
                      hdrs: dict[str, str]) -> None:
    eid = quote(entity_id, safe="")
    h = _safe_headers(hdrs)
    check(client.get(f"{BASE}/entities/{eid}", params=params, headers=h))
    check(client.get(f"{BASE}/entities/{eid}/attrs/{quote(attr, safe='')}", headers=h))
    check(client.delete(f"{BASE}/entities/{eid}/attrs/{quote(attr, safe='')}", headers=h))


TEMPORAL_KEYS = ["timerel", "timeAt", "endTimeAt", "lastN", "timeproperty", "options", "attrs", "aggrMethods",
                 "aggrPeriodDuration", "q", "limit", "offset", "id"]


@FUZZ
@given(params=st.dictionaries(st.sampled_from(TEMPORAL_KEYS),
                              st.one_of(nasty_text, instant, integerish,
                                        st.sampled_from(["before", "after", "between", "temporalValues",
                                                         "aggregatedValues", "sum,avg", "PT1H", "P1D", "PT0S"])),
                              max_size=6),
       entity_id=st.one_of(st.just(SEED_ID), nasty_text))
def test_temporal_parameters(client: TestClient, params: dict[str, str], entity_id: str) -> None:
    check(client.get(f"{BASE}/temporal/entities", params={"type": "ThreePhaseAcMeasurement", **params},
                     headers=LINK))
    check(client.get(f"{BASE}/temporal/entities/{quote(entity_id, safe='')}", params=params, headers=LINK))


@FUZZ
@given(operation=st.sampled_from(["create", "upsert", "update", "delete", "merge", "query"]),
       body=st.one_of(st.lists(_entity_like(), max_size=4), json_values),
       params=st.dictionaries(st.sampled_from(["options"]), st.one_of(nasty_text, st.sampled_from(
           ["update", "replace", "noOverwrite"])), max_size=1),
       content_type=st.sampled_from(["application/json", "application/ld+json", "text/plain", "application/json;x",
                                     ""]))
def test_batch_bodies(client: TestClient, operation: str, body: object, params: dict[str, str],
                      content_type: str) -> None:
    h = {**LINK, "Content-Type": content_type} if content_type else dict(LINK)
    if content_type == "application/ld+json":
        h.pop("Link")
    check(client.post(f"{BASE}/entityOperations/{operation}", content=json.dumps(body), params=params, headers=h))


@FUZZ
@given(raw=st.one_of(st.binary(max_size=200), st.sampled_from([b"", b"{", b"[" * 5000, b'{"id": 1e999}',
                                                               b'\xff\xfe{}', b'{"a":' * 200])),
       path=st.sampled_from(["/entities", "/entityOperations/upsert", "/subscriptions",
                             f"/entities/{quote(SEED_ID, safe='')}/attrs", "/temporal/entities"]),
       method=st.sampled_from(["POST", "PATCH", "PUT"]))
def test_raw_bodies(client: TestClient, raw: bytes, path: str, method: str) -> None:
    check(client.request(method, f"{BASE}{path}", content=raw, headers={**LINK, "Content-Type": "application/json"}))


@FUZZ
@given(body=st.one_of(json_values, st.fixed_dictionaries(
    {"type": st.just("Subscription")},
    optional={"entities": json_values, "notification": json_values, "q": nasty_text, "watchedAttributes": json_values,
              "throttling": st.one_of(st.integers(min_value=-(10**20), max_value=10**20), nasty_text),
              "expiresAt": instant, "timeInterval": json_values, "id": nasty_text})))
def test_subscription_bodies(client: TestClient, body: object) -> None:
    check(client.post(f"{BASE}/subscriptions", json=body, headers=LINK))
