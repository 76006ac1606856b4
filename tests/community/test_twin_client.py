"""Energy counters from the temporal API's answer: phases summed, the total preferred, both temporal forms.

Paging (206), errors and headers are the client's and are tested in tests/fiware_client; here the broker's
answer is scripted (httpx.MockTransport) to pin how counters are built from it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from community.twin import energy_counters
from fiware_client import NgsiLdClient

T0 = datetime(2026, 10, 1, tzinfo=UTC)
ENTITY = "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-1"


def _iso(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _answering(body: dict) -> NgsiLdClient:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["options"] == "temporalValues"
        assert request.url.params["timerel"] == "between"
        assert request.url.params["timeAt"] == _iso(-10)  # the margin brackets the period
        return httpx.Response(200, json=body)

    return NgsiLdClient("http://twin", "energy", transport=httpx.MockTransport(handler))


def test_phases_are_summed_when_the_meter_sends_no_total():
    body = {"id": ENTITY, "type": "ThreePhaseAcMeasurement", "activeEnergyImport": {
        "type": "Property", "values": [[{"L1": m / 60, "L2": m / 60, "L3": 0.0}, _iso(m)] for m in (0, 10, 20)]}}
    with _answering(body) as broker:
        series = energy_counters(broker, "meter-1", T0, T0 + timedelta(hours=1), margin=timedelta(minutes=10))
    assert [t for t, _ in series.import_kwh] == [T0 + timedelta(minutes=m) for m in (0, 10, 20)]
    assert series.import_kwh[-1][1] == pytest.approx(2 * 20 / 60)  # L1 + L2 + L3
    assert series.export_kwh == []


def test_normalized_form_and_total_attribute_preferred():
    body = {
        "id": ENTITY,
        "totalActiveEnergyImport": [
            {"type": "Property", "value": 12.5, "observedAt": _iso(0)},
            {"type": "Property", "value": 13.0, "observedAt": _iso(10)},
        ],
        "activeEnergyImport": [{"type": "Property", "value": {"L1": 1.0}, "observedAt": _iso(0)}],
        "totalActiveEnergyExport": {"type": "Property", "values": [["not a number", _iso(0)], [2.0, _iso(10)]]},
    }
    with _answering(body) as broker:
        series = energy_counters(broker, "meter-1", T0, T0 + timedelta(hours=1), margin=timedelta(minutes=10))
    assert [v for _, v in series.import_kwh] == [12.5, 13.0]
    assert series.export_kwh == [(T0 + timedelta(minutes=10), 2.0)]
