"""Calibration register codes for the ADE9000 from a reference reading (docs/ade9000.md §3, ADE9000 TRM UG-1098).

Gain registers scale a channel by 1 + code / 2**27. With the meter showing `measured` while a reference instrument
shows `expected` on the same signal, and the register currently at `current_code`, the new code makes the meter
read the reference: code = ((1 + current/2**27) · expected / measured − 1) · 2**27 (ADI calibration sketch, CAL).
"""

from __future__ import annotations

import math

GAIN_ONE = 1 << 27
GAIN_MIN = -(1 << 31)
GAIN_MAX = (1 << 31) - 1
F_DSP_HZ = 8000


class CalibrationError(ValueError):
    """A reference reading that cannot give a register value (zero, negative, out of the register's range)."""


def gain_code(expected: float, measured: float, current_code: int = 0) -> int:
    """xIGAIN / xVGAIN / xPGAIN code that turns `measured` into `expected` (ref §3 "Gain regs")."""
    if measured == 0 or expected == 0 or (expected > 0) != (measured > 0):
        raise CalibrationError(f"reference {expected} and meter reading {measured} must be non-zero, same sign")
    factor = (1 + current_code / GAIN_ONE) * expected / measured
    code = round((factor - 1) * GAIN_ONE)
    if not GAIN_MIN <= code <= GAIN_MAX:
        raise CalibrationError(f"correction ×{factor:.4f} is outside the gain register's range (×0 … ×17)")
    return code


def phase_code(phase_error_deg: float, frequency_hz: float = 50.0) -> int:
    """xPHCAL0 code for a current-channel phase error φ (ref §3 "Phase cal"):
    2**27 · (sin(φ − ω) + sin ω) / sin(2ω − φ), ω = 2π·f / 8000."""
    phi = math.radians(phase_error_deg)
    omega = 2 * math.pi * frequency_hz / F_DSP_HZ
    return round(GAIN_ONE * (math.sin(phi - omega) + math.sin(omega)) / math.sin(2 * omega - phi))


def phase_error_deg(active_w: float, reactive_var: float, reference_angle_deg: float) -> float:
    """Phase error of the meter from its P and Q at a known reference angle (e.g. 60° lagging): atan2(Q, P) − ref."""
    return math.degrees(math.atan2(reactive_var, active_w)) - reference_angle_deg
