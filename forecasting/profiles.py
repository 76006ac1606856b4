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
