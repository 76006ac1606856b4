"""Rollup buckets are written once, when they close: a kill -9 loses none and counts none twice; an open bucket
(the newest of each meter, not written yet) is answered from its raw rows exactly as it will be once written."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from twin_service.broker import DATABASE_NAME, Store
from twin_service.broker import _store as store_module
from twin_service.broker._model import Entity
from twin_service.broker._store import TimeRange

REPO = Path(__file__).resolve().parents[2]
TYPE = "https://smartdatamodels.org/dataModel.Energy/ThreePhaseAcMeasurement"
ATTR = "https://example.org/"
METERS = 3
T0 = 1_764_000_000  # 2025-11-24T16:00:00Z, on the hour
STEP_S = 23  # not a divisor of 60: readings fall on every offset inside the buckets
READINGS = 185  # ~71 min: buckets of every period close, the second hour stays open
LATE_AT = 120  # after this reading, an offline replay of two readings from ~17 minutes before


def reading(meter: int, n: int, late: bool = False, step: int = STEP_S) -> Entity:
    """Reading n of a meter: a scalar that is not an integer, an energy counter, a per-phase object (`late`: one
    half a second after it, a reading the meter kept while offline; the same time would be a repeat, skipped)."""
    ts = T0 + n * step + meter + (0.5 if late else 0)
    at = store_module._format_ts(ts)
    v = 230.0 + ((n * 7 + meter) % 11) * 0.25
    return Entity(f"urn:ngsi-ld:ThreePhaseAcMeasurement:m{meter}", TYPE, {
        ATTR + "frequency": {"type": "Property", "value": round(49.95 + (n % 9) * 0.01, 2), "observedAt": at},
        ATTR + "energy": {"type": "Property", "value": 1000 + n * 3 + meter, "observedAt": at},
        ATTR + "phase": {"type": "Property", "value": {"L1": v, "L2": round(v + 0.1, 2), "L3": round(v - 0.2, 2)},
                         "observedAt": at}})


def feed(data_dir: Path, first: int, last: int, move_every: int, kill_at: int | None = None) -> None:
    """Readings first..last-1 of every meter, a mover pass every `move_every` readings (as the broker's mover
    runs every 10 s), the late replay after LATE_AT. `kill_at`: SIGKILL this process right after writing that
    reading (a pass just committed, a few rows left in readings_log)."""
    store_module.MOVE_EVERY_S = 1e9  # only the passes made here
    store = Store(data_dir)
    for n in range(first, last):
        with store.transaction() as tx:
            for meter in range(METERS):
                entity = reading(meter, n)
                tx.record_instances("t", entity, list(entity.attrs), "update", store_module._format_ts(T0))
                if n == LATE_AT:
                    for back in (45, 46):  # ~17 min earlier: buckets of 1 min and 10 min already closed
                        old = reading(meter, n - back, late=True)
                        tx.record_instances("t", old, list(old.attrs), "update", store_module._format_ts(T0))
        if n == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if n % move_every == move_every - 1:
            store.move_history()
    store.move_history()
    store.close()


def rollup_rows(data_dir: Path) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(data_dir / DATABASE_NAME)
    try:
        return db.execute("SELECT r.entity_key, r.attr_id, r.period_s, r.bucket, k.keys, r.stats FROM rollup_stats r "
                          "JOIN rollup_keys k USING (keys_id) ORDER BY 1, 2, 3, 4").fetchall()
    finally:
        db.close()


def test_a_kill_9_between_passes_leaves_the_rollups_of_an_uninterrupted_run(tmp_path: Path) -> None:
    feed(tmp_path / "calm", 0, READINGS, move_every=3)
    crashed = tmp_path / "crashed"
    script = ("import sys; from pathlib import Path; from tests.broker.test_rollup_close import feed; "
              f"feed(Path(sys.argv[1]), 0, {READINGS}, move_every=4, kill_at=140)")
    killed = subprocess.run([sys.executable, "-c", script, str(crashed)], check=False, cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    db = sqlite3.connect(crashed / DATABASE_NAME)
    assert db.execute("SELECT count(*) FROM readings_log").fetchone()[0] > 0  # the kill left rows unmoved
    db.close()
    feed(crashed, 141, READINGS, move_every=5)  # restart, other pass boundaries, the rest of the readings
    calm, after = rollup_rows(tmp_path / "calm"), rollup_rows(crashed)
    assert {row[2] for row in calm} == {60, 600, 3600}
    assert after == calm  # the same buckets, byte for byte: none lost, none counted twice
    store = Store(crashed)
    try:
        series = dict(store.history_attributes("t", "urn:ngsi-ld:ThreePhaseAcMeasurement:m1"))
        minutes = store.rollups(series[ATTR + "energy"], 60)
        expected = [*range(READINGS), LATE_AT - 45, LATE_AT - 46]
        assert sum(r["total"] for r in minutes) == len(expected)  # the replayed two included once each
        hours = store.rollups(series[ATTR + "energy"], 3600)  # the first written, the open one from raw rows
        assert sum(r["total"] for r in hours) == len(expected) and len(hours) == 2
        assert hours[-1]["last"] == 1000 + (READINGS - 1) * 3 + 1
    finally:
        store.close()


def test_an_open_bucket_is_answered_from_its_raw_rows_as_it_will_be_once_written(tmp_path: Path) -> None:
    store_module.MOVE_EVERY_S = 1e9
    store = Store(tmp_path)
    try:
        def write(n: int) -> None:
            with store.transaction() as tx:
                entity = reading(0, n, step=13)
                tx.record_instances("t", entity, list(entity.attrs), "update", store_module._format_ts(T0))

        for n in range(100):  # 0 .. 1,287 s: the 1-min bucket of 16:21 and the 10-min one of 16:20 open
            write(n)
        store.move_history()
        series = dict(store.history_attributes("t", "urn:ngsi-ld:ThreePhaseAcMeasurement:m0"))
        db = sqlite3.connect(tmp_path / DATABASE_NAME)
        newest = db.execute("SELECT max(bucket) FROM rollup_stats WHERE period_s = 600").fetchone()[0]
        assert newest == T0 // 600 + 1  # 16:00 and 16:10 written; 16:20 open, not in rollup_stats
        assert db.execute("SELECT count(*) FROM rollup_stats WHERE period_s = 3600").fetchone()[0] == 0

        def expected(attr: str, key: str | None) -> list[tuple[int, float, float, float]]:
            out = []
            for start in (T0, T0 + 600, T0 + 1200):
                values = [reading(0, n, step=13).attrs[ATTR + attr]["value"] for n in range(100)
                          if start <= T0 + n * 13 < start + 600]
                values = [v[key] if key else v for v in values]
                out.append((len(values), math.fsum(values), min(values), max(values)))
            return out

        window = TimeRange(T0, T0 + 3600)
        for attr, key in (("frequency", None), ("energy", None), ("phase", "L2")):
            answer = [(b.numeric, b.sum, b.min, b.max) for b in store.aggregate(series[ATTR + attr], window, T0, 600)
                      if b.key == key]
            assert [(n, round(s, 6), lo, hi) for n, s, lo, hi in answer] == \
                [(n, round(s, 6), lo, hi) for n, s, lo, hi in expected(attr, key)], attr
            assert all(type(s) is float for _, s, _, _ in answer)  # as a written rollup holds a sum
            hourly = store.aggregate(series[ATTR + attr], window, T0, 3600)  # the open hour: 10-min + 1-min + raw
            assert sum(b.numeric for b in hourly if b.key == key) == 100
        before = store.aggregate(series[ATTR + "phase"], window, T0, 600)
        write(200)  # 16:43:20: closes 16:20 (and every minute up to 16:43)
        store.move_history()
        assert db.execute("SELECT max(bucket) FROM rollup_stats WHERE period_s = 600").fetchone()[0] == newest + 1  # 16:30 held no reading: no bucket
        db.close()
        after = store.aggregate(series[ATTR + "phase"], TimeRange(T0, T0 + 1800), T0, 600)
        assert [(b.key, b.numeric, b.min, b.max) for b in after] == [(b.key, b.numeric, b.min, b.max) for b in before]
        assert all(math.isclose(a.sum, b.sum, rel_tol=1e-12) for a, b in zip(after, before, strict=True))
    finally:
        store.close()


def test_the_column_fold_of_a_closing_minute_equals_the_row_by_row_fold(tmp_path: Path) -> None:
    """The mover folds a closing minute column by column with the numbers decoded in SQL; on values that do not
    tag (huge ints kept as JSON text in a column of tagged ones, -0.0, exponents, a member kept as text,
    booleans) it must give exactly the statistics of the row-by-row fold of the raw rows."""
    odd = [
        {"phase": {"L1": 230.1, "L2": 229.95, "L3": 231}, "counter": 2 ** 62 + 1, "flags": {"sag": True, "dip": False},
         "scalar": -0.0, "big": 2 ** 63 - 1, "neg": -230.25},
        {"phase": {"L2": 229.9, "L1": 230.0, "L3": 231.0}, "counter": 5, "flags": {"sag": False, "dip": False},
         "scalar": 1.5e-07, "big": 1, "neg": -0.5},
        {"phase": {"L1": 0.1 + 0.2, "L2": 0.0, "L3": -1}, "counter": 3 * 10 ** 12, "flags": {"sag": 1, "dip": False},
         "scalar": 0.30000000000000004, "big": -(2 ** 63), "neg": -7},
    ]
    store_module.MOVE_EVERY_S = 1e9
    store = Store(tmp_path)
    try:
        for n in range(30):
            at = store_module._format_ts(T0 + n * 7)
            entity = Entity("urn:ngsi-ld:X:odd", TYPE, {ATTR + name: {"type": "Property", "value": value,
                                                                        "observedAt": at}
                                                          for name, value in odd[n % 3].items()})
            with store.transaction() as tx:
                tx.record_instances("t", entity, list(entity.attrs), "update", at)
        with store.transaction():
            store._flush()
            columns, plan = store._fold_plan()
            by_row, by_column = store_module._rollups.Folder(), store_module._rollups.Folder()
            store_module._fold_rows(store._db.execute(
                f"SELECT entity_key, observed_ts, instance_id, extra{columns} FROM readings_log"), plan, by_row)
            select = store_module._fold_select(columns.split(", ")[1:], plan, "r")
            store_module._fold_columns(store._db.execute(
                f"SELECT r.entity_key, r.observed_ts, r.instance_id, r.extra{select} FROM readings_log r "
                "ORDER BY 1, 2, 3"), plan, by_column)
        expected = by_row.buckets()
        assert len(expected) > 20 and by_column.buckets() == expected
    finally:
        store.close()
