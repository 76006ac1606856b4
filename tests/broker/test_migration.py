"""Data dirs written by earlier brokers open and convert without loss: schema 2 (one history row per attribute)
and schema 3 (wide rows with SQL numbers and per-phase objects as JSON text; schema 4 tags numbers as integers
and keeps objects of numbers and booleans in member columns).

`fixtures/twin_v2.sql` is a dump of a data dir the schema-2 code wrote (both its clustered `history` and its
`history_log` hold rows: the second session was never closed); `fixtures/twin_v2_answers.json` holds what the
schema-2 broker answered to QUERIES over it. The current broker must convert the dir and answer the same.
Instance ids are renumbered by the conversion (a wide row carries one id for the attributes it holds), so they are
compared for uniqueness per attribute, not for equality.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from twin_service.broker import DATABASE_NAME, create_app
from twin_service.broker import _store as store_module
from twin_service.broker._store import SCHEMA_VERSION

from .conftest import BASE, ENERGY_LINK, MEASUREMENT_ID, measurement

FIXTURES = Path(__file__).parent / "fixtures"
TEMPORAL = f"{BASE}/temporal/entities"
SITE = {**ENERGY_LINK, "NGSILD-Tenant": "site_a"}
OTHER_ID = "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-002"


def _at(minute: int, second: int = 0) -> str:
    return f"2026-11-24T10:{minute:02d}:{second:02d}.000Z"


def feed(client: TestClient, moved: bool) -> None:
    """Per-phase and scalar readings, an offline replay in one batch, a string status, deletions."""
    base = 0 if moved else 30
    for n in range(4):
        reading = measurement(voltage_v=230.0 + n + base / 10, observed_at=_at(base + n), activeEnergyImport={
            "type": "Property", "value": 10.0 + n + base, "unitCode": "KWH", "observedAt": _at(base + n)})
        answer = client.post(f"{BASE}/entityOperations/upsert", params={"options": "update"}, headers=SITE,
                             json=[reading, measurement(OTHER_ID, voltage_v=229.5 + n, observed_at=_at(base + n))])
        assert answer.status_code in (201, 204), answer.text
    replay = [measurement(voltage_v=240.0 + k, observed_at=_at(base + 10, k)) for k in range(3)]
    answer = client.post(f"{BASE}/entityOperations/upsert", params={"options": "update"}, headers=SITE, json=replay)
    assert answer.status_code == 204, answer.text
    status = {"status": {"type": "Property", "value": "ok" if moved else "degraded",
                         "reason": {"type": "Property", "value": "calibrated"}}}
    answer = client.post(f"{BASE}/entities/{MEASUREMENT_ID}/attrs", headers=SITE, json=status)
    assert answer.status_code == 204, answer.text
    if moved:
        assert client.delete(f"{BASE}/entities/{MEASUREMENT_ID}/attrs/status", headers=SITE).status_code == 204
        answer = client.post(f"{BASE}/entityOperations/upsert", headers=ENERGY_LINK, json=[measurement()])
        assert answer.status_code in (201, 204), answer.text
    else:
        assert client.delete(f"{BASE}/entities/{OTHER_ID}", headers=SITE).status_code == 204


_WINDOW = {"timerel": "between", "timeAt": _at(0), "endTimeAt": _at(59)}
QUERIES: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {
    "normalized": (f"{TEMPORAL}/{MEASUREMENT_ID}", SITE, {"options": "sysAttrs"}),
    "values": (f"{TEMPORAL}/{MEASUREMENT_ID}", SITE, {**_WINDOW, "options": "temporalValues"}),
    "last_n": (f"{TEMPORAL}/{MEASUREMENT_ID}", SITE, {"lastN": "2", "attrs": "phaseVoltage,status"}),
    "aggregated": (f"{TEMPORAL}/{MEASUREMENT_ID}", SITE, {
        **_WINDOW, "aggrMethods": "totalCount,sum,avg,min,max,stddev", "aggrPeriodDuration": "PT10M"}),
    "deleted": (f"{TEMPORAL}/{OTHER_ID}", SITE, {"options": "sysAttrs"}),
    "query": (TEMPORAL, SITE, {"type": "ThreePhaseAcMeasurement", **_WINDOW, "attrs": "frequency",
                               "options": "temporalValues"}),
    "default_tenant": (f"{TEMPORAL}/{MEASUREMENT_ID}", ENERGY_LINK, {"options": "sysAttrs"}),
}


def _without_instance_ids(body: Any, seen: dict[str, set[str]], attribute: str = "") -> Any:
    """The answer with instanceId removed; every id must be unique within its attribute's history."""
    if isinstance(body, list):
        return [_without_instance_ids(item, seen, attribute) for item in body]
    if not isinstance(body, dict):
        return body
    out = {}
    for key, value in body.items():
        if key == "instanceId":
            assert value not in seen.setdefault(attribute, set()), f"{attribute}: {value} twice"
            seen[attribute].add(value)
            continue
        out[key] = _without_instance_ids(value, seen, attribute if attribute else key)
    return out


