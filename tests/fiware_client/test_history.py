"""One history interface on two backends: the NGSI-LD temporal API (embedded broker) and QuantumLeap.

The QuantumLeap side runs against `quantumleap_standin` (QuantumLeap's documented query API on a real HTTP server;
see fixtures/quantumleap/README.md for the source of every shape). The contract tests put the same readings in
both and ask both the same questions through `fiware_client.HistoryReader`.
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fiware_client import (
    AsyncQuantumLeapClient,
    BadRequest,
    BrokerUnavailable,
    NgsiLdClient,
    NotFound,
    QuantumLeapClient,
    history_reader,
    parse_time,
)
from fiware_client._quantumleap import QuantumLeapRequests, aggregate_series, period_seconds
from tests.fiware_client.quantumleap_standin import QuantumLeapStandIn, Running

FIXTURES = Path(__file__).parent / "fixtures" / "quantumleap"
TENANT = "energytwin"
METERS = ("urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001", "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-002")
T0 = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
SECONDS = 150  # 2.5 minutes of 1 Hz readings per meter


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def _reading(meter: int, second: int) -> dict:
    return {
        "totalActivePower": 2000.0 + 10 * meter + (second % 17) * 3.5,
        "phaseVoltage": {"L1": 230.0 + (second % 5) * 0.1, "L2": 231.0 - (second % 3) * 0.2, "L3": 229.5},
        "totalActiveEnergyImport": 1000.0 * (meter + 1) + second * 0.000625,
    }


# -- QuantumLeap shapes (the spec's examples) -----------------------------------------------------------------
def test_entity_history_of_n_attributes_shape():
    found = QuantumLeapRequests.entity_attributes(_fixture("entity_attrs.json"))
    assert [v for _, v in found["totalActivePower"]] == [2300.0, 2310.5, 2295.0]
    assert found["phaseVoltage"][1] == ("2026-11-24T10:00:01Z", {"L1": 230.2, "L2": 231.1, "L3": 229.4})
    assert found["totalActivePower"][0][0] == "2026-11-24T10:00:00Z"  # naive index read as UTC


def test_type_history_shape_and_empty_answers():
    found = QuantumLeapRequests.type_attribute(_fixture("type_attr.json"))
    assert found[METERS[1]] == [("2026-11-24T10:00:00Z", 20.0), ("2026-11-24T11:00:00Z", 21.25)]
    assert QuantumLeapRequests.type_attribute([]) == {}  # QuantumLeap 1.0.1's empty 200
    assert QuantumLeapRequests.entity_attributes([]) == {}


def test_period_parsing():
    assert period_seconds("PT10S") == 10 and period_seconds("PT15M") == 900 and period_seconds("P1DT12H") == 129600
    for bad in ("10S", "PT", "P1W", "PT-5S", "PT0S"):
        with pytest.raises(BadRequest):
            period_seconds(bad)


def test_client_side_aggregation_by_hand():
    samples = [("2026-11-24T10:00:00Z", 1.0), ("2026-11-24T10:00:04Z", 3.0), ("2026-11-24T10:00:12Z", 10.0),
               ("2026-11-24T10:00:13Z", {"L1": 1.0})]
    out = aggregate_series(samples[:3], ("avg", "max", "count"), 10, T0)
    assert out["avg"] == [[2.0, "2026-11-24T10:00:00Z", "2026-11-24T10:00:10Z"],
                          [10.0, "2026-11-24T10:00:10Z", "2026-11-24T10:00:20Z"]]
    assert [v for v, _, _ in out["count"]] == [2, 1]
    phases = aggregate_series([("2026-11-24T10:00:00Z", {"L1": 1.0, "L2": 4.0}),
                               ("2026-11-24T10:00:01Z", {"L1": 3.0, "L2": 6.0})], ("avg",), 10, T0)
    assert phases["avg"][0][0] == {"L1": 2.0, "L2": 5.0}


# -- the client against the stand-in --------------------------------------------------------------------------
@pytest.fixture
def quantumleap():
    standin = QuantumLeapStandIn()
    for meter, entity_id in enumerate(METERS):
        for second in range(SECONDS):
            standin.insert(TENANT, entity_id, "ThreePhaseAcMeasurement",
                           (T0 + timedelta(seconds=second)).isoformat(), _reading(meter, second))
    with Running(standin) as running:
        yield running


def test_headers_paging_and_errors(quantumleap):
    with QuantumLeapClient(quantumleap.url, TENANT, page_size=40) as client:
        history = client.attribute_history(METERS[0], ["totalActivePower"], T0, T0 + timedelta(seconds=SECONDS))
        assert len(history["totalActivePower"]) == SECONDS
        pages = [r for r in quantumleap.requests if r[0].startswith("/v2/entities/")]
        assert [p["offset"] for _, p, _ in pages] == ["0", "40", "80", "120"]  # 150 rows in pages of 40
        assert all(h["fiware-service"] == TENANT and h["fiware-servicepath"] == "/" for _, _, h in pages)
        assert pages[0][1]["fromDate"] == "2026-11-24T10:00:00.000+00:00"
        with pytest.raises(NotFound):  # the spec's 404 "No records were found"
            client.temporal_entity("urn:ngsi-ld:ThreePhaseAcMeasurement:nobody", timerel="after", time_at=T0)
        with pytest.raises(BadRequest, match="aggregates with"):
            client.temporal_entity(METERS[0], options=("aggregatedValues",), aggr_methods=("median",))
    with QuantumLeapClient(quantumleap.url, "other-tenant") as stranger:  # tenancy by Fiware-Service
        assert stranger.attribute_history(METERS[0], ["totalActivePower"], T0, T0 + timedelta(hours=1)) == \
            {"totalActivePower": []}
    with QuantumLeapClient("http://127.0.0.1:9", TENANT, timeout=2) as nowhere, pytest.raises(BrokerUnavailable):
        nowhere.attribute_history(METERS[0], ["totalActivePower"], T0, T0 + timedelta(hours=1))


def test_aligned_calendar_periods_are_aggregated_by_quantumleap(quantumleap):
    with QuantumLeapClient(quantumleap.url, TENANT) as client:
        entity = client.temporal_entity(METERS[0], timerel="between", time_at=T0,
                                        end_time_at=T0 + timedelta(seconds=SECONDS - 1), attrs=("totalActivePower",),
                                        options=("aggregatedValues",), aggr_methods=("max",), aggr_period="PT1M")
    asked = [p for _, p, _ in quantumleap.requests if p.get("aggrMethod") == "max"]
    assert asked and asked[0]["aggrPeriod"] == "minute"
    first_minute = max(_reading(0, s)["totalActivePower"] for s in range(60))
    assert entity["totalActivePower"]["max"][0] == [first_minute, "2026-11-24T10:00:00Z", "2026-11-24T10:01:00Z"]


# -- the contract: same readings, same questions, same answers ------------------------------------------------
@pytest.fixture
def embedded(live_broker):
    fragments = []
    for meter, entity_id in enumerate(METERS):
        for second in range(SECONDS):
            at = (T0 + timedelta(seconds=second)).isoformat().replace("+00:00", "Z")
            units = {"totalActivePower": "WTT", "phaseVoltage": "VLT", "totalActiveEnergyImport": "KWH"}
            fragments.append({"id": entity_id, "type": "ThreePhaseAcMeasurement", **{
                name: {"type": "Property", "value": value, "unitCode": units[name], "observedAt": at}
                for name, value in _reading(meter, second).items()}})
    with NgsiLdClient(live_broker.url, TENANT) as broker:
        broker.upsert_entities(fragments, update=True)
    return live_broker


def _close(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _aggregated(node: dict, method: str) -> list[tuple]:
    return [(value, parse_time(start), parse_time(end)) for value, start, end in node[method]]


@pytest.mark.parametrize("period", ["PT10S", "PT1M"])
def test_both_backends_draw_the_same_last_hour(embedded, quantumleap, period):
    start = T0
    with history_reader("ngsi-ld", broker_url=embedded.url, tenant=TENANT) as ngsi, \
            history_reader("quantumleap", broker_url=embedded.url, tenant=TENANT,
                           history_url=quantumleap.url) as ql:
        answers = [reader.temporal_entity(METERS[0], timerel="after", time_at=start,
                                          attrs=("totalActivePower", "phaseVoltage"),
                                          options=("aggregatedValues",), aggr_methods=("avg", "min", "max"),
                                          aggr_period=period) for reader in (ngsi, ql)]
    for name in ("totalActivePower", "phaseVoltage"):
        for method in ("avg", "min", "max"):
            ours, theirs = (_aggregated(answer[name], method) for answer in answers)
            assert len(ours) == len(theirs) > 1, (name, method)
            for (v1, s1, e1), (v2, s2, e2) in zip(ours, theirs, strict=True):
                assert s1 == s2 and e1 == e2 and _close(v1, v2), (name, method, v1, v2)


def test_both_backends_give_the_same_counters_and_raw_series(embedded, quantumleap):
    end = T0 + timedelta(seconds=SECONDS)
    with history_reader("ngsi-ld", broker_url=embedded.url, tenant=TENANT) as ngsi, \
            history_reader("quantumleap", broker_url=embedded.url, tenant=TENANT,
                           history_url=quantumleap.url) as ql:
        raw = [r.attribute_history(METERS[1], ["totalActiveEnergyImport", "phaseVoltage"], T0, end) for r in (ngsi, ql)]
        counters = [r.query_temporal(type="ThreePhaseAcMeasurement", timerel="after", time_at=T0,
                                     attrs=("totalActiveEnergyImport",), options=("aggregatedValues",),
                                     aggr_methods=("min", "max")) for r in (ngsi, ql)]
        recent = [r.query_temporal(type="ThreePhaseAcMeasurement", timerel="after", time_at=T0,
                                   attrs=("totalActivePower",), last_n=6, options=("temporalValues",))
                  for r in (ngsi, ql)]
    assert raw[0] == raw[1] and len(raw[0]["totalActiveEnergyImport"]) == SECONDS
    by_id = [{e["id"]: e for e in answer} for answer in counters]
    assert by_id[0].keys() == by_id[1].keys() == set(METERS)
    for entity_id in METERS:
        for method in ("min", "max"):
            ours, theirs = (answer[entity_id]["totalActiveEnergyImport"][method][0][0] for answer in by_id)
            assert _close(ours, theirs)
    times = [{e["id"]: [parse_time(t) for _, t in e["totalActivePower"]["values"]] for e in answer}
             for answer in recent]
    assert times[0] == times[1] and len(times[0][METERS[0]]) == 6


def test_async_face_answers_like_the_sync_one(quantumleap):
    end = T0 + timedelta(seconds=SECONDS)

    async def read() -> dict:
        async with AsyncQuantumLeapClient(quantumleap.url, TENANT) as client:
            return await client.attribute_history(METERS[0], ["totalActivePower"], T0, end)

    history = asyncio.run(read())
    with QuantumLeapClient(quantumleap.url, TENANT) as sync_client:
        assert history == sync_client.attribute_history(METERS[0], ["totalActivePower"], T0, end)


def test_reader_choice_is_validated():
    with pytest.raises(ValueError, match="needs its URL"):
        history_reader("quantumleap", broker_url="http://x", tenant=TENANT)
    with pytest.raises(ValueError, match="one of"):
        history_reader("mongo", broker_url="http://x", tenant=TENANT)
