"""Expected hourly consumption and generation for a future period, from past data (ex-ante coefficients).

Coefficients must be sent before the energy is used (Orden TED/1247/2021), so every method works on an
expectation. Consumption: the member's own hour-of-week profile (mean of the same weekday and local hour over
the history; the seasonal-naive baseline by weekday/hour, docs/community.md "Expected consumption and generation"). PV with a known location and peak
power: the pvlib clear-sky output of the array scaled by the clear-sky index measured on the history (same section).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HOURS_PER_WEEK = 168


def hour_of_week(hour_starts_utc: np.ndarray, tz: str) -> np.ndarray:
    """0..167 for each hour: local weekday x 24 + local hour (Monday 00:00 = 0)."""
    local = pd.DatetimeIndex(hour_starts_utc).tz_localize("UTC").tz_convert(tz)
    return np.asarray(local.dayofweek * 24 + local.hour)


def hour_of_week_profile(hour_starts_utc: np.ndarray, energy_kwh: np.ndarray, tz: str) -> np.ndarray:
    """Mean energy per hour-of-week slot (rows x 168), ignoring missing hours.

    A slot with no data falls back to the mean of the same local hour on any day; a row with no data at all
    stays NaN, and the caller must refuse to plan with it.
    """
    energy = np.atleast_2d(np.asarray(energy_kwh, float))
    slots = hour_of_week(hour_starts_utc, tz)
    profile = np.full((energy.shape[0], HOURS_PER_WEEK), np.nan)
    for s in range(HOURS_PER_WEEK):
        cols = energy[:, slots == s]
        if cols.shape[1]:
            with np.errstate(all="ignore"):
                profile[:, s] = _nanmean(cols)
    hod = np.arange(HOURS_PER_WEEK) % 24
    for hour in range(24):
        same = hod == hour
        fill = _nanmean(profile[:, same])
        rows, slots_nan = np.nonzero(np.isnan(profile[:, same]))
        idx = np.flatnonzero(same)[slots_nan]
        profile[rows, idx] = fill[rows]
    return profile


def expected_from_profile(profile: np.ndarray, hour_starts_utc: np.ndarray, tz: str) -> np.ndarray:
    """Lay an hour-of-week profile (rows x 168) onto target hours."""
    return profile[:, hour_of_week(hour_starts_utc, tz)]


def clear_sky_index(measured_kwh: np.ndarray, clear_sky_kwh: np.ndarray) -> float:
    """k = sum(measured) / sum(clear-sky) over the complete daylight hours of the history (docs/community.md)."""
    measured = np.asarray(measured_kwh, float)
    ok = ~np.isnan(measured) & (clear_sky_kwh > 0)
    denominator = float(clear_sky_kwh[ok].sum())
    if denominator <= 0:
        raise ValueError("no complete daylight hour in the history to fit the clear-sky index on")
    return float(measured[ok].sum()) / denominator


def _nanmean(values: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(values)
    count = ok.sum(axis=1)
    total = np.where(ok, values, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)
