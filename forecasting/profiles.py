"""Load and price models on day blocks: a day-type profile (statistical) and gradient boosting (scikit-learn).

Both see only days before the one forecast. Which one a series uses is decided by measurement on a validation
period before the held-out one (see scoring.choose_model).
"""

from __future__ import annotations

import numpy as np

from forecasting.calendar import SUNDAY_OR_HOLIDAY


def _nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Mean over the known values; NaN where none is known (numpy's nanmean warns there, this does not)."""
    known = ~np.isnan(values)
    count = known.sum(axis=axis)
    total = np.where(known, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def profile_walk_forward(days: np.ndarray, types: np.ndarray, *, same_days: int = 4, first_day: int = 7,
                         level_weight: float = 0.0) -> np.ndarray:
    """Each day = mean of the last `same_days` days of its day type, hour by hour.

    With `level_weight` > 0 the profile is shifted toward yesterday's level (for prices, whose level wanders
    from day to day): forecast = profile + w x (mean(yesterday) - mean(profile of yesterday's type)).
    """
    out = np.full(days.shape, np.nan)
    for d in range(first_day, days.shape[0]):
        past = np.flatnonzero(types[:d] == types[d])[-same_days:]
        if past.size == 0:
            continue
        out[d] = _nanmean(days[past], axis=0)
        if level_weight:
            ypast = np.flatnonzero(types[: d - 1] == types[d - 1])[-same_days:]
            if ypast.size:
                shift = float(_nanmean(days[d - 1]) - _nanmean(days[ypast]))
                if np.isnan(shift):
                    continue
                out[d] += level_weight * shift
    return out


def _features(days: np.ndarray, types: np.ndarray, doy: np.ndarray, dow: np.ndarray, d: int,
              profile: np.ndarray, temp_days: np.ndarray | None) -> np.ndarray:
    hours = np.arange(24)
    cols = [
        hours,
        np.full(24, types[d]),
        np.full(24, dow[d]),
        np.full(24, np.sin(2 * np.pi * doy[d] / 365.25)),
        np.full(24, np.cos(2 * np.pi * doy[d] / 365.25)),
        days[d - 1],                       # same hour yesterday
        days[d - 7],                       # same hour last week
        np.full(24, _nanmean(days[d - 1])),
        np.full(24, _nanmean(days[d - 7:d])),
        profile[d],
    ]
    if temp_days is not None:
        cols.append(temp_days[d])
    return np.column_stack(cols)


def hgb_walk_forward(days: np.ndarray, types: np.ndarray, doy: np.ndarray, dow: np.ndarray, *,
                     train_from: int = 14, first_day: int, refit_every: int = 28,
                     temp_days: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """HistGradientBoostingRegressor on calendar, lags and the profile forecast; refit every `refit_every` days
    on all days before the refit (absolute-error loss, since it is scored by MAE)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    profile = profile_walk_forward(days, types)
    out = np.full(days.shape, np.nan)
    model = None
    for d in range(first_day, days.shape[0]):
        if model is None or (d - first_day) % refit_every == 0:
            rows = range(max(train_from, 8), d)
            x = np.vstack([_features(days, types, doy, dow, r, profile, temp_days) for r in rows])
            y = np.concatenate([days[r] for r in rows])
            ok = ~np.isnan(y)
            model = HistGradientBoostingRegressor(loss="absolute_error", max_iter=200, learning_rate=0.05,
                                                  random_state=seed)
            model.fit(x[ok], y[ok])
        out[d] = model.predict(_features(days, types, doy, dow, d, profile, temp_days))
    return out


__all__ = ["SUNDAY_OR_HOLIDAY", "hgb_walk_forward", "profile_walk_forward"]


def _price_features(days: np.ndarray, types: np.ndarray, doy: np.ndarray, d: int) -> np.ndarray:
    """Day-level regressors of day d, all known at its issue: calendar, yesterday's and last week's level."""
    off = float(types[d] > 0)
    yesterday = float(_nanmean(days[d - 1]))
    yesterday_norm = yesterday / (OFF_DAY_LEVEL if types[d - 1] > 0 else 1.0)
    return np.array([1.0, off, yesterday, yesterday_norm, float(_nanmean(days[d - 7:d])), off * yesterday_norm,
                     np.sin(2 * np.pi * doy[d] / 365.25), np.cos(2 * np.pi * doy[d] / 365.25), days[d - 1, -1],
                     float(_nanmean(days[d - 2])), float(_nanmean(days[d - 1, -6:]))])


OFF_DAY_LEVEL = 0.85  # a first guess of the weekend/holiday level, only to build a regressor; the fit corrects it


def ridge_walk_forward(days: np.ndarray, types: np.ndarray, doy: np.ndarray, *, first_day: int,
                       refit_every: int = 28, ridge: float = 100.0, train_from: int = 14) -> np.ndarray:
    """Per-hour ridge regression for prices: calendar (day type, season), yesterday's and last week's level,
    yesterday's last hours, and the same hour yesterday and a week before; refit every `refit_every` days on
    every earlier day with no missing value. Chosen over the profile and gradient boosting by validation MAE."""
    out = np.full(days.shape, np.nan)
    weights = None
    for d in range(max(first_day, train_from + 1), days.shape[0]):
        if weights is None or (d - first_day) % refit_every == 0:
            rows = [r for r in range(train_from, d) if not np.isnan(days[r - 7:r + 1]).any()]
            if len(rows) < 28:
                continue
            x = np.array([_price_features(days, types, doy, r) for r in rows])
            weights = []
            for h in range(24):
                xh = np.column_stack([x, days[np.array(rows) - 1, h], days[np.array(rows) - 7, h]])
                a = xh.T @ xh + ridge * np.eye(xh.shape[1])
                a[0, 0] -= ridge  # the intercept is not shrunk
                weights.append(np.linalg.solve(a, xh.T @ days[rows, h]))
        if np.isnan(days[d - 7:d]).any():
            continue
        f = _price_features(days, types, doy, d)
        out[d] = [np.r_[f, days[d - 1, h], days[d - 7, h]] @ weights[h] for h in range(24)]
    return out
