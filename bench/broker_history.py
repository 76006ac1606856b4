"""Benchmark: a day of 1 Hz history for one meter, read back through the temporal API.

Fills 86,400 instances of `frequency` (a number) and of `phaseVoltage` (per-phase {L1,L2,L3}) for one meter,
starts the broker CLI on that data and times over HTTP (targets from issue 5, not assertions):
  1. the whole day of one attribute with options=temporalValues (target < 100 ms);
  2. the day aggregated hourly, aggrMethods=avg,min,max (target < 50 ms), for the number and per phase;
  3. the normalized form of one hour (3,600 instances), for comparison.

Usage: python bench/broker_history.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datamodels.context import ENERGY_CONTEXT, link_header
from twin_service.broker import Store
from twin_service.broker._model import Entity, format_datetime
from twin_service.mqtt_server import free_port

BASE = "/ngsi-ld/v1"
ENERGY = "https://smartdatamodels.org/dataModel.Energy/"
METER = "urn:ngsi-ld:ThreePhaseAcMeasurement:history-bench"
HEADERS = {"Link": link_header(ENERGY_CONTEXT), "NGSILD-Tenant": "bench"}
DAY = datetime(2026, 11, 23, tzinfo=UTC)
POINTS = 86_400


def fill(data_dir: Path) -> float:
    """Write a day of 1 Hz readings straight into the store (as the broker records them); returns seconds."""
    started = time.perf_counter()
    store = Store(data_dir)
    entity = Entity(METER, ENERGY + "ThreePhaseAcMeasurement", {}, format_datetime(DAY), format_datetime(DAY))
    with store.transaction() as tx:
        tx.ensure_tenant("bench")
        tx.insert_entity("bench", entity)
    for chunk in range(0, POINTS, 3600):
        with store.transaction() as tx:
            for second in range(chunk, chunk + 3600):
                at = format_datetime(DAY + timedelta(seconds=second))
                wave = (second % 600) / 600
                entity.attrs = {
                    ENERGY + "frequency": {"type": "Property", "value": round(49.9 + 0.2 * wave, 3),
                                           "unitCode": "HTZ", "observedAt": at},
                    ENERGY + "phaseVoltage": {"type": "Property", "unitCode": "VLT", "observedAt": at, "value": {
                        "L1": round(228 + 4 * wave, 2), "L2": round(229 + 4 * wave, 2), "L3": round(230 + 4 * wave, 2)}},
                }
                tx.record_instances("bench", entity, list(entity.attrs), "update", at)
            tx.update_entity("bench", entity)
    store.move_history()  # as the broker's background mover does within seconds
    store.close()
    return time.perf_counter() - started


def timed(client: httpx.Client, url: str, params: dict[str, str], runs: int) -> tuple[list[float], httpx.Response]:
    """Latencies (ms) of `runs` GETs after one warm-up, and the last answer."""
    answer = client.get(url, params=params, headers=HEADERS)
    answer.raise_for_status()
    latencies = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = client.get(url, params=params, headers=HEADERS)
        latencies.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    return latencies, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 timed runs per query instead of 20")
    args = parser.parse_args()
    runs = 5 if args.quick else 20
    day = {"timerel": "between", "timeAt": format_datetime(DAY), "endTimeAt": format_datetime(DAY + timedelta(days=1))}
    queries = {
        "day_temporalValues_frequency": {**day, "attrs": "frequency", "options": "temporalValues"},
        "day_temporalValues_phaseVoltage": {**day, "attrs": "phaseVoltage", "options": "temporalValues"},
        "day_hourly_avg_min_max_frequency": {**day, "attrs": "frequency", "aggrMethods": "avg,min,max",
                                             "aggrPeriodDuration": "PT1H"},
        "day_hourly_avg_min_max_phaseVoltage": {**day, "attrs": "phaseVoltage", "aggrMethods": "avg,min,max",
                                                "aggrPeriodDuration": "PT1H"},
        "hour_normalized_frequency": {"timerel": "between", "timeAt": format_datetime(DAY),
                                      "endTimeAt": format_datetime(DAY + timedelta(hours=1)), "attrs": "frequency"},
    }
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "var"
        fill_s = fill(data_dir)
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--port", str(port),
                                    "--data-dir", str(data_dir), "--log-level", "warning"], cwd=REPO)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/version", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("broker did not start")
                time.sleep(0.1)
            with httpx.Client(timeout=60) as client:
                for name, params in queries.items():
                    latencies, answer = timed(client, f"{url}{BASE}/temporal/entities/{METER}", params, runs)
                    body = answer.json()
                    attr = params["attrs"]
                    part = body[attr]
                    points = (len(part["values"]) if "values" in part else len(part["avg"]) if "avg" in part
                              else len(part))
                    results[name] = {"median_ms": round(statistics.median(latencies), 1),
                                     "max_ms": round(max(latencies), 1), "points": points,
                                     "bytes": len(answer.content)}
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"filled {2 * POINTS} instances in {fill_s:.1f} s")
    print(json.dumps(results, indent=2))
    print(f"\nday of 1 Hz, one attribute, temporalValues: {results['day_temporalValues_frequency']['median_ms']} ms "
          f"(target < 100 ms); per-phase: {results['day_temporalValues_phaseVoltage']['median_ms']} ms")
    print(f"day aggregated hourly (avg,min,max): {results['day_hourly_avg_min_max_frequency']['median_ms']} ms "
          f"(target < 50 ms); per-phase: {results['day_hourly_avg_min_max_phaseVoltage']['median_ms']} ms")
    (REPO / "bench" / "results" / "broker_history.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
