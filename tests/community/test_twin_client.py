"""The temporal API reader against a scripted broker (httpx.MockTransport): pages, forms, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from community.twin import EntityNotFound, TemporalApiMissing, TwinError, TwinHistoryClient
from datamodels.context import ENERGY_CONTEXT

T0 = datetime(2026, 10, 1, tzinfo=UTC)
ENTITY = "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-1"


def _iso(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_pages_through_206_and_sums_phases():
    calls = []
    instants = list(range(0, 120, 10))

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        assert request.headers["NGSILD-Tenant"] == "energy"
        assert ENERGY_CONTEXT in request.headers["Link"]
        assert request.url.params["options"] == "temporalValues"
        assert request.url.params["timerel"] == "between"
        start = datetime.fromisoformat(request.url.params["timeAt"])
        page = [m for m in instants if T0 + timedelta(minutes=m) >= start][:5]
        body = {
            "id": ENTITY,
            "type": "ThreePhaseAcMeasurement",
            "activeEnergyImport": {
                "type": "Property",
                "values": [[{"L1": m / 60, "L2": m / 60, "L3": 0.0}, _iso(m)] for m in page],
            },
        }
        partial = len(page) == 5 and page[-1] != instants[-1]
        headers = {"Content-Range": f"date-time {_iso(page[0])}-{_iso(page[-1])}/5"} if partial else {}
        return httpx.Response(206 if partial else 200, json=body, headers=headers)

    client = TwinHistoryClient("http://twin", "energy", transport=httpx.MockTransport(handler))
    series = client.energy_counters("meter-1", T0, T0 + timedelta(hours=2), margin=timedelta(0))
    assert [t for t, _ in series.import_kwh] == [T0 + timedelta(minutes=m) for m in instants]
    assert series.import_kwh[-1][1] == pytest.approx(2 * 110 / 60)  # L1 + L2 + L3
    assert series.export_kwh == []
    assert len(calls) == 3  # 0-40, 40-80, 80-110


def test_normalized_form_and_total_attribute_preferred():
    body = {
        "id": ENTITY,
        "totalActiveEnergyImport": [
            {"type": "Property", "value": 12.5, "observedAt": _iso(0)},
            {"type": "Property", "value": 13.0, "observedAt": _iso(10)},
        ],
        "activeEnergyImport": [{"type": "Property", "value": {"L1": 1.0}, "observedAt": _iso(0)}],
    }
    client = TwinHistoryClient(
        "http://twin", transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body))
    )
    series = client.energy_counters("meter-1", T0, T0 + timedelta(hours=1), margin=timedelta(0))
    assert [v for _, v in series.import_kwh] == [12.5, 13.0]


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (404, None, TemporalApiMissing, "does not serve the NGSI-LD temporal API"),
        (
            501,
            {"type": "https://uri.etsi.org/ngsi-ld/errors/OperationNotSupported", "title": "no"},
            TemporalApiMissing,
            "HTTP 501",
        ),
        (
            404,
            {"type": "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound", "title": "Entity not found"},
            EntityNotFound,
            r"no history in the twin \(Entity not found\)",
        ),
        (
            400,
            {
                "type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
                "title": "x",
                "detail": "bad timeAt",
            },
            TwinError,
            "HTTP 400 BadRequestData: bad timeAt",
        ),
    ],
)
def test_problem_details_become_clear_errors(status, body, error, text):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body) if body else httpx.Response(status, text="Not Found")

    client = TwinHistoryClient("http://twin", transport=httpx.MockTransport(handler))
    with pytest.raises(error, match=text) as info:
        client.energy_counters("meter-1", T0, T0 + timedelta(hours=1), margin=timedelta(0))
    assert info.value.response is not None and info.value.response.status_code == status


def test_a_206_that_does_not_advance_is_an_error():
    body = {"id": ENTITY, "totalActiveEnergyImport": {"type": "Property", "values": [[1.0, _iso(0)]]}}
    client = TwinHistoryClient(
        "http://twin", transport=httpx.MockTransport(lambda r: httpx.Response(206, json=body))
    )
    with pytest.raises(TwinError, match="without advancing"):
        client.attribute_history(ENTITY, ("totalActiveEnergyImport",), T0, T0 + timedelta(hours=1))
