"""Gradient boosting for load in the service: skill and fitting time for a fleet of meters, beside the profile.

    python bench/forecast_load_fleet.py            # 30 members scored, fit timing for 1,000
    python bench/forecast_load_fleet.py --quick    # 2 members, 8 scored days, fleet timing for 10 (smoke)

The service forecasts each meter's load from the 35 days of history it reads (forecasting.service). This runs the
service's own functions, on the project's simulated households (simulation/households.py, 2026, seed 7, weather
seed 2026: not the households or years the held-out scoring tuned on), issued at 00:00 UTC every day from day 70
to the year's end, each issue seeing only its 35-day window:

* **profile**: `forecast_load` without the pooled model (mean of the last 8 same-type days + the 14-day
  fallback rule): the service before the pooled model;
* **pooled HGB**: forecasting.load_pooled's production forecast for every meter (one HistGradientBoosting model
  for the whole fleet, each meter's values divided by its trailing 28-day level, refitted every 7 days), with
  no choice;
* **service**: what the service writes: `forecast_load` with the pooled values, which uses the pooled model only
  where its judge fit (rows ending 14 days before the refit) beat persistence, seasonal-naive and the profile on
  the meter's last 14 days, else the profile or a baseline.

**Temperature** (the optional `Targets.load_temperature` input): the simulated households have no temperature
dependence, so a second set adds one, from the project's own stated model (not measured homes): an air
temperature of Madrid-like seasons (daily mean 15 - 9 cos(2 pi (doy - 20) / 365.25) C, a +-5 C daily cycle
peaking at 15:00 local, an AR(1) day-to-day anomaly, phi 0.7, sigma 2.5 C, hourly noise 0.5 C), and per
household heating 0.02 kWh per K-hour under 16 C and cooling 0.08 kWh per K-hour over 25 C from 08 to 23 local,
both scaled to its yearly kWh / 3,500 (about 10-15 % of the energy). The forecast row gets a temperature
forecast stand-in: the actual plus a daily (sigma 1.5 C) and an hourly (0.5 C) normal error. The service is
run on that load without and with the temperature; the judge sees observed temperatures for its 14 days (the
production forecast sees the stand-in), so its verdicts are slightly optimistic for the temperature model.

Skill is 1 - MAE/MAE_persistence over all scored meters and days. Fleet timing: `PooledLoad.forecast` for 1,000
meters at one issue (both fits and the predicts), then at the next day's issue (models reused: predicts only),
beside the profile walk-forwards of the same 1,000 meters in the same run. scikit-learn's OpenMP threads are
limited to one (the module does it): on this shared 2-core machine under load, the default threads made one
648-row fit take 6.9 s instead of 0.54 s (measured 2026-12-07, load average 8). Writes
bench/results/forecast_load_fleet.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# One thread for every native pool before numpy/scikit-learn load: under contention idle OpenMP/BLAS workers
# spinning made the --quick smoke run cost ~62 s of CPU for ~16 s of work (measured 2026-12-07 12:54 UTC, six
# benchmarks at once on 2 cores).
for _pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_pool, "1")

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forecasting import baselines as b
from forecasting.load_pooled import PooledLoad
from forecasting.service import HISTORY_DAYS, forecast_load, load_profile

FIRST = 70
ARMS = ("profile", "pooled_hgb", "service")


def fleet(n: int):
    from simulation.households import simulate

    sim = simulate(n, 2026, seed=7, weather_seed=2026)
    hours = sim.hour_starts_utc.astype("datetime64[h]")
    start = int(np.flatnonzero(pd.DatetimeIndex(hours).hour == 0)[0])  # days from 00:00 UTC
    load = sim.consumption_kwh[:, start:]
    n_days = load.shape[1] // 24
    days = load[:, :n_days * 24].reshape(n, n_days, 24)
    first = pd.Timestamp(hours[start]).to_pydatetime().replace(tzinfo=UTC)
    return days, first


def with_temperature(days: np.ndarray, first: datetime, seed: int = 2026):
    """The temperature-dependent variant (module doc): (load days, observed temperature days, forecast
    temperature days), each (meters or 1, days, 24)."""
    rng = np.random.default_rng(seed)
    n_days = days.shape[1]
    doy = np.asarray(pd.date_range(first, periods=n_days, freq="D").dayofyear)
    local_hour = (np.arange(24) + 1) % 24  # UTC+1 (standard time): the simulation's clock
    anomaly = np.zeros(n_days)
    for d in range(1, n_days):
        anomaly[d] = 0.7 * anomaly[d - 1] + rng.normal(0, 2.5)
    temp = (15 - 9 * np.cos(2 * np.pi * (doy - 20) / 365.25) + anomaly)[:, None] + 5 * np.sin(
        2 * np.pi * (local_hour - 9) / 24)[None, :] + rng.normal(0, 0.5, (n_days, 24))
    forecast = temp + rng.normal(0, 1.5, (n_days, 1)) + rng.normal(0, 0.5, (n_days, 24))
    awake = (local_hour >= 8)[None, :]
    scale = days.sum(axis=(1, 2)) / (days.shape[1] / 365.25) / 3500.0
    extra = (0.02 * np.clip(16 - temp, 0, None) + 0.08 * np.clip(temp - 25, 0, None)) * awake
    return days + scale[:, None, None] * extra[None], temp, forecast


def round_at(days: np.ndarray, first: datetime, d: int, pooled: PooledLoad, temps=None):
    """The service's load work at the issue of day d: profiles, the pooled model, the per-meter choice.
    `temps`: (observed, forecast) temperature days; the window's rows observed, the forecast row forecast."""
    issue = first + timedelta(days=d)
    windows = days[:, d - HISTORY_DAYS:d]
    profiles = [load_profile(w, issue) for w in windows]
    t = None if temps is None else np.vstack([temps[0][d - HISTORY_DAYS:d], temps[1][d:d + 1]])
    values = pooled.forecast({m: (p[0], p[2], t) for m, p in enumerate(profiles)}, profiles[0][1], issue)
    return issue, windows, profiles, values


