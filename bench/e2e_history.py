"""Benchmark: fleet history in the temporal store; day, month-hourly and last-value queries; store size per meter-day.

Loading: 1 Hz `frequency` readings for `--meters` meters (meter 0 a month, meter 1 a day, the others
`--others-hours`) are written straight into the broker's store through its Python API (`Store.transaction()` / `record_instances()` / `update_entity()`, exactly the calls
the broker's write path makes per accepted update; going through HTTP would take hours for a month), then the
broker CLI is started on that data and queried over HTTP. Series are clustered per (meter, attribute) and time,
so a query on one meter does not depend on how much the other meters hold beyond B-tree depth. A full firmware message (all ~30 attributes) for one meter over `--full-minutes`
goes through the broker's public API (`POST /entityOperations/upsert`, the agent's own mapping) to give the
store size of a real meter-day. Queries (median of repeated runs; targets from issue 10, not assertions):
  1. a day of one attribute of one meter, temporalValues (target < 50 ms, issue 15);
  2. a month of one attribute of one meter aggregated hourly (avg,min,max: 720 buckets);
  3. the last value of every meter: current state (`GET /entities?type=...&attrs=frequency`) and history
     (`GET /temporal/entities?type=...&lastN=1`), all pages.
Full: 100 meters x 1 day + meter 0 x 30 days (11.2 M instances); `--quick`: meter 0 x 1 day, 3 more x 1 hour (the month query reads that day).
The issue's "a month for 100 meters" is 259 M instances of one attribute: `--days 30` loads it for real (hours,
~20 GB), which is why `make bench` loads a day per meter and a month for one meter, and reports per meter-day.

Usage: python bench/e2e_history.py [--quick] [--meters N] [--days D] [--month-days D] [--baseline REV]
`--baseline REV` serves a copy of the same data with the broker of git revision REV beside the current one, the
requests of both alternating, and prints the ratios and whether both sent the same bytes.
Writes bench/results/e2e_history.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._e2e import REPO, RESULTS, meter_payload_template
from datamodels.context import ENERGY_CONTEXT, link_header
from twin_service.broker import Store
from twin_service.broker._model import Entity, format_datetime
from twin_service.mqtt_server import free_port, wait_for_port

BASE = "/ngsi-ld/v1"
ENERGY = "https://smartdatamodels.org/dataModel.Energy/"
TYPE = "ThreePhaseAcMeasurement"
TENANT = "bench"
HEADERS = {"Link": link_header(ENERGY_CONTEXT), "NGSILD-Tenant": TENANT}
START = datetime(2026, 10, 1, tzinfo=UTC)
FREQUENCY = ENERGY + "frequency"


def meter_id(n: int) -> str:
    return f"urn:ngsi-ld:{TYPE}:hist-{n:04d}"


def store_bytes(data_dir: Path) -> int:
    """Bytes of the store once its write-ahead log is checkpointed into the database file (no process has it open)."""
    for db in data_dir.rglob("*.sqlite"):
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file())


def fill(data_dir: Path, meters: int, others_hours: float, month_days: int) -> tuple[int, float]:
    """1 Hz frequency: meter 0 for `month_days`, meter 1 a day, the others `others_hours`; (instances, seconds)."""
    started = time.perf_counter()
    store = Store(data_dir)
    instances = 0
    with store.transaction() as tx:
        tx.ensure_tenant(TENANT)
    for n in range(meters):
        seconds = 86_400 * month_days if n == 0 else 86_400 if n == 1 else int(3600 * others_hours)
        entity = Entity(meter_id(n), ENERGY + TYPE, {}, format_datetime(START), format_datetime(START))
        with store.transaction() as tx:
            tx.insert_entity(TENANT, entity)
        for chunk in range(0, seconds, 7200):
            with store.transaction() as tx:
                for second in range(chunk, min(seconds, chunk + 7200)):
                    at = format_datetime(START + timedelta(seconds=second))
                    wave = ((second + 37 * n) % 900) / 900
                    entity.attrs = {FREQUENCY: {"type": "Property", "value": round(49.9 + 0.2 * wave, 3),
                                                "unitCode": "HTZ", "observedAt": at}}
                    tx.record_instances(TENANT, entity, [FREQUENCY], "update", at)
                tx.update_entity(TENANT, entity)
            instances += min(seconds, chunk + 7200) - chunk
    store.move_history()  # as the broker's mover does within seconds: both brokers of --baseline read one state
    store.close()
    return instances, time.perf_counter() - started


def full_messages(url: str, minutes: int) -> int:
    """One meter's real firmware messages (all attributes, mapped by the agent's code) over the public API."""
    from provisioning.agent_bodies import meter_device, service_group
    from twin_service.agent.device_entity import DeviceEntities
    from twin_service.agent.metrics import Metrics
    from twin_service.agent.models import Device, ServiceGroup
    from twin_service.agent.northbound_writer import upsert_headers
    from twin_service.agent.registry import Registry
    from twin_service.agent.rejections import RejectionReporter
    from twin_service.agent.south import FloodLimit, MeasureHandler

    template, _ = meter_payload_template()
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(Path(tmp) / "registry.sqlite")
        registry.create_groups(TENANT, "/", [ServiceGroup.model_validate(service_group("histkey"))])
        registry.create_devices(TENANT, "/", [Device.model_validate(meter_device("hist-full", "histkey"))])
        metrics = Metrics()
        handler = MeasureHandler(registry, metrics, RejectionReporter(metrics), 64 * 1024, True, FloodLimit(0.0),
                                 DeviceEntities(10.0))
        fragments = []
        for second in range(minutes * 60):
            at = START + timedelta(seconds=second)
            stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            upsert = handler.handle("/json/histkey/hist-full/attrs",
                                    (template % (stamp, f"{49.9 + (second % 600) / 3000:.4f}")).encode())
            assert upsert is not None
            fragments.extend(upsert.entities)
        registry.close()
    with httpx.Client(timeout=120) as http:
        for start in range(0, len(fragments), 150):
            answer = http.post(f"{url}{BASE}/entityOperations/upsert/", params={"options": "update"},
                               content=json.dumps(fragments[start:start + 150]).encode(),
                               headers=upsert_headers(TENANT, "/"))
            answer.raise_for_status()
    return minutes * 60


def timed(clients: dict[str, httpx.Client], path: str, params: dict[str, str], runs: int,
          pages: bool = False) -> dict[str, dict[str, Any]]:
    """Median / max latency in ms of `runs` requests per broker after a warm-up (all pages when `pages`); with
    several brokers the requests alternate between them (A B A B ...), so each figure is taken in the same minutes,
    and `identical` says whether every broker sent the same bytes."""

    def once(http: httpx.Client) -> tuple[int, int, bytes]:
        items = size = offset = 0
        content = b""
        while True:
            answer = http.get(path, params={**params, **({"offset": str(offset)} if pages else {})}, headers=HEADERS)
            answer.raise_for_status()
            size += len(answer.content)
            content += answer.content
            if not pages:  # the body is not parsed: what is timed is the broker's answer, not the client's JSON
                return 1, size, content
            body = answer.json()
            items += len(body)
            if len(body) < int(params["limit"]):
                return items, size, content
            offset += len(body)

    bodies = {name: once(http)[2] for name, http in clients.items()}
    latencies: dict[str, list[float]] = {name: [] for name in clients}
    shape: dict[str, tuple[int, int]] = {}
    for _ in range(runs):
        for name, http in clients.items():
            started = time.perf_counter()
            items, size, _ = once(http)
            latencies[name].append((time.perf_counter() - started) * 1000)
            shape[name] = (items, size)
    identical = len(set(bodies.values())) == 1
    return {name: {"median_ms": round(statistics.median(values), 1), "max_ms": round(max(values), 1),
                   "items": shape[name][0], "bytes": shape[name][1],
                   **({"identical_to_baseline": identical} if len(clients) > 1 else {})}
            for name, values in latencies.items()}


def start_broker(data_dir: Path, tree: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """The broker CLI on `data_dir`, from this work tree or from another tree's code (`--baseline`)."""
    port = free_port()
    # the fill starts on 2026-10-01: the 1-min rollup retention (31 days by default) would prune at start, in one
    # broker only (older code has none), while the queries run; kept here, so both brokers serve the same store
    env = {**os.environ, "ENERGYTWIN_BROKER_ROLLUP_1MIN_RETENTION_DAYS": "inf",
           **({"PYTHONPATH": str(tree)} if tree is not None else {})}
    broker = subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--port", str(port),
                               "--data-dir", str(data_dir), "--log-level", "warning"], cwd=tree or REPO, env=env)
    wait_for_port("127.0.0.1", port, 60, broker)
    return broker, f"http://127.0.0.1:{port}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="meter 0 x 1 day + 3 meters x 1 hour, a 1-day 'month' (CI smoke run)")
    parser.add_argument("--meters", type=int)
    parser.add_argument("--others-hours", type=float, help="history of meters 2.. (default 1 h; 24: a day each)")
    parser.add_argument("--month-days", type=int)
    parser.add_argument("--full-minutes", type=int)
    parser.add_argument("--baseline", metavar="REV",
                        help="also serve a copy of the same data with the broker of git revision REV (e.g. HEAD~1), "
                             "its requests alternating with the current broker's, and print current/baseline ratios")
    args = parser.parse_args(argv)
    meters = max(2, args.meters or (4 if args.quick else 100))
    others_hours = args.others_hours if args.others_hours is not None else 1.0
    month_days = args.month_days or (1 if args.quick else 30)
    full_minutes = args.full_minutes or (2 if args.quick else 30)
    runs = 5 if args.quick else 15
    day = {"timerel": "between", "timeAt": format_datetime(START), "endTimeAt": format_datetime(START + timedelta(days=1))}
    month = {"timerel": "between", "timeAt": format_datetime(START),
             "endTimeAt": format_datetime(START + timedelta(days=month_days))}
    results: dict[str, Any] = {}
    baseline: dict[str, Any] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        data_dir = Path(tmp) / "var"
        instances, fill_s = fill(data_dir, meters, others_hours, month_days)
        meter_days = instances / 86_400
        size = store_bytes(data_dir)
        print(f"loaded {instances:,} instances ({meter_days:.1f} meter-days of 1 Hz frequency) in {fill_s:.1f} s "
              f"= {instances / fill_s:,.0f}/s; store {size / 1e6:,.0f} MB", flush=True)
        brokers = {"current": start_broker(data_dir)}
        try:
            if args.baseline:  # the same data, copied, served by the broker of another git revision
                from bench.e2e_ingest import export_tree

                tree = export_tree(args.baseline, Path(tmp) / "baseline-tree")
                shutil.copytree(data_dir, Path(tmp) / "baseline-var")
                brokers["baseline"] = start_broker(Path(tmp) / "baseline-var", tree)
            with contextlib.ExitStack() as stack:
                clients = {name: stack.enter_context(httpx.Client(base_url=url, timeout=120))
                           for name, (_, url) in brokers.items()}
                one = f"{BASE}/temporal/entities/{meter_id(1 % meters)}"
                queries = {
                    "day_one_attribute_temporalValues": (one, {**day, "attrs": "frequency", "options": "temporalValues"},
                                                         runs, False),
                    "day_one_attribute_normalized": (one, {**day, "attrs": "frequency"}, max(3, runs // 3), False),
                    "month_hourly_avg_min_max": (f"{BASE}/temporal/entities/{meter_id(0)}", {
                        **month, "attrs": "frequency", "aggrMethods": "avg,min,max", "aggrPeriodDuration": "PT1H"},
                        runs, False),
                    "last_value_every_meter_current_state": (f"{BASE}/entities", {
                        "type": TYPE, "attrs": "frequency", "limit": "1000"}, runs, True),
                    "last_value_every_meter_temporal_lastN1": (f"{BASE}/temporal/entities", {
                        "type": TYPE, "attrs": "frequency", "lastN": "1", "timerel": "after",
                        "timeAt": format_datetime(START - timedelta(days=1)), "limit": "100"}, runs, True),
                }
                for name, (path, params, n, pages) in queries.items():
                    figures = timed(clients, path, params, n, pages)
                    results[name] = figures["current"]
                    if "baseline" in figures:
                        baseline[name] = figures["baseline"]
        finally:
            for broker, _ in brokers.values():
                broker.terminate()
                broker.wait(60)
        # the full firmware message, on an empty store of its own so its size is not lost among the fill's pages
        full_dir = Path(tmp) / "full"
        broker, url = start_broker(full_dir)
        try:
            empty = store_bytes(full_dir)
            started = time.perf_counter()
            messages = full_messages(url, full_minutes)
            full_s = time.perf_counter() - started
        finally:
            broker.terminate()
            broker.wait(60)
        full_bytes = store_bytes(full_dir) - empty
    summary = {
        "meters": meters, "month_days_meter0": month_days, "day_meter1": 1, "hours_other_meters": others_hours,
        "instances": instances,
        "load_seconds": round(fill_s, 1), "load_instances_per_s": round(instances / fill_s),
        "store_mb": round(size / 1e6, 1),
        "store_bytes_per_meter_day_frequency_only": round(size / meter_days),
        "full_message_minutes": full_minutes, "full_messages_through_api_per_s": round(messages / full_s, 1),
        "store_mb_per_meter_day_full_message": round(full_bytes * 1440 / full_minutes / 1e6, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "baseline": args.baseline,
    }
    print(f"\n{'query':<42} {'median ms':>10} {'max ms':>8} {'items':>8} {'bytes':>11}")
    for name, figure in results.items():
        print(f"{name:<42} {figure['median_ms']:>10.1f} {figure['max_ms']:>8.1f} {figure['items']:>8,} "
              f"{figure['bytes']:>11,}")
    if baseline:
        print(f"\nbaseline {args.baseline} (same data, requests alternating with the current broker's):")
        for name, figure in baseline.items():
            ratio = results[name]["median_ms"] / figure["median_ms"] if figure["median_ms"] else float("nan")
            print(f"{name:<42} {figure['median_ms']:>10.1f} {figure['max_ms']:>8.1f}   current/baseline x{ratio:.2f}"
                  f"{'' if figure['identical_to_baseline'] else '   ANSWERS DIFFER'}")
    print(f"load average before {summary['load_average_before']}, after {summary['load_average_after']}")
    print(f"\nday of 1 Hz, one attribute: {results['day_one_attribute_temporalValues']['median_ms']} ms (target < 50); "
          f"store: {summary['store_bytes_per_meter_day_frequency_only']:,} bytes per meter-day for one attribute, "
          f"{summary['store_mb_per_meter_day_full_message']} MB per meter-day for the full message "
          f"(from {full_minutes} min of one meter through the API at {summary['full_messages_through_api_per_s']} msg/s)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "e2e_history.json").write_text(json.dumps(
        {"summary": summary, "queries": results, **({"baseline_queries": baseline} if baseline else {})},
        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
