"""Counter differencing into hourly kWh: straddling intervals, gaps and resets on hand-made series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from community.hourly import hourly_energy_from_counter

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_regular_readings_difference_exactly():
    times = [_at(m) for m in range(0, 181, 15)]  # every 15 min for 3 h
    counter = [100.0 + 0.25 * k for k in range(len(times))]  # 1 kWh per hour
    out = hourly_energy_from_counter(times, counter, T0, T0 + timedelta(hours=3))
    np.testing.assert_allclose(out.energy_kwh, [1.0, 1.0, 1.0])
    assert out.gaps == ()


def test_interval_straddling_a_boundary_is_split_by_time():
    # 00:00 10.0, 00:50 11.0, 01:10 13.0, 02:00 14.0: the 2 kWh of 00:50-01:10 split 1 + 1.
    times = [_at(0), _at(50), _at(70), _at(120)]
    out = hourly_energy_from_counter(
        times, [10.0, 11.0, 13.0, 14.0], T0, T0 + timedelta(hours=2), max_sample_gap=timedelta(hours=1)
    )
    np.testing.assert_allclose(out.energy_kwh, [2.0, 2.0])


def test_gap_longer_than_the_limit_leaves_hours_missing():
    # Readings every 10 min except nothing between 01:20 and 02:40.
    minutes = [m for m in range(0, 241, 10) if not 80 < m < 160]
    times = [_at(m) for m in minutes]
    out = hourly_energy_from_counter(times, [m / 60 for m in minutes], T0, T0 + timedelta(hours=4))
    assert np.isnan(out.energy_kwh[1]) and np.isnan(out.energy_kwh[2])
    np.testing.assert_allclose(out.energy_kwh[[0, 3]], [1.0, 1.0])
    assert len(out.gaps) == 1
    gap = out.gaps[0]
    assert (gap.start, gap.end, gap.hours) == (_at(60), _at(180), 2)
    assert "no reading for 80 min" in gap.reason


def test_counter_reset_is_reported_and_later_hours_recover():
    # 0.5 kWh per 30 min; the meter is replaced at 01:15 and restarts at 0.
    times = [_at(0), _at(30), _at(60), _at(75), _at(90), _at(120), _at(150), _at(180)]
    counter = [5.0, 5.5, 6.0, 0.0, 0.25, 0.75, 1.25, 1.75]
    out = hourly_energy_from_counter(
        times, counter, T0, T0 + timedelta(hours=3), max_sample_gap=timedelta(minutes=30)
    )
    assert out.energy_kwh[0] == pytest.approx(1.0)
    assert np.isnan(out.energy_kwh[1])
    assert out.energy_kwh[2] == pytest.approx(1.0)
    assert "counter went down from 6.000 to 0.000 kWh" in out.gaps[0].reason


def test_hours_outside_the_readings_are_missing_not_zero():
    times = [_at(m) for m in range(90, 181, 10)]
    out = hourly_energy_from_counter(times, [m / 60 for m in range(90, 181, 10)], T0, T0 + timedelta(hours=4))
    assert np.isnan(out.energy_kwh[:2]).all() and np.isnan(out.energy_kwh[3])
    assert out.energy_kwh[2] == pytest.approx(1.0)
    assert [g.reason for g in out.gaps] == [
        "no samples before the first reading",
        "no samples after the last reading",
    ]
    assert out.missing_hours == 3


def test_no_samples_at_all():
    out = hourly_energy_from_counter([], [], T0, T0 + timedelta(hours=2))
    assert out.missing_hours == 2 and out.gaps[0].reason == "no samples"


def test_grid_must_be_whole_hours():
    with pytest.raises(ValueError, match="whole hour"):
        hourly_energy_from_counter([], [], _at(5), _at(65))
