"""Forecast figures: held-out day-ahead skill per target, and the time to forecast 1,000 installations.

    python bench/forecasts.py            # full: gradient boosting candidates too (a few minutes)
    python bench/forecasts.py --quick    # statistical models only, 10 installations (smoke)

Targets (issue 21): PV skill vs persistence >= 15 % without weather, >= 30 % with; load >= 10 %; price >= 15 %;
1,000 installations (PV from 104 days + load from 35 days of history each, with the fallback rule) in < 60 s.
The machine is shared: the timing is given beside the previous PV path re-run in the same process (ratio), with
the load average before and after; the PV skill of the previous method is printed beside the current one.
Writes bench/results/forecasts.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forecasting import pv
from forecasting.scoring import score_all, score_pv

TARGETS = {"pv": 0.15, "pv_with_weather": 0.30, "load": 0.10, "price": 0.15}


def _pvlib_chain_kwh(site: pv.PvSite, hours: np.ndarray) -> np.ndarray:
    """The previous clear-sky path, kept here as the baseline: pvlib's Location chain, whole SPA per site."""
    import pandas as pd
    import pvlib

    mid = pd.DatetimeIndex(hours.astype("datetime64[ns]")).tz_localize("UTC") + pd.Timedelta(minutes=30)
    loc = pvlib.location.Location(site.latitude_deg, site.longitude_deg, tz="UTC", altitude=site.altitude_m)
    sol = loc.get_solarposition(mid)
    sky = loc.get_clearsky(mid, model="ineichen", solar_position=sol)
    poa = pvlib.irradiance.get_total_irradiance(
        site.tilt_deg, site.azimuth_deg, sol["apparent_zenith"], sol["azimuth"], sky["dni"], sky["ghi"], sky["dhi"],
        dni_extra=pvlib.irradiance.get_extra_radiation(mid), model="haydavies")["poa_global"].fillna(0).clip(lower=0)
    cell = pvlib.temperature.sapm_cell(poa, 20.0, 1.0, **pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"][
        "open_rack_glass_polymer"])
    dc = pvlib.pvsystem.pvwatts_dc(poa, cell, site.peak_power_kwp * 1000, pv.GAMMA_PDC_PER_K)
    return np.clip(np.nan_to_num(np.asarray(dc, float)), 0, None) / 1000


def _previous_index(obs_days: np.ndarray, model_days: np.ndarray, d: int, window_days: int = 45) -> np.ndarray:
    """The previous commit's hourly median index as it ran (numpy nanmedian and corrcoef per day): baseline."""
    obs, mod = obs_days[max(0, d - window_days):d], model_days[max(0, d - window_days):d]
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(mod > 0.02 * np.nanmax(mod), obs / np.where(mod > 0, mod, 1.0), np.nan)
    med = np.full(24, float(np.nanmedian(k)))
    known = np.isfinite(k).any(axis=0)
    med[known] = np.nanmedian(k[:, known], axis=0)
    kd = pv.daily_index(obs, mod)
    good = kd[~np.isnan(kd)]
    if good.size >= 5 and np.std(good) >= 1e-9 and not np.isnan(kd[-1]):
        rho = float(np.clip(np.corrcoef(good[:-1], good[1:])[0, 1], 0, 1))
        med = med + rho * (kd[-1] - float(np.nanmedian(kd)))
    return np.clip(med, 0.0, 1.5)


def _previous_pv(site: pv.PvSite, history: np.ndarray, issue) -> bool:
    """The PV work the service did before this change: 60 days, the pvlib chain, the 45-day hourly median."""
    from forecasting.service import _judged

    n = 60
    history = history[-n * 24:]
    first = np.datetime64(issue.replace(tzinfo=None), "h") - np.timedelta64(n * 24, "h")
    clear = _pvlib_chain_kwh(site, first + np.arange((n + 1) * 24).astype("timedelta64[h]")).reshape(n + 1, 24)
    obs = np.vstack([history.reshape(n, 24), np.full((1, 24), np.nan)])
    model = np.full(obs.shape, np.nan)
    with warnings.catch_warnings():  # numpy's nanmedian warns on the forecast row's empty slices
        warnings.simplefilter("ignore", RuntimeWarning)
        for d in range(n - 14, n + 1):
            model[d] = _previous_index(obs, clear, d) * clear[d]
    return _judged(model, obs, "PV", "previous").fallback


