"""Benchmark: the rollup fold's cost at ingest, the mover's pattern with a fleet: many meters, ~10 rows each a pass.

The broker's mover runs every 10 s, so at 1 Hz each meter brings ~10 readings a pass. Three stores run the same
passes in the same process, one after the other, on the same generated messages (25 numbers and 6 per-phase
objects per message, as the fleet meter publishes them):
  - schema 4 (rollups one row per key, folded by SQL upserts), loaded from git (`bench/_git_baseline.py`);
  - schema 5 as first written (rollups packed one row per attribute and bucket, every open bucket re-merged in
    Python and rewritten on every pass), loaded from git (FOLD_EVERY_PASS_COMMIT);
  - the current store (each bucket written once, when it closes; `twin_service/broker/_rollups.py`).
Seven untimed passes first (09:56:00-09:57:09: every meter's buckets created, and the current store's closes,
staggered over six passes by entity, in their steady state); the timed passes run 09:57:10-10:01:09 (24
passes), so they move 4 minutes of rows and each store folds exactly 4 minutes of them, plus the 10-minute and
the hour bucket closing at 10:00 (from the 1-min and 10-min ones): the closes are in the figure, the coarse ones
over-weighted (one hour in 24 passes instead of one in 360).
Reported: mean and max ms per pass and each store's ratio to schema 4 measured in this run, with `uptime`'s load
(the machine is shared: ratios matter, not the ms).

Usage: python bench/rollup_fold.py [--quick] [--meters N] [--passes P]
Writes bench/results/rollup_fold.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._e2e import RESULTS
from bench._git_baseline import SCHEMA_4_COMMIT, load_store
from twin_service.broker._model import Entity
from twin_service.broker._store import Store

# The last commit whose store re-merged every open rollup bucket on every mover pass (schema 5 before the fold
# wrote each bucket once).
FOLD_EVERY_PASS_COMMIT = "5dce8f9"
TENANT = "energytwin"
START = datetime(2026, 11, 2, 9, 56, tzinfo=UTC)  # the untimed passes, then the timed ones from 09:57:10
WARMUP_PASSES = 7


def _load(commit: str, package: str) -> type | None:
    try:
        return load_store(commit, package).Store
    except subprocess.CalledProcessError as error:
        print(f"store of {commit} not in this clone's git history, skipped: {error.stderr.strip()}", flush=True)
        return None


def messages(meters: int, seconds: int, start: datetime | None = None) -> list[list[tuple[str, dict[str, Any]]]]:
    """Per second from `start` (default START), every meter's message as (entity id, expanded attributes), the
    same for every store."""
    rng = random.Random(3)
    out = []
    for second in range(seconds):
        at = ((start or START) + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        batch = []
        for k in range(meters):
            attrs = {f"https://example.org/a{i}": {"type": "Property", "value": round(rng.uniform(0, 500), 2),
                                                   "observedAt": at} for i in range(25)}
            attrs |= {f"https://example.org/p{i}": {"type": "Property", "observedAt": at, "value": {
                phase: round(rng.uniform(220, 240), 1) for phase in ("L1", "L2", "L3")}} for i in range(6)}
            batch.append((f"urn:ngsi-ld:M:{k}", attrs))
        out.append(batch)
    return out


def fleet_passes(cls: Any, data: Path, batches: list[list[tuple[str, dict[str, Any]]]], readings: int,
                 warmup: int = WARMUP_PASSES) -> list[float]:
    """Seconds of each timed mover pass (the first `warmup` passes are not timed) when every meter brings
    `readings` rows."""
    sys.modules[cls.__module__].MOVE_EVERY_S = 1e9  # only the passes made here
    store = cls(data)
    spent = []
    try:
        for first in range(0, len(batches), readings):
            for batch in batches[first:first + readings]:
                at = next(iter(batch[0][1].values()))["observedAt"]
                with store.transaction() as tx:
                    for entity_id, attrs in batch:
                        entity = Entity(entity_id, "https://example.org/M", attrs, at, at)
                        tx.record_instances(TENANT, entity, list(attrs), "update", at)
            started = time.perf_counter()
            store.move_history()
            if first >= warmup * readings:
                spent.append(time.perf_counter() - started)
    finally:
        store.close()
    return spent


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 meters, 8 timed passes (CI smoke run)")
    parser.add_argument("--meters", type=int, help="meters (default 500; quick 50)")
    parser.add_argument("--passes", type=int, help="timed passes of 10 readings (default 24; quick 8)")
    args = parser.parse_args(argv)
    meters = args.meters or (50 if args.quick else 500)
    passes = args.passes or (8 if args.quick else 24)
    readings = 10
    start = START + timedelta(seconds=(24 - passes) * readings) if passes < 24 else START  # timed to 10:01:09
    stores = [("schema4_sql_upsert", _load(SCHEMA_4_COMMIT, "bench_store_v4")),
              ("schema5_fold_every_pass", _load(FOLD_EVERY_PASS_COMMIT, "bench_store_v5_fold")),
              ("schema5_write_on_close", Store)]
    print(f"building {(passes + WARMUP_PASSES) * readings:,} s of {meters} meters ...", flush=True)
    batches = messages(meters, (passes + WARMUP_PASSES) * readings, start)
    load_before = os.getloadavg()
    results: dict[str, Any] = {"meters": meters, "readings_per_pass": readings, "timed_passes": passes,
                               "first_timed_pass_at": (start + timedelta(seconds=WARMUP_PASSES * readings)).isoformat(),
                               "load_before": load_before, "started": datetime.now(UTC).isoformat()}
    with tempfile.TemporaryDirectory(prefix="bench-rollup-fold-") as tmp:
        for name, cls in stores:
            if cls is None:
                continue
            spent = fleet_passes(cls, Path(tmp) / name, batches, readings)
            results[name] = {"mean_ms": statistics.fmean(spent) * 1000, "max_ms": max(spent) * 1000,
                             "median_ms": statistics.median(spent) * 1000, "passes_ms": [s * 1000 for s in spent],
                             "load_after": os.getloadavg()}
            print(f"{name}: one pass of {meters} meters x {readings} rows: mean {results[name]['mean_ms']:.0f} ms, "
                  f"max {results[name]['max_ms']:.0f} ms (load {results[name]['load_after'][0]:.1f})", flush=True)
    base = results.get("schema4_sql_upsert")
    for name, _ in stores:
        if base and name in results:
            results[name]["mean_vs_schema4"] = results[name]["mean_ms"] / base["mean_ms"]
    if "schema5_fold_every_pass" in results:
        results["write_on_close_vs_fold_every_pass"] = (results["schema5_write_on_close"]["mean_ms"]
                                                        / results["schema5_fold_every_pass"]["mean_ms"])
    print(f"\nmover pass, {meters} meters x {readings} rows, mean of {passes} passes across hh:00 "
          f"(load {load_before[0]:.1f} before; ratios measured in this run):")
    for name, _ in stores:
        if name in results:
            r = results[name]
            print(f"  {name:<26} {r['mean_ms']:>8.0f} ms  x{r.get('mean_vs_schema4', float('nan')):.2f} schema 4")
    if "write_on_close_vs_fold_every_pass" in results:
        print(f"  write on close vs fold every pass: x{results['write_on_close_vs_fold_every_pass']:.2f} the time")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rollup_fold.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
