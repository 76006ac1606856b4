"""Walk-forward scoring on held-out data: skill against persistence and seasonal-naive, per month, and the rule
that a model which does not beat both baselines on held-out data is not used.

Load and price choose between the day-type profile and gradient boosting by MAE on a validation year that
comes before the held-out one; the held-out year is scored once with the chosen model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forecasting import baselines as b
from forecasting import data, profiles, pv
from forecasting.calendar import day_types


@dataclass
class TargetScore:
    target: str
    unit: str
    data: str
    held_out: str
    model: str
    mae: float
    rmse: float
    mae_persistence: float
    mae_seasonal_naive: float
    verdict: b.Verdict
    monthly: list[dict] = field(default_factory=list)
    comparison: dict = field(default_factory=dict)
    forecast: np.ndarray | None = None
    actual: np.ndarray | None = None

    def as_json(self) -> dict:
        return {
            "skill_vs_persistence": round(self.verdict.skill_vs_persistence, 4),
            "skill_vs_seasonal_naive": round(self.verdict.skill_vs_seasonal_naive, 4),
            "mae": round(self.mae, 4), "rmse": round(self.rmse, 4), "unit": self.unit,
            "held_out": self.held_out, "data": self.data, "model": self.model,
            "used": self.verdict.use, "note": self.verdict.describe(self.target),
            "mae_persistence": round(self.mae_persistence, 4),
            "mae_seasonal_naive": round(self.mae_seasonal_naive, 4),
            "model_choice_on_validation": self.comparison, "monthly": self.monthly,
        }


def _score(target: str, ds: data.Dataset, model_days: np.ndarray, model: str, start: int,
           comparison: dict | None = None) -> TargetScore:
    y = ds.days
    pers, naive = b.persistence(y), b.seasonal_naive(y)
    sl = slice(start, None)
    v = b.verdict(model_days[sl], y[sl], pers=pers[sl], naive=naive[sl])
    months = ds.dates[sl]
    monthly = []
    for month in sorted(set(months.month)):
        rows = np.asarray(months.month == month)
        m, p, s = (b.mae(x[sl][rows], y[sl][rows]) for x in (model_days, pers, naive))
        monthly.append({"month": f"{months[rows][0]:%Y-%m}", "mae": round(m, 4),
                        "rmse": round(b.rmse(model_days[sl][rows], y[sl][rows]), 4),
                        "mae_persistence": round(p, 4), "mae_seasonal_naive": round(s, 4),
                        "skill_vs_persistence": round(b.skill(m, p), 4)})
    return TargetScore(target, ds.unit, ds.name, ds.period(start), model, b.mae(model_days[sl], y[sl]),
                       b.rmse(model_days[sl], y[sl]), b.mae(pers[sl], y[sl]), b.mae(naive[sl], y[sl]), v,
                       monthly, comparison or {}, model_days[sl], y[sl])


def score_pv(*, with_weather: bool = False, method: str = "blend") -> TargetScore:
    """PV on the held-out year with the method chosen on the tuning sites (bench/forecast_pv_tuning.py);
    `method` names an earlier one for the old-vs-new figure. Nothing here feeds back into a choice."""
    ds = data.pv_dataset(data.PV_HELD_OUT)
    clear = ds.extra["clear"]
    comparison = None
    if with_weather:
        comparison = weather_path_on_validation()
        if comparison["weather_path_used"]:
            fc = pv.pv_walk_forward_weather(ds.days, clear, ds.extra["weather"], window_days=30)
            name = "pvlib GHI-forecast model x learned performance ratio (NWP stand-in: noisy held-out GHI)"
        else:
            fc = pv.pv_walk_forward(ds.days, clear, method=method)
            name = f"weather path NOT used (it did not beat both baselines on validation): {pv.PV_METHODS[method]}"
    else:
        fc = pv.pv_walk_forward(ds.days, clear, method=method)
        name = pv.PV_METHODS[method]
    return _score("pv_with_weather" if with_weather else "pv", ds, fc, name, ds.held_out_from, comparison)


def weather_path_on_validation() -> dict:
    """The fallback rule for the weather path, decided before the held-out year is scored: on each tuning site
    (forecasting.data.PV_TUNING_SITES, with its own NWP stand-in) the weather path must beat persistence and
    seasonal-naive, else the held-out score uses the no-weather method and says so."""
    out: dict = {"validation": "PV tuning sites " + ", ".join(data.PV_TUNING_SITES)}
    used = True
    for site in data.PV_TUNING_SITES:
        ds = data.pv_dataset(site)
        fc = pv.pv_walk_forward_weather(ds.days, ds.extra["clear"], ds.extra["weather"], window_days=30)
        sl = slice(ds.held_out_from, None)
        v = b.verdict(fc[sl], ds.days[sl])
        out[site] = {"skill_vs_persistence": round(v.skill_vs_persistence, 4),
                     "skill_vs_seasonal_naive": round(v.skill_vs_seasonal_naive, 4)}
        used = used and not v.fallback
    out["weather_path_used"] = used
    return out


def _calendar_target(target: str, ds: data.Dataset, *, quick: bool) -> TargetScore:
    dates = ds.dates
    types = day_types(dates)
    profile_kw = {"same_days": 8, "level_weight": 0.5 if target == "price" else 0.0}
    prof = profiles.profile_walk_forward(ds.days, types, **profile_kw)
    y = ds.days
    val = slice(ds.validation_from, ds.held_out_from)
    comparison = {"validation": ds.period(ds.validation_from, ds.held_out_from),
                  "profile_mae": round(b.mae(prof[val], y[val]), 4)}
    best, best_days = "day-type profile (last 8 same-type days)", prof
    if not quick:
        hgb = profiles.hgb_walk_forward(ds.days, types, np.asarray(dates.dayofyear), np.asarray(dates.dayofweek),
                                        first_day=ds.validation_from, refit_every=91)
        comparison["hist_gradient_boosting_mae"] = round(b.mae(hgb[val], y[val]), 4)
        if comparison["hist_gradient_boosting_mae"] < comparison["profile_mae"]:
            best, best_days = "scikit-learn HistGradientBoosting (calendar, holidays, lags, profile)", hgb
    else:
        comparison["hist_gradient_boosting_mae"] = "not run (--quick)"
    if target == "price":
        ridge = profiles.ridge_walk_forward(ds.days, types, np.asarray(dates.dayofyear), first_day=ds.validation_from)
        comparison["ridge_mae"] = round(b.mae(ridge[val], y[val]), 4)
        if comparison["ridge_mae"] < min(v for v in (comparison["profile_mae"],
                                                     comparison["hist_gradient_boosting_mae"])
                                         if isinstance(v, float)):
            best, best_days = "per-hour ridge regression (calendar, yesterday's and last week's level, lags)", ridge
    comparison["chosen"] = best
    return _score(target, ds, best_days, best, ds.held_out_from, comparison)


def score_all(*, quick: bool = False) -> dict[str, TargetScore]:
    """Every target on its held-out data (see forecasting.data); `quick` skips gradient boosting."""
    return {
        "pv": score_pv(),
        "pv_with_weather": score_pv(with_weather=True),
        "load": _calendar_target("load", data.load_dataset(0), quick=quick),
        "price": _calendar_target("price", data.price_dataset(), quick=quick),
    }


def chart(scores: dict[str, TargetScore], path) -> None:
    """Monthly MAE of model and baselines per target, one panel each (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scores), figsize=(4.5 * len(scores), 3.6))
    for ax, (name, s) in zip(np.atleast_1d(axes), scores.items(), strict=True):
        months = [m["month"][5:] for m in s.monthly]
        for key, label in (("mae", "model"), ("mae_persistence", "persistence"),
                           ("mae_seasonal_naive", "seasonal-naive")):
            ax.plot(months, [m[key] for m in s.monthly], marker="o", label=label)
        ax.set_title(f"{name}: skill {s.verdict.skill_vs_persistence:+.0%} vs persistence", fontsize=9)
        ax.set_ylabel(f"MAE ({s.unit})")
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
