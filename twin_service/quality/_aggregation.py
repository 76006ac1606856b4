"""IEC 61000-4-30-style aggregation of meter readings into 3-s, 10-s and 10-min values, with flagged intervals.

docs/power-quality.md §1.3: aggregation is rms-style, sqrt(mean(x²)), over intervals aligned to the UTC clock; min and max are kept;
an interval in which a dip, swell or interruption occurred is flagged and left out of the EN 50160 statistics.
The meter's readings (one per publish period, 1 s by default) stand in for the 10/12-cycle basic values, so a
3-s value exists only where readings come at least every 3 s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from statistics import median
from typing import Literal

from datamodels.readings import PHASES, Reading

from ._limits import SiteLimits

TEN_MINUTES_S = 600.0
VERY_SHORT_S = 3.0
FREQUENCY_INTERVAL_S = 10.0

Method = Literal["rms", "mean"]


@dataclass(frozen=True)
class Interval:
    """One aggregated value over [start, start + length_s)."""

    start: datetime
    length_s: float
    value: float
    minimum: float
    maximum: float
    count: int
    flagged: bool = False

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.length_s)


def interval_start(moment: datetime, length_s: float) -> datetime:
    """The start of the UTC-aligned interval of `length_s` containing `moment` (10-min ticks at :00, :10, …)."""
    epoch_s = moment.astimezone(UTC).timestamp()
    return datetime.fromtimestamp(math.floor(epoch_s / length_s) * length_s, UTC)


def rms(values: Sequence[float]) -> float:
    """sqrt(mean(x²)), the IEC 61000-4-30 aggregation (docs/power-quality.md §1.3)."""
    return math.sqrt(sum(v * v for v in values) / len(values))


def aggregate(samples: Iterable[tuple[datetime, float]], length_s: float, *, method: Method = "rms",
              flagged_at: Iterable[datetime] = ()) -> list[Interval]:
    """Aggregate (time, value) samples into UTC-aligned intervals; `flagged_at` marks intervals holding an event.

    `method` is "rms" for voltage, THD and unbalance and "mean" for frequency (the 10-s frequency is cycles
    counted over the interval, i.e. the mean).
    """
    buckets: dict[datetime, list[float]] = {}
    for moment, value in samples:
        buckets.setdefault(interval_start(moment, length_s), []).append(value)
    flagged = {interval_start(moment, length_s) for moment in flagged_at}
    out = []
    for start in sorted(buckets):
        values = buckets[start]
        value = rms(values) if method == "rms" else sum(values) / len(values)
        out.append(Interval(start, length_s, value, min(values), max(values), len(values), start in flagged))
    return out


def very_short_values(samples: Sequence[tuple[datetime, float]], *, method: Method = "rms") -> list[Interval]:
    """3-s values where the readings allow it (median reading period ≤ 3 s), else none."""
    if len(samples) < 2:
        return []
    times = sorted(t for t, _ in samples)
    period_s = median((b - a).total_seconds() for a, b in pairwise(times))
    if period_s > VERY_SHORT_S:
        return []
    return aggregate(samples, VERY_SHORT_S, method=method)


@dataclass(frozen=True)
class EventPeriod:
    """A run of readings beyond an rms event threshold (dip, swell or interruption)."""

    kind: str  # "dip", "swell", "interruption"
    phase: str  # L1/L2/L3, or "all" for an interruption
    start: datetime
    end: datetime  # the first reading back inside (or the last reading if the series ends inside the event)
    extreme_v: float

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()


def event_periods(readings: Sequence[Reading], limits: SiteLimits) -> list[EventPeriod]:
    """Dips, swells and interruptions in a reading series (docs/power-quality.md §1.2 thresholds, hysteresis on recovery).

    An rms excursion that lasts longer than `event_max_duration_s` is a supply voltage variation, not an event:
    it is returned too (kind "dip"/"swell") and `flag_times()` decides what to flag.
    """
    ordered = sorted(readings, key=lambda r: r.observed_at)
    open_: dict[tuple[str, str], list] = {}  # key -> [start, extreme]
    out: list[EventPeriod] = []
    hyst = limits.hysteresis_v

    def close(key: tuple[str, str], at: datetime) -> None:
        start, extreme = open_.pop(key)
        out.append(EventPeriod(key[0], key[1], start, at, extreme))

    for reading in ordered:
        v = reading.voltage_v
        at = reading.observed_at
        active: dict[tuple[str, str], float] = {}
        if reading.has_three_voltages():
            top = max(v[p] for p in PHASES)
            threshold = limits.interruption_threshold_v + (hyst if ("interruption", "all") in open_ else 0.0)
            if top < threshold:
                active[("interruption", "all")] = min(v[p] for p in PHASES)
        for phase in PHASES:
            if phase not in v or ("interruption", "all") in active:
                continue
            dip_limit = limits.dip_threshold_v + (hyst if ("dip", phase) in open_ else 0.0)
            if v[phase] < dip_limit or reading.flags.get(f"dip{phase}", False):
                active[("dip", phase)] = v[phase]
            swell_limit = limits.swell_threshold_v - (hyst if ("swell", phase) in open_ else 0.0)
            if v[phase] > swell_limit or reading.flags.get(f"swell{phase}", False):
                active[("swell", phase)] = v[phase]
        for key in [k for k in open_ if k not in active]:
            close(key, at)
        for key, value in active.items():
            if key in open_:
                worse = value > open_[key][1] if key[0] == "swell" else value < open_[key][1]
                if worse:
                    open_[key][1] = value
            else:
                open_[key] = [at, value]
    if ordered:
        for key in list(open_):
            close(key, ordered[-1].observed_at)
    return sorted(out, key=lambda e: (e.start, e.phase))


def flag_times(events: Iterable[EventPeriod], limits: SiteLimits) -> list[datetime]:
    """Instants whose intervals are flagged: every interruption, and dips/swells up to one minute long.

    Each event contributes its start and end (and every 10-min tick in between, for long interruptions), so any
    interval it touches is flagged.
    """
    out: list[datetime] = []
    for event in events:
        if event.kind != "interruption" and event.duration_s > limits.event_max_duration_s:
            continue
        out.append(event.start)
        tick = interval_start(event.start, TEN_MINUTES_S) + timedelta(seconds=TEN_MINUTES_S)
        while tick < event.end:
            out.append(tick)
            tick += timedelta(seconds=TEN_MINUTES_S)
        out.append(event.end - timedelta(microseconds=1) if event.end > event.start else event.end)
    return out
