"""What a home battery is (its limits), what it reports and what the fleet tells it.

Sign convention everywhere in this package: battery power is positive when the battery CHARGES (takes energy from
the home bus or the grid) and negative when it discharges, in kW at the AC terminals. The SunSpec storage models
(124 `storage_basic`, 802 `battery`) use the same charge/discharge split; the bridge converts at its edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BatterySpec:
    """A battery's fixed limits. Efficiencies are one-way (AC → stored, stored → AC); round trip = their product."""

    battery_id: str
    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_min: float = 0.05  # fraction 0..1: a reserve the fleet never uses
    soc_max: float = 1.0

    def __post_init__(self) -> None:
        if not self.capacity_kwh > 0:
            raise ValueError(f"{self.battery_id}: capacity_kwh must be > 0, got {self.capacity_kwh}")
        if self.max_charge_kw < 0 or self.max_discharge_kw < 0:
            raise ValueError(f"{self.battery_id}: power limits must be >= 0")
        for name in ("charge_efficiency", "discharge_efficiency"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{self.battery_id}: {name} must be in (0, 1], got {value}")
        if not 0 <= self.soc_min < self.soc_max <= 1:
            raise ValueError(f"{self.battery_id}: need 0 <= soc_min < soc_max <= 1")

    @classmethod
    def from_round_trip(cls, battery_id: str, capacity_kwh: float, power_kw: float, round_trip: float,
                        **kwargs: float) -> BatterySpec:
        """A battery whose round-trip efficiency is split evenly between charge and discharge."""
        one_way = math.sqrt(round_trip)
        return cls(battery_id, capacity_kwh, power_kw, power_kw, one_way, one_way, **kwargs)

    def power_limits_kw(self, soc: float, period_h: float) -> tuple[float, float]:
        """(lowest, highest) AC power this battery can hold for `period_h` from `soc` (discharge < 0 < charge).

        Both the inverter's power rating and the energy left to soc_min / soc_max bound it, so a setpoint inside
        these limits can never push the battery past its SoC window within the period.
        """
        headroom_kwh = max(0.0, (self.soc_max - soc) * self.capacity_kwh)
        available_kwh = max(0.0, (soc - self.soc_min) * self.capacity_kwh)
        highest = min(self.max_charge_kw, headroom_kwh / (self.charge_efficiency * period_h))
        lowest = -min(self.max_discharge_kw, available_kwh * self.discharge_efficiency / period_h)
        return lowest, highest

    def step_soc(self, soc: float, power_kw: float, period_h: float) -> float:
        """SoC after holding `power_kw` for `period_h` (losses on the way in and out)."""
        if power_kw >= 0:
            stored = power_kw * period_h * self.charge_efficiency
        else:
            stored = power_kw * period_h / self.discharge_efficiency
        return min(1.0, max(0.0, soc + stored / self.capacity_kwh))


@dataclass(frozen=True)
class BatteryReading:
    """What a battery reported: state of charge (fraction 0..1), its AC power and its home's PV power."""

    battery_id: str
    soc: float
    observed_at_s: float
    power_kw: float = 0.0
    pv_kw: float = 0.0


@dataclass(frozen=True)
class Setpoint:
    """The power a battery is told to hold (kW, charge > 0), and why."""

    battery_id: str
    power_kw: float
    reason: str
