"""Pooled gradient boosting for load: one model for every meter of a round, judged on days it never saw.

A model per meter has ~27 days of rows in the service's 35-day window (too few: bench/forecast_load_fleet.py
measured it barely better than the day-type profile and ~100x slower to fit for a fleet). One scikit-learn
`HistGradientBoostingRegressor` (absolute-error loss: it is scored by MAE) fitted on every meter's rows at once
learns the shape households share; each meter's values are divided by its own level (the mean of the 28 days
before each row, so every row's scale is known at its issue time) and the forecast multiplied back.

**Two fits, so the fallback rule never judges a model on days it was fitted on.** The service judges every
forecast on the target's last 14 days (forecasting.service). For the pooled model:

* the *judge* model is fitted on rows that end 14 days before the issue, and predicts those 14 days: the
  out-of-sample forecasts the rule compares with persistence, seasonal-naive and the profile;
* the *production* model is fitted on every row up to the issue and gives the next 24 hours.

Both are refitted every `refit_days` (7) days, one pair per issue hour of the day (a round's day blocks start at
its issue hour, so the hour-of-block feature means a different clock hour in each). A judge model reused at a
later issue still predicts only days after its own training rows (they ended 14 days before its fit). Native
thread pools are limited to one thread during fits and predicts: on this shared 2-core machine the default
OpenMP threads made a 648-row fit 13x slower under load (docs/forecasts.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

log = logging.getLogger("energytwin.forecast")
LAG_DAYS = 8  # the features need the day before, the week before and a profile of earlier same-type days
JUDGE_DAYS = 14  # forecasting.service.RECENT_DAYS: the days the fallback rule judges
SCALE_DAYS = 28  # a meter's level: the mean of the known hours of the 28 days before each row
MIN_ROWS = 24 * 7  # fewer known training hours than this in the whole fleet: no fit
REFIT_DAYS = 7
N_FEATURES = 10


def _hgb(max_iter: int = 200, seed: int = 0):
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(loss="absolute_error", max_iter=max_iter, learning_rate=0.05,
                                         random_state=seed)


def _row_means(days: np.ndarray) -> np.ndarray:
    """Mean of the known hours of each day row (NaN where none)."""
    known = np.isfinite(days)
    count = known.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(known, days, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan)


def _trailing_mean(days: np.ndarray, span: int) -> np.ndarray:
    """For each row r, the mean of the known hours of rows max(0, r - span) .. r - 1 (NaN for row 0)."""
    known = np.isfinite(days)
    csum = np.concatenate([[0.0], np.cumsum(np.where(known, days, 0.0).sum(axis=1))])
    ccount = np.concatenate([[0], np.cumsum(known.sum(axis=1))])
    r = np.arange(days.shape[0])
    lo = np.maximum(0, r - span)
    total, count = csum[r] - csum[lo], ccount[r] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def features(days: np.ndarray, profile: np.ndarray, calendar: tuple[np.ndarray, np.ndarray, np.ndarray],
             rows: np.ndarray, temps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scaled features and targets of day rows `rows` of one meter: (len(rows) x 24, N_FEATURES (+3 with
    `temps`)), the scaled targets (NaN where unknown) and each row's scale.

    The columns are forecasting.profiles._features' (hour of the block, day type, weekday, season, same hour
    yesterday and last week, yesterday's and last week's mean, the profile forecast) on the meter's values
    divided by the row's scale, built for all rows at once. With `temps` (air temperature in C, the same
    (n + 1, 24) rows as `days`; the last row a forecast): the hour's temperature, the row's mean and the
    previous row's mean (a building's thermal mass lags the air)."""
    types, doy, dow = calendar
    rows = np.asarray(rows, int)
    scale = _trailing_mean(days, SCALE_DAYS)[rows]
    scale = np.where(scale > 1e-9, scale, np.nan)  # a meter that drew nothing has no level to share: left out
    s = scale[:, None]
    k = rows.size
    means = _row_means(days)
    week_mean = _trailing_mean(days, 7)[rows]
    angle = 2 * np.pi * doy[rows] / 365.25

    def rep(v: np.ndarray) -> np.ndarray:  # one value per row, for its 24 hours
        return np.repeat(v, 24)

    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.column_stack([
            np.tile(np.arange(24), k), rep(types[rows]), rep(dow[rows]), rep(np.sin(angle)), rep(np.cos(angle)),
            (days[rows - 1] / s).ravel(), (days[rows - 7] / s).ravel(), rep(means[rows - 1] / scale),
            rep(week_mean / scale), (profile[rows] / s).ravel()])
        y = (days[rows] / s).ravel()
    if temps is not None:
        t_means = _row_means(temps)
        x = np.column_stack([x, temps[rows].ravel(), rep(t_means[rows]), rep(t_means[rows - 1])])
    return x, y, scale


@dataclass
class _Pair:
    production: object | None
    judge: object | None
    fitted: datetime
    meters: int
    rows: int
    temperature: bool = False


