"""Three-phase power-quality formulas: phasors, symmetrical components, unbalance, neutral current.

Pure functions on plain numbers, each with its section of docs/power-quality.md, which gives the
EN 50160 / IEC 61000-4-30 facts and formulas with their public sources.
Angles are degrees, magnitudes volts or amperes, ratios fractions (0.02 = 2 %).
"""

from __future__ import annotations

import cmath
import math

# The operator a = 1∠120° of symmetrical components (Fortescue).
_A = cmath.rect(1.0, 2.0 * math.pi / 3.0)
_A2 = _A * _A


def phasor(magnitude: float, angle_deg: float) -> complex:
    """The complex phasor magnitude∠angle."""
    return cmath.rect(magnitude, math.radians(angle_deg))


def sequence_components(a: complex, b: complex, c: complex) -> tuple[complex, complex, complex]:
    """Zero, positive and negative sequence of three phasors (docs/power-quality.md §1.4).

    V0 = (Va + Vb + Vc)/3, V1 = (Va + a·Vb + a²·Vc)/3, V2 = (Va + a²·Vb + a·Vc)/3 with a = 1∠120°.
    """
    zero = (a + b + c) / 3.0
    positive = (a + _A * b + _A2 * c) / 3.0
    negative = (a + _A2 * b + _A * c) / 3.0
    return zero, positive, negative


def unbalance_factor(a: complex, b: complex, c: complex) -> float:
    """Negative-sequence unbalance u2 = |V2| / |V1| as a fraction: the EN 50160 / IEC 61000-4-30 quantity.

    docs/power-quality.md §1.4 (VUF). Works on phase-to-neutral or line-to-line phasors alike, and on currents.
    Returns 0 when there is no positive sequence (nothing to be unbalanced against).
    """
    _, positive, negative = sequence_components(a, b, c)
    if abs(positive) == 0.0:
        return 0.0
    return abs(negative) / abs(positive)


def unbalance_from_line_voltages(u12_v: float, u23_v: float, u31_v: float) -> float:
    """Exact u2 from line-to-line magnitudes only (no angles), docs/power-quality.md §1.4.

    β = (U12⁴ + U23⁴ + U31⁴) / (U12² + U23² + U31²)²,  u2 = sqrt((1 − sqrt(3 − 6β)) / (1 + sqrt(3 − 6β))).
    """
    squares = u12_v**2 + u23_v**2 + u31_v**2
    if squares == 0.0:
        return 0.0
    beta = (u12_v**4 + u23_v**4 + u31_v**4) / squares**2
    root = math.sqrt(max(0.0, 3.0 - 6.0 * beta))
    return math.sqrt(max(0.0, (1.0 - root) / (1.0 + root)))


def line_voltage_unbalance_nema(u12_v: float, u23_v: float, u31_v: float) -> float:
    """NEMA MG1 / ANSI C84.1 LVUR: max deviation from the mean of the line voltages over the mean (docs/power-quality.md §1.4).

    An approximation that ignores angles; kept for comparison with motor data sheets.
    """
    mean = (u12_v + u23_v + u31_v) / 3.0
    if mean == 0.0:
        return 0.0
    return max(abs(u - mean) for u in (u12_v, u23_v, u31_v)) / mean


def phase_voltage_unbalance_ieee(u1_v: float, u2_v: float, u3_v: float) -> float:
    """IEEE PVUR: the NEMA formula on phase-to-neutral magnitudes (docs/power-quality.md §1.4); misses angle unbalance."""
    return line_voltage_unbalance_nema(u1_v, u2_v, u3_v)


def line_to_line_v(ua_v: float, ub_v: float, angle_between_deg: float) -> float:
    """|Va − Vb| from two phase magnitudes and the angle between them (law of cosines, docs/power-quality.md §2.1)."""
    return math.sqrt(max(0.0, ua_v**2 + ub_v**2 - 2.0 * ua_v * ub_v * math.cos(math.radians(angle_between_deg))))


def voltage_angles_deg(l12_deg: float, l23_deg: float) -> tuple[float, float, float]:
    """Phase-voltage angles (L1 as reference) from the meter's `phaseVoltageAngle` L12 and L23.

    The ADE9000 reports the angle from one phase voltage to the next (ANGL_VA_VB, ANGL_VB_VC): 120° each in
    the positive sequence L1→L2→L3, so θ1 = 0, θ2 = −L12, θ3 = −L12 − L23.
    """
    return 0.0, -l12_deg, -l12_deg - l23_deg


def voltage_unbalance(
    voltage_v: tuple[float, float, float], angle_l12_deg: float | None = None, angle_l23_deg: float | None = None
) -> float:
    """u2 of the phase voltages from the meter's magnitudes and, when reported, angles.

    Without angles the phases are taken 120° apart, which sees magnitude unbalance only (a lower bound of the
    true u2 in general); with angles it is the full symmetrical-components result.
    """
    if angle_l12_deg is None or angle_l23_deg is None:
        angles = (0.0, -120.0, 120.0)
    else:
        angles = voltage_angles_deg(angle_l12_deg, angle_l23_deg)
    a, b, c = (phasor(v, t) for v, t in zip(voltage_v, angles, strict=True))
    return unbalance_factor(a, b, c)


def current_phasors(
    current_a: tuple[float, float, float],
    current_angle_deg: tuple[float, float, float],
    voltage_angle_deg: tuple[float, float, float] = (0.0, -120.0, 120.0),
) -> tuple[complex, complex, complex]:
    """Phase-current phasors from magnitudes and the meter's V→I angles (positive = current lags)."""
    return tuple(  # type: ignore[return-value]
        phasor(i, theta_v - phi) for i, phi, theta_v in zip(current_a, current_angle_deg, voltage_angle_deg,
                                                             strict=True)
    )


def current_unbalance(
    current_a: tuple[float, float, float],
    current_angle_deg: tuple[float, float, float],
    voltage_angle_deg: tuple[float, float, float] = (0.0, -120.0, 120.0),
) -> float:
    """Negative-sequence current unbalance |I2| / |I1| (docs/power-quality.md §1.4, same formula on currents)."""
    return unbalance_factor(*current_phasors(current_a, current_angle_deg, voltage_angle_deg))


def neutral_current_from_phases_a(
    current_a: tuple[float, float, float],
    current_angle_deg: tuple[float, float, float],
    voltage_angle_deg: tuple[float, float, float] = (0.0, -120.0, 120.0),
) -> float:
    """|Ia + Ib + Ic|: the fundamental neutral current a 4-wire system returns (docs/power-quality.md §2.3).

    Triplen harmonics add in the neutral and are not in this sum, so a measured neutral well above it means
    harmonic loading or a wiring fault.
    """
    return abs(sum(current_phasors(current_a, current_angle_deg, voltage_angle_deg)))


def neutral_to_phase_ratio(neutral_a: float, current_a: tuple[float, float, float]) -> float:
    """Measured neutral current over the largest phase current (≥ 1: the neutral carries more than any phase)."""
    largest = max(current_a)
    return neutral_a / largest if largest > 0.0 else 0.0


def neutral_mismatch_a(neutral_measured_a: float, neutral_from_phases_a: float) -> float:
    """Measured neutral minus the phasor sum of the phases (ADE9000 MISMTCH idea, docs/power-quality.md §2.3)."""
    return neutral_measured_a - neutral_from_phases_a
