"""Benchmark: batch upsert of ThreePhaseAcMeasurement entities (~30 attributes) into the embedded broker.

The broker runs as it does in the stack (`python -m twin_service.broker`, its own process, real HTTP); this
process generates load. Prints (targets from issue 5, not assertions):
  1. sustained entity updates/s (batch upserts of 100 entities from 1,000 meters, options=update, 2 clients);
  2. GET one entity latency p50/p99 under that load (target p99 < 5 ms), measured from a separate process;
  3. writer latency p99 with and without a concurrent reader looping over a day of history (readers must not
     block the writer for long).

Usage: python bench/broker_ingest.py [--quick] [--seconds N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _e2e import percentile

from datamodels.context import ENERGY_CONTEXT, link_header
from datamodels.measures import MEASURES, Shape
from twin_service.mqtt_server import free_port

BASE = "/ngsi-ld/v1"
HEADERS = {"Content-Type": "application/json", "Link": link_header(ENERGY_CONTEXT), "NGSILD-Tenant": "bench"}
METERS = 1000
BATCH = 100


def meter_entity(n: int, observed_at: str, seed: float) -> dict[str, Any]:
    """A normalized ThreePhaseAcMeasurement with every measure of the table (~30 attributes)."""
    entity: dict[str, Any] = {"id": f"urn:ngsi-ld:ThreePhaseAcMeasurement:bench-{n:04d}",
                              "type": "ThreePhaseAcMeasurement",
                              "refDevice": {"type": "Relationship", "object": f"urn:ngsi-ld:Device:bench-{n:04d}"}}
    for i, measure in enumerate(MEASURES):
        base = 100.0 + i + seed
        if measure.shape is Shape.SCALAR:
            value: Any = round(base, 3)
        elif measure.shape is Shape.FLAGS:
            value = {"dipL1": False, "swellL1": False}
        else:
            value = {key: round(base + k * 0.1, 3) for k, key in enumerate(measure.shape.keys)}
        attribute: dict[str, Any] = {"type": "Property", "value": value, "observedAt": observed_at}
        if measure.unit_code:
            attribute["unitCode"] = measure.unit_code
        entity[measure.attribute] = attribute
    return entity


def start_broker(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The broker CLI on a free port; returns the process and its base URL once /version answers."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--port", str(port), "--data-dir",
                                str(data_dir), "--log-level", "warning"], cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/version", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit("broker did not start")
        time.sleep(0.1)



class Load:
    """Writer threads posting batches; counts acknowledged entity updates and records request latencies."""

    def __init__(self, url: str, writers: int) -> None:
        self.url = url
        self.writers = writers
        self.updates = 0
        self.latencies_ms: list[float] = []
        self.errors = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.start_time = datetime(2026, 11, 24, tzinfo=UTC)
        self._threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(writers)]

    def _bodies(self, worker: int, round_no: int) -> list[bytes]:
        observed = (self.start_time + timedelta(seconds=round_no)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        meters = range(worker, METERS, self.writers)
        entities = [meter_entity(n, observed, round_no % 7) for n in meters]
        return [json.dumps(entities[i:i + BATCH]).encode() for i in range(0, len(entities), BATCH)]

    def _run(self, worker: int) -> None:
        with httpx.Client(timeout=30) as client:
            round_no = 0
            while not self.stop.is_set():
                for body in self._bodies(worker, round_no):
                    if self.stop.is_set():
                        return
                    started = time.perf_counter()
                    answer = client.post(f"{self.url}{BASE}/entityOperations/upsert", params={"options": "update"},
                                         content=body, headers=HEADERS)
                    elapsed = (time.perf_counter() - started) * 1000
                    with self.lock:
                        if answer.status_code in (201, 204):
                            self.updates += BATCH
                            self.latencies_ms.append(elapsed)
                        else:
                            self.errors += 1
                round_no += 1

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def measure_gets(url: str, seconds: float) -> list[float]:
    """GET one entity in a loop (4 per 10 ms at most) and return the latencies in ms."""
    latencies = []
    with httpx.Client(timeout=10) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            answer = client.get(f"{url}{BASE}/entities/urn:ngsi-ld:ThreePhaseAcMeasurement:bench-0007",
                                headers=HEADERS)
            latencies.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, answer.text
            time.sleep(0.0025)
    return latencies


def history_reader(url: str, stop: threading.Event, counter: list[int]) -> None:
    """Loop over the whole history of one meter's phaseVoltage (an expensive read) until stopped."""
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            client.get(f"{url}{BASE}/temporal/entities/urn:ngsi-ld:ThreePhaseAcMeasurement:bench-0003",
                       params={"attrs": "phaseVoltage,frequency,current", "options": "temporalValues"},
                       headers=HEADERS).raise_for_status()
            counter[0] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 s phases instead of 60 s (CI smoke run)")
    parser.add_argument("--seconds", type=float, help="length of the sustained phase")
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--probe", nargs=2, metavar=("URL", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:  # the GET prober runs in its own process: the load generator's GIL must not delay it
        print(json.dumps(measure_gets(args.probe[0], float(args.probe[1]))))
        return
    seconds = args.seconds or (2.0 if args.quick else 60.0)
    side_seconds = min(seconds, 10.0)
    print(f"attributes per entity: {len(meter_entity(0, '2026-01-01T00:00:00Z', 0)) - 2}; batch {BATCH}; "
          f"{METERS} meters; {args.writers} writers; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_broker(Path(tmp) / "var")
        try:
            load = Load(url, args.writers)
            load.start()
            time.sleep(2.0)  # warm-up: entities created, contexts cached
            with load.lock:
                start_updates, load.latencies_ms = load.updates, []
            started = time.monotonic()
            probe = subprocess.run([sys.executable, __file__, "--probe", url, str(seconds)], capture_output=True,
                                   text=True, check=True)
            gets = json.loads(probe.stdout)
            with load.lock:
                elapsed = time.monotonic() - started
                rate = (load.updates - start_updates) / elapsed
                plain_write_p99 = percentile(load.latencies_ms, 99)
                load.latencies_ms = []
            stop_reader, reads = threading.Event(), [0]
            reader = threading.Thread(target=history_reader, args=(url, stop_reader, reads), daemon=True)
            reader.start()
            time.sleep(side_seconds)
            stop_reader.set()
            reader.join(timeout=60)
            with load.lock:
                read_write_p99 = percentile(load.latencies_ms, 99)
                read_write_max = max(load.latencies_ms) if load.latencies_ms else float("nan")
            load.finish()
            size = sum(f.stat().st_size for f in (Path(tmp) / "var").iterdir())
        finally:
            process.terminate()
            process.wait(timeout=30)
    results = {
        "entity_updates_per_s": round(rate),
        "sustained_s": round(elapsed, 1),
        "get_entity_ms": {"p50": round(statistics.median(gets), 2), "p99": round(percentile(gets, 99), 2),
                          "n": len(gets)},
        "batch_upsert_ms_p99": round(plain_write_p99, 1),
        "batch_upsert_ms_p99_with_history_reader": round(read_write_p99, 1),
        "batch_upsert_ms_max_with_history_reader": round(read_write_max, 1),
        "history_reads_during_phase": reads[0],
        "errors": load.errors,
        "database_bytes": size,
    }
    print(json.dumps(results, indent=2))
    print(f"\nentity updates/s: {results['entity_updates_per_s']} (target >= 5000) over {elapsed:.0f} s")
    print(f"GET one entity under load: p50 {results['get_entity_ms']['p50']} ms, p99 "
          f"{results['get_entity_ms']['p99']} ms (target p99 < 5 ms)")
    print(f"batch upsert (100 entities) p99: {results['batch_upsert_ms_p99']} ms alone, "
          f"{results['batch_upsert_ms_p99_with_history_reader']} ms with a history reader running")
    out = REPO / "bench" / "results" / "broker_ingest.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
