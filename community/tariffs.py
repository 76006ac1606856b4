"""Money a member saves through the community, per month, with flat or hourly prices."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import numpy as np


class PriceFileError(ValueError):
    """An hourly price file is malformed or does not cover the hours asked for."""


def monthly_savings_eur(
    self_consumed_kwh: np.ndarray,
    grid_import_kwh: np.ndarray,
    surplus_kwh: np.ndarray,
    import_price_eur_per_kwh: np.ndarray,
    surplus_price_eur_per_kwh: float,
    compensation: str = "simplified",
) -> float:
    """Saving of one member over one billing month (hourly arrays of that month, NaN hours ignored).

    saving = sum(A_h x p_h)  (self-consumed energy not bought)
           + compensation, where compensation = sum(X_h) x p_surplus, and under simplified compensation it can
             never exceed the value of the energy bought that month, sum(I_h x p_h) (RD 244/2019 simplified
             compensation, docs/community.md: the bill's energy part goes to zero at most; leftover value is lost).
    """
    a = np.nan_to_num(np.asarray(self_consumed_kwh, float))
    i = np.nan_to_num(np.asarray(grid_import_kwh, float))
    x = np.nan_to_num(np.asarray(surplus_kwh, float))
    p = np.asarray(import_price_eur_per_kwh, float) * np.ones_like(a)
    avoided = float((a * p).sum())
    surplus_value = float(x.sum()) * surplus_price_eur_per_kwh
    if compensation == "simplified":
        surplus_value = min(surplus_value, float((i * p).sum()))
    return avoided + surplus_value


def read_hourly_prices(
    path: Path, hour_starts_utc: np.ndarray, fallback_eur_per_kwh: float | None
) -> np.ndarray:
    """Import price per hour from a CSV `hour_start,price_eur_per_kwh` (ISO 8601 with offset, one row per hour).

    Hours the file lacks take the flat fallback price; without one, a missing hour is an error, because a
    saving computed at a made-up price is worse than none.
    """
    prices: dict[int, float] = {}
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise PriceFileError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["hour_start", "price_eur_per_kwh"]:
            raise PriceFileError(f"{path}:1: the header must be hour_start,price_eur_per_kwh")
        for line_no, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            try:
                t = datetime.fromisoformat(row[0].strip())
                price = float(row[1])
            except (ValueError, IndexError):
                raise PriceFileError(
                    f"{path}:{line_no}: expected <ISO 8601 time with offset>,<price>"
                ) from None
            if t.tzinfo is None:
                raise PriceFileError(f"{path}:{line_no}: the time {row[0]!r} has no UTC offset")
            prices[int(t.timestamp())] = price
    out = np.empty(hour_starts_utc.size)
    for k, h in enumerate(hour_starts_utc.astype("int64")):
        value = prices.get(int(h), fallback_eur_per_kwh)
        if value is None:
            when = np.datetime_as_string(hour_starts_utc[k], unit="m")
            raise PriceFileError(
                f"{path}: no price for the hour starting {when}Z and no flat price to fall back on"
            )
        out[k] = value
    return out


def price_file_mean(path: Path) -> float:
    """Mean import price of a price file (used only to plan a period the file does not cover)."""
    values = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for row in reader:
            if len(row) >= 2 and row[1].strip():
                try:
                    values.append(float(row[1]))
                except ValueError:
                    continue
    if not values:
        raise PriceFileError(f"{path}: no prices")
    return sum(values) / len(values)
