"""Forecast figures: held-out day-ahead skill per target, and the time to forecast 1,000 installations.

    python bench/forecasts.py            # full: gradient boosting candidates too (a few minutes)
    python bench/forecasts.py --quick    # statistical models only, 50 installations (smoke)

Targets (issue 21): PV skill vs persistence >= 15 % without weather, >= 30 % with; load >= 10 %; price >= 15 %;
1,000 installations (PV from 60 days + load from 35 days of history each, with the fallback rule) in < 60 s. The machine is shared: the
timing is also given as a ratio to one pvlib clear-sky run for one site measured in the same run.
Writes bench/results/forecasts.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forecasting import pv
from forecasting.scoring import score_all

TARGETS = {"pv": 0.15, "pv_with_weather": 0.30, "load": 0.10, "price": 0.15}


def fleet_timing(n: int) -> dict:
    """The service's per-target work for n installations, each its own site and array: the PV forecast from 60
    days of hourly history (clear sky over 61 days, the index walk-forward over the last 14 days for the fallback
    rule, the forecast) and the member's load forecast from 35 days (profile + fallback rule). Histories are
    made before the clock starts (pvlib, so they cost as much as the forecast); broker I/O is not included."""
    from datetime import UTC, datetime

    from forecasting.service import PV_HISTORY_DAYS, forecast_load, forecast_pv

    rng = np.random.default_rng(1)
    issue = datetime(2026, 6, 15, 22, tzinfo=UTC)
    first = np.datetime64("2026-06-15T22", "h") - np.timedelta64(PV_HISTORY_DAYS * 24, "h")
    hours = first + np.arange(PV_HISTORY_DAYS * 24).astype("timedelta64[h]")
    t0 = time.perf_counter()
    probe = pv.PvSite(40.4, -3.7)
    pv.modelled_kwh(probe, hours)
    unit_s = time.perf_counter() - t0
    cases = []
    for _ in range(n):
        site = pv.PvSite(rng.uniform(36, 43), rng.uniform(-9, 3), rng.uniform(10, 40), rng.uniform(120, 240),
                         rng.uniform(2, 10))
        history = pv.modelled_kwh(site, hours) * np.repeat(rng.uniform(0.2, 0.9, PV_HISTORY_DAYS), 24)
        cases.append((site, history, rng.lognormal(-1.5, 0.4, (35, 24))))
    start = time.perf_counter()
    fallbacks = 0
    for site, history, load_days in cases:
        fallbacks += forecast_pv(site, history, issue).fallback
        forecast_load(load_days, issue)
    total_s = time.perf_counter() - start
    return {"installations": n, "seconds": round(total_s, 2), "per_installation_ms": round(1000 * total_s / n, 2),
            "one_clear_sky_run_ms": round(1000 * unit_s, 2),
            "ratio_to_clear_sky_runs": round(total_s / (n * unit_s), 2), "pv_fallbacks": fallbacks,
            "note": "service work per installation (PV + load forecast with the fallback rule), no broker I/O"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    scores = score_all(quick=args.quick)
    result: dict = {"quick": args.quick, "skills": {}, "met": {}}
    for name, target in TARGETS.items():
        s = scores[name]
        result["skills"][name] = s.as_json() | {"monthly": None}
        met = s.verdict.skill_vs_persistence >= target
        result["met"][name] = met
        print(f"{name:16s} skill vs persistence {s.verdict.skill_vs_persistence:+.1%} "
              f"(target {target:.0%}: {'met' if met else 'MISSED'}), vs seasonal-naive "
              f"{s.verdict.skill_vs_seasonal_naive:+.1%}, MAE {s.mae:.3f} {s.unit}, held out {s.held_out}")
    n = 50 if args.quick else 1000
    timing = fleet_timing(n)
    result["fleet"] = timing
    result["met"]["fleet_1000_under_60s"] = None if args.quick else timing["seconds"] < 60
    print(f"{n} installations: {timing['seconds']} s ({timing['per_installation_ms']} ms each, "
          f"{timing['ratio_to_clear_sky_runs']} x one clear-sky run of {timing['one_clear_sky_run_ms']} ms)")
    out = Path(__file__).parent / "results" / "forecasts.json"  # "quick" inside says which run wrote it
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
