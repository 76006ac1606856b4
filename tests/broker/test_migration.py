"""A data dir written by the schema-2 broker (one history row per attribute) opens and converts without loss.

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

from starlette.testclient import TestClient

from twin_service.broker import DATABASE_NAME, create_app
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
