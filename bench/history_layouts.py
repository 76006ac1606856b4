"""Benchmark: the same meter history in five engines: schema-2 SQLite (row per attribute), schema-3 SQLite (wide
row per reading, numbers as SQL numbers, per-phase objects as JSON text), schema-4 SQLite (numbers as tagged
integers, per-phase objects and flags in member columns, rollups one row per key), schema-5 SQLite (the broker's
store: schema 4's readings, rollups packed one row per attribute and bucket, folded in Python from one scan) and
DuckDB (columnar, a DOUBLE column per measure and phase).

Data: one meter's real firmware messages (the payload captured from the firmware under MicroPython, mapped by the
agent's own code, expanded by the broker's own parser), every numeric measure varied a little per second at the
firmware's precision (constant values would flatter any compressing engine), `--hours` of 1 Hz.
The three SQLite stores are loaded through the Store API exactly as the broker's write path calls it (batches of
300 messages per transaction: get_entity / update_entity / record_instances), DuckDB through its appender path
(a DataFrame per batch). Reported per engine, in the same run:
  - load rate (messages/s through the store, including the mover's sort and rollup fold), the mover alone
    (sort + fold of everything loaded, timed as one pass: the background mover is held back), bytes per meter-day
    (pages of every table and index after a clean close, scaled to 24 h; DuckDB: its file), of which the raw
    history (`readings` / schema 2's `history`) alone,
    bytes per meter-day of the 10-minute rollups (schema 3 on, from SQLite's dbstat);
  - one mover pass of many meters bringing a few rows each (schema 4 and 5: the pattern at ingest);
  - one attribute (`frequency`) over the whole window as `[[value, time], ...]` JSON text (the temporalValues
    answer), scaled to a day; hourly avg/min/max of per-phase voltage over the window.
Ratios are to the schema-2 store measured in the same run; the machine is shared, so they matter, not the ms.

Usage: python bench/history_layouts.py [--quick] [--hours H]
Writes bench/results/history_layouts.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._e2e import RESULTS, meter_payload_template
from bench._git_baseline import SCHEMA_4_COMMIT, load_store
from bench._store_v2 import Store as StoreV2
from bench._store_v2 import TimeRange as TimeRangeV2
from twin_service.broker._model import Entity
from twin_service.broker._store import Store, TimeRange

try:  # schema 3, read from git (the layout schema 4 replaced); a shallow clone lacks that commit
    _V3 = load_store()
    _LAYOUTS_V3 = [("sqlite_v3_wide_row", _V3.Store, _V3.TimeRange)]
except subprocess.CalledProcessError as error:
    print(f"schema-3 store not in this clone's git history, skipped: {error.stderr.strip()}", flush=True)
    _LAYOUTS_V3 = []
try:  # schema 4 (rollups one row per key), the layout schema 5 replaced
    _V4 = load_store(SCHEMA_4_COMMIT, "bench_store_v4")
    _LAYOUTS_V4 = [("sqlite_v4_wide_tagged", _V4.Store, _V4.TimeRange)]
except subprocess.CalledProcessError as error:
    print(f"schema-4 store not in this clone's git history, skipped: {error.stderr.strip()}", flush=True)
    _LAYOUTS_V4 = []

START = datetime(2026, 11, 2, tzinfo=UTC)
TENANT = "energytwin"
BATCH = 300


def _vary(value: Any, second: int, rng: random.Random) -> Any:
    """A numeric leaf varied around its value, rounded to the decimals it was published with."""
    if isinstance(value, dict):
        return {k: _vary(v, second, rng) for k, v in value.items()}
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, int):
        return value + (second // 60 if value > 1000 else 0)  # counters grow, flags stay
    text = repr(value)
    decimals = len(text.split(".")[1]) if "." in text and "e" not in text else 3
    return round(value * (1 + 0.004 * math.sin(second / 300) + rng.uniform(-0.001, 0.001)), decimals)


def firmware_entities(seconds: int) -> list[Any]:
    """`seconds` messages of one meter as the broker stores them (expanded Entity fragments)."""
    from datamodels.context import ENERGY_CONTEXT
    from provisioning.agent_bodies import meter_device, service_group
    from twin_service.agent.device_entity import DeviceEntities
    from twin_service.agent.metrics import Metrics
    from twin_service.agent.models import Device, ServiceGroup
    from twin_service.agent.registry import Registry
    from twin_service.agent.rejections import RejectionReporter
    from twin_service.agent.south import FloodLimit, MeasureHandler
    from twin_service.broker._context import ContextResolver
    from twin_service.broker._model import parse_entity

    template, _ = meter_payload_template()
    payload = json.loads(template % ("2026-01-01T00:00:00.000Z", "50.0"))
    rng = random.Random(7)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(Path(tmp) / "registry.sqlite")
        registry.create_groups(TENANT, "/", [ServiceGroup.model_validate(service_group("histkey"))])
        registry.create_devices(TENANT, "/", [Device.model_validate(meter_device("hist-full", "histkey"))])
        metrics = Metrics()
        handler = MeasureHandler(registry, metrics, RejectionReporter(metrics), 64 * 1024, True, FloodLimit(0.0),
                                 DeviceEntities(10.0))
        context_store = Store(Path(tmp) / "ctx")
        ctx = asyncio.run(ContextResolver(context_store).activate(ENERGY_CONTEXT))
        for second in range(seconds):
            message = {k: _vary(v, second, rng) for k, v in payload.items()}
            message["TimeInstant"] = (START + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            upsert = handler.handle("/json/histkey/hist-full/attrs", json.dumps(message).encode())
            assert upsert is not None
            out += [parse_entity({k: v for k, v in f.items() if k != "@context"}, ctx) for f in upsert.entities
                    if "ThreePhaseAcMeasurement" in f["type"]]
        context_store.close()
        registry.close()
    return out


def load_sqlite(store: Any, entities: list[Any]) -> tuple[float, float]:
    """Messages/s through the Store API, as the broker's upsert path calls it, and seconds of the final move
    (the sort into `readings` and the rollup fold of every message: the background mover is held back)."""
    started = time.perf_counter()
    first = entities[0]
    first.created_at = first.modified_at = _now(first)
    with store.transaction() as tx:
        tx.insert_entity(TENANT, first)
        tx.record_instances(TENANT, first, list(first.attrs), "create", _now(first))
    for start in range(1, len(entities), BATCH):
        with store.transaction() as tx:
            for fragment in entities[start:start + BATCH]:
                current = tx.get_entity(TENANT, fragment.id)
                current.attrs.update(fragment.attrs)
                current.modified_at = _now(fragment)
                tx.update_entity(TENANT, current)
                tx.record_instances(TENANT, current, list(fragment.attrs), "update", _now(fragment))
    moving = time.perf_counter()
    store.move_history()
    done = time.perf_counter()
    return len(entities) / (done - started), done - moving


def _now(entity: Any) -> str:
    return next(a["observedAt"] for a in entity.attrs.values() if "observedAt" in a)


def _columns(entities: list[Any]) -> dict[str, tuple[str, str | None]]:
    """DuckDB column name -> (attribute, member) for every numeric measure (per-phase objects flattened)."""
    columns: dict[str, tuple[str, str | None]] = {}
    for name, attribute in entities[0].attrs.items():
        value = attribute.get("value")
        short = name.rsplit("/", 1)[-1].rsplit("#", 1)[-1]
        if isinstance(value, dict):
            columns.update({f"{short}_{k}": (name, k) for k, v in value.items() if isinstance(v, (int, float))})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            columns[short] = (name, None)
    return columns


def load_duckdb(path: Path, entities: list[Any]) -> tuple[Any, float, dict[str, tuple[str, str | None]]]:
    import duckdb
    import pandas as pd

    columns = _columns(entities)
    db = duckdb.connect(str(path))
    db.execute("CREATE TABLE readings (entity_key INTEGER, observed TIMESTAMP, instance_id BIGINT, "
               + ", ".join(f'"{c}" DOUBLE' for c in columns) + ")")
    started = time.perf_counter()
    for start in range(0, len(entities), BATCH):
        rows = []
        for n, fragment in enumerate(entities[start:start + BATCH], start):
            row: dict[str, Any] = {"entity_key": 1, "observed": datetime.fromisoformat(_now(fragment)),
                                   "instance_id": n}
            for column, (name, member) in columns.items():
                attribute = fragment.attrs.get(name)
                value = None if attribute is None else attribute.get("value")
                row[column] = value.get(member) if isinstance(value, dict) else value
            rows.append(row)
        frame = pd.DataFrame(rows)  # noqa: F841 - read by DuckDB's replacement scan
        db.execute("INSERT INTO readings SELECT * FROM frame")
    db.execute("CHECKPOINT")
    return db, len(entities) / (time.perf_counter() - started), columns


def _median_ms(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def sqlite_queries(store: Any, window_cls: Any, end_ts: float, repeats: int) -> dict[str, Any]:
    series = dict(store.history_attributes(TENANT, "urn:ngsi-ld:ThreePhaseAcMeasurement:hist-full"))
    frequency = next(s for n, s in series.items() if n.endswith("frequency"))
    voltage = next(s for n, s in series.items() if n.endswith("phaseVoltage"))
    window = window_cls(START.timestamp(), end_ts)
    values_ms, (pairs, _) = _median_ms(lambda: store.temporal_values_json(frequency, window), repeats)
    hourly_ms, buckets = _median_ms(lambda: store.aggregate(voltage, window, START.timestamp(), 3600.0), repeats)
    return {"one_attribute_window_ms": values_ms, "pairs": len(json.loads(pairs)), "answer_bytes": len(pairs),
            "hourly_per_phase_ms": hourly_ms, "hourly_buckets": len(buckets)}


def duckdb_queries(db: Any, columns: dict[str, tuple[str, str | None]], repeats: int) -> dict[str, Any]:
    frequency = next(c for c in columns if c.endswith("frequency"))
    phases = [c for c in columns if c.startswith("phaseVoltage_")]

    def values() -> str:
        return db.execute(
            f"SELECT '[' || string_agg('[' || \"{frequency}\" || ',\"' || strftime(observed, '%Y-%m-%dT%H:%M:%S.%g') "
            "|| 'Z\"]', ',' ORDER BY observed, instance_id) || ']' FROM readings WHERE entity_key = 1").fetchone()[0]

    def hourly() -> list[Any]:
        stats = ", ".join(f'avg("{c}"), min("{c}"), max("{c}")' for c in phases)
        return db.execute(f"SELECT time_bucket(INTERVAL 1 hour, observed) AS b, {stats} FROM readings "
                          "WHERE entity_key = 1 GROUP BY b ORDER BY b").fetchall()

    values_ms, pairs = _median_ms(values, repeats)
    hourly_ms, buckets = _median_ms(hourly, repeats)
    return {"one_attribute_window_ms": values_ms, "pairs": len(json.loads(pairs)), "answer_bytes": len(pairs),
            "hourly_per_phase_ms": hourly_ms, "hourly_buckets": len(buckets)}


def month_from_rollups(cls: Any, window_cls: Any, data: Path, days: int, repeats: int) -> dict[str, Any]:
    """A month hourly from the rollups: `days` of one meter's frequency and per-phase voltage, one reading a
    minute (every 10-min bucket exists, as at 1 Hz, at a 60th of the load time), then avg/min/max per hour over
    the whole window (aligned: answered from the 10-min rollups, 144 buckets a day)."""
    module = sys.modules[cls.__module__]
    module.MOVE_EVERY_S = 1e9
    store = cls(data)
    entity_id, kind = "urn:ngsi-ld:ThreePhaseAcMeasurement:month", "https://uri.etsi.org/ngsi-ld/default-context/T"
    frequency, voltage = "https://smartdatamodels.org/dataModel.Energy/frequency", \
        "https://smartdatamodels.org/dataModel.Energy/phaseVoltage"
    rng = random.Random(7)
    minutes = days * 1440
    for first in range(0, minutes, 1440):
        with store.transaction() as tx:
            for minute in range(first, min(first + 1440, minutes)):
                at = (START + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
                v = round(230 + rng.uniform(-3, 3), 1)
                entity = Entity(entity_id, kind, {
                    frequency: {"type": "Property", "value": round(50 + rng.uniform(-0.05, 0.05), 3),
                                "unitCode": "HTZ", "observedAt": at},
                    voltage: {"type": "Property", "value": {"L1": v, "L2": round(v + 0.7, 1), "L3": round(v - 0.4, 1)},
                              "unitCode": "VLT", "observedAt": at}}, at, at)
                tx.record_instances(TENANT, entity, list(entity.attrs), "update", at)
        store.move_history()
    series = dict(store.history_attributes(TENANT, entity_id))
    window = window_cls(START.timestamp(), START.timestamp() + days * 86400)
    out: dict[str, Any] = {"days": days}
    for name, attr in (("scalar", frequency), ("per_phase", voltage)):
        ms, buckets = _median_ms(lambda a=attr: store.aggregate(series[a], window, START.timestamp(), 3600.0),
                                 repeats)
        out[f"hourly_{name}_ms"] = ms
        out[f"hourly_{name}_periods"] = len({b.index for b in buckets})
    store.close()
    return out


def fleet_move(cls: Any, data: Path, meters: int, readings: int, passes: int) -> float:
    """Seconds of one mover pass when many meters each bring a few rows (the broker's pattern at ingest: the
    mover runs every 10 s, so 1,000 meters at 1 Hz bring ~10 rows each): `meters` x `readings` messages of 25
    numbers and 6 per-phase objects, `passes` timed passes after bench/rollup_fold.py's untimed ones, the mean
    returned. 6 passes move one minute of rows and fold one minute of them: the current store writes a bucket when
    it closes, and passes that close none would flatter it (bench/rollup_fold.py, the full figure)."""
    from bench.rollup_fold import START as FLEET_START
    from bench.rollup_fold import WARMUP_PASSES, fleet_passes, messages
    spent = fleet_passes(cls, data, messages(meters, (passes + WARMUP_PASSES) * readings, FLEET_START), readings)
    return sum(spent) / len(spent)


def table_bytes(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        return {name: size for name, size in db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")}
    finally:
        db.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 minutes of one meter (CI smoke run)")
    parser.add_argument("--hours", type=float, help="hours of 1 Hz full messages (default 6; quick 0.25)")
    args = parser.parse_args(argv)
    hours = args.hours or (0.25 if args.quick else 6.0)
    repeats = 3 if args.quick else 7
    seconds = int(hours * 3600)
    print(f"building {seconds:,} firmware messages of one meter ...", flush=True)
    entities = firmware_entities(seconds)
    per_day = 86400 / seconds
    instances = sum(len(e.attrs) for e in entities)
    end_ts = START.timestamp() + seconds
    results: dict[str, Any] = {"hours": hours, "messages": len(entities), "attribute_instances": instances}
    with tempfile.TemporaryDirectory(prefix="bench-layouts-") as tmp:
        for name, cls, window_cls in (("sqlite_v2_row_per_attribute", StoreV2, TimeRangeV2), *_LAYOUTS_V3,
                                      *_LAYOUTS_V4, ("sqlite_v5_packed_rollups", Store, TimeRange)):
            data = Path(tmp) / name
            module = sys.modules[cls.__module__]
            if hasattr(module, "MOVE_EVERY_S"):
                module.MOVE_EVERY_S = 1e9  # every move in the timed pass at the end
            store = cls(data)
            rate, move_s = load_sqlite(store, entities)
            queries = sqlite_queries(store, window_cls, end_ts, repeats)
            store.close()
            path = data / "twin.sqlite"
            tables = table_bytes(path)
            # the B-trees' pages (SQLite's dbstat), not the file: the file also holds the free pages readings_log
            # left behind, which a running broker reuses for the next rows
            raw = sum(tables.get(t, 0) for t in ("readings", "readings_log", "history", "history_log",
                                                 "history_by_series", "history_log_by_series"))
            results[name] = {"load_msg_s": rate, "bytes_per_meter_day": sum(tables.values()) * per_day,
                             "raw_bytes_per_meter_day": raw * per_day, "tables": tables,
                             "file_bytes_per_meter_day": path.stat().st_size * per_day,
                             "rollup_10min_bytes_per_meter_day": None, "move_s": move_s,
                             "move_msg_s": len(entities) / move_s, **queries}
            for table in ("rollups", "rollup_stats"):
                if table not in tables:
                    continue
                # the table holds both periods; the 10-min share is measured on a copy holding only it
                copy = Path(tmp) / f"rollups10-{name}.sqlite"
                db = sqlite3.connect(copy)
                db.execute(f"ATTACH '{path}' AS src")
                db.execute(next(row[0] for row in db.execute(
                    "SELECT sql FROM src.sqlite_master WHERE name = ?", (table,))))
                db.execute(f"INSERT INTO {table} SELECT * FROM src.{table} WHERE period_s = 600")
                db.commit()
                db.execute("DETACH src")
                db.close()
                ten = table_bytes(copy).get(table, 0) + table_bytes(copy).get(f"sqlite_autoindex_{table}_1", 0)
                results[name]["rollup_10min_bytes_per_meter_day"] = ten * per_day
                results[name]["rollup_all_bytes_per_meter_day"] = tables[table] * per_day
            print(f"{name}: loaded {rate:,.0f} msg/s, {results[name]['bytes_per_meter_day'] / 1e6:,.1f} MB per "
                  f"meter-day (raw history {raw * per_day / 1e6:,.1f} MB)", flush=True)
        try:
            db, rate, columns = load_duckdb(Path(tmp) / "duck.db", entities)
            queries = duckdb_queries(db, columns, repeats)
            db.close()
            size = (Path(tmp) / "duck.db").stat().st_size * per_day
            results["duckdb_columnar"] = {"load_msg_s": rate, "columns": len(columns), "bytes_per_meter_day": size,
                                          "raw_bytes_per_meter_day": size,
                                          **queries}
            print(f"duckdb: loaded {rate:,.0f} msg/s, {results['duckdb_columnar']['bytes_per_meter_day'] / 1e6:,.1f} "
                  "MB per meter-day (numeric measures only)", flush=True)
        except ImportError:
            results["duckdb_columnar"] = None
            print("duckdb not installed: `pip install duckdb` for the columnar comparison")
    base = results["sqlite_v2_row_per_attribute"]
    print(f"\n{hours:g} h of one meter at 1 Hz: {len(entities):,} messages, {instances:,} attribute instances; "
          "ratios to schema 2 measured in this run (shared machine: ratios matter, not ms)")
    print(f"{'engine':<30} {'load msg/s':>11} {'MB/meter-day':>13} {'raw MB/day':>11} {'10-min rollups MB/day':>22} "
          f"{'1 attr window ms':>17} {'hourly ms':>10} {'mover msg/s':>12}")
    for name in ("sqlite_v2_row_per_attribute", "sqlite_v3_wide_row", "sqlite_v4_wide_tagged",
                 "sqlite_v5_packed_rollups", "duckdb_columnar"):
        r = results.get(name)
        if r is None:
            continue
        ten = r.get("rollup_10min_bytes_per_meter_day")
        print(f"{name:<30} {r['load_msg_s']:>8,.0f} x{r['load_msg_s'] / base['load_msg_s']:<4.1f}"
              f"{r['bytes_per_meter_day'] / 1e6:>8.1f} /{base['bytes_per_meter_day'] / r['bytes_per_meter_day']:<4.1f}"
              f"{r['raw_bytes_per_meter_day'] / 1e6:>11.1f}"
              f"{(ten / 1e6 if ten else 0):>20.2f}  "
              f"{r['one_attribute_window_ms']:>9.1f} x{base['one_attribute_window_ms'] / r['one_attribute_window_ms']:<5.1f}"
              f"{r['hourly_per_phase_ms']:>7.1f} x{base['hourly_per_phase_ms'] / r['hourly_per_phase_ms']:<5.1f}"
              f"{r.get('move_msg_s', math.nan):>10,.0f}")
    old, new = results.get("sqlite_v4_wide_tagged"), results["sqlite_v5_packed_rollups"]
    month_days = 3 if args.quick else 30
    with tempfile.TemporaryDirectory(prefix="bench-month-") as tmp:
        for name, cls, window_cls in (*_LAYOUTS_V4, ("sqlite_v5_packed_rollups", Store, TimeRange)):
            results[name]["month_hourly"] = month_from_rollups(cls, window_cls, Path(tmp) / name, month_days, repeats)
            m = results[name]["month_hourly"]
            print(f"{name}: {month_days} days hourly from the rollups: {m['hourly_scalar_ms']:.1f} ms scalar, "
                  f"{m['hourly_per_phase_ms']:.1f} ms per phase ({m['hourly_scalar_periods']} hours)", flush=True)
        meters = 50 if args.quick else 500
        for name, cls, _ in (*_LAYOUTS_V4, ("sqlite_v5_packed_rollups", Store, TimeRange)):
            results[name]["fleet_move_s"] = fleet_move(cls, Path(tmp) / f"fleet-{name}", meters, 10, 6)
            print(f"{name}: one mover pass of {meters} meters x 10 messages: "
                  f"{results[name]['fleet_move_s'] * 1000:.0f} ms", flush=True)
    if old:
        results["v5_vs_v4"] = {
            "rollup_10min_bytes_ratio": new["rollup_10min_bytes_per_meter_day"] / old["rollup_10min_bytes_per_meter_day"],
            "mover_speedup": new["move_msg_s"] / old["move_msg_s"],
            "hourly_query_ratio": new["hourly_per_phase_ms"] / old["hourly_per_phase_ms"],
            "month_hourly_per_phase_ratio": new["month_hourly"]["hourly_per_phase_ms"]
            / old["month_hourly"]["hourly_per_phase_ms"],
            "fleet_move_time_ratio": new["fleet_move_s"] / old["fleet_move_s"]}
        print(f"schema 5 vs schema 4, this run: 10-min rollups x{results['v5_vs_v4']['rollup_10min_bytes_ratio']:.2f} "
              f"the bytes, mover (sort + fold) x{results['v5_vs_v4']['mover_speedup']:.2f} the rate, hourly query "
              f"x{results['v5_vs_v4']['hourly_query_ratio']:.2f} the time, month hourly per phase "
              f"x{results['v5_vs_v4']['month_hourly_per_phase_ratio']:.2f} the time, a fleet mover pass "
              f"x{results['v5_vs_v4']['fleet_move_time_ratio']:.2f} the time")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "history_layouts.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
