"""`energytwin meter …`: helpers for engineers commissioning a meter."""

from __future__ import annotations

import click

from firmware.calibration import CalibrationError, gain_code, phase_code, phase_error_deg


@click.group()
def meter() -> None:
    """Meter helpers: calibrate gain registers from a reference reading."""


@meter.command()
@click.option("--phase", type=click.IntRange(1, 3), required=True, help="Phase calibrated: 1, 2 or 3 (L1..L3).")
@click.option("--ref-voltage", type=float, help="Reference instrument: RMS voltage, V.")
@click.option("--meter-voltage", type=float, help="The meter's published voltage `v` for that phase, V.")
@click.option("--ref-current", type=float, help="Reference: RMS current, A.")
@click.option("--meter-current", type=float, help="The meter's current `i`, A.")
@click.option("--ref-power", type=float, help="Reference: active power, W (at unity power factor).")
@click.option("--meter-power", type=float, help="The meter's active power `p`, W.")
@click.option("--ref-angle", type=float, help="Known V→I angle of the reference load, degrees (e.g. 60).")
@click.option("--meter-reactive", type=float, help="The meter's reactive power `q` at --ref-angle, var.")
@click.option("--meter-active", type=float, help="The meter's active power `p` at --ref-angle, W.")
@click.option("--frequency", type=float, default=50.0, show_default=True, help="Line frequency, Hz.")
@click.option("--vgain", type=int, default=0, show_default=True, help="VGAIN code the meter ran with.")
@click.option("--igain", type=int, default=0, show_default=True, help="IGAIN code the meter ran with.")
@click.option("--pgain", type=int, default=0, show_default=True, help="PGAIN code the meter ran with.")
def calibrate(phase: int, ref_voltage: float | None, meter_voltage: float | None, ref_current: float | None,
              meter_current: float | None, ref_power: float | None, meter_power: float | None,
              ref_angle: float | None, meter_reactive: float | None, meter_active: float | None, frequency: float,
              vgain: int, igain: int, pgain: int) -> None:
    """Compute ADE9000 gain/phase register codes for one phase and print the config.py values.

    Order (docs/firmware.md): voltage and current gains first, then power gain at unity power factor with the new
    V/I gains applied, then phase at a lagging load.
    """
    index = phase - 1
    lines: list[str] = []
    try:
        pairs = (("VGAIN", ref_voltage, meter_voltage, vgain), ("IGAIN", ref_current, meter_current, igain),
                 ("PGAIN", ref_power, meter_power, pgain))
        for name, expected, measured, current in pairs:
            if expected is None and measured is None:
                continue
            if expected is None or measured is None:
                raise click.UsageError(f"{name}: give both the reference and the meter reading")
            code = gain_code(expected, measured, current)
            lines.append(f"{name}[{index}] = {code}  # ×{1 + code / (1 << 27):.6f}, was {current}")
        if ref_angle is not None:
            if meter_reactive is None or meter_active is None:
                raise click.UsageError("phase: give --meter-active and --meter-reactive measured at --ref-angle")
            error = phase_error_deg(meter_active, meter_reactive, ref_angle)
            lines.append(f"PHCAL[{index}] = {phase_code(error, frequency)}  # phase error {error:+.4f}°")
    except CalibrationError as exc:
        raise click.ClickException(str(exc)) from exc
    if not lines:
        raise click.UsageError("nothing to calibrate: give a reference and a meter reading")
    click.echo(f"# L{phase}: put these codes into the tuples of the meter's config.py (index {index} = L{phase})")
    for line in lines:
        click.echo(line)
