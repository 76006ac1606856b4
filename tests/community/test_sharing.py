"""Sharing methods: the LP optimum on hand-computable cases, and every rule respected exactly."""

from __future__ import annotations

import numpy as np
import pytest

from community.coefficient_file import MICRO, round_coefficients
from community.settlement import settle
from community.sharing import (
    InfeasibleRules,
    SharingRules,
    apply_rules,
    fixed_shares,
    optimal_shares,
    proportional_shares,
)

G_KWH = np.array([2.0, 4.0, 1.0])
C_KWH = np.array([[0.4, 1.5, 0.0], [1.8, 2.0, 0.3]])


def _self_consumed(beta, g=G_KWH, c=C_KWH) -> float:
    return float(settle(beta, g, c).self_consumed_kwh.sum())


def test_lp_optimum_without_rules_is_min_of_demand_and_generation_each_hour():
    # Hour by hour the community can use at most min(sum C, G): 2.0 + 3.5 + 0.3 = 5.8 kWh.
    result = optimal_shares(C_KWH, G_KWH, SharingRules.unconstrained(2))
    assert result.self_consumed_kwh == pytest.approx(5.8)
    assert _self_consumed(result.beta) == pytest.approx(5.8)
    np.testing.assert_allclose(result.beta.sum(axis=0), 1.0)


def test_lp_optimum_with_a_cap():
    # Cap 0.6: in hour 1 member 2 needs 1.8 of 2 kWh but gets at most 1.2; member 1 uses its 0.4.
    # Optimum = (0.4 + 1.2) + 3.5 + 0.3 = 5.4 kWh.
    rules = SharingRules(np.zeros(2), np.full(2, 0.6), np.full(2, 0.5))
    result = optimal_shares(C_KWH, G_KWH, rules)
    assert result.self_consumed_kwh == pytest.approx(5.4)
    assert rules.violations(result.beta) == []


def test_lp_beats_fixed_and_proportional_here():
    rules = SharingRules.unconstrained(2)
    best = _self_consumed(optimal_shares(C_KWH, G_KWH, rules).beta)
    assert _self_consumed(fixed_shares(3, rules)) == pytest.approx(5.2)  # halves: 1.4 + 3.5 + 0.3
    assert best == pytest.approx(5.8, abs=1e-6)
    assert best >= _self_consumed(proportional_shares(C_KWH, rules)) - 1e-6


def test_energy_poverty_reserve_binds():
    # Member 1 (energy poverty) must hold >= 0.5 but uses 0.2 kWh: member 2 gets at most 1 kWh of 2.
    rules = SharingRules(
        np.zeros(2), np.ones(2), np.full(2, 0.5), reserve=0.5, reserve_members=np.array([True, False])
    )
    result = optimal_shares(np.array([[0.2], [2.0]]), np.array([2.0]), rules)
    assert result.self_consumed_kwh == pytest.approx(1.2)
    assert result.beta[0, 0] >= 0.5 - 1e-9


def test_fairness_bound_binds():
    # One hour, member 1 uses all 2 kWh; fairness keeps its share within (1 +/- 0.2) x 0.5 -> beta <= 0.6.
    rules = SharingRules(np.zeros(2), np.ones(2), np.full(2, 0.5), fairness_tolerance=0.2)
    result = optimal_shares(np.array([[2.0], [0.0]]), np.array([2.0]), rules)
    assert result.self_consumed_kwh == pytest.approx(1.2)
    assert result.beta[0, 0] == pytest.approx(0.6, abs=1e-7)


def test_surplus_is_placed_by_expected_consumption():
    # Hour 1: 4 kWh for a demand of 1 + 1: each needs 0.25, the other 0.5 goes 0.5 / 0.5 as consumption does.
    # Hour 2: 4 kWh for 1 + 3: needs 0.25 / 0.75 are exactly the proportional shares.
    # Hour 3: nobody consumes: the tie-break falls back to the fixed shares (0.75 / 0.25).
    rules = SharingRules(np.zeros(2), np.ones(2), np.array([0.75, 0.25]))
    c = np.array([[1.0, 1.0, 0.0], [1.0, 3.0, 0.0]])
    result = optimal_shares(c, np.array([4.0, 4.0, 1.0]), rules)
    np.testing.assert_allclose(result.beta, [[0.5, 0.25, 0.75], [0.5, 0.75, 0.25]], atol=1e-7)


def test_infeasible_rules_are_reported():
    rules = SharingRules(
        np.zeros(2),
        np.ones(2),
        np.full(2, 0.5),
        reserve=0.9,
        reserve_members=np.array([True, False]),
        fairness_tolerance=0.0,
    )
    with pytest.raises(InfeasibleRules):
        optimal_shares(np.array([[1.0], [1.0]]), np.array([1.0]), rules)


def test_proportional_is_consumption_share_and_zero_demand_falls_back():
    rules = SharingRules.unconstrained(2)
    beta = proportional_shares(np.array([[1.0, 0.0], [3.0, 0.0]]), rules)
    np.testing.assert_allclose(beta, [[0.25, 0.5], [0.75, 0.5]])


def test_apply_rules_min_and_cap_redistribute_proportionally():
    # [0.9, 0.08, 0.02] with min 0.05 and cap 0.8 -> [0.8, ., 0.05]; the 0.07 left goes to member 2.
    rules = SharingRules(np.full(3, 0.05), np.full(3, 0.8), np.full(3, 1 / 3))
    beta = apply_rules(np.array([[0.9], [0.08], [0.02]]), rules)
    np.testing.assert_allclose(beta[:, 0], [0.8, 0.15, 0.05])


def test_apply_rules_reserve_scales_then_gives_p():
    # iotlibre: scale by (1 - p) = 0.8 and give p = 0.2 to the energy-poverty member.
    rules = SharingRules(
        np.zeros(2), np.ones(2), np.full(2, 0.5), reserve=0.2, reserve_members=np.array([False, True])
    )
    beta = apply_rules(np.array([[1.0], [0.0]]), rules)
    np.testing.assert_allclose(beta[:, 0], [0.8, 0.2])


@pytest.mark.parametrize("method", ["fixed", "proportional", "optimal"])
def test_rules_hold_exactly_after_rounding(method):
    rng = np.random.default_rng(3)
    n, hours = 6, 72
    hod = np.arange(hours) % 24
    g = np.clip(np.sin((hod - 6) / 12 * np.pi), 0, None) * 8 * rng.uniform(0.4, 1, hours)
    c = rng.gamma(2.0, 0.4, (n, hours))
    lower = np.array([0.05, 0.05, 0.05, 0.05, 0.05, 0.02])
    upper = np.array([0.4, 0.4, 0.4, 0.4, 0.4, 0.3])
    poor = np.array([False, False, False, False, True, True])
    rules = SharingRules(
        lower,
        upper,
        np.full(n, 1 / n),
        reserve=0.25,
        reserve_members=poor,
        fairness_tolerance=0.3 if method == "optimal" else None,
    )
    from community.sharing import shares_by_method

    beta = shares_by_method(method, c, g, rules)
    assert rules.violations(beta, g) == []
    micro = round_coefficients(beta, lower, upper, 0.25, poor)
    assert (micro.sum(axis=0) == MICRO).all()
    assert (micro >= np.round(lower * MICRO)[:, None]).all()
    assert (micro <= np.round(upper * MICRO)[:, None]).all()
    assert (micro[poor].sum(axis=0) >= 250_000).all()
    assert np.abs(micro / MICRO - beta).max() <= 1e-5  # rounding moves nothing by more than a few millionths
