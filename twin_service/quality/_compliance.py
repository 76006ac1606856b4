"""Weekly EN 50160 compliance: the share of valid 10-min (10-s for frequency) values within each limit.

Counting rule (docs/power-quality.md §1): N = valid (unflagged) intervals; compliant when the share within the narrow limit
reaches the required share (95 % for voltage, THD and unbalance; 99.5 % for frequency) and no interval is outside
the "always" band (+10 %/−15 % for voltage, +4 %/−6 % for frequency). EN 50160 counts frequency over a year; the
report applies the same test to the week it is given and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from datamodels.readings import PHASES, Reading

from ._aggregation import (
    FREQUENCY_INTERVAL_S,
    TEN_MINUTES_S,
    EventPeriod,
    Interval,
    aggregate,
    event_periods,
    flag_times,
)
from ._limits import SiteLimits


@dataclass(frozen=True)
class ComplianceRow:
    """One line of the compliance table."""

    characteristic: str
    phase: str
    limit: str
    valid_intervals: int
    within: int
    required_share: float
    outside_always: int = 0  # intervals outside the band that must hold 100 % of the time

    @property
    def within_share(self) -> float | None:
        return self.within / self.valid_intervals if self.valid_intervals else None

    @property
    def compliant(self) -> bool | None:
        """None when there is no valid interval to judge."""
        share = self.within_share
        if share is None:
            return None
        return share >= self.required_share and self.outside_always == 0


@dataclass
class QualitySeries:
    """A meter's readings aggregated for the report: 10-min values per quantity and the events found."""

    voltage_v: dict[str, list[Interval]] = field(default_factory=dict)
    thd_voltage: dict[str, list[Interval]] = field(default_factory=dict)
    unbalance: list[Interval] = field(default_factory=list)
    frequency_10s: list[Interval] = field(default_factory=list)
    frequency_10min: list[Interval] = field(default_factory=list)
    events: list[EventPeriod] = field(default_factory=list)


def build_series(readings: Sequence[Reading], limits: SiteLimits) -> QualitySeries:
    """Aggregate readings into the 10-min (and 10-s frequency) values, flagging intervals with rms events."""
    events = event_periods(readings, limits)
    flagged = flag_times(events, limits)
    series = QualitySeries(events=events)
    for phase in PHASES:
        series.voltage_v[phase] = aggregate(
            [(r.observed_at, r.voltage_v[phase]) for r in readings if phase in r.voltage_v],
            TEN_MINUTES_S, flagged_at=flagged)
        series.thd_voltage[phase] = aggregate(
            [(r.observed_at, r.thd_voltage[phase]) for r in readings if phase in r.thd_voltage],
            TEN_MINUTES_S, flagged_at=flagged)
    unbalance = [(r.observed_at, u) for r in readings if (u := r.voltage_unbalance()) is not None]
    series.unbalance = aggregate(unbalance, TEN_MINUTES_S, flagged_at=flagged)
    frequency = [(r.observed_at, r.frequency_hz) for r in readings if r.frequency_hz is not None]
    series.frequency_10s = aggregate(frequency, FREQUENCY_INTERVAL_S, method="mean", flagged_at=flagged)
    series.frequency_10min = aggregate(frequency, TEN_MINUTES_S, method="mean", flagged_at=flagged)
    return series


def _count(intervals: Sequence[Interval], lower: float, upper: float) -> tuple[int, int]:
    valid = [i for i in intervals if not i.flagged]
    return len(valid), sum(1 for i in valid if lower <= i.value <= upper)


def compliance_rows(series: QualitySeries, limits: SiteLimits) -> list[ComplianceRow]:
    """The compliance table for one meter over the series' period."""
    rows: list[ComplianceRow] = []
    un = limits.nominal_voltage_v
    for phase in PHASES:
        intervals = series.voltage_v.get(phase, [])
        valid, within = _count(intervals, limits.voltage_lower_v, limits.voltage_upper_v)
        _, within_always = _count(intervals, limits.voltage_lower_always_v, limits.voltage_upper_v)
        rows.append(ComplianceRow(
            "Supply voltage (10-min rms)", phase,
            f"{limits.voltage_lower_v:.1f}–{limits.voltage_upper_v:.1f} V (Un {un:g} V "
            f"−{limits.voltage_lower_fraction:.0%}/+{limits.voltage_upper_fraction:.0%}); "
            f"always ≥ {limits.voltage_lower_always_v:.1f} V",
            valid, within, limits.voltage_share_required, valid - within_always))
    f_valid, f_within = _count(series.frequency_10s, limits.frequency_lower_hz, limits.frequency_upper_hz)
    _, f_always = _count(series.frequency_10s, limits.frequency_wide_lower_hz, limits.frequency_wide_upper_hz)
    rows.append(ComplianceRow(
        "Frequency (10-s mean)", "all",
        f"{limits.frequency_lower_hz:.2f}–{limits.frequency_upper_hz:.2f} Hz; always "
        f"{limits.frequency_wide_lower_hz:.2f}–{limits.frequency_wide_upper_hz:.2f} Hz",
        f_valid, f_within, limits.frequency_share_required, f_valid - f_always))
    for phase in PHASES:
        valid, within = _count(series.thd_voltage.get(phase, []), 0.0, limits.thd_voltage_max)
        rows.append(ComplianceRow("Voltage THD (10-min)", phase, f"≤ {limits.thd_voltage_max:.1%}",
                                  valid, within, limits.thd_share_required))
    valid, within = _count(series.unbalance, 0.0, limits.unbalance_max)
    rows.append(ComplianceRow("Voltage unbalance u2 (10-min)", "all", f"≤ {limits.unbalance_max:.1%}",
                              valid, within, limits.unbalance_share_required))
    return rows


def format_table(rows: Sequence[ComplianceRow]) -> str:
    """The compliance table as fixed-width text."""
    header = f"{'Characteristic':<32} {'Phase':<5} {'Valid':>6} {'Within':>6} {'Share':>8} {'Needed':>7} " \
             f"{'Result':<13} Limit"
    lines = [header, "-" * len(header)]
    for row in rows:
        share = row.within_share
        share_text = f"{share:.2%}" if share is not None else "n/a"
        result = {True: "compliant", False: "NOT compliant", None: "no data"}[row.compliant]
        extra = f" ({row.outside_always} outside the 100 % band)" if row.outside_always else ""
        lines.append(f"{row.characteristic:<32} {row.phase:<5} {row.valid_intervals:>6} {row.within:>6} "
                     f"{share_text:>8} {row.required_share:>7.1%} {result:<13} {row.limit}{extra}")
    return "\n".join(lines)
