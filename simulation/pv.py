"""A PV array's clear-sky output: the physical model the community's expected production, the simulations and the
forecasts share.

Irradiance from pvlib's Ineichen clear-sky model (Ineichen & Perez 2002, Solar Energy 73(3)) with the Linke
turbidity climatology pvlib ships, transposed to the array plane with the isotropic sky model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class PvArray:
    """What pvlib needs to model the clear-sky output of an installation."""

    peak_power_kwp: float
    latitude_deg: float
    longitude_deg: float
    tilt_deg: float = 30.0
    azimuth_deg: float = 180.0
    altitude_m: float = 0.0


def clear_sky_energy_kwh(array: PvArray, hour_starts_utc: np.ndarray) -> np.ndarray:
    """Clear-sky energy per hour: kWp x plane-of-array irradiance / 1000 W/m2 at mid-hour.

    Irradiance from pvlib's Ineichen model with the Linke turbidity climatology pvlib ships, transposed to the
    array plane (isotropic sky). Losses are left to the clear-sky index fitted on history, which absorbs them.
    """
    import pvlib

    mid = pd.DatetimeIndex(hour_starts_utc).tz_localize("UTC") + pd.Timedelta(minutes=30)
    location = pvlib.location.Location(
        array.latitude_deg, array.longitude_deg, tz="UTC", altitude=array.altitude_m
    )
    solar = location.get_solarposition(mid)
    clear = location.get_clearsky(mid, model="ineichen", solar_position=solar)
    poa = pvlib.irradiance.get_total_irradiance(
        array.tilt_deg,
        array.azimuth_deg,
        solar["apparent_zenith"],
        solar["azimuth"],
        clear["dni"],
        clear["ghi"],
        clear["dhi"],
    )["poa_global"]
    return np.clip(np.nan_to_num(poa.to_numpy()) * array.peak_power_kwp / 1000.0, 0, None)
