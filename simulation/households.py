"""A simulated community with realistic hourly shapes, for the demo, benchmarks, examples, the fleet simulation
and the forecasts' held-out data.

Households are one of three archetypes (working away in the day, at home in the day, family with a midday peak),
with winter-heavier load, weekend shifts and lognormal noise; the PV is pvlib's clear-sky output of a south
array near Madrid times a day-by-day cloud factor. Seeds make every run the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kernel.hours import year_hour_starts_utc
from simulation.pv import PvArray, clear_sky_energy_kwh

# Relative load per local hour (0..23) for each archetype; scaled to each member's yearly consumption.
_SHAPES = {
    "away": [3, 2, 2, 2, 2, 3, 6, 9, 7, 3, 3, 3, 3, 4, 4, 3, 4, 6, 9, 12, 13, 11, 8, 5],
    "home": [3, 2, 2, 2, 2, 3, 4, 6, 7, 7, 7, 8, 9, 9, 8, 7, 7, 7, 8, 10, 11, 10, 7, 4],
    "family": [3, 2, 2, 2, 2, 3, 7, 10, 6, 4, 5, 6, 9, 10, 7, 5, 6, 8, 10, 12, 12, 10, 7, 4],
}

MADRID_ROOF = PvArray(
    peak_power_kwp=1.0, latitude_deg=40.42, longitude_deg=-3.70, tilt_deg=30.0, azimuth_deg=180.0
)


@dataclass(frozen=True)
class SimulatedCommunity:
    hour_starts_utc: np.ndarray
    consumption_kwh: np.ndarray  # members x hours
    generation_kwh: np.ndarray  # hours
    archetypes: tuple[str, ...]
    investment_eur: np.ndarray


def simulate(
    n_members: int,
    year: int,
    *,
    seed: int = 0,
    weather_seed: int | None = None,
    tz: str = "Europe/Madrid",
    array: PvArray = MADRID_ROOF,
    yearly_kwh_range: tuple[float, float] = (2000.0, 5500.0),
    kwp_per_member: float = 1.5,
) -> SimulatedCommunity:
    """One year of hourly consumption for `n_members` and of generation for `array` with kwp_per_member x n kWp.

    1.5 kWp per member yields about half of the members' yearly consumption: the usual size of a shared roof.

    `seed` fixes the households (archetype, yearly kWh, investment); `weather_seed`, when given, draws the
    hour-to-hour noise, spikes and clouds from its own stream, so two years of the *same* community can be
    simulated independently (history and an evaluation year that share no random draw). Without it, one stream
    draws everything, as before.
    """
    rng = np.random.default_rng(seed)
    noise_rng = rng if weather_seed is None else np.random.default_rng([weather_seed, seed])
    hours = year_hour_starts_utc(year, tz)
    local = pd.DatetimeIndex(hours).tz_localize("UTC").tz_convert(tz)
    hod = np.asarray(local.hour)
    weekend = np.asarray(local.dayofweek >= 5)
    doy = np.asarray(local.dayofyear)
    season = 1.0 + 0.25 * np.cos(2 * np.pi * (doy - 15) / 365.25)  # winter-heavier

    names = list(_SHAPES)
    archetypes = tuple(names[k] for k in rng.integers(0, len(names), n_members))
    yearly = rng.uniform(*yearly_kwh_range, n_members)
    consumption = np.empty((n_members, hours.size))
    for i, kind in enumerate(archetypes):
        shape = np.asarray(_SHAPES[kind], float)
        weekend_shape = np.asarray(_SHAPES["home"], float)
        base = np.where(weekend, weekend_shape[hod], shape[hod]) * season
        noise = noise_rng.lognormal(mean=-0.08, sigma=0.4, size=hours.size)
        spikes = (noise_rng.random(hours.size) < 0.03) * noise_rng.uniform(1.0, 3.0, hours.size) * base.mean()
        load = base * noise + spikes
        consumption[i] = load / load.sum() * yearly[i]

    scaled = PvArray(
        kwp_per_member * n_members, array.latitude_deg, array.longitude_deg, array.tilt_deg, array.azimuth_deg
    )
    clear = clear_sky_energy_kwh(scaled, hours)
    days = (hours - hours[0]).astype("timedelta64[D]").astype(int)
    cloud_by_day = np.clip(noise_rng.beta(5, 1.6, days.max() + 1), 0.05, 1.0)
    generation = clear * 0.82 * cloud_by_day[days] * noise_rng.uniform(0.9, 1.0, hours.size)
    investment = np.round(rng.uniform(500, 3000, n_members), -1)
    return SimulatedCommunity(hours, consumption, generation, archetypes, investment)
