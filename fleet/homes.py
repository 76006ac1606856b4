"""Simulated homes for the fleet study: hourly load and PV per home, and a battery per home.

Loads come from the project's community simulation (three household archetypes with seasonal, weekday and noise
structure); PV is pvlib's clear-sky output of a south-facing array near Madrid times a day-by-day cloud factor,
per kWp, scaled to each home's array. Homes differ on purpose (some without PV, arrays and batteries of several
sizes), because that is where sharing between batteries matters. Seeds make every run identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fleet.battery import BatterySpec
from simulation.households import simulate


@dataclass(frozen=True)
class Homes:
    """N homes over T periods: load and PV in kWh per period, one battery each."""

    period_h: float
    load_kwh: np.ndarray  # homes x periods
    pv_kwh: np.ndarray  # homes x periods
    pv_kwp: np.ndarray  # homes
    batteries: tuple[BatterySpec, ...]

    @property
    def n_homes(self) -> int:
        return self.load_kwh.shape[0]

    @property
    def n_periods(self) -> int:
        return self.load_kwh.shape[1]


def simulated_homes(n_homes: int, days: int = 365, *, seed: int = 0, year: int = 2025,
                    no_pv_share: float = 0.25) -> Homes:
    """`n_homes` homes for `days` days (hourly) from 1 January of `year`."""
    if n_homes < 1:
        raise ValueError("need at least one home")
    if not 1 <= days <= 365:
        raise ValueError("days must be 1..365")
    community = simulate(n_homes, year, seed=seed, kwp_per_member=1.0)
    periods = days * 24
    rng = np.random.default_rng([seed, 20])
    per_kwp = community.generation_kwh[:periods] / n_homes
    kwp = np.where(rng.random(n_homes) < no_pv_share, 0.0, np.round(rng.uniform(2.0, 6.0, n_homes), 1))
    pv = kwp[:, None] * per_kwp[None, :] * rng.uniform(0.95, 1.05, (n_homes, 1))
    capacity = rng.choice([5.0, 7.5, 10.0, 13.5], n_homes)
    power = np.minimum(capacity / 2.0, 5.0)
    round_trip = rng.uniform(0.88, 0.94, n_homes)
    batteries = tuple(
        BatterySpec.from_round_trip(f"battery-{i + 1:03d}", float(capacity[i]), float(power[i]),
                                    float(round_trip[i]))
        for i in range(n_homes)
    )
    return Homes(1.0, community.consumption_kwh[:, :periods], pv, kwp, batteries)
