"""Temporal paging over 206 Partial Content, as Orion-LD + Mintaka answer a long interval.

The embedded broker answers every interval whole (never 206), so this one behaviour is exercised against a
scripted answer (httpx.MockTransport) that follows ETSI GS CIM 009 v1.8.1 clause 6.3.10: at most 5 instances
per answer and `Content-Range: date-time <from>-<to>/<n>` naming the part returned.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from fiware_client import BrokerError, NgsiLdClient, TemporalApiMissing

T0 = datetime(2026, 10, 1, tzinfo=UTC)
ENTITY = "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-1"
INSTANTS = list(range(0, 120, 10))


def _iso(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _mintaka(calls: list[httpx.Request]):  # type: ignore[no-untyped-def]
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        start = datetime.fromisoformat(request.url.params["timeAt"])
        page = [m for m in INSTANTS if T0 + timedelta(minutes=m) >= start][:5]
        body = {"id": ENTITY, "type": "ThreePhaseAcMeasurement", "totalActiveEnergyImport": {
            "type": "Property", "values": [[m / 10, _iso(m)] for m in page]}}
        if len(page) == 5 and page[-1] != INSTANTS[-1]:
            return httpx.Response(206, json=body,
                                  headers={"Content-Range": f"date-time {_iso(page[0])}-{_iso(page[-1])}/5"})
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handler)


def test_partial_answers_are_followed_and_merged_once_per_instant() -> None:
    calls: list[httpx.Request] = []
    with NgsiLdClient("http://twin", "energy", transport=_mintaka(calls)) as broker:
        history = broker.attribute_history(ENTITY, ["totalActiveEnergyImport"], T0, T0 + timedelta(hours=2))
    assert [t for t, _ in history["totalActiveEnergyImport"]] == [T0 + timedelta(minutes=m) for m in INSTANTS]
    assert [c.url.params["timeAt"] for c in calls] == [_iso(0), _iso(40), _iso(80)]  # from each range's end
    assert all(c.headers["NGSILD-Tenant"] == "energy" and "dataModel.Energy" in c.headers["Link"] for c in calls)


def test_a_206_that_does_not_advance_is_an_error() -> None:
    body = {"id": ENTITY, "totalActiveEnergyImport": {"type": "Property", "values": [[1.0, _iso(0)]]}}
    transport = httpx.MockTransport(lambda r: httpx.Response(206, json=body))
    with NgsiLdClient("http://twin", transport=transport) as broker, pytest.raises(BrokerError, match="advance"):
        broker.attribute_history(ENTITY, ["totalActiveEnergyImport"], T0, T0 + timedelta(hours=1))


@pytest.mark.parametrize(("status", "body"), [(404, None), (501, {"type": "x/OperationNotSupported", "title": "no"})])
def test_a_broker_without_the_temporal_api_says_so(status: int, body: dict | None) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body) if body else httpx.Response(status, text="Not Found")

    with (NgsiLdClient("http://twin", transport=httpx.MockTransport(handler)) as broker,
          pytest.raises(TemporalApiMissing, match="does not serve the NGSI-LD temporal API") as info):
        broker.attribute_history(ENTITY, ["totalActiveEnergyImport"], T0, T0 + timedelta(hours=1))
    assert info.value.status == status and info.value.response is not None


def test_a_503_is_sent_again_after_its_retry_after() -> None:
    statuses = [503, 503, 200]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        status = statuses.pop(0)
        return httpx.Response(status, json=[] if status == 200 else {"title": "busy"},
                              headers={"Retry-After": "0"} if status == 503 else {})

    with NgsiLdClient("http://twin", transport=httpx.MockTransport(handler)) as broker:
        assert broker.query_entities(type="ThreePhaseAcMeasurement") == []
    assert seen == ["GET", "GET", "GET"]
