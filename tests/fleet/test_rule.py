"""The mean-SoC rule against hand-computed cases."""

import math

import numpy as np
import pytest

from fleet import BatteryReading, BatterySpec, mean_soc_setpoints
from fleet.rule import balance_power_kw, capacity_weighted_mean


def test_capacity_weighted_mean_by_hand():
    # (10 kWh x 0.8 + 5 kWh x 0.2) / 15 kWh = 9 / 15 = 0.6
    assert capacity_weighted_mean(np.array([10.0, 5.0]), np.array([0.8, 0.2])) == pytest.approx(0.6)


def test_balancing_moves_energy_from_above_to_below_and_keeps_the_total():
    # gain 0.5/h: P1 = 0.5 x 10 x (0.6 - 0.8) = -1.0 kW, P2 = 0.5 x 5 x (0.6 - 0.2) = +1.0 kW
    power = balance_power_kw(np.array([10.0, 5.0]), np.array([0.8, 0.2]), np.array([-5.0, -5.0]),
                             np.array([5.0, 5.0]), 0.0, gain_per_h=0.5, deadband=0.0)
    assert power == pytest.approx([-1.0, 1.0])


def test_fleet_power_is_shared_by_capacity():
    # equal SoC: 3 kW of community surplus split 10:5 -> 2 kW and 1 kW
    power = balance_power_kw(np.array([10.0, 5.0]), np.array([0.5, 0.5]), np.array([-5.0, -5.0]),
                             np.array([5.0, 5.0]), 3.0)
    assert power == pytest.approx([2.0, 1.0])


def test_clipped_power_goes_to_batteries_with_headroom():
    # battery 1 may take only 0.5 kW; the 1.5 kW it cannot take goes to battery 2
    power = balance_power_kw(np.array([10.0, 5.0]), np.array([0.5, 0.5]), np.array([-5.0, -5.0]),
                             np.array([0.5, 5.0]), 3.0)
    assert power == pytest.approx([0.5, 2.5])


def test_more_than_the_fleet_can_take_is_clipped_never_exceeding_limits():
    power = balance_power_kw(np.array([10.0, 5.0]), np.array([0.5, 0.5]), np.array([-1.0, -1.0]),
                             np.array([1.0, 2.0]), 50.0)
    assert power == pytest.approx([1.0, 2.0])


def test_power_limits_from_soc_window():
    spec = BatterySpec("b", 10.0, 5.0, 5.0, 0.95, 0.95, soc_min=0.1, soc_max=1.0)
    low, high = spec.power_limits_kw(0.95, 0.25)
    # 0.5 kWh of headroom in 15 min through 95 % charge efficiency: 0.5 / (0.95 x 0.25) = 2.105 kW
    assert high == pytest.approx(0.5 / (0.95 * 0.25))
    assert low == -5.0  # 8.5 kWh above the reserve: the inverter rating binds
    low, _ = spec.power_limits_kw(0.11, 0.25)
    assert low == pytest.approx(-(0.1 * 0.95 / 0.25))


def test_silent_invalid_and_unknown_batteries_leave_the_mean():
    specs = {name: BatterySpec(name, 10.0, 3.0, 3.0) for name in ("a", "b", "c", "d")}
    readings = {
        "a": BatteryReading("a", 0.9, observed_at_s=1000.0),
        "b": BatteryReading("b", 0.3, observed_at_s=990.0),
        "c": BatteryReading("c", 0.1, observed_at_s=0.0),  # silent for 1000 s
        "d": BatteryReading("d", 1.7, observed_at_s=1000.0),  # not a fraction
        "x": BatteryReading("x", 0.5, observed_at_s=1000.0),  # not provisioned
    }
    decision = mean_soc_setpoints(specs, readings, now_s=1000.0, stale_after_s=300.0, period_h=0.25)
    assert decision.mean_soc == pytest.approx(0.6)  # only a and b
    assert {s.battery_id for s in decision.setpoints} == {"a", "b"}
    assert set(decision.excluded) == {"c", "d", "x"}
    assert "silent for 1000 s" in decision.excluded["c"]
    by_id = {s.battery_id: s for s in decision.setpoints}
    assert by_id["a"].power_kw < 0 < by_id["b"].power_kw
    assert "above fleet mean" in by_id["a"].reason and "below fleet mean" in by_id["b"].reason


def test_no_live_battery_gives_no_setpoint():
    decision = mean_soc_setpoints({"a": BatterySpec("a", 5.0, 2.0, 2.0)}, {}, now_s=0.0)
    assert decision.setpoints == () and math.isnan(decision.mean_soc)
    assert decision.excluded == {"a": "never reported"}


def test_setpoints_never_leave_the_limits_for_a_random_fleet():
    rng = np.random.default_rng(3)
    specs, readings = {}, {}
    for i in range(200):
        spec = BatterySpec(f"b{i}", float(rng.uniform(2, 20)), float(rng.uniform(0.5, 6)),
                           float(rng.uniform(0.5, 6)), soc_min=0.1, soc_max=0.95)
        specs[spec.battery_id] = spec
        readings[spec.battery_id] = BatteryReading(spec.battery_id, float(rng.uniform(0, 1)), 0.0)
    decision = mean_soc_setpoints(specs, readings, now_s=0.0, fleet_power_kw=-40.0, period_h=0.25)
    for setpoint in decision.setpoints:
        low, high = specs[setpoint.battery_id].power_limits_kw(readings[setpoint.battery_id].soc, 0.25)
        assert low - 1e-9 <= setpoint.power_kw <= high + 1e-9


@pytest.mark.parametrize("bad", [{"capacity_kwh": 0}, {"max_charge_kw": -1}, {"charge_efficiency": 1.5},
                                 {"soc_min": 0.9, "soc_max": 0.5}])
def test_invalid_specs_are_refused(bad):
    args = {"battery_id": "b", "capacity_kwh": 5.0, "max_charge_kw": 2.0, "max_discharge_kw": 2.0} | bad
    with pytest.raises(ValueError):
        BatterySpec(**args)
