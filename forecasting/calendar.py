"""Day types for load and price: working day, Saturday, Sunday or Spanish national holiday.

National holidays come from the `holidays` package (Spain, no region: the days the BOE's yearly resolution of the
Dirección General de Trabajo lists for the whole country); regional and local holidays are not included, since
they depend on the member's municipality.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

WORKDAY, SATURDAY, SUNDAY_OR_HOLIDAY = 0, 1, 2


@cache
def spanish_holidays(year: int) -> frozenset:
    import holidays

    return frozenset(holidays.Spain(years=year))


def day_dates(first_hour_utc: np.datetime64, n_days: int, utc_offset_h: int) -> pd.DatetimeIndex:
    """Calendar date of each day block (blocks start at 00:00 of the standard-time offset)."""
    start = pd.Timestamp(first_hour_utc) + pd.Timedelta(hours=utc_offset_h)
    return pd.date_range(start.normalize(), periods=n_days, freq="D")


def day_types(dates: pd.DatetimeIndex) -> np.ndarray:
    """WORKDAY / SATURDAY / SUNDAY_OR_HOLIDAY for each date."""
    out = np.where(dates.dayofweek == 5, SATURDAY, np.where(dates.dayofweek == 6, SUNDAY_OR_HOLIDAY, WORKDAY))
    hol = np.array([d.date() in spanish_holidays(d.year) for d in dates])
    return np.where(hol, SUNDAY_OR_HOLIDAY, out)


def is_holiday(dates: pd.DatetimeIndex) -> np.ndarray:
    return np.array([d.date() in spanish_holidays(d.year) for d in dates])
