"""The weekly power-quality report of one meter, from the broker's NGSI-LD temporal API.

Readings come from `GET /temporal/entities/{id}?timerel=between…&options=temporalValues` (paged by
`attribute_history` of `fiware_client.history_reader`, the reader the community accounting uses too), are aggregated
into 10-min values (`aggregation`), judged against the site's limits (`compliance`) and drawn: per-phase 10-min
voltage with the limit band, frequency, voltage THD and unbalance, with the rms events marked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from datamodels.measures import measurement_id
from datamodels.readings import ATTRIBUTES, Reading, reading_from_entity
from fiware_client import history_reader

from ._aggregation import EventPeriod
from ._compliance import ComplianceRow, QualitySeries, build_series, compliance_rows, format_table
from ._limits import SiteLimits

WEEK = timedelta(days=7)


def parse_week(text: str) -> tuple[datetime, datetime]:
    """`2026-W05` (ISO week, Monday 00:00 UTC) or a start date `2026-01-26` -> [start, start + 7 days)."""
    match = re.fullmatch(r"(\d{4})-?W(\d{2})", text.strip())
    if match:
        start_day = date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1)
    else:
        try:
            start_day = date.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(f"week {text!r}: use an ISO week such as 2026-W05 or a start date 2026-01-26") from None
    start = datetime(start_day.year, start_day.month, start_day.day, tzinfo=UTC)
    return start, start + WEEK


def readings_from_history(entity_id: str, history: dict[str, list[tuple[datetime, Any]]]) -> list[Reading]:
    """Join per-attribute histories on their instants into Readings (one per observedAt)."""
    by_time: dict[datetime, dict[str, Any]] = {}
    for attr, samples in history.items():
        for moment, value in samples:
            by_time.setdefault(moment, {"id": entity_id})[attr] = {
                "type": "Property", "value": value, "observedAt": moment.isoformat()}
    out = []
    for moment in sorted(by_time):
        reading = reading_from_entity(by_time[moment], fallback_time=moment)
        if reading is not None:
            out.append(reading)
    return out


def fetch_readings(broker_url: str, tenant: str | None, device_id: str, start: datetime, end: datetime,
                   history: str = "ngsi-ld", history_url: str | None = None) -> list[Reading]:
    """A meter's readings in [start, end) from its history: the broker's temporal API, Mintaka or QuantumLeap
    (fiware_client.history_reader; docs/production.md, History)."""
    entity_id = measurement_id(device_id)
    with history_reader(history, broker_url=broker_url, tenant=tenant, history_url=history_url,
                        timeout=30.0) as client:
        history_values = client.attribute_history(entity_id, ATTRIBUTES, start, end)
    return [r for r in readings_from_history(entity_id, history_values) if start <= r.observed_at < end]


@dataclass
class WeeklyReport:
    device_id: str
    start: datetime
    end: datetime
    limits: SiteLimits
    readings: int
    series: QualitySeries
    rows: list[ComplianceRow]

    def text(self) -> str:
        events = self.series.events
        head = (f"EN 50160 weekly report, meter {self.device_id}, {self.start:%Y-%m-%d %H:%M} – "
                f"{self.end:%Y-%m-%d %H:%M} UTC ({self.readings} readings; Un {self.limits.nominal_voltage_v:g} V, "
                f"{self.limits.nominal_frequency_hz:g} Hz)")
        lines = [head, "", format_table(self.rows), ""]
        flagged = sum(1 for i in self.series.voltage_v.get("L1", []) if i.flagged)
        lines.append(f"Flagged 10-min intervals (dip/swell/interruption, left out): {flagged}")
        lines.append(f"RMS events: {len(events)}")
        for event in events:
            lines.append(f"  {event_label(event, self.limits):<14} {event.phase:<3} {event.start:%Y-%m-%d %H:%M:%S} "
                         f"{event.duration_s:8.1f} s  extreme {event.extreme_v:.1f} V")
        lines.append("Frequency: EN 50160 counts 99.5 % over a year; this report applies it to the week.")
        return "\n".join(lines)


def event_label(event: EventPeriod, limits: SiteLimits) -> str:
    """dip/swell/interruption, or under-/over-voltage when the excursion outlasts an event.

    Durations as docs/power-quality.md §1.2 gives them (EN 50160: dips and swells last 10 ms to 1 min)."""
    if event.kind != "interruption" and event.duration_s > limits.event_max_duration_s:
        return "under-voltage" if event.kind == "dip" else "over-voltage"
    return event.kind


def build_report(readings: Sequence[Reading], device_id: str, start: datetime, end: datetime,
                 limits: SiteLimits) -> WeeklyReport:
    series = build_series(readings, limits)
    return WeeklyReport(device_id, start, end, limits, len(readings), series, compliance_rows(series, limits))


def draw_chart(report: WeeklyReport, path: Path) -> Path:
    """PNG: 10-min voltage per phase with the limit band, frequency, THD, unbalance; events marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    limits = report.limits
    series = report.series
    fig, axes = plt.subplots(4, 1, figsize=(12, 11), sharex=True)
    ax_v, ax_f, ax_thd, ax_u = axes
    colours = {"L1": "tab:brown", "L2": "black", "L3": "tab:grey"}

    def mids(intervals):
        return [i.start + timedelta(seconds=i.length_s / 2) for i in intervals]

    for phase, intervals in series.voltage_v.items():
        if intervals:
            ax_v.plot(mids(intervals), [i.value for i in intervals], label=phase, color=colours[phase], lw=1)
            flagged = [i for i in intervals if i.flagged]
            if flagged:
                ax_v.plot(mids(flagged), [i.value for i in flagged], "x", color="tab:orange", ms=5)
    ax_v.axhspan(limits.voltage_lower_v, limits.voltage_upper_v, color="tab:green", alpha=0.12,
                 label=f"±10 % band ({limits.voltage_lower_v:.0f}–{limits.voltage_upper_v:.0f} V)")
    ax_v.axhline(limits.voltage_lower_always_v, color="tab:red", ls=":", lw=1, label="−15 % (always)")
    ax_v.set_ylabel("10-min voltage (V)")
    ax_v.legend(loc="upper right", fontsize=8, ncol=3)

    if series.frequency_10min:
        ax_f.plot(mids(series.frequency_10min), [i.value for i in series.frequency_10min], color="tab:blue", lw=1)
    ax_f.axhspan(limits.frequency_lower_hz, limits.frequency_upper_hz, color="tab:green", alpha=0.12)
    ax_f.set_ylabel("frequency (Hz)")

    for phase, intervals in series.thd_voltage.items():
        if intervals:
            ax_thd.plot(mids(intervals), [i.value * 100 for i in intervals], color=colours[phase], lw=1,
                        label=phase)
    ax_thd.axhline(limits.thd_voltage_max * 100, color="tab:red", ls="--", lw=1, label="limit")
    ax_thd.set_ylabel("voltage THD (%)")
    ax_thd.legend(loc="upper right", fontsize=8, ncol=4)

    if series.unbalance:
        ax_u.plot(mids(series.unbalance), [i.value * 100 for i in series.unbalance], color="tab:purple", lw=1)
    ax_u.axhline(limits.unbalance_max * 100, color="tab:red", ls="--", lw=1)
    ax_u.set_ylabel("unbalance u2 (%)")

    for event in series.events:
        colour = {"dip": "tab:red", "swell": "tab:orange", "interruption": "black"}[event.kind]
        for ax in axes:
            ax.axvline(event.start, color=colour, alpha=0.5, lw=1)
        ax_v.annotate(f"{event_label(event, limits)} {event.phase}", (event.start, ax_v.get_ylim()[1]), fontsize=7,
                      rotation=90, va="top", ha="right", color=colour)
    ax_u.set_xlim(report.start, report.end)
    ax_u.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b"))
    fig.suptitle(f"EN 50160 week of {report.start:%Y-%m-%d}, meter {report.device_id}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
