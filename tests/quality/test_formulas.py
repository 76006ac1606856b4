"""Formulas against hand-computed values (docs/power-quality.md §1.4 test vector, §2.3 neutral example)."""

from __future__ import annotations

import math

import pytest

from datamodels import three_phase as f

# docs/power-quality.md §1.4: Va = 235∠0°, Vb = 225∠−118°, Vc = 230∠121° V.
VA, VB, VC = f.phasor(235, 0), f.phasor(225, -118), f.phasor(230, 121)


def test_reference_vector_line_voltages() -> None:
    assert abs(VA - VB) == pytest.approx(394.33, abs=0.01)
    assert abs(VB - VC) == pytest.approx(396.02, abs=0.01)
    assert abs(VC - VA) == pytest.approx(404.72, abs=0.01)
    assert f.line_to_line_v(235, 225, 118) == pytest.approx(394.33, abs=0.01)


def test_reference_vector_unbalance_by_phasors_and_by_beta() -> None:
    assert f.unbalance_factor(VA, VB, VC) == pytest.approx(0.01623, abs=2e-5)
    assert f.unbalance_from_line_voltages(394.33, 396.02, 404.72) == pytest.approx(0.01623, abs=2e-5)
    # Line-to-line phasors give the same u2 (zero sequence cancels).
    assert f.unbalance_factor(VA - VB, VB - VC, VC - VA) == pytest.approx(0.01623, abs=2e-5)


def test_reference_vector_approximations() -> None:
    assert f.line_voltage_unbalance_nema(394.33, 396.02, 404.72) == pytest.approx(0.01598, abs=2e-5)
    assert f.phase_voltage_unbalance_ieee(235, 225, 230) == pytest.approx(0.02174, abs=2e-5)


def test_meter_angles_give_the_reference_result() -> None:
    # The meter reports L12 = θ1 − θ2 = 118°, L23 = θ2 − θ3 = −118 − 121 = −239 ≡ 121°.
    assert f.voltage_angles_deg(118, 121) == (0.0, -118.0, -239.0)
    assert f.voltage_unbalance((235, 225, 230), 118, 121) == pytest.approx(0.01623, abs=2e-5)


def test_balanced_system_has_no_unbalance_and_no_neutral_current() -> None:
    assert f.voltage_unbalance((230, 230, 230), 120, 120) == pytest.approx(0.0, abs=1e-12)
    assert f.neutral_current_from_phases_a((10, 10, 10), (0, 0, 0)) == pytest.approx(0.0, abs=1e-9)


def test_one_phase_low_unbalance_by_hand() -> None:
    # Va = Vb = V, Vc = V − d, 120° apart: V2 = −a·d/3, V1 = (3V − d)/3, so u2 = d / (3V − d).
    v, d = 230.0, 20.1
    assert f.voltage_unbalance((v, v, v - d)) == pytest.approx(d / (3 * v - d), rel=1e-12)


def test_negative_sequence_system_is_fully_unbalanced() -> None:
    # L1→L3→L2 rotation (a phase-sequence error): V1 = 0 and V2 = V.
    a, b, c = f.phasor(230, 0), f.phasor(230, 120), f.phasor(230, -120)
    zero, positive, negative = f.sequence_components(a, b, c)
    assert abs(positive) == pytest.approx(0.0, abs=1e-9)
    assert abs(negative) == pytest.approx(230.0)
    assert abs(zero) == pytest.approx(0.0, abs=1e-9)


def test_neutral_current_of_unequal_phases_120_degrees_apart() -> None:
    # docs/power-quality.md §2.3: 10, 15, 20 A exactly 120° apart -> sqrt(100 + 225 + 400 − 150 − 300 − 200) = 8.66 A.
    assert f.neutral_current_from_phases_a((10, 15, 20), (0, 0, 0)) == pytest.approx(math.sqrt(75), abs=1e-9)
    assert f.neutral_to_phase_ratio(25.0, (10, 15, 20)) == pytest.approx(1.25)
    assert f.neutral_mismatch_a(12.0, 8.66) == pytest.approx(3.34)


def test_current_unbalance_uses_the_v_to_i_angles() -> None:
    assert f.current_unbalance((10, 10, 10), (30, 30, 30)) == pytest.approx(0.0, abs=1e-12)
    # L2 leading 30° instead of lagging: Ia = 10∠−30°, Ib = 10∠−90°, Ic = 10∠90°.
    # I1·3 = 10∠−30 + 10∠30 + 10∠−30 = 25.98 − j5 (|.| = sqrt(700)); I2·3 = 10∠−30 + 10∠150 + 10∠210 = 10∠210.
    # u2 = 10 / sqrt(700) = 1/sqrt(7).
    assert f.current_unbalance((10, 10, 10), (30, -30, 30)) == pytest.approx(1 / math.sqrt(7), rel=1e-12)