def score(n: int, last_day: int | None = None, *, temperature: str | None = None, max_iter: int = 200) -> dict:
    """`temperature`: None (the households as simulated), "without" / "with" (the temperature-dependent
    variant, forecast without / with the temperature input)."""
    days, first = fleet(n)
    temps = None
    if temperature is not None:
        days, observed, forecast_t = with_temperature(days, first)
        temps = (observed, forecast_t) if temperature == "with" else None
    n_days = days.shape[1] if last_day is None else last_day
    out = {k: np.full((n, n_days, 24), np.nan) for k in ARMS}
    chosen = {"pooled": 0, "profile": 0, "fallback": 0}
    pooled = PooledLoad(max_iter=max_iter)
    for d in range(FIRST, n_days):
        issue, windows, profiles, values = round_at(days, first, d, pooled, temps)
        for m in range(n):
            out["profile"][m, d] = forecast_load(windows[m], issue, profile=profiles[m][2]).values
            if m in values:
                out["pooled_hgb"][m, d] = values[m].next_day
            fc = forecast_load(windows[m], issue, pooled=values.get(m), profile=profiles[m][2])
            out["service"][m, d] = fc.values
            chosen["fallback" if fc.fallback else fc.model] += 1
    scored = slice(FIRST, n_days)
    actual = days[:, scored]
    pers = days[:, FIRST - 1:n_days - 1]
    naive = days[:, FIRST - 7:n_days - 7]
    result = {"members": n, "scored": f"{(first + timedelta(days=FIRST)).date()}/"
                                      f"{(first + timedelta(days=n_days - 1)).date()}",
              "issues_per_member": n_days - FIRST,
              "mae_persistence": round(b.mae(pers, actual), 4), "mae_seasonal_naive": round(b.mae(naive, actual), 4)}
    for name in ARMS:
        mae = b.mae(out[name][:, scored], actual)
        result[name] = {"mae": round(mae, 4), "skill_vs_persistence": round(b.skill(mae, result["mae_persistence"]), 4),
                        "skill_vs_seasonal_naive": round(b.skill(mae, result["mae_seasonal_naive"]), 4)}
    result["service_choice"] = chosen
    result["pooled_fits"], result["pooled_fit_seconds"] = pooled.fits, round(pooled.fit_seconds, 2)
    return result


def fit_timing(n: int, max_iter: int = 200) -> dict:
    """One issue's pooled work for n meters (both fits + predicts), the next day's (predicts only), and the
    profile walk-forwards of the same meters, in the same run."""
    days, first = fleet(n)
    d = 200
    pooled = PooledLoad(max_iter=max_iter)
    t = time.perf_counter()
    issue, windows, _, values = round_at(days, first, d, pooled)
    first_s = time.perf_counter() - t
    fit_s = pooled.fit_seconds
    t = time.perf_counter()
    round_at(days, first, d + 1, pooled)
    next_s = time.perf_counter() - t
    t = time.perf_counter()
    for w in windows:
        load_profile(w, issue)
    profile_s = time.perf_counter() - t
    return {"meters": n, "first_issue_s": round(first_s, 2), "of_which_fits_s": round(fit_s, 2),
            "fits": pooled.fits, "next_issue_s": round(next_s, 2), "profiles_s": round(profile_s, 2),
            "meters_with_pooled_values": len(values)}


def machine_load() -> dict:
    return {"loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=30)
    parser.add_argument("--fleet", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-temperature", action="store_true", help="skip the temperature-dependent runs")
    args = parser.parse_args()
    # --quick is a smoke run: 50 boosting iterations (its figures are not the measured model's)
    members, fleet_n, last_day, iters = (2, 10, FIRST + 8, 50) if args.quick else (args.members, args.fleet, None,
                                                                                  200)
    result: dict = {"quick": args.quick, "date": datetime.now(UTC).isoformat(timespec="minutes"),
                    "machine_before": machine_load(), "sklearn_threads": 1, "max_iter": iters}
    runs = [("skill", None)] + ([] if args.no_temperature else [("temperature_without", "without"),
                                                                ("temperature_with", "with")])
    for key, temperature in runs:
        result[key] = s = score(members, last_day, temperature=temperature, max_iter=iters)
        print(f"-- {key}" + ("" if temperature is None else " (temperature-dependent load)"))
        for name in ARMS:
            print(f"{name:11s} MAE {s[name]['mae']:.4f} kWh, skill vs persistence "
                  f"{s[name]['skill_vs_persistence']:+.1%}, vs seasonal-naive {s[name]['skill_vs_seasonal_naive']:+.1%}"
                  f" ({members} members, {s['scored']})")
        print(f"service's choice over {members} x {s['issues_per_member']} issues: {s['service_choice']}")
    result["timing"] = t = fit_timing(fleet_n, iters)
    print(f"{fleet_n} meters: pooled first issue {t['first_issue_s']} s (fits {t['of_which_fits_s']} s), next "
          f"issue {t['next_issue_s']} s (models reused), profiles {t['profiles_s']} s")
    result["machine_after"] = machine_load()
    out = Path(__file__).parent / "results" / "forecast_load_fleet.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
