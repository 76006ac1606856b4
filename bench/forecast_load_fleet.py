"""Gradient boosting for load in the service: skill and fitting time for a fleet of meters, beside the profile.

    python bench/forecast_load_fleet.py            # 30 members scored, fit timing for 1,000
    python bench/forecast_load_fleet.py --quick    # 2 members, 21 days, fit timing for 20 (smoke)

The service forecasts each meter's load from the 35 days of history it reads (forecasting.service), with the
day-type profile. The held-out scores (forecasting.scoring) chose gradient boosting for load, but there it was
refitted every 91 days on one or two years of one household; the service holds 35 days per meter. Measured here,
on the project's simulated households (simulation/households.py, 2026, seed 7, weather seed 2026: not the
households or years the scoring tuned on), issued at 00:00 UTC every day from day 70 to the year's end:

* **profile**: the service's model (mean of the last 8 same-type days, forecasting.profiles);
* **per-meter HGB**: scikit-learn HistGradientBoostingRegressor (absolute error, the scoring's features: hour,
  day type, weekday, season, yesterday's and last week's value and means, the profile) fitted per meter on the
  last 27 days of its window (the 35 days less the 8 the lags need), refitted every 28 days;
* **pooled HGB**: one model for the whole fleet on the same features, each meter's values divided by its own
  window mean (so households of 2,000 and 5,500 kWh a year share one shape), refitted every 7 days on every
  meter's last 27 days.

Skill is 1 - MAE/MAE_persistence over all scored meters and days. Fitting time for 1,000 meters: the pooled model
fitted once on 1,000 meters' rows (measured), and per-meter fits timed on 100 meters and multiplied by 10
(stated as such). scikit-learn's OpenMP threads are limited to one (threadpoolctl): on this shared 2-core
machine under load, the default threads made one 648-row fit take 6.9 s instead of 0.54 s and one 24-row
predict 52 ms instead of 2.8 ms (measured 2026-12-07, load average 8); the service would have to do the same. Writes bench/results/forecast_load_fleet.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

# One thread for every native pool before numpy/scikit-learn load (threadpool_limits below covers the fits only):
# under contention idle OpenMP/BLAS workers spinning made the --quick smoke run cost ~62 s of CPU for ~16 s of work
# (measured 2026-12-07 12:54 UTC, six benchmarks at once on 2 cores).
for _pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_pool, "1")

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forecasting import baselines as b
from forecasting.calendar import day_types
from forecasting.profiles import _features, profile_walk_forward

WINDOW = 35
TRAIN_DAYS = WINDOW - 8
FIRST = 70


def _hgb():
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(loss="absolute_error", max_iter=200, learning_rate=0.05, random_state=0)


def fleet(n: int):
    from simulation.households import simulate

    sim = simulate(n, 2026, seed=7, weather_seed=2026)
    hours = sim.hour_starts_utc.astype("datetime64[h]")
    start = int(np.flatnonzero(pd.DatetimeIndex(hours).hour == 0)[0])  # days from 00:00 UTC
    load = sim.consumption_kwh[:, start:]
    n_days = load.shape[1] // 24
    days = load[:, :n_days * 24].reshape(n, n_days, 24)
    dates = pd.date_range(pd.Timestamp(hours[start]).date(), periods=n_days, freq="D")
    return days, dates


def rows_for(days_m: np.ndarray, profile_m: np.ndarray, calendar, d0: int, d1: int, scale: float):
    types, doy, dow = calendar
    x = np.vstack([_features(days_m / scale, types, doy, dow, r, profile_m / scale, None) for r in range(d0, d1)])
    y = np.concatenate([days_m[r] / scale for r in range(d0, d1)])
    return x, y


def score(n: int, last_day: int | None = None) -> dict:
    days, dates = fleet(n)
    if last_day is not None:
        days, dates = days[:, :last_day], dates[:last_day]
    calendar = (day_types(dates), np.asarray(dates.dayofyear), np.asarray(dates.dayofweek))
    profiles = np.stack([profile_walk_forward(days[m], calendar[0], same_days=8) for m in range(n)])
    n_days = days.shape[1]
    out = {k: np.full(days.shape, np.nan) for k in ("per_meter", "pooled")}
    pooled = None
    per_meter: dict[int, object] = {}
    fit_s = {"per_meter": 0.0, "pooled": 0.0}
    fits = {"per_meter": 0, "pooled": 0}
    for d in range(FIRST, n_days):
        scales = np.array([np.nanmean(days[m, d - WINDOW:d]) for m in range(n)])
        if pooled is None or (d - FIRST) % 7 == 0:
            parts = [rows_for(days[m], profiles[m], calendar, d - TRAIN_DAYS, d, scales[m]) for m in range(n)]
            x, y = np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
            t = time.perf_counter()
            pooled = _hgb().fit(x, y)
            fit_s["pooled"] += time.perf_counter() - t
            fits["pooled"] += 1
        refit = (d - FIRST) % 28 == 0
        for m in range(n):
            if refit or m not in per_meter:
                x, y = rows_for(days[m], profiles[m], calendar, d - TRAIN_DAYS, d, 1.0)
                t = time.perf_counter()
                per_meter[m] = _hgb().fit(x, y)
                fit_s["per_meter"] += time.perf_counter() - t
                fits["per_meter"] += 1
            feats = _features(days[m], calendar[0], calendar[1], calendar[2], d, profiles[m], None)
            out["per_meter"][m, d] = per_meter[m].predict(feats)
            scaled = _features(days[m] / scales[m], calendar[0], calendar[1], calendar[2], d, profiles[m] / scales[m],
                               None)
            out["pooled"][m, d] = pooled.predict(scaled) * scales[m]
    scored = slice(FIRST, n_days)
    actual = days[:, scored]
    pers = days[:, FIRST - 1:n_days - 1]
    naive = days[:, FIRST - 7:n_days - 7]
    result = {"members": n, "scored": f"{dates[FIRST].date()}/{dates[-1].date()}",
              "mae_persistence": round(b.mae(pers, actual), 4), "mae_seasonal_naive": round(b.mae(naive, actual), 4)}
    for name, values in (("profile", profiles[:, scored]), ("per_meter_hgb", out["per_meter"][:, scored]),
                         ("pooled_hgb", out["pooled"][:, scored])):
        mae = b.mae(values, actual)
        result[name] = {"mae": round(mae, 4), "skill_vs_persistence": round(b.skill(mae, result["mae_persistence"]), 4),
                        "skill_vs_seasonal_naive": round(b.skill(mae, result["mae_seasonal_naive"]), 4)}
    result["fit_seconds"] = {k: round(v, 2) for k, v in fit_s.items()}
    result["fits"] = fits
    return result


def fit_timing(n: int, sample: int) -> dict:
    """Seconds to fit the pooled model on `n` meters' 27 days (measured) and per-meter models (timed on
    `sample` meters, scaled to n), at one refit day."""
    days, dates = fleet(n)
    calendar = (day_types(dates), np.asarray(dates.dayofyear), np.asarray(dates.dayofweek))
    d = 200
    profiles = [profile_walk_forward(days[m, :d + 1], calendar[0][:d + 1], same_days=8) for m in range(n)]
    t = time.perf_counter()
    parts = [rows_for(days[m, :d + 1], profiles[m], calendar, d - TRAIN_DAYS, d,
                      float(np.nanmean(days[m, d - WINDOW:d]))) for m in range(n)]
    x, y = np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    features_s = time.perf_counter() - t
    t = time.perf_counter()
    _hgb().fit(x, y)
    pooled_s = time.perf_counter() - t
    t = time.perf_counter()
    for m in range(sample):
        xm, ym = rows_for(days[m, :d + 1], profiles[m], calendar, d - TRAIN_DAYS, d, 1.0)
        _hgb().fit(xm, ym)
    per_meter_s = (time.perf_counter() - t) * n / sample
    t = time.perf_counter()
    profile_walk_forward(days[0, :d + 1], calendar[0][:d + 1], same_days=8)
    profile_s = (time.perf_counter() - t) * n
    return {"meters": n, "rows": int(y.size), "pooled_fit_s": round(pooled_s, 2), "features_s": round(features_s, 2),
            "per_meter_fit_s_scaled": round(per_meter_s, 1), "per_meter_timed_on": sample,
            "profile_s_scaled": round(profile_s, 2)}


def machine_load() -> dict:
    return {"loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=30)
    parser.add_argument("--fleet", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    members, fleet_n, sample, last_day = (2, 20, 2, FIRST + 21) if args.quick else (args.members, args.fleet, 100,
                                                                                      None)
    result: dict = {"quick": args.quick, "date": datetime.now(UTC).isoformat(timespec="minutes"),
                    "machine_before": machine_load(), "sklearn_threads": 1}
    with threadpool_limits(limits=1):
        result["skill"] = score(members, last_day)
    s = result["skill"]
    for name in ("profile", "per_meter_hgb", "pooled_hgb"):
        print(f"{name:14s} MAE {s[name]['mae']:.4f} kWh, skill vs persistence {s[name]['skill_vs_persistence']:+.1%}"
              f", vs seasonal-naive {s[name]['skill_vs_seasonal_naive']:+.1%} ({members} members, {s['scored']})")
    with threadpool_limits(limits=1):
        result["timing"] = fit_timing(fleet_n, min(sample, fleet_n))
    t = result["timing"]
    print(f"fit for {fleet_n} meters: pooled {t['pooled_fit_s']} s on {t['rows']} rows (+{t['features_s']} s "
          f"features), per-meter {t['per_meter_fit_s_scaled']} s (timed on {t['per_meter_timed_on']}), profile "
          f"{t['profile_s_scaled']} s")
    result["machine_after"] = machine_load()
    out = Path(__file__).parent / "results" / "forecast_load_fleet.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
