"""History layout (schema 4): numbers as tagged integers, objects of numbers and booleans in member columns.

Every value must come back as exactly what was written: the same JSON text (1 stays 1, 1.0 stays 1.0, the keys of
an object in their order), through both read paths (Python rebuilding instances, SQLite printing temporalValues),
and aggregations must not be disturbed by values that cannot be tagged.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

from twin_service.broker import DATABASE_NAME, Store
from twin_service.broker import _store as store_module
from twin_service.broker._model import Entity
from twin_service.broker._store import _JSON_VALUE_SQL, TimeRange, _decoded_sql, _encode_number

ENTITY = "urn:ngsi-ld:ThreePhaseAcMeasurement:enc-1"
TYPE = "https://smartdatamodels.org/dataModel.Energy/ThreePhaseAcMeasurement"
ATTR = "https://example.org/"


def _numbers() -> list[float]:
    rng = random.Random(15)
    values: list[float] = [0, 1, -1, 10, -7, 2 ** 40, -(2 ** 50), 0.0, 1.0, -0.5, 230.25, 0.001280163, 1e-05, 1.5e-07,
                           0.1 + 0.2, 123456789.12345, 99999999999999.9, 1e15 + 0.5, 2305.0, 5e300]
    values += [round(rng.uniform(-1e6, 1e6), rng.randint(0, 9)) for _ in range(3000)]
    values += [rng.randint(-10 ** 12, 10 ** 12) for _ in range(200)]
    return values


def test_tagged_integers_decode_in_sqlite_to_the_same_number_and_text() -> None:
    db = sqlite3.connect(":memory:")
    tagged = untagged = 0
    for value in _numbers():
        encoded = _encode_number(value)
        stored = value if encoded is None else encoded
        tagged += encoded is not None
        untagged += encoded is None
        decoded, text = db.execute(f"SELECT value, json_array({_JSON_VALUE_SQL}) FROM (SELECT {_decoded_sql('?1')} "
                                   "AS value)", (stored,)).fetchone()
        assert type(decoded) is type(value) and repr(decoded) == repr(value), (value, encoded, decoded)
        if encoded is not None:  # SQLite prints what it decoded as the text Python wrote
            assert text == json.dumps([value]).replace(" ", ""), (value, text)
    assert tagged > 3000 and untagged >= 4  # exponents, 17 digits, > 15 digits, 5e300 stay as they are
    assert _encode_number(-0.0) is None and _encode_number(2 ** 62) is None  # kept as REAL / JSON text


def _write(store: Store, second: int, attrs: dict[str, Any]) -> None:
    at = f"2026-11-24T10:{second // 60:02d}:{second % 60:02d}.000Z"
    entity = Entity(ENTITY, TYPE, {ATTR + name: {"type": "Property", "value": value, "observedAt": at}
                                   for name, value in attrs.items()})
    with store.transaction() as tx:
        tx.record_instances("t", entity, list(entity.attrs), "update", at)


def test_every_value_reads_back_as_written_and_odd_values_do_not_stall_the_rollups(data_dir: Path) -> None:
    rows = [
        {"phase": {"L1": 230.1, "L2": 229.95, "L3": 231}, "counter": 2 ** 62 + 1, "flags": {"sag": True, "dip": False},
         "scalar": -0.0, "text": "ok", "big": 2 ** 63 - 1},
        {"phase": {"L2": 229.9, "L1": 230.0, "L3": 231.0}, "counter": 2 ** 62 + 2, "flags": {"sag": False, "dip": False},
         "scalar": 1.5e-07, "text": "degraded", "big": 1},           # keys in another order: kept as JSON text
        {"phase": {"L1": 0.1 + 0.2, "L2": 0.0, "L3": -1}, "counter": 3 * 10 ** 12, "flags": {"sag": 1, "dip": False},
         "scalar": 0.30000000000000004, "text": "ok", "big": -(2 ** 63)},  # a member that does not tag: text
        {"phase": {"L1": 230.2, "L2": 230.3, "L3": 230.4}, "counter": 5, "flags": {"sag": False, "dip": True},
         "scalar": 7, "text": "ok", "big": 2.5},
    ]
    store = Store(data_dir)
    try:
        for second, attrs in enumerate(rows):
            _write(store, second * 30, attrs)
        assert store.move_history() == sum(len(r) for r in rows)  # a 2**62 counter once failed the fold for good
        series = dict(store.history_attributes("t", ENTITY))
        for name in rows[0]:
            sid = series[ATTR + name]
            got = [instance[3]["value"] for instance in store.instances(sid, TimeRange())]
            assert json.dumps(got) == json.dumps([r[name] for r in rows]), name
            values, _ = store.temporal_values_json(sid, TimeRange())
            printed = [pair[0] for pair in json.loads(values)]
            if name != "scalar":  # 0.30000000000000004 prints with SQLite's 15 digits there (see _JSON_VALUE_SQL)
                assert json.dumps(printed) == json.dumps([r[name] for r in rows]), name
        for end in (600 * 6_000_000, 4e9):  # aligned: from the rollups; not: from the raw rows
            counter = store.aggregate(series[ATTR + "counter"], TimeRange(0, end), 0, 600)
            assert sum(b.numeric for b in counter) == 4, end
            assert float(max(b.max for b in counter)) == float(2 ** 62 + 2), end  # rollup min/max are REAL
        phases = {b.key: b for b in store.aggregate(series[ATTR + "phase"], TimeRange(0, 4e9), 0, 600)}
        assert phases["L1"].numeric == 4 and phases["L1"].max == 230.2
        flags = {b.key: b for b in store.aggregate(series[ATTR + "flags"], TimeRange(0, 4e9), 0, 600)}
        assert flags["dip"].total == 4 and flags["dip"].numeric == 0  # booleans count, they are not numbers
    finally:
        store.close()
    db = sqlite3.connect(data_dir / DATABASE_NAME)
    members = dict(db.execute("SELECT name, members FROM history_attrs WHERE members IS NOT NULL"))
    assert json.loads(members[ATTR + "phase"]) == [["L1", "n"], ["L2", "n"], ["L3", "n"]]
    assert json.loads(members[ATTR + "flags"]) == [["sag", "b"], ["dip", "b"]]
    db.close()


def test_a_rolled_back_batch_forgets_the_member_columns_it_added(data_dir: Path) -> None:
    store = Store(data_dir)
    try:
        try:
            with store.transaction() as tx:
                at = "2026-11-24T10:00:00.000Z"
                entity = Entity(ENTITY, TYPE, {ATTR + "phase": {"type": "Property", "value": {"L1": 1.5},
                                                                "observedAt": at}})
                tx.record_instances("t", entity, list(entity.attrs), "update", at)
                raise RuntimeError("the request failed")
        except RuntimeError:
            pass
        assert store._members == {} and store._columns == 0
        _write(store, 0, {"phase": {"L1": 2.5, "L2": 3}})
        store.move_history()
        sid = dict(store.history_attributes("t", ENTITY))[ATTR + "phase"]
        assert [i[3]["value"] for i in store.instances(sid, TimeRange())] == [{"L1": 2.5, "L2": 3}]
        assert store_module.Store(data_dir / "again")._columns == 0
    finally:
        store.close()
