"""Conditions, severity and record life against hand-computed cases; every record validates (SDM schema)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from datamodels.readings import reading_from_entity
from datamodels.validation import validate_entity
from twin_service.quality._conditions import (
    QualityTracker,
    dip_class,
    evaluate,
    frequency_severity,
    ratio_severity,
    voltage_high_severity,
    voltage_low_severity,
)
from twin_service.quality._limits import SiteConfigError, SiteLimits, en50160_limits, limits_from_mapping

from .support import T0, entity, seconds

EN = SiteLimits()


def run(tracker: QualityTracker, entities):
    records = {}
    for e in entities:
        for anomaly in tracker.update(reading_from_entity(e)):
            validate_entity(anomaly.to_normalized())
            validate_entity(anomaly.to_key_values())
            records.setdefault(anomaly.id, []).append(anomaly)
    return records


def test_en50160_limits_by_hand() -> None:
    assert EN.voltage_upper_v == pytest.approx(253.0)
    assert EN.voltage_lower_v == pytest.approx(207.0)
    assert EN.voltage_lower_always_v == pytest.approx(195.5)
    assert (EN.frequency_lower_hz, EN.frequency_upper_hz) == pytest.approx((49.5, 50.5))
    assert (EN.frequency_wide_lower_hz, EN.frequency_wide_upper_hz) == pytest.approx((47.0, 52.0))
    sixty = en50160_limits(120.0, 60.0)
    assert (sixty.frequency_lower_hz, sixty.frequency_upper_hz) == pytest.approx((59.4, 60.6))
    assert sixty.dip_threshold_v == pytest.approx(108.0)
    island = en50160_limits(island=True)
    assert (island.frequency_lower_hz, island.frequency_upper_hz) == pytest.approx((49.0, 51.0))
    assert island.frequency_wide_lower_hz == pytest.approx(42.5)


def test_site_config_overrides_and_rejects_unknown_keys() -> None:
    site = limits_from_mapping({"nominal_voltage_v": 240, "voltage_upper_fraction": 0.06})
    assert site.voltage_upper_v == pytest.approx(254.4)
    assert site.voltage_lower_v == pytest.approx(216.0)
    with pytest.raises(SiteConfigError, match="voltage_uper"):
        limits_from_mapping({"voltage_uper_fraction": 0.06})
    with pytest.raises(SiteConfigError, match="not a number"):
        limits_from_mapping({"thd_voltage_max": "8%"})


@pytest.mark.parametrize(("volts", "severity"), [(220.0, "low"), (200.0, "medium"), (161.0, "medium"),
                                                 (160.0, "high"), (92.0, "high"), (91.0, "critical")])
def test_voltage_low_severity_bands(volts: float, severity: str) -> None:
    # 230 V: 90 % = 207, 70 % = 161, 40 % = 92.
    assert voltage_low_severity(volts, EN) == severity


def test_other_severity_bands() -> None:
    assert voltage_high_severity(260.0, EN) == "medium"  # 113 %
    assert voltage_high_severity(276.0, EN) == "high"  # 120 %
    assert frequency_severity(50.6, EN) == "medium"
    assert frequency_severity(52.1, EN) == "critical"
    assert frequency_severity(46.9, EN) == "critical"
    assert ratio_severity(0.09, 0.08) == "medium"
    assert ratio_severity(0.17, 0.08) == "high"
    assert ratio_severity(0.03, 0.02) == "medium"


@pytest.mark.parametrize(("u", "t", "cell"), [(0.85, 0.1, "A1"), (0.75, 0.3, "B2"), (0.5, 2.0, "C4"),
                                              (0.3, 10.0, "D5"), (0.01, 0.8, "X3")])
def test_dip_class_cells(u: float, t: float, cell: str) -> None:
    assert dip_class(u, t) == cell


def test_two_second_dip_on_l2_is_one_record_closed_when_it_ends() -> None:
    tracker = QualityTracker(EN)
    volts = [(230, 230, 230), (230, 120, 230), (230, 118, 230), (230, 230, 230), (230, 230, 230)]
    records = run(tracker, [entity("m1", T0 + seconds(k), v=v) for k, v in enumerate(volts)])
    assert len(records) == 1
    (history,) = records.values()
    first, last = history[0], history[-1]
    assert (first.anomalousProperty, first.phase, first.status) == ("phaseVoltage", "L2", "open")
    assert first.thresholdBreach[0].measuredValue == 120.0
    assert first.thresholdBreach[0].thresholdValue == pytest.approx(207.0)
    assert first.thresholdBreach[0].thresholdType == "LOWER"
    assert first.detectedBy == "urn:ngsi-ld:Device:m1"
    assert last.status == "closed"
    assert last.severity == "high"  # 118 V = 51 % of Un
    assert last.validTo is not None
    assert "118.0 V" in last.description and "207.0 V" in last.description
    assert "Voltage dip (class C4)" in last.description  # 51 %, 2 s
    assert min(b.measuredValue for b in last.thresholdBreach) == 118.0
    assert tracker.open == {}


def test_hovering_at_the_limit_does_not_flap() -> None:
    tracker = QualityTracker(EN)
    volts = [254.0, 252.0, 253.5, 251.0, 253.2, 250.0]  # close only below 253 − 4.6 = 248.4 V
    records = run(tracker, [entity("m1", T0 + seconds(k), v=(v, 230, 230)) for k, v in enumerate(volts)])
    assert len(records) == 1
    assert next(iter(records.values()))[-1].status == "open"


def test_ten_minute_over_voltage_is_one_record_named_over_voltage() -> None:
    tracker = QualityTracker(EN)
    entities = [entity("m1", T0, v=(230, 230, 230))]
    entities += [entity("m1", T0 + seconds(1 + 5 * k), v=(260, 230, 230)) for k in range(121)]
    entities.append(entity("m1", T0 + seconds(610), v=(231, 230, 230)))
    records = run(tracker, entities)
    assert len(records) == 1
    history = next(iter(records.values()))
    # Opened, rewritten at most every update_interval_s (60 s) while nothing worsens, then closed.
    assert 10 <= len(history) <= 13
    last = history[-1]
    assert (last.phase, last.severity, last.status) == ("L1", "medium", "closed")
    assert last.description.startswith("Over-voltage on L1")
    assert "lasted 609.0 s" in last.description


def test_interruption_is_one_record_for_all_phases() -> None:
    tracker = QualityTracker(EN)
    volts = [(230, 230, 230), (2, 1, 3), (0, 0, 0), (230, 230, 230)]
    records = run(tracker, [entity("m1", T0 + seconds(k), v=v) for k, v in enumerate(volts)])
    assert len(records) == 1
    last = next(iter(records.values()))[-1]
    assert (last.phase, last.severity, last.status) == ("all", "critical", "closed")


@pytest.mark.parametrize(("kwargs", "prop", "phase", "severity", "threshold"), [
    ({"f": 50.6}, "frequency", "all", "medium", "UPPER"),
    ({"f": 49.3}, "frequency", "all", "medium", "LOWER"),
    ({"thd": (0.02, 0.02, 0.09)}, "thdVoltage", "L3", "medium", "UPPER"),
    ({"v": (230, 230, 209.9)}, "voltageUnbalance", "all", "medium", "UPPER"),  # u2 = 20.1/669.9 = 3.0 %
    ({"i": (10, 10, 10, 14)}, "current", "N", "medium", "UPPER"),
])
def test_each_condition_is_one_record(kwargs, prop, phase, severity, threshold) -> None:
    tracker = QualityTracker(EN)
    entities = [entity("m1", T0)] + [entity("m1", T0 + seconds(k), **kwargs) for k in range(1, 4)]
    entities += [entity("m1", T0 + seconds(4))]
    records = run(tracker, entities)
    assert len(records) == 1, records.keys()
    last = next(iter(records.values()))[-1]
    assert (last.anomalousProperty, last.phase, last.severity, last.status) == (prop, phase, severity, "closed")
    assert last.thresholdBreach[0].thresholdType == threshold


def test_unbalance_uses_the_angles() -> None:
    # Magnitudes equal, L3 displaced by 5°: u2 from phasors (angle unbalance a magnitude formula would miss).
    reading = reading_from_entity(entity("m1", T0, avv=(120.0, 125.0, 115.0)))
    import cmath
    import math
    a = cmath.rect(1, 2 * math.pi / 3)
    va, vb, vc = 230, cmath.rect(230, math.radians(-120)), cmath.rect(230, math.radians(-245))
    expected = abs(va + a * a * vb + a * vc) / abs(va + a * vb + a * a * vc)
    assert reading.voltage_unbalance() == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(0.0291, abs=1e-3)  # ≈ 2·sin(2.5°)/3·… a ~3 % angle unbalance


def test_meter_dip_flag_opens_a_record_even_when_the_rms_reading_is_normal() -> None:
    tracker = QualityTracker(EN)
    entities = [entity("m1", T0, flags={"dipL1": False}), entity("m1", T0 + seconds(1), flags={"dipL1": True}),
                entity("m1", T0 + seconds(2), flags={"dipL1": False})]
    records = run(tracker, entities)
    assert len(records) == 1
    last = next(iter(records.values()))[-1]
    assert last.phase == "L1" and "flagged by the meter" in last.description and last.status == "closed"


def test_in_house_limit_opens_low_severity() -> None:
    site = replace(EN, voltage_upper_fraction=0.06)  # alert above 243.8 V
    tracker = QualityTracker(site)
    records = run(tracker, [entity("m1", T0, v=(246, 230, 230)), entity("m1", T0 + seconds(1))])
    last = next(iter(records.values()))[-1]
    assert last.severity == "low" and "in-house limit" in last.description


def test_repeated_or_older_readings_change_nothing() -> None:
    tracker = QualityTracker(EN)
    e = entity("m1", T0 + seconds(5), f=50.7)
    assert len(tracker.update(reading_from_entity(e))) == 1
    assert tracker.update(reading_from_entity(e)) == []
    assert tracker.update(reading_from_entity(entity("m1", T0, f=50.0))) == []
    assert tracker.evaluations == 1


def test_resume_continues_the_same_record() -> None:
    first = QualityTracker(EN)
    opened = first.update(reading_from_entity(entity("m1", T0, f=50.7)))
    second = QualityTracker(EN)
    assert second.resume([a for a in opened]) == 1
    out = second.update(reading_from_entity(entity("m1", T0 + seconds(1), f=50.8)))
    assert [a.id for a in out] == [opened[0].id]
    closed = second.update(reading_from_entity(entity("m1", T0 + seconds(2), f=50.0)))
    assert [(a.id, a.status) for a in closed] == [(opened[0].id, "closed")]


def test_clean_readings_raise_nothing() -> None:
    active = evaluate(reading_from_entity(entity("m1", T0, v=(235, 228, 231), f=50.04, thd=(0.03, 0.05, 0.07))),
                      EN)
    assert active == []
