"""Hourly energy from cumulative energy counters: differencing, gap and reset detection.

A meter's energy register only grows. The hourly energy of an hour is the counter's increase across it; when the
samples do not bracket an hour boundary exactly, the increase of the interval that straddles it is split in
proportion to time (the meter publishes every few seconds, so the straddling interval is short). An hour that is
not covered by good intervals is *missing*: it stays NaN and a `Gap` says why. Nothing is ever filled in, because
a guessed kWh would end up on somebody's bill.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

HOUR_S = 3600.0


@dataclass(frozen=True)
class Gap:
    """Hours [start, end) whose energy is unknown, and why."""

    start: datetime
    end: datetime
    reason: str
    source: str = ""  # meter or file the gap belongs to, filled by the caller

    @property
    def hours(self) -> int:
        return round((self.end - self.start).total_seconds() / HOUR_S)

    def describe(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{_iso(self.start)} to {_iso(self.end)} ({self.hours} h) {self.reason}"


@dataclass(frozen=True)
class HourlyEnergy:
    """Energy per hour on a regular UTC grid; NaN marks a missing hour (listed in `gaps`)."""

    hour_starts_utc: np.ndarray  # datetime64[s], one per hour
    energy_kwh: np.ndarray  # float, NaN where missing
    gaps: tuple[Gap, ...]

    @property
    def missing_hours(self) -> int:
        return int(np.isnan(self.energy_kwh).sum())


def hour_grid(start: datetime, end: datetime) -> np.ndarray:
    """Hour starts from `start` (inclusive) to `end` (exclusive), both aware and on whole UTC hours."""
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware, got {value!r}")
        if value.astimezone(UTC).minute or value.second or value.microsecond:
            raise ValueError(f"{name} must be on a whole hour, got {value.isoformat()}")
    if end <= start:
        raise ValueError(f"end {end.isoformat()} is not after start {start.isoformat()}")
    s = np.datetime64(int(start.timestamp()), "s")
    e = np.datetime64(int(end.timestamp()), "s")
    return np.arange(s, e, np.timedelta64(3600, "s"))


def hourly_energy_from_counter(
    times: Sequence[datetime],
    counter_kwh: Sequence[float],
    start: datetime,
    end: datetime,
    *,
    max_sample_gap: timedelta = timedelta(minutes=15),
    reset_tolerance_kwh: float = 1e-6,
    source: str = "",
) -> HourlyEnergy:
    """Difference a cumulative energy counter into hourly kWh on the grid [start, end).

    - An interval between two consecutive samples longer than `max_sample_gap` makes every hour it touches
      missing (a communication gap: how the energy spread over it is unknown).
    - A counter that goes down by more than `reset_tolerance_kwh` is a meter reset or replacement: the hours the
      interval touches are missing (the energy used across the reset is unknown) and hours after it are
      differenced from the new counter.
    - Hours before the first or after the last sample are missing.
    """
    grid = hour_grid(start, end)
    n_hours = grid.size
    bounds_s = grid.astype("int64").astype(float)
    bounds_s = np.append(bounds_s, bounds_s[-1] + HOUR_S)
    if len(times) != len(counter_kwh):
        raise ValueError(f"{len(times)} times but {len(counter_kwh)} counter values")

    t_s = np.array([t.timestamp() for t in times], dtype=float)
    c = np.asarray(counter_kwh, dtype=float)
    order = np.argsort(t_s, kind="stable")
    t_s, c = t_s[order], c[order]
    # The same instant twice (a replayed reading): keep the last one received.
    if t_s.size:
        keep = np.append(t_s[1:] != t_s[:-1], True)
        t_s, c = t_s[keep], c[keep]

    missing = np.zeros(n_hours, dtype=bool)
    gaps: list[Gap] = []

    def mark(a_s: float, b_s: float, reason: str) -> None:
        """Mark the hours that overlap the open interval (a_s, b_s) missing and record why."""
        first = int(np.searchsorted(bounds_s, a_s, side="right")) - 1
        last = int(np.searchsorted(bounds_s, b_s, side="left"))  # exclusive hour index
        first, last = max(first, 0), min(last, n_hours)
        if last <= first:
            return
        missing[first:last] = True
        gaps.append(Gap(_dt(bounds_s[first]), _dt(bounds_s[last]), reason, source))

    if t_s.size == 0:
        mark(bounds_s[0] - 1, bounds_s[-1] + 1, "no samples")
        return HourlyEnergy(grid, np.full(n_hours, np.nan), tuple(gaps))

    if t_s[0] > bounds_s[0]:
        mark(bounds_s[0] - 1, t_s[0], "no samples before the first reading")
    if t_s[-1] < bounds_s[-1]:
        mark(t_s[-1], bounds_s[-1] + 1, "no samples after the last reading")

    dt_s = np.diff(t_s)
    dc = np.diff(c)
    max_gap_s = max_sample_gap.total_seconds()
    for k in np.flatnonzero(dc < -reset_tolerance_kwh):
        mark(
            t_s[k],
            t_s[k + 1],
            f"counter went down from {c[k]:.3f} to {c[k + 1]:.3f} kWh (meter reset or replacement)",
        )
    for k in np.flatnonzero((dt_s > max_gap_s) & (dc >= -reset_tolerance_kwh)):
        mark(t_s[k], t_s[k + 1], f"no reading for {_duration(dt_s[k])} (more than {_duration(max_gap_s)})")

    # Counter at each hour boundary, linear in time inside the (short, good) interval that straddles it.
    # Across a reset the interpolated value is meaningless, but every hour touching it is already missing.
    counter_at_bounds = np.interp(bounds_s, t_s, c)
    energy = np.diff(counter_at_bounds)
    energy[missing] = np.nan
    gaps.sort(key=lambda g: g.start)
    return HourlyEnergy(grid, energy, tuple(gaps))


def gaps_from_missing(
    hour_starts_utc: np.ndarray, energy_kwh: np.ndarray, reason: str, source: str
) -> list[Gap]:
    """Runs of NaN hours in an hourly series as `Gap`s (for series that arrive already hourly, e.g. a CSV)."""
    nan = np.isnan(energy_kwh)
    gaps: list[Gap] = []
    i = 0
    while i < nan.size:
        if not nan[i]:
            i += 1
            continue
        j = i
        while j < nan.size and nan[j]:
            j += 1
        start = _dt(float(hour_starts_utc[i].astype("int64")))
        gaps.append(Gap(start, start + timedelta(hours=j - i), reason, source))
        i = j
    return gaps


def _dt(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _duration(seconds: float) -> str:
    if seconds >= 2 * HOUR_S:
        return f"{seconds / HOUR_S:.1f} h"
    return f"{seconds / 60:.0f} min"