@dataclass(frozen=True)
class PooledValues:
    """One meter's pooled forecasts: the next 24 hours and the judge model's forecasts of the last JUDGE_DAYS
    days (rows aligned with the last rows of its history; NaN where it has none)."""

    next_day: np.ndarray
    recent: np.ndarray
    fitted: datetime
    meters: int
    temperature: bool = False  # fitted with the air temperature as a feature


@dataclass
class PooledLoad:
    """The fleet's pooled load model, kept across rounds (`Targets.pooled_load` in the service)."""

    refit_days: int = REFIT_DAYS
    max_iter: int = 200  # boosting iterations (the measured model; tests use fewer)
    pairs: dict[int, _Pair] = field(default_factory=dict)  # issue hour (UTC) -> the two fitted models
    fits: int = 0
    fit_seconds: float = 0.0

    def _fit(self, parts: list[tuple[np.ndarray, np.ndarray]]):
        x = np.vstack([p[0] for p in parts]) if parts else np.empty((0, N_FEATURES))
        y = np.concatenate([p[1] for p in parts]) if parts else np.empty(0)
        ok = np.isfinite(y)
        if ok.sum() < MIN_ROWS:
            return None, int(ok.sum())
        from threadpoolctl import threadpool_limits

        model = _hgb(self.max_iter)  # imports scikit-learn's OpenMP runtime first: threadpoolctl limits only loaded libraries
        t = time.perf_counter()
        with threadpool_limits(limits=1):
            model.fit(x[ok], y[ok])
        self.fits += 1
        self.fit_seconds += time.perf_counter() - t
        return model, int(ok.sum())

    def forecast(self, fleet: dict[str, tuple], calendar, issue: datetime) -> dict[str, PooledValues]:
        """Pooled forecasts for every meter of `fleet` (id -> (days, profile) or (days, profile, temps), all
        (n + 1, 24) with the row to forecast last, NaN in it for days; all meters the same n and `calendar`
        (types, day of year, weekday) for those rows). The air temperature is a feature only when every meter
        has a complete series (history and the forecast row). Refits the issue hour's pair when it is missing,
        older than `refit_days`, from a later issue (a replay), or fitted with/without temperature and now
        without/with it. A meter with no level (under a day of history before a row) gets NaN."""
        if not fleet:
            return {}
        n = next(iter(fleet.values()))[0].shape[0] - 1
        if n < LAG_DAYS + JUDGE_DAYS + 1:
            return {}
        with_t = all(len(v) > 2 and v[2] is not None and np.isfinite(v[2]).all() for v in fleet.values())
        temps = {mid: (v[2] if with_t else None) for mid, v in fleet.items()}
        pair = self.pairs.get(issue.hour)
        if pair is None or pair.temperature != with_t or not timedelta(0) <= issue - pair.fitted < timedelta(
                days=self.refit_days):
            prod_rows, judge_rows = np.arange(LAG_DAYS, n), np.arange(LAG_DAYS, n - JUDGE_DAYS)
            prod, judge = [], []
            for mid, (days, profile, *_) in fleet.items():
                x, y, _ = features(days, profile, calendar, prod_rows, temps[mid])
                prod.append((x, y))
                cut = judge_rows.size * 24
                judge.append((x[:cut], y[:cut]))
            judge_model, _ = self._fit(judge)  # first: without a judge the production model could not be used
            production, rows = self._fit(prod) if judge_model is not None else (None, 0)
            pair = _Pair(production, judge_model, issue, len(fleet), rows, with_t)
            self.pairs[issue.hour] = pair
            log.info("forecast: pooled load model for issue hour %02d:00Z fitted on %d meters (%d hours%s)%s",
                     issue.hour, len(fleet), rows, ", with temperature" if with_t else "",
                     "" if production is not None else ": too few hours, not used")
        if pair.production is None:
            return {}
        from threadpoolctl import threadpool_limits

        predict_rows = np.arange(n - JUDGE_DAYS, n + 1)
        xs, scales, ids = [], [], []
        for mid, (days, profile, *_) in fleet.items():
            x, _, scale = features(days, profile, calendar, predict_rows, temps[mid])
            xs.append(x)
            scales.append(scale)
            ids.append(mid)
        x = np.vstack(xs)
        with threadpool_limits(limits=1):
            width = x.shape[1]
            last = x.reshape(len(ids), predict_rows.size * 24, width)[:, -24:].reshape(-1, width)
            nxt = pair.production.predict(last).reshape(len(ids), 24)
            recent = pair.judge.predict(x).reshape(len(ids), predict_rows.size, 24)[:, :-1]
        out = {}
        for i, mid in enumerate(ids):
            s = scales[i]
            out[mid] = PooledValues(nxt[i] * s[-1], recent[i] * s[:-1, None], pair.fitted, pair.meters, with_t)
        return out
