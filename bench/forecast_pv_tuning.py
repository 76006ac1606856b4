"""PV without weather: every candidate method on the TUNING sites only (never the held-out year).

    python bench/forecast_pv_tuning.py             # candidates' skill vs persistence, ~10 s
    python bench/forecast_pv_tuning.py --ceiling   # + what a fitted regression on yesterday could reach at most

This is where the PV method's choices were made (windows, median, persistence blend, dawn/dusk rule): on
Miami's TMY2 and Sand Point's TMY3 (forecasting.data.PV_TUNING_SITES), scored walk-forward from day 31 exactly
as the held-out Greensboro year is. The held-out year is scored by `energytwin forecast score` with the method
chosen here; this script refuses to load it.

The mixture median's weight scale (`pv.MIXTURE_WEIGHT_SCALE`) was chosen by the scan this prints without
`--quick` (the mixture alone and blended with the ensemble, at each scale).

`--ceiling` fits, in-sample (on the whole tuning year, so an optimistic bound), a least-absolute-deviation
regression of each hour's energy on the climatological index and yesterday's information (daily index,
afternoon index, same-hour index, the day before's index): how much skill the information available at issue
time holds for a linear forecaster, before any walk-forward loss. Writes bench/results/forecast_pv_tuning.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forecasting import baselines as b
from forecasting import data, pv

FIRST_SCORED_DAY = 31  # as for the held-out year
CANDIDATES = {
    "learned_ratio_of_sums_30d": {"method": "learned", "window_days": 30},
    "blended_30d (first method)": {"method": "blended", "window_days": 30},
    "hourly_median_30d": {"method": "hourly_median", "window_days": 30},
    "hourly_median_45d (previous)": {"method": "hourly_median", "window_days": 45},
    "hourly_median_60d": {"method": "hourly_median", "window_days": 60},
    "hourly_median_90d": {"method": "hourly_median", "window_days": 90},
    "ensemble 20/45/90 + dawn/dusk (previous)": {"method": "ensemble"},
    "mixture median, weight x 0.65": {"method": "mixture"},
    "blend: mean of ensemble and mixture median (used)": {"method": "blend"},
}
SCAN = (0.25, 0.35, 0.5, 0.65, 0.8, 1.0, 1.5)  # the mixture's persistence-weight scale, scanned without --quick


def skill_vs_persistence(forecast: np.ndarray, observed: np.ndarray) -> float:
    sl = slice(FIRST_SCORED_DAY, None)
    return b.verdict(forecast[sl], observed[sl]).skill_vs_persistence


def ceiling(obs: np.ndarray, clear: np.ndarray) -> dict[str, float]:
    """In-sample LAD fits (scikit-learn QuantileRegressor, HiGHS) on growing feature sets; see module doc."""
    from sklearn.linear_model import QuantileRegressor

    n = obs.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(clear > 0.02 * clear.max(axis=1, keepdims=True), obs / np.where(clear > 0, clear, 1), np.nan)
    kd = pv.daily_index(obs, clear)
    clim = np.array([pv.hourly_median_index(obs, clear, d) if d else np.full(24, np.nan) for d in range(n)])
    med = np.array([np.nanmedian(kd[max(0, d - 45):d]) if d else np.nan for d in range(n)])
    afternoon = np.full(n, np.nan)
    for d in range(n):
        sun = np.flatnonzero(clear[d] > 0.1 * clear[d].max())[-4:]
        if sun.size:
            afternoon[d] = obs[d, sun].sum() / clear[d, sun].sum()
    rows, y, w, pers = [], [], [], []
    for d in range(FIRST_SCORED_DAY + 1, n):
        for h in np.flatnonzero(np.isfinite(k[d])):
            same = k[d - 1, h] if np.isfinite(k[d - 1, h]) else kd[d - 1]
            rows.append([clim[d, h], kd[d - 1] - med[d], afternoon[d - 1] - med[d], same - med[d], kd[d - 2] - med[d]])
            y.append(obs[d, h])
            w.append(clear[d, h])
            pers.append(obs[d - 1, h])
    x, y, w, pers = np.array(rows), np.array(y), np.array(w), np.array(pers)
    base = np.abs(pers - y).sum()
    out = {}
    for label, cols in (("climatology only", [0]), ("+ yesterday's daily index", [0, 1]),
                        ("+ afternoon index", [0, 1, 2]), ("all five", [0, 1, 2, 3, 4])):
        fit = QuantileRegressor(quantile=0.5, alpha=0, fit_intercept=False, solver="highs")
        fit.fit(x[:, cols] * w[:, None], y)
        out[label] = round(1 - np.abs(fit.predict(x[:, cols] * w[:, None]) - y).sum() / base, 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ceiling", action="store_true", help="also the in-sample regression ceiling (~10 s)")
    parser.add_argument("--quick", action="store_true", help="the smoke run (make bench --quick): no ceiling")
    args = parser.parse_args()
    assert data.PV_HELD_OUT not in data.PV_TUNING_SITES
    result: dict = {"sites": {}, "candidates": {}, "ceiling_in_sample": {}}
    sets = {}
    for site in data.PV_TUNING_SITES:
        ds = data.pv_dataset(site)
        sets[site] = ds
        result["sites"][site] = ds.name
    for name, kw in CANDIDATES.items():
        row = {}
        for site, ds in sets.items():
            t0 = time.perf_counter()
            fc = pv.pv_walk_forward(ds.days, ds.extra["clear"], **kw)
            row[site] = round(skill_vs_persistence(fc, ds.days), 4)
            row[f"{site}_walk_s"] = round(time.perf_counter() - t0, 2)
        row["mean"] = round(float(np.mean([row[s] for s in sets])), 4)
        result["candidates"][name] = row
        print(f"{name:40s} " + "  ".join(f"{s} {row[s]:+.1%}" for s in sets) + f"  mean {row['mean']:+.1%}")
    if not args.quick:
        base = {site: pv.pv_walk_forward(ds.days, ds.extra["clear"], method="ensemble") for site, ds in sets.items()}
        for scale in SCAN:
            row = {}
            for site, ds in sets.items():
                days = np.arange(1, ds.days.shape[0])
                fc = np.full(ds.days.shape, np.nan)
                fc[days] = pv.mixture_median_indices(ds.days, ds.extra["clear"], days, weight_scale=scale) * \
                    ds.extra["clear"][days]
                row[site] = round(skill_vs_persistence(fc, ds.days), 4)
                row[f"{site}_blend"] = round(skill_vs_persistence(0.5 * (fc + base[site]), ds.days), 4)
            for kind, suffix in (("mixture", ""), ("blend", "_blend")):
                mean = float(np.mean([row[f"{site}{suffix}"] for site in sets]))
                print(f"scan {kind:8s} weight x {scale:<5} " + "  ".join(
                    f"{site} {row[f'{site}{suffix}']:+.1%}" for site in sets) + f"  mean {mean:+.1%}")
            result.setdefault("mixture_scan", {})[str(scale)] = row
    if args.ceiling and not args.quick:
        for site, ds in sets.items():
            result["ceiling_in_sample"][site] = ceiling(ds.days, ds.extra["clear"])
            print(f"in-sample LAD ceiling {site}: " + ", ".join(
                f"{k} {v:+.1%}" for k, v in result["ceiling_in_sample"][site].items()))
    out = Path(__file__).parent / "results" / "forecast_pv_tuning.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
