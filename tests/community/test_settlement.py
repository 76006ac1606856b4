"""Settlement (RD 244/2019 Annex I), household view (V = P + L - T), money, CO2: against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from community.co2 import co2_avoided_kg, tree_years
from community.settlement import (
    direct_self_use_kwh,
    household_consumption_kwh,
    net_generation_kwh,
    settle,
)
from community.tariffs import monthly_savings_eur

# Two members, three hours.
BETA = np.array([[0.5, 0.25, 1.0], [0.5, 0.75, 0.0]])
G_KWH = np.array([2.0, 4.0, 1.0])
C_KWH = np.array([[0.4, 1.5, 0.0], [1.0, 2.0, 0.3]])


def test_two_members_three_hours_by_hand():
    s = settle(BETA, G_KWH, C_KWH)
    # E = beta x G
    np.testing.assert_allclose(s.assigned_kwh, [[1.0, 1.0, 1.0], [1.0, 3.0, 0.0]])
    # A = min(C, E)
    np.testing.assert_allclose(s.self_consumed_kwh, [[0.4, 1.0, 0.0], [1.0, 2.0, 0.0]])
    # I = max(0, C - E)
    np.testing.assert_allclose(s.grid_import_kwh, [[0.0, 0.5, 0.0], [0.0, 0.0, 0.3]])
    # X = max(0, E - C)
    np.testing.assert_allclose(s.surplus_kwh, [[0.6, 0.0, 1.0], [0.0, 1.0, 0.0]])
    # Community: A = 4.4 of E = 7.0
    assert s.community_self_consumption_ratio == pytest.approx(4.4 / 7.0)


def test_balance_holds_every_hour():
    s = settle(BETA, G_KWH, C_KWH)
    np.testing.assert_allclose(s.self_consumed_kwh + s.grid_import_kwh, C_KWH)
    np.testing.assert_allclose(s.self_consumed_kwh + s.surplus_kwh, s.assigned_kwh)


def test_missing_hour_stays_missing():
    c = C_KWH.copy()
    c[1, 2] = np.nan
    s = settle(BETA, G_KWH, c)
    assert np.isnan(s.self_consumed_kwh[1, 2]) and np.isnan(s.grid_import_kwh[1, 2])
    assert s.self_consumed_kwh[0, 2] == 0.0


def test_net_generation_removes_night_auxiliary_load():
    np.testing.assert_allclose(net_generation_kwh([0.0, 3.0, 1.0], [0.02, 0.0, 1.5]), [0.0, 3.0, 0.0])


def test_household_view_v_equals_p_plus_l_minus_t():
    # P = 3 kWh produced, L = 2 bought, T = 1.5 fed back: V = 3.5 used at home, of which 1.5 own PV directly.
    assert household_consumption_kwh(np.array(3.0), np.array(2.0), np.array(1.5)) == pytest.approx(3.5)
    assert direct_self_use_kwh(np.array(3.0), np.array(1.5)) == pytest.approx(1.5)


def test_simplified_compensation_is_capped_at_the_energy_bought():
    # A = 1 kWh at 0.20 saves 0.20; surplus 10 kWh x 0.05 = 0.50 but capped at I x p = 0.5 x 0.20 = 0.10.
    args = (np.array([1.0]), np.array([0.5]), np.array([10.0]), np.array([0.2]), 0.05)
    assert monthly_savings_eur(*args, compensation="simplified") == pytest.approx(0.30)
    assert monthly_savings_eur(*args, compensation="sale") == pytest.approx(0.70)


def test_hourly_prices_weight_each_hour():
    a = np.array([1.0, 2.0])
    prices = np.array([0.10, 0.30])
    assert monthly_savings_eur(a, np.zeros(2), np.zeros(2), prices, 0.0) == pytest.approx(0.70)


def test_co2_and_trees():
    assert co2_avoided_kg(100.0) == pytest.approx(33.1)  # 0.331 kg/kWh, RITE 2014
    assert tree_years(21.77 * 3) == pytest.approx(3.0)
    assert co2_avoided_kg(100.0, 0.19) == pytest.approx(19.0)
