"""`energytwin meter calibrate`: register codes against hand-computed values, and a closed loop on the model."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from firmware.calibration import CalibrationError, gain_code, phase_code, phase_error_deg
from firmware.commands import meter as meter_group
from firmware.emulator.ade9000_model import ADE9000Model, BoardCalibration, PhaseInput
from firmware.emulator.harness import MeterConfig, MeterHarness


def test_gain_codes_hand_computed() -> None:
    # 230 V reference, meter shows 229 V: (230/229 - 1) · 2**27 = 2**27 / 229 = 586,103.6 -> 586,104
    assert gain_code(230.0, 229.0) == 586_104
    # Meter ran with IGAIN = 1000 and shows 10.05 A for 10 A: 134,218,728 · 10/10.05 - 2**27 = -666,754.9
    assert gain_code(10.0, 10.05, 1000) == -666_755
    assert gain_code(100.0, 100.0, 1234) == 1234  # already right: unchanged
    with pytest.raises(CalibrationError):
        gain_code(230.0, 0.0)
    with pytest.raises(CalibrationError):
        gain_code(230.0, 5.0)  # ×46: beyond the register


def test_phase_code_hand_computed() -> None:
    # Meter at a 60° lagging load shows P = 1150 W, Q = 1995 var: atan2(1995, 1150) = 60.0391° -> φ = +0.0391°
    error = phase_error_deg(1150.0, 1995.0, 60.0)
    assert error == pytest.approx(0.039084, abs=1e-6)
    # ω = 2π·50/8000 = 0.0392699 rad; small angles: code ≈ 2**27 · φ / (2 sin ω) = 1,166,000 (±1 %)
    code = phase_code(error, 50.0)
    assert code == 1_176_234
    assert code == pytest.approx(2**27 * math.radians(error) / (2 * math.sin(2 * math.pi * 50 / 8000)), rel=0.01)
    assert phase_code(0.0) == 0


def test_cli_prints_config_lines() -> None:
    result = CliRunner().invoke(
        meter_group,
        ["calibrate", "--phase", "2", "--ref-voltage", "230", "--meter-voltage", "229", "--ref-current", "10",
         "--meter-current", "10.05", "--igain", "1000"],
    )
    assert result.exit_code == 0, result.output
    assert "VGAIN[1] = 586104" in result.output and "IGAIN[1] = -666755" in result.output
    bad = CliRunner().invoke(meter_group, ["calibrate", "--phase", "1", "--ref-voltage", "230"])
    assert bad.exit_code != 0 and "both" in bad.output


def test_calibrated_codes_make_the_meter_read_the_reference() -> None:
    # The real board's divider is 1.2 % off and its CT 0.8 % off what config.py assumes.
    real = BoardCalibration(current_tf_v_per_a=0.00408 * 0.992, voltage_tf_v_per_v=0.00125 * 1.012)
    model = ADE9000Model(real)
    model.set_phase(0, PhaseInput(230.0, 10.0))
    with MeterHarness(MeterConfig(device_id="meter-cal"), model) as h:
        h.boot()
        h.cycle(1.0)
        shown = h.published[-1].payload
    vgain = gain_code(230.0, shown["v"]["L1"])
    igain = gain_code(10.0, shown["i"]["L1"])
    model = ADE9000Model(real)
    model.set_phase(0, PhaseInput(230.0, 10.0))
    config = MeterConfig(device_id="meter-cal", vgain=(vgain, 0, 0), igain=(igain, 0, 0))
    with MeterHarness(config, model) as h:
        h.boot()
        h.cycle(1.0)
        doc = h.published[-1].payload
    assert shown["v"]["L1"] == pytest.approx(230.0 * 1.012, abs=0.01)
    assert doc["v"]["L1"] == pytest.approx(230.0, abs=0.002)
    assert doc["i"]["L1"] == pytest.approx(10.0, abs=0.0002)
    assert doc["p"]["L1"] == pytest.approx(2300.0, abs=0.1)  # P follows from the V and I gains