def test_a_schema_2_data_dir_converts_and_answers_as_before(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir()
    db = sqlite3.connect(data / DATABASE_NAME)
    db.executescript((FIXTURES / "twin_v2.sql").read_text())
    db.execute("PRAGMA user_version = 2")
    assert db.execute("SELECT count(*) FROM history_log").fetchone()[0] > 0  # both tables of schema 2 hold rows
    assert db.execute("SELECT count(*) FROM history").fetchone()[0] > 0
    db.close()
    expected = json.loads((FIXTURES / "twin_v2_answers.json").read_text())
    for _ in range(2):  # converted on the first open; the second open finds schema 3 and converts nothing
        with TestClient(create_app(data)) as client:
            for name, (url, headers, params) in QUERIES.items():
                answer = client.get(url, headers=headers, params=params)
                assert answer.status_code == 200, (name, answer.text)
                seen: dict[str, set[str]] = {}
                assert _without_instance_ids(answer.json(), seen) == _without_instance_ids(expected[name], {}), name
    db = sqlite3.connect(data / DATABASE_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not {"history", "history_log"} & tables


def numbers(client: TestClient, base: int) -> None:
    """Integers, negative and 17-digit decimals, exponent floats, large counters, booleans in an object."""
    for n in range(3):
        at = _at(base + 20 + n)
        body = {"pulseCount": {"type": "Property", "value": 123456 + n + base, "observedAt": at},
                "powerFactor": {"type": "Property", "value": {"L1": -0.98765 + n / 1000, "L2": 1, "L3": 0.1 + 0.2},
                                "observedAt": at},
                "reactivePower": {"type": "Property", "value": -1.5e-07 * (n + 1), "unitCode": "D54",
                                  "observedAt": at},
                "energyCounter": {"type": "Property", "value": 10 ** 9 + n, "observedAt": at},
                "flags": {"type": "Property", "value": {"sag": n == 1, "swell": False}, "observedAt": at}}
        answer = client.post(f"{BASE}/entities/{MEASUREMENT_ID}/attrs", headers=SITE, json=body)
        assert answer.status_code == 204, answer.text


_NUMBERS = "pulseCount,powerFactor,reactivePower,energyCounter,flags"
QUERIES_V3 = {
    **QUERIES,
    "numbers": (f"{TEMPORAL}/{MEASUREMENT_ID}", SITE, {"attrs": _NUMBERS, "options": "sysAttrs"}),
    "numbers_values": (f"{TEMPORAL}/{MEASUREMENT_ID}", SITE, {
        **_WINDOW, "attrs": "pulseCount,powerFactor,reactivePower,energyCounter",
        "options": "temporalValues"}),
    "numbers_aggregated": (f"{TEMPORAL}/{MEASUREMENT_ID}", SITE, {
        **_WINDOW, "attrs": "pulseCount,powerFactor,reactivePower", "aggrMethods": "totalCount,sum,avg,min,max",
        "aggrPeriodDuration": "PT1M"}),
}


def _typed(body: Any) -> Any:
    """The answer with every number tagged by its JSON type (1 and 1.0 compare unequal)."""
    if isinstance(body, list):
        return [_typed(item) for item in body]
    if isinstance(body, dict):
        return {key: _typed(value) for key, value in body.items()}
    if isinstance(body, float):
        return ("float", repr(body))
    if isinstance(body, int) and not isinstance(body, bool):
        return ("int", body)
    return body


def test_a_schema_3_data_dir_converts_and_answers_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`fixtures/twin_v3.sql`: a schema-3 dir (feed() and numbers() twice, the second session's rows still in
    readings_log), dumped with the answers the schema-3 broker gave (`twin_v3_answers.json`). The first open
    answers exactly, number types and key order included (the mover is held back, so waiting rows are answered
    from raw rows as they were); after the mover folded them, aggregated sums of integers come from the rollups
    as doubles, as schema 3 answered them there too. New readings after the conversion use the compact layout.
    """
    data = tmp_path / "var"
    data.mkdir()
    db = sqlite3.connect(data / DATABASE_NAME)
    db.executescript((FIXTURES / "twin_v3.sql").read_text())
    db.execute("PRAGMA user_version = 3")
    assert db.execute("SELECT count(*) FROM readings_log").fetchone()[0] > 0
    integers = db.execute("SELECT count(*) FROM readings WHERE typeof(a1) = 'integer'").fetchone()[0]
    db.close()
    expected = json.loads((FIXTURES / "twin_v3_answers.json").read_text())
    monkeypatch.setattr(store_module, "MOVE_EVERY_S", 1e9)
    for session in range(2):
        with TestClient(create_app(data)) as client:
            for name, (url, headers, params) in QUERIES_V3.items():
                answer = client.get(url, headers=headers, params=params)
                assert answer.status_code == 200, (name, answer.text)
                got = _without_instance_ids(answer.json(), {})
                want = _without_instance_ids(expected[name], {})
                if session == 0:
                    assert json.dumps(_typed(got)) == json.dumps(_typed(want)), name  # key order too
                else:
                    assert got == want, name
            if session == 1:
                numbers(client, 35)
                answer = client.get(f"{TEMPORAL}/{MEASUREMENT_ID}", headers=SITE, params={
                    "attrs": "powerFactor,flags,pulseCount", "lastN": "1", "options": "temporalValues"})
                body = answer.json()
                assert body["powerFactor"]["values"][0][0] == {"L1": -0.98565, "L2": 1, "L3": 0.30000000000000004}
                assert list(body["powerFactor"]["values"][0][0]) == ["L1", "L2", "L3"]
                assert body["flags"]["values"][0][0] == {"sag": False, "swell": False}
                assert _typed(body["pulseCount"]["values"][0][0]) == ("int", 123456 + 2 + 35)
    db = sqlite3.connect(data / DATABASE_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    if integers:  # schema-3 integers were rescaled to the tagged form (n * 10)
        assert db.execute("SELECT count(*) FROM readings WHERE typeof(a1) = 'integer' AND a1 % 10 != 0"
                          ).fetchone()[0] == 0
    members = dict(db.execute("SELECT name, members FROM history_attrs WHERE members IS NOT NULL").fetchall())
    assert any(name.endswith("flags") for name in members), members  # booleans went to member columns
    db.close()


QUERIES_V4 = {
    **QUERIES_V3,
    "rollup_aggregated": (f"{TEMPORAL}/{MEASUREMENT_ID}", SITE, {
        "timerel": "between", "timeAt": _at(0), "endTimeAt": "2026-11-24T11:00:00.000Z",
        "attrs": "phaseVoltage,activeEnergyImport,pulseCount,powerFactor,flags,energyCounter",
        "aggrMethods": "totalCount,sum,avg,min,max,stddev,sumsq", "aggrPeriodDuration": "PT10M"}),
    "rollup_minutes": (f"{TEMPORAL}/{MEASUREMENT_ID}", SITE, {
        "timerel": "after", "timeAt": _at(0), "attrs": "phaseVoltage,activeEnergyImport,pulseCount,reactivePower",
        "aggrMethods": "totalCount,sum,max", "aggrPeriodDuration": "PT1M"}),
    "rollup_hours": (TEMPORAL, SITE, {  # schema 5 answers this from the hours built from schema 4's 10-min buckets
        "type": "ThreePhaseAcMeasurement", "timerel": "after", "timeAt": "2026-11-24T09:00:00.000Z",
        "attrs": "phaseVoltage,activeEnergyImport,frequency,pulseCount", "aggrMethods": "totalCount,sum,min,max,stddev",
        "aggrPeriodDuration": "PT1H"}),
}


def _close(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-12 (a sum of bucket sums may round differently once everything is folded)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b))
    return a == b


def test_a_schema_4_data_dir_converts_its_rollups_and_answers_as_before(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`fixtures/twin_v4.sql`: a schema-4 dir (one rollup row per key), written as the schema-3 one (feed() and
    numbers() in two sessions, the second session's rows still in readings_log) by the schema-4 broker (commit
    f41ff13), with its answers (`twin_v4_answers.json`, two of them answered from the rollups). The first open
    packs the rollups one row per attribute and bucket and answers exactly, types and key order included; every
    stored statistic reads back as it was; after the mover folded the waiting rows the answers are the same."""
    data = tmp_path / "var"
    data.mkdir()
    db = sqlite3.connect(data / DATABASE_NAME)
    db.executescript((FIXTURES / "twin_v4.sql").read_text())
    db.execute("PRAGMA user_version = 4")
    assert db.execute("SELECT count(*) FROM readings_log").fetchone()[0] > 0
    old = {(row[0], row[1], row[2], row[3] * row[2], row[4] or None): row[5:] for row in db.execute(
        "SELECT s.series_id, r.attr_id, r.period_s, r.bucket, r.key, r.total, r.numeric, r.sum, r.sumsq, r.min, "
        "r.max, r.last FROM rollups r JOIN series s ON s.entity_key = r.entity_key AND s.attr_id = r.attr_id")}
    assert len(old) > 50
    db.close()
    expected = json.loads((FIXTURES / "twin_v4_answers.json").read_text())
    monkeypatch.setattr(store_module, "MOVE_EVERY_S", 1e9)
    for session in range(2):
        with TestClient(create_app(data)) as client:
            if session == 0:
                store = client.app.state.broker.store
                new = {}
                for series_id, _, period_s, _, _ in {key[:3] + (None, None) for key in old}:
                    for r in store.rollups(series_id, period_s):
                        new[(series_id, None, period_s, r["start"], r["key"])] = (
                            r["total"], r["numeric"], r["sum"], r["sumsq"], r["min"], r["max"], r["last"])
                assert {(k[0], k[2], k[3], k[4]): v for k, v in old.items()} == {
                    (k[0], k[2], k[3], k[4]): v for k, v in new.items()}
            for name, (url, headers, params) in QUERIES_V4.items():
                answer = client.get(url, headers=headers, params=params)
                assert answer.status_code == 200, (name, answer.text)
                got = _without_instance_ids(answer.json(), {})
                want = _without_instance_ids(expected[name], {})
                if session == 0:
                    assert json.dumps(_typed(got)) == json.dumps(_typed(want)), name  # key order too
                else:
                    assert _close(got, want), name
    db = sqlite3.connect(data / DATABASE_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "rollups" not in tables and db.execute("SELECT count(*) FROM rollup_stats").fetchone()[0] > 0
    db.close()
