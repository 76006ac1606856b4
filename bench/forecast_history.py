"""The forecast service's hourly cycle against a live broker, with and without the per-target history cache.

    python bench/forecast_history.py                 # 50 members (load + PV each), 104 days of 15-min readings
    python bench/forecast_history.py --targets 200 --rounds 6
    python bench/forecast_history.py --quick         # 3 members, 14 days (smoke)

Each member has one meter (import and export counters, a reading every 15 min: the cadence of the demo's
backfill) that is both its load target (35-day window) and its PV installation's generation meter (104-day
window, export - import). Every round first writes the hour that has just passed (untimed, as the IoT Agent
would), then runs `forecasting.service.run_round` twice in the same process on the same broker: once reading
every window whole (`history_cache=None`, what the service did before) and once through `HistoryCache`
(alternating which goes first). Round 0 of the cached path is its cold start (full reads); the following rounds
are the steady state the ratio is about. Each round also checks that both paths wrote the same hourly values.
Retention is off (keep_days=None) in both, so only forecasting and history I/O differ. Time spent inside the
temporal reads (`temporal_entity`) is measured separately. Writes bench/results/forecast_history.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fiware_client import NgsiLdClient
from forecasting.history_cache import HistoryCache
from forecasting.pv import PvSite, modelled_kwh
from forecasting.service import PV_HISTORY_DAYS, PvTarget, Targets, run_round
from twin_service.mqtt_server import free_port, wait_for_port

CADENCE_MIN = 15


class TimedClient:
    """The NGSI-LD client with its temporal reads timed (seconds and calls since the last reset)."""

    def __init__(self, client: NgsiLdClient):
        self._client = client
        self.read_s = 0.0
        self.reads = 0

    def temporal_entity(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return self._client.temporal_entity(*args, **kwargs)
        finally:
            self.read_s += time.perf_counter() - t
            self.reads += 1

    def attribute_history(self, entity_id, attrs, start, end):
        t = time.perf_counter()
        try:
            return self._client.attribute_history(entity_id, attrs, start, end)
        finally:
            self.read_s += time.perf_counter() - t
            self.reads += 1

    def __getattr__(self, name):
        return getattr(self._client, name)


def member_series(k: int, first: datetime, steps: int) -> tuple[PvSite, np.ndarray, np.ndarray]:
    """A member's site and cumulative import/export (kWh) at 15-min steps from `first`."""
    rng = np.random.default_rng(100 + k)
    site = PvSite(37.0 + 6.0 * rng.random(), -8.0 + 10.0 * rng.random(), 20 + 20 * rng.random(),
                  150 + 60 * rng.random(), 1.0 + 3.0 * rng.random())
    per_hour = 60 // CADENCE_MIN
    hours = np.datetime64(first.replace(tzinfo=None), "h") + np.arange(steps // per_hour + 1).astype(
        "timedelta64[h]")
    daily = np.repeat(rng.uniform(0.3, 1.0, hours.size // 24 + 1), 24)[:hours.size]
    pv = np.repeat(modelled_kwh(site, hours) * daily, per_hour)[:steps] / per_hour
    load = rng.uniform(0.03, 0.25, steps)
    return site, 1000 + np.cumsum(np.clip(load - pv, 0, None)), 500 + np.cumsum(np.clip(pv - load, 0, None))


def rows(meter: str, first: datetime, imported: np.ndarray, exported: np.ndarray, lo: int, hi: int) -> list[dict]:
    out = []
    for j in range(lo, hi):
        at = (first + timedelta(minutes=CADENCE_MIN * j)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append({"id": meter, "type": "ThreePhaseAcMeasurement",
                    "totalActiveEnergyImport": {"type": "Property", "value": round(float(imported[j]), 3),
                                                "observedAt": at},
                    "totalActiveEnergyExport": {"type": "Property", "value": round(float(exported[j]), 3),
                                                "observedAt": at}})
    return out


def machine_load() -> dict:
    return {"loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}


def run(n: int, history_days: int, rounds: int) -> dict:
    issue0 = datetime(2026, 6, 1, tzinfo=UTC)
    first = issue0 - timedelta(days=history_days)
    per_hour = 60 // CADENCE_MIN
    steps = (history_days * 24 + rounds) * per_hour
    meters, series, pv_targets = [], [], []
    for k in range(n):
        meter = f"urn:ngsi-ld:ThreePhaseAcMeasurement:bench-{k:04d}"
        site, imp, exp = member_series(k, first, steps)
        meters.append(meter)
        series.append((imp, exp))
        pv_targets.append(PvTarget(f"bench-roof-{k:04d}", site, meter=meter))
    out: dict = {"targets": n, "history_days": history_days, "cadence_min": CADENCE_MIN, "rounds": rounds,
                 "pv_window_days": PV_HISTORY_DAYS, "machine_before": machine_load()}
    with tempfile.TemporaryDirectory() as data_dir:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--port", str(port), "--data-dir",
                                 data_dir, "--log-level", "warning"], cwd=Path(__file__).resolve().parents[1])
        try:
            wait_for_port("127.0.0.1", port, timeout_s=30, proc=proc)
            with NgsiLdClient(f"http://127.0.0.1:{port}", tenant="bench-forecast") as raw:
                t = time.perf_counter()
                upto = history_days * 24 * per_hour
                for meter, (imp, exp) in zip(meters, series, strict=True):
                    body = rows(meter, first, imp, exp, 0, upto)
                    for i in range(0, len(body), 2000):
                        raw.upsert_entities(body[i:i + 2000], update=True)
                out["history_write_s"] = round(time.perf_counter() - t, 1)
                out["instances_written"] = 2 * upto * n
                print(f"history written: {n} meters x {upto} readings x 2 counters in {out['history_write_s']} s")
                client = TimedClient(raw)
                cache = HistoryCache()
                cached = Targets(pv=pv_targets, meters=meters, keep_days=None, history_cache=cache)
                full = Targets(pv=pv_targets, meters=meters, keep_days=None, history_cache=None)
                run_round(client, issue0 - timedelta(hours=1), Targets(pv=pv_targets, meters=meters,
                                                                       keep_days=None, history_cache=None))
                per_round = []
                for r in range(rounds):
                    issue = issue0 + timedelta(hours=r)
                    if r:
                        for meter, (imp, exp) in zip(meters, series, strict=True):
                            raw.upsert_entities(rows(meter, first, imp, exp, upto + (r - 1) * per_hour,
                                                     upto + r * per_hour), update=True)
                    figures, written = {}, {}
                    for name in (("full", "cached") if r % 2 == 0 else ("cached", "full")):
                        client.read_s, client.reads = 0.0, 0
                        before = cache.stats.instances_read
                        t = time.perf_counter()
                        result = run_round(client, issue, cached if name == "cached" else full)
                        figures[name] = {"seconds": round(time.perf_counter() - t, 3),
                                         "read_seconds": round(client.read_s, 3), "reads": client.reads,
                                         "written": result.written}
                        if name == "cached":
                            figures[name]["instances_read"] = cache.stats.instances_read - before
                        written[name] = [e["hourlyValues"]["value"] for e in result.entities]
                    figures["identical"] = written["full"] == written["cached"]
                    figures["ratio"] = round(figures["cached"]["seconds"] / figures["full"]["seconds"], 3)
                    per_round.append(figures)
                    print(f"round {r} ({issue:%H:%MZ}): full {figures['full']['seconds']} s "
                          f"(reads {figures['full']['read_seconds']} s), cached {figures['cached']['seconds']} s "
                          f"(reads {figures['cached']['read_seconds']} s, {figures['cached'].get('instances_read')}"
                          f" instances): x{figures['ratio']}, identical {figures['identical']}")
                out["per_round"] = per_round
                warm = per_round[1:]
                if warm:
                    full_s = statistics.median(f["full"]["seconds"] for f in warm)
                    cached_s = statistics.median(f["cached"]["seconds"] for f in warm)
                    out["steady_state"] = {
                        "full_round_s_median": full_s, "cached_round_s_median": cached_s,
                        "ratio_cached_to_full": round(cached_s / full_s, 3),
                        "full_read_s_median": statistics.median(f["full"]["read_seconds"] for f in warm),
                        "cached_read_s_median": statistics.median(f["cached"]["read_seconds"] for f in warm),
                        "per_target_full_ms": round(1000 * full_s / n, 1),
                        "per_target_cached_ms": round(1000 * cached_s / n, 1)}
                out["cold_cached_ratio"] = per_round[0]["ratio"]
                out["all_identical"] = all(f["identical"] for f in per_round)
                out["cache_samples"] = cache.size
                out["cache_bytes"] = 16 * cache.size
                out["cache_stats"] = vars(cache.stats)
        finally:
            proc.terminate()
            proc.wait(10)
    out["machine_after"] = machine_load()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=50, help="members (each: load + PV from one meter)")
    parser.add_argument("--days", type=int, default=PV_HISTORY_DAYS, help="days of history written")
    parser.add_argument("--rounds", type=int, default=5, help="hourly rounds timed (the first is the cold one)")
    parser.add_argument("--quick", action="store_true", help="3 members, 14 days, 2 rounds (smoke)")
    args = parser.parse_args()
    n, days, rounds = (3, 14, 2) if args.quick else (args.targets, args.days, args.rounds)
    result = run(n, days, rounds) | {"quick": args.quick, "date": datetime.now(UTC).isoformat(timespec="minutes")}
    steady = result.get("steady_state", {})
    print(f"{n} members: steady-state round {steady.get('full_round_s_median')} s full re-read, "
          f"{steady.get('cached_round_s_median')} s cached (x{steady.get('ratio_cached_to_full')}); "
          f"identical {result['all_identical']}; cache {result['cache_bytes'] / 1e6:.1f} MB; load "
          f"{result['machine_before']['loadavg_1_5_15']} -> {result['machine_after']['loadavg_1_5_15']}")
    out = Path(__file__).parent / "results" / "forecast_history.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    if not result["all_identical"]:
        raise SystemExit("the cached path wrote different forecasts than the full re-read")


if __name__ == "__main__":
    main()
