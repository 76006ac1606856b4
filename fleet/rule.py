"""The mean state-of-charge rule: every battery steers toward the fleet's capacity-weighted mean SoC.

Per battery i, with capacity C_i, state of charge x_i and the fleet's mean x̄ = ΣC_i·x_i / ΣC_i:

    P_i = P_fleet · C_i / ΣC  +  K · C_i · (x̄ − x_i)          (kW, charge > 0)

The first term shares what the fleet as a whole should do (store the community's surplus, cover its deficit);
the second moves energy from batteries above the mean to those below it, through the grid connection of each
home: a battery below the mean charges from the grid (delivery, L), one above it feeds in (return, T). Because
x̄ is capacity-weighted, Σ C_i·(x̄ − x_i) = 0, so balancing never changes the fleet total. A dead band keeps
batteries near the mean still. Each P_i is then clipped to what the battery can hold for one period (inverter
rating and the energy left to its SoC window), and what clipping removed is handed to batteries with headroom,
so the fleet total is kept whenever the fleet as a whole can carry it.

This is the proportional-around-the-mean law of distributed battery balancing ("communicating vessels"): see
Olshevsky & Tsitsiklis, "Convergence speed in distributed consensus and averaging", SIAM J. Control Optim. 48(1)
2009, and the SoC-balancing solvers of OpenEMS (SolverBySocOptimization) and SimSES (SocBasedPowerDistributor).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from fleet.battery import BatteryReading, BatterySpec, Setpoint

DEFAULT_GAIN_PER_H = 0.5  # closes half of a battery's distance to the mean per hour, before limits
DEFAULT_DEADBAND = 0.02  # SoC fraction: within ±2 points of the mean a battery does not balance


def capacity_weighted_mean(capacity_kwh: np.ndarray, soc: np.ndarray) -> float:
    """x̄ = ΣC_i·x_i / ΣC_i; NaN for an empty fleet."""
    total = float(capacity_kwh.sum())
    return float((capacity_kwh * soc).sum() / total) if total > 0 else math.nan


def balance_power_kw(
    capacity_kwh: np.ndarray,
    soc: np.ndarray,
    lowest_kw: np.ndarray,
    highest_kw: np.ndarray,
    fleet_power_kw: float,
    *,
    gain_per_h: float = DEFAULT_GAIN_PER_H,
    deadband: float = DEFAULT_DEADBAND,
) -> np.ndarray:
    """The rule on arrays (one entry per battery): setpoints in kW, always inside [lowest_kw, highest_kw].

    Vectorised so one cycle for thousands of batteries costs microseconds per battery.
    """
    if capacity_kwh.size == 0:
        return np.zeros(0)
    mean = capacity_weighted_mean(capacity_kwh, soc)
    deviation = mean - soc
    deviation = np.where(np.abs(deviation) < deadband, 0.0, deviation)
    share = capacity_kwh / capacity_kwh.sum()
    power = fleet_power_kw * share + gain_per_h * capacity_kwh * deviation
    power = np.clip(power, lowest_kw, highest_kw)
    # Hand what clipping removed to batteries with headroom in that direction, by capacity, until it is placed
    # or nobody has room (each pass saturates at least one battery, so n passes always suffice).
    target = float(np.clip(fleet_power_kw, lowest_kw.sum(), highest_kw.sum()))
    for _ in range(capacity_kwh.size):
        residual = target - float(power.sum())
        if abs(residual) < 1e-9:
            break
        room = (highest_kw - power) if residual > 0 else (power - lowest_kw)
        open_ = room > 1e-12
        if not open_.any():
            break
        weights = np.where(open_, capacity_kwh, 0.0)
        power = np.clip(power + residual * weights / weights.sum(), lowest_kw, highest_kw)
    return power


@dataclass(frozen=True)
class FleetDecision:
    """One controller cycle: what each live battery is told, the mean it steered to, and who was left out."""

    setpoints: tuple[Setpoint, ...]
    mean_soc: float
    excluded: Mapping[str, str] = field(default_factory=dict)  # battery id -> why it was left out


def mean_soc_setpoints(
    specs: Mapping[str, BatterySpec],
    readings: Mapping[str, BatteryReading],
    *,
    now_s: float,
    fleet_power_kw: float = 0.0,
    period_h: float = 0.25,
    stale_after_s: float = 900.0,
    gain_per_h: float = DEFAULT_GAIN_PER_H,
    deadband: float = DEFAULT_DEADBAND,
) -> FleetDecision:
    """One cycle of the rule over the batteries that reported recently; silent or invalid ones leave the mean.

    A battery is left out (and gets no setpoint, so its own inverter falls back to its local mode when the
    command's hold expires) when it never reported, reported longer than `stale_after_s` ago, reported a SoC
    outside 0..1, or has no known limits.
    """
    excluded: dict[str, str] = {}
    live: list[tuple[BatterySpec, BatteryReading]] = []
    for battery_id in sorted(set(specs) | set(readings)):
        spec, reading = specs.get(battery_id), readings.get(battery_id)
        if spec is None:
            excluded[battery_id] = "no limits known (not provisioned)"
        elif reading is None:
            excluded[battery_id] = "never reported"
        elif now_s - reading.observed_at_s > stale_after_s:
            excluded[battery_id] = f"silent for {now_s - reading.observed_at_s:.0f} s (> {stale_after_s:.0f} s)"
        elif not (isinstance(reading.soc, float | int) and 0.0 <= reading.soc <= 1.0):
            excluded[battery_id] = f"state of charge {reading.soc!r} outside 0..1"
        else:
            live.append((spec, reading))
    if not live:
        return FleetDecision((), math.nan, excluded)
    capacity = np.array([spec.capacity_kwh for spec, _ in live])
    soc = np.array([reading.soc for _, reading in live], float)
    limits = np.array([spec.power_limits_kw(reading.soc, period_h) for spec, reading in live])
    power = balance_power_kw(
        capacity, soc, limits[:, 0], limits[:, 1], fleet_power_kw, gain_per_h=gain_per_h, deadband=deadband
    )
    mean = capacity_weighted_mean(capacity, soc)
    setpoints = tuple(
        Setpoint(spec.battery_id, float(p), _reason(reading.soc, mean, float(p), deadband))
        for (spec, reading), p in zip(live, power, strict=True)
    )
    return FleetDecision(setpoints, mean, excluded)


def _reason(soc: float, mean: float, power_kw: float, deadband: float) -> str:
    side = "below" if soc < mean - deadband else "above" if soc > mean + deadband else "at"
    action = "charge" if power_kw > 1e-6 else "discharge" if power_kw < -1e-6 else "hold"
    return f"SoC {soc:.1%} {side} fleet mean {mean:.1%}: {action} {abs(power_kw):.2f} kW"
