"""The forecast service: every hour, a 24-hour load forecast per meter from the twin's history, written back.

For each ThreePhaseAcMeasurement in the broker it reads `totalActiveEnergyImport` over the last 35 days through
the temporal API (fiware_client), turns the counter into hourly kWh, forecasts the next 24 hours with the
day-type profile, applies the fallback rule on the meter's own recent history (the profile must beat
persistence and seasonal-naive over its last 14 days, else the better baseline is written, marked
`fallback: true`) and upserts one EnergyForecast entity per meter and issue, so past forecasts stay scorable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from fiware_client import FiwareError
from forecasting import baselines as b
from forecasting.calendar import day_types
from forecasting.entity import forecast_entity
from forecasting.profiles import profile_walk_forward

log = logging.getLogger("energytwin.forecast")
HISTORY_DAYS = 35
ENERGY_ATTR = "totalActiveEnergyImport"


def hourly_energy(times: list[datetime], cumulative_kwh: list[float], start: datetime, hours: int) -> np.ndarray:
    """kWh per hour from a cumulative counter: the counter interpolated at hour boundaries, differenced.

    Hours not bracketed by samples are NaN (never invented); a counter going backwards (reset) gives NaN.
    """
    out = np.full(hours, np.nan)
    if len(times) < 2:
        return out
    t = np.array([x.timestamp() for x in times])
    v = np.asarray(cumulative_kwh, float)
    order = np.argsort(t)
    t, v = t[order], v[order]
    edges = start.timestamp() + 3600.0 * np.arange(hours + 1)
    at = np.interp(edges, t, v)
    inside = (edges >= t[0]) & (edges <= t[-1])
    diff = np.diff(at)
    ok = inside[:-1] & inside[1:] & (diff >= 0)
    out[ok] = diff[ok]
    return out


@dataclass(frozen=True)
class LoadForecast:
    values: np.ndarray
    method: str
    fallback: bool


def forecast_load(days: np.ndarray, issue: datetime) -> LoadForecast:
    """Next-day load from (history days, 24) ending at `issue`, with the fallback rule on the last 14 days."""
    n = days.shape[0]
    dates = pd.date_range((issue - timedelta(days=n)).date(), periods=n + 1, freq="D")
    types = day_types(dates)
    full = np.vstack([days, np.full((1, 24), np.nan)])
    model = profile_walk_forward(full, types, same_days=8)
    recent = slice(max(7, n - 14), n)
    v = b.verdict(model[recent], full[recent], pers=b.persistence(full)[recent],
                  naive=b.seasonal_naive(full)[recent])
    if v.use == "model":
        return LoadForecast(model[-1], "day-type profile (last 8 same-type days)", False)
    base = days[-1] if v.use == "persistence" else days[-7]
    return LoadForecast(base, f"{v.use.replace('_', '-')} (fallback: {v.describe('profile')})", True)


def run_once(client, issue: datetime | None = None) -> list[dict]:
    """Forecast every meter the broker holds and upsert the entities; returns them."""
    issue = (issue or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    start = issue - timedelta(days=HISTORY_DAYS)
    written = []
    for meter in client.query_entities(type="ThreePhaseAcMeasurement", attrs=[ENERGY_ATTR]):
        try:
            history = client.attribute_history(meter["id"], [ENERGY_ATTR], start, issue)[ENERGY_ATTR]
        except FiwareError as exc:  # one meter's broken history must not stop the others
            log.warning("forecast: no history for %s: %s", meter["id"], exc)
            continue
        kwh = hourly_energy([t for t, _ in history], [float(x) for _, x in history], start, HISTORY_DAYS * 24)
        if np.isnan(kwh[-7 * 24:]).mean() > 0.5:
            log.info("forecast: %s has under 7 days of history, skipped", meter["id"])
            continue
        result = forecast_load(kwh.reshape(HISTORY_DAYS, 24), issue)
        written.append(forecast_entity(meter["id"], "load", issue, np.nan_to_num(result.values),
                                       result.method, fallback=result.fallback))
    if written:
        client.upsert_entities(written)
    log.info("forecast: wrote %d load forecasts issued %s", len(written), issue.isoformat())
    return written