def fleet_timing(n: int, max_iter: int = 200) -> dict:
    """The service's per-target work for n installations, each its own site and array, timed three ways in the
    same run: the previous PV path (60 days, pvlib's Location chain per site, 45-day index), the current one
    (104 days, the sun's time-only terms shared between sites, the clear-sky index blend) in a first round
    (empty clear-sky cache) and in the next hourly round (cache warm: one new hour per site). Each includes the
    member's load forecast from 35 days: the previous path with the day-type profile (as the service did), the
    current rounds as the service does now: profiles, the pooled gradient-boosting model of the whole fleet
    (forecasting.load_pooled: in both rounds both fits, since each issue hour has its own pair: the first day of
    a service's life, the worst case; later rounds reuse a pair for 7 days) and the per-meter choice. Load
    histories are simulated households (simulation/households.py, seed 7, 2026); PV histories clear sky x a
    random daily index. Histories are made before the clocks start; broker I/O is not included."""
    from datetime import UTC, datetime, timedelta

    from forecasting.load_pooled import PooledLoad
    from forecasting.service import HISTORY_DAYS, PV_HISTORY_DAYS, forecast_load, forecast_pv, load_profile
    from forecasting.sun import ClearSkyCache
    from simulation.households import simulate

    rng = np.random.default_rng(1)
    issue = datetime(2026, 6, 15, 22, tzinfo=UTC)
    first = np.datetime64("2026-06-15T22", "h") - np.timedelta64(PV_HISTORY_DAYS * 24, "h")
    hours = first + np.arange((PV_HISTORY_DAYS + 1) * 24).astype("timedelta64[h]")
    sim = simulate(n, 2026, seed=7, weather_seed=2026)
    at = int(np.flatnonzero(sim.hour_starts_utc.astype("datetime64[h]") == np.datetime64("2026-06-15T22", "h"))[0])
    cases = []
    for m in range(n):
        site = pv.PvSite(rng.uniform(36, 43), rng.uniform(-9, 3), rng.uniform(10, 40), rng.uniform(120, 240),
                         rng.uniform(2, 10))
        history = pv.modelled_kwh(site, hours) * np.repeat(rng.uniform(0.2, 0.9, PV_HISTORY_DAYS + 1), 24)
        load = sim.consumption_kwh[m, at - HISTORY_DAYS * 24:at + 1]  # 35 days before the issue, one hour more
        cases.append((site, history, load))
    out: dict = {"installations": n}
    t0 = time.perf_counter()
    fallbacks = sum(_previous_pv(site, history[:-24], issue) + 0 * forecast_load(
        load[:-1].reshape(HISTORY_DAYS, 24), issue).fallback for site, history, load in cases)
    out["previous_seconds"] = round(time.perf_counter() - t0, 2)
    out["previous_pv_fallbacks"] = int(fallbacks)
    cache = ClearSkyCache(pv.modelled_kwh)
    pooled = PooledLoad(max_iter=max_iter)  # --quick: 50 (a smoke run; its timing is not the measured model's)
    for label, shift in (("seconds", 0), ("next_round_seconds", 1)):
        at = issue + timedelta(hours=shift)
        t0 = time.perf_counter()
        fallbacks = 0
        windows = {}
        for m, (site, history, load) in enumerate(cases):
            past = history[shift:shift + PV_HISTORY_DAYS * 24]
            fallbacks += forecast_pv(site, past, at, clear_sky=cache).fallback
            windows[m] = load[shift:shift + HISTORY_DAYS * 24].reshape(HISTORY_DAYS, 24)
        t1 = time.perf_counter()
        fits_before = pooled.fit_seconds
        profiles = {m: load_profile(w, at) for m, w in windows.items()}
        values = pooled.forecast({m: (p[0], p[2]) for m, p in profiles.items()}, profiles[0][1], at)
        models = {"pooled": 0, "profile": 0, "fallback": 0}
        for m, w in windows.items():
            fc = forecast_load(w, at, pooled=values.get(m), profile=profiles[m][2])
            models["fallback" if fc.fallback else fc.model] += 1
        out[label] = round(time.perf_counter() - t0, 2)
        out[f"{label}_load"] = round(time.perf_counter() - t1, 2)
        out[f"{label}_load_fits"] = round(pooled.fit_seconds - fits_before, 2)
        out[f"{label}_load_models"] = models
        out[f"{label}_pv_fallbacks"] = fallbacks
    out["per_installation_ms"] = round(1000 * out["seconds"] / n, 2)
    out["ratio_to_previous"] = round(out["seconds"] / out["previous_seconds"], 3)
    out["next_round_ratio_to_previous"] = round(out["next_round_seconds"] / out["previous_seconds"], 3)
    out["clear_sky_hours_computed"] = cache.hours_computed
    out["note"] = ("service work per installation (PV + load forecast with the fallback rule), no broker I/O; "
                   "previous = the PV path before the shared-sun/cache change with the day-type profile for load, "
                   "re-run here as the baseline; *_load = the load part of a round (profiles, pooled model with "
                   "both fits, choice), *_load_fits = its two fits")
    return out


def machine_load() -> dict:
    import os

    return {"loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}


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
    previous = score_pv(method="ensemble")
    result["pv_previous_method"] = {"model": previous.model, "skill_vs_persistence":
                                    round(previous.verdict.skill_vs_persistence, 4),
                                    "skill_vs_seasonal_naive": round(previous.verdict.skill_vs_seasonal_naive, 4),
                                    "mae": round(previous.mae, 4)}
    print(f"pv (previous method, same run) skill vs persistence {previous.verdict.skill_vs_persistence:+.1%}")
    n = 10 if args.quick else 1000
    result["machine_before"] = machine_load()
    timing = fleet_timing(n, 50 if args.quick else 200)
    result["machine_after"] = machine_load()
    result["fleet"] = timing
    result["met"]["fleet_1000_under_60s"] = None if args.quick else timing["seconds"] < 60
    print(f"{n} installations: {timing['seconds']} s first round, {timing['next_round_seconds']} s next hourly "
          f"round (previous path {timing['previous_seconds']} s in the same run: x{timing['ratio_to_previous']}, "
          f"x{timing['next_round_ratio_to_previous']}); of which load {timing['seconds_load']} / "
          f"{timing['next_round_seconds_load']} s (pooled fits {timing['seconds_load_fits']} / "
          f"{timing['next_round_seconds_load_fits']} s; models {timing['seconds_load_models']}); machine load "
          f"{result['machine_before']['loadavg_1_5_15']} -> {result['machine_after']['loadavg_1_5_15']}")
    out = Path(__file__).parent / "results" / "forecasts.json"  # "quick" inside says which run wrote it
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
