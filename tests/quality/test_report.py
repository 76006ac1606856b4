"""Weekly compliance against a hand-computed week, aggregation and flagging by hand, the chart and the CLI."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from datamodels.readings import reading_from_entity
from twin_service.quality._aggregation import (
    aggregate,
    event_periods,
    flag_times,
    interval_start,
    very_short_values,
)
from twin_service.quality._compliance import build_series, compliance_rows
from twin_service.quality._limits import SiteLimits
from twin_service.quality._report import build_report, draw_chart, parse_week
from twin_service.quality.commands import quality

from .support import T0, entity, seconds

EN = SiteLimits()


def test_rms_aggregation_aligned_to_the_utc_tick() -> None:
    samples = [(T0 + seconds(595), 3.0), (T0 + seconds(599), 4.0), (T0 + seconds(600), 10.0)]
    first, second = aggregate(samples, 600)
    assert first.start == T0 and first.value == pytest.approx((12.5) ** 0.5)  # sqrt((9 + 16) / 2)
    assert (first.minimum, first.maximum, first.count) == (3.0, 4.0, 2)
    assert second.start == T0 + seconds(600) and second.value == 10.0
    mean = aggregate([(T0, 49.9), (T0 + seconds(5), 50.1)], 10, method="mean")
    assert mean[0].value == pytest.approx(50.0)
    assert interval_start(T0 + seconds(1234), 600) == T0 + seconds(1200)


def test_three_second_values_only_where_the_readings_allow() -> None:
    every_second = [(T0 + seconds(k), 230.0) for k in range(9)]
    assert [i.count for i in very_short_values(every_second)] == [3, 3, 3]
    every_ten = [(T0 + seconds(10 * k), 230.0) for k in range(9)]
    assert very_short_values(every_ten) == []


def test_short_dip_flags_its_interval_but_a_long_under_voltage_does_not() -> None:
    readings = [reading_from_entity(entity("m", T0 + seconds(k), v=(230, 180 if 100 <= k < 102 else 230, 230)))
                for k in range(1200)]
    events = event_periods(readings, EN)
    assert [(e.kind, e.phase, e.duration_s, e.extreme_v) for e in events] == [("dip", "L2", 2.0, 180.0)]
    series = build_series(readings, EN)
    assert [i.flagged for i in series.voltage_v["L1"]] == [True, False]
    long_low = [reading_from_entity(entity("m", T0 + seconds(k), v=(200, 230, 230))) for k in range(120)]
    (event,) = event_periods(long_low, EN)
    assert event.duration_s == 119.0 and flag_times([event], EN) == []


def hand_week():
    """1008 readings, one per 10-min interval (so each interval's rms is that reading), with counted breaches."""
    readings = []
    for k in range(1008):
        v1 = 256.0 if k < 60 else 230.0  # 60 intervals above 253 V
        v2 = 200.0 if 100 <= k < 150 else 230.0  # 50 intervals between 195.5 and 207 V
        v3 = 190.0 if k == 500 else 230.0  # 1 interval below 195.5 V (the 100 % band)
        f = 50.6 if 700 <= k < 706 else 50.0  # 6 of 1008 10-s values outside 49.5–50.5 Hz
        thd1 = 0.09 if 800 <= k < 840 else 0.03  # 40 intervals above 8 %
        readings.append(reading_from_entity(entity("m", T0 + timedelta(minutes=10 * k), v=(v1, v2, v3), f=f,
                                                   thd=(thd1, 0.03, 0.03))))
    return readings


def test_weekly_compliance_matches_the_hand_count() -> None:
    rows = {(r.characteristic.split(" (")[0], r.phase): r for r in compliance_rows(build_series(hand_week(), EN),
                                                                                   EN)}
    l1 = rows[("Supply voltage", "L1")]
    assert (l1.valid_intervals, l1.within) == (1008, 948)
    assert l1.within_share == pytest.approx(0.9405, abs=1e-4) and l1.compliant is False  # 948/1008 < 95 %
    l2 = rows[("Supply voltage", "L2")]
    assert (l2.within, l2.outside_always) == (958, 0)
    assert l2.within_share == pytest.approx(0.9504, abs=1e-4) and l2.compliant is True  # 958/1008 ≥ 95 %
    l3 = rows[("Supply voltage", "L3")]
    assert (l3.within, l3.outside_always, l3.compliant) == (1007, 1, False)  # 99.90 % but once below −15 %
    freq = rows[("Frequency", "all")]
    assert (freq.valid_intervals, freq.within) == (1008, 1002)
    assert freq.within_share == pytest.approx(0.99405, abs=1e-5) and freq.compliant is False  # < 99.5 %
    thd = rows[("Voltage THD", "L1")]
    assert thd.within_share == pytest.approx(968 / 1008) and thd.compliant is True  # 96.03 %
    # Unbalance: 256 V on L1 -> 26/664 = 3.9 %; 200 V on L2 -> 30/660 = 4.5 %; 190 V on L3 -> 6.1 %: 111 over 2 %.
    unbalance = rows[("Voltage unbalance u2", "all")]
    assert unbalance.within == 1008 - 111 and unbalance.compliant is False  # 88.99 %


def test_report_text_and_chart(tmp_path: Path) -> None:
    week = hand_week()
    # A 2-s dip on L2 in interval 300: that interval is flagged and left out of the counts.
    dip_at = T0 + timedelta(minutes=3000, seconds=30)
    week += [reading_from_entity(entity("m", dip_at, v=(230, 150, 230))),
             reading_from_entity(entity("m", dip_at + seconds(2)))]
    week.sort(key=lambda r: r.observed_at)
    start, end = parse_week("2026-W02")
    assert (start, end) == (T0, T0 + timedelta(days=7))
    report = build_report(week, "m", start, end, EN)
    l1 = report.rows[0]
    assert (l1.valid_intervals, l1.within) == (1007, 947)  # the flagged interval is not counted
    text = report.text()
    assert "NOT compliant" in text and "94.04%" in text and "dip" in text
    path = draw_chart(report, tmp_path / "week.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_report_command_rejects_a_bad_week() -> None:
    result = CliRunner().invoke(quality, ["report", "--meter", "m", "--week", "last week"])
    assert result.exit_code != 0 and "2026-W05" in result.output
