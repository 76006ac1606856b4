"""Naive day-ahead baselines and the error measures every forecast is scored with.

Series are handled as day blocks: an array of shape (days, 24), row d the 24 hours after the issue time of day d.
Persistence forecasts day d with day d-1 (same hour yesterday), seasonal-naive with day d-7 (same hour last
week); both are what a forecast must beat to be worth using (Hyndman & Athanasopoulos, *Forecasting: Principles
and Practice*, 3rd ed., §5.2 and §5.8 on scaled errors and skill).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOURS = 24


def as_days(hourly: np.ndarray) -> np.ndarray:
    """Hourly values (length a multiple of 24) as a (days, 24) array."""
    values = np.asarray(hourly, float)
    if values.size % HOURS:
        raise ValueError(f"{values.size} hours is not a whole number of days")
    return values.reshape(-1, HOURS)


def persistence(days: np.ndarray) -> np.ndarray:
    """Forecast of each day = the day before (row 0 has none: NaN)."""
    out = np.full_like(days, np.nan, dtype=float)
    out[1:] = days[:-1]
    return out


def seasonal_naive(days: np.ndarray, period_days: int = 7) -> np.ndarray:
    """Forecast of each day = the same weekday a week before (first `period_days` rows NaN)."""
    out = np.full_like(days, np.nan, dtype=float)
    out[period_days:] = days[:-period_days]
    return out


def mae(forecast: np.ndarray, actual: np.ndarray) -> float:
    """Mean absolute error over the hours where both are known."""
    err = np.asarray(forecast, float) - np.asarray(actual, float)
    ok = ~np.isnan(err)
    return float(np.abs(err[ok]).mean()) if ok.any() else float("nan")


def rmse(forecast: np.ndarray, actual: np.ndarray) -> float:
    """Root-mean-square error over the hours where both are known."""
    err = np.asarray(forecast, float) - np.asarray(actual, float)
    ok = ~np.isnan(err)
    return float(np.sqrt((err[ok] ** 2).mean())) if ok.any() else float("nan")


def skill(model_mae: float, baseline_mae: float) -> float:
    """1 - MAE/MAE_baseline: 0 = as good as the baseline, 1 = perfect, negative = worse than the baseline."""
    if not baseline_mae > 0:
        return float("nan")
    return 1.0 - model_mae / baseline_mae


@dataclass(frozen=True)
class Verdict:
    """Which forecast to use for a series: the model only if it beats both baselines, else the better baseline."""

    use: str  # "model", "persistence" or "seasonal_naive"
    skill_vs_persistence: float
    skill_vs_seasonal_naive: float

    @property
    def fallback(self) -> bool:
        return self.use != "model"

    def describe(self, name: str) -> str:
        if not self.fallback:
            return f"{name}: model used (beats persistence and seasonal-naive)"
        return (f"{name}: model NOT used, falling back to {self.use.replace('_', '-')} "
                f"(skill {self.skill_vs_persistence:+.1%} vs persistence, "
                f"{self.skill_vs_seasonal_naive:+.1%} vs seasonal-naive)")


def verdict(model: np.ndarray, actual: np.ndarray, *, pers: np.ndarray | None = None,
            naive: np.ndarray | None = None) -> Verdict:
    """Apply the fallback rule on scored days: the model must have positive skill against both baselines.

    Only days where the model and both baselines exist are compared, so the three errors are over the same hours.
    """
    actual = np.asarray(actual, float)
    pers = persistence(actual) if pers is None else pers
    naive = seasonal_naive(actual) if naive is None else naive
    ok = ~(np.isnan(model) | np.isnan(pers) | np.isnan(naive) | np.isnan(actual))
    m, p, s = (mae(np.where(ok, x, np.nan), actual) for x in (model, pers, naive))
    sp, ss = skill(m, p), skill(m, s)
    if sp > 0 and ss > 0:
        return Verdict("model", sp, ss)
    return Verdict("persistence" if p <= s else "seasonal_naive", sp, ss)
