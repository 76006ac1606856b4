"""Sun position and clear-sky irradiance for many sites over the same hours, without recomputing what they share.

pvlib's `Location.get_solarposition` runs the whole NREL SPA (Reda & Andreas 2004, Solar Energy 76(5),
NREL/TP-560-34302) for every site: the heliocentric Earth position, nutation and aberration terms, which depend
on time only, are ~80 % of its cost. Forecasting 1,000 installations for the same hours repeats them 1,000
times. Here the SPA is split where the algorithm itself splits it:

  * time-only (`_ephemeris`, cached per hour range): apparent sidereal time, geocentric right ascension and
    declination, Earth-Sun distance, and the extraterrestrial irradiance (Spencer 1971, pvlib's default);
  * per site (`geometry`): topocentric parallax, hour angle, elevation with refraction, azimuth: a few numpy
    operations with pvlib.spa's own functions.

The numbers are pvlib's to the last bit (same functions, same constants as `Location.get_solarposition` with
its defaults: pressure from altitude, 12 C, delta_t 67 s, refraction 0.5667 deg), which
tests/forecasting checks. The Linke turbidity climatology is read from pvlib's `LinkeTurbidities.h5` once per
site (`_linke_days`), not once per call. `ClearSkyCache` keeps each site's hourly clear-sky energy, so the
hourly service round computes only the hour it has not seen.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

DELTA_T_S = 67.0  # pvlib spa_python's default TT - UT1
SPA_TEMPERATURE_C = 12.0  # pvlib Location.get_solarposition's default (refraction only)
ATMOS_REFRACT_DEG = 0.5667


@dataclass(frozen=True)
class Geometry:
    """Solar geometry of one site at mid-hour, as numpy arrays (degrees; W/m2 for dni_extra)."""

    apparent_zenith: np.ndarray
    zenith: np.ndarray
    azimuth: np.ndarray
    dni_extra: np.ndarray
    mid: pd.DatetimeIndex


@lru_cache(maxsize=16)
def _ephemeris(first_hour: int, n: int) -> tuple[np.ndarray, ...]:
    """Time-only SPA terms for the mid-hours of [first_hour, first_hour + n) (hours since the epoch, UTC)."""
    import pvlib
    from pvlib import spa

    hours = np.datetime64(first_hour, "h") + np.arange(n).astype("timedelta64[h]")
    mid = pd.DatetimeIndex(hours.astype("datetime64[ns]")).tz_localize("UTC") + pd.Timedelta(minutes=30)
    unixtime = np.asarray(mid.as_unit("ns").asi8, float) / 1e9
    v, alpha, delta = spa.solar_position_numpy(unixtime, 0.0, 0.0, 0.0, 1013.25, SPA_TEMPERATURE_C, DELTA_T_S,
                                               ATMOS_REFRACT_DEG, 1, sst=True)
    jd = spa.julian_day(unixtime)
    jme = spa.julian_ephemeris_millennium(spa.julian_ephemeris_century(spa.julian_ephemeris_day(jd, DELTA_T_S)))
    radius = spa.heliocentric_radius_vector(jme)
    dni_extra = np.asarray(pvlib.irradiance.get_extra_radiation(mid), float)
    for array in (v, alpha, delta, radius, dni_extra):
        array.setflags(write=False)
    return mid, v, alpha, delta, radius, dni_extra


def _hours_key(hour_starts_utc: np.ndarray) -> tuple[int, int] | None:
    """(first hour, count) when the hours are consecutive, else None (then nothing is shared)."""
    hours = np.asarray(hour_starts_utc, "datetime64[h]").astype(np.int64)
    if hours.size and np.array_equal(hours, hours[0] + np.arange(hours.size)):
        return int(hours[0]), int(hours.size)
    return None


def geometry(latitude_deg: float, longitude_deg: float, altitude_m: float, hour_starts_utc: np.ndarray) -> Geometry:
    """Apparent zenith, zenith and azimuth at mid-hour for one site (pvlib's SPA, time-only part shared)."""
    import pvlib
    from pvlib import spa

    key = _hours_key(hour_starts_utc)
    if key is None:  # scattered hours: the plain pvlib path
        mid = pd.DatetimeIndex(np.asarray(hour_starts_utc, "datetime64[ns]")).tz_localize("UTC") + pd.Timedelta(
            minutes=30)
        loc = pvlib.location.Location(latitude_deg, longitude_deg, tz="UTC", altitude=altitude_m)
        sol = loc.get_solarposition(mid)
        return Geometry(sol["apparent_zenith"].to_numpy(), sol["zenith"].to_numpy(), sol["azimuth"].to_numpy(),
                        np.asarray(pvlib.irradiance.get_extra_radiation(mid), float), mid)
    mid, v, alpha, delta, radius, dni_extra = _ephemeris(*key)
    lat, lon, elev = float(latitude_deg), float(longitude_deg), float(altitude_m)
    pressure_mbar = pvlib.atmosphere.alt2pres(elev) / 100.0
    h = spa.local_hour_angle(v, lon, alpha)
    xi = spa.equatorial_horizontal_parallax(radius)
    u = spa.uterm(lat)
    x = spa.xterm(u, lat, elev)
    y = spa.yterm(u, lat, elev)
    delta_alpha = spa.parallax_sun_right_ascension(x, xi, h, delta)
    delta_prime = spa.topocentric_sun_declination(delta, x, y, xi, delta_alpha, h)
    h_prime = spa.topocentric_local_hour_angle(h, delta_alpha)
    e0 = spa.topocentric_elevation_angle_without_atmosphere(lat, delta_prime, h_prime)
    delta_e = spa.atmospheric_refraction_correction(pressure_mbar, SPA_TEMPERATURE_C, e0, ATMOS_REFRACT_DEG)
    e = spa.topocentric_elevation_angle(e0, delta_e)
    gamma = spa.topocentric_astronomers_azimuth(h_prime, delta_prime, lat)
    return Geometry(spa.topocentric_zenith_angle(e), spa.topocentric_zenith_angle(e0),
                    spa.topocentric_azimuth_angle(gamma), dni_extra, mid)


@lru_cache(maxsize=8192)
def _linke_days(latitude_deg: float, longitude_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """The site's Linke turbidity by day of year (index 0 = 1 January), for a common and a leap year: pvlib's
    monthly climatology interpolated as pvlib does, read from the h5 file once per site."""
    from pvlib.clearsky import lookup_linke_turbidity

    common = lookup_linke_turbidity(pd.date_range("2015-01-01", periods=365, freq="D", tz="UTC"),
                                    latitude_deg, longitude_deg).to_numpy()
    leap = lookup_linke_turbidity(pd.date_range("2016-01-01", periods=366, freq="D", tz="UTC"),
                                  latitude_deg, longitude_deg).to_numpy()
    return common, leap


def linke_turbidity(latitude_deg: float, longitude_deg: float, mid: pd.DatetimeIndex) -> np.ndarray:
    common, leap = _linke_days(float(latitude_deg), float(longitude_deg))
    doy = np.asarray(mid.dayofyear) - 1
    return np.where(np.asarray(mid.is_leap_year), leap[doy], common[np.minimum(doy, 364)])


def clear_sky(latitude_deg: float, longitude_deg: float, altitude_m: float, geo: Geometry) -> tuple[np.ndarray, ...]:
    """Ineichen-Perez clear-sky (GHI, DNI, DHI) in W/m2, as Location.get_clearsky(model="ineichen") gives it."""
    import pvlib

    airmass = pvlib.atmosphere.get_relative_airmass(geo.apparent_zenith)
    absolute = pvlib.atmosphere.get_absolute_airmass(airmass, pvlib.atmosphere.alt2pres(altitude_m))
    with np.errstate(divide="ignore", invalid="ignore"):  # sun below the horizon: pvlib zeroes those hours
        sky = pvlib.clearsky.ineichen(geo.apparent_zenith, absolute,
                                      linke_turbidity(latitude_deg, longitude_deg, geo.mid), altitude=altitude_m,
                                      dni_extra=geo.dni_extra)
    return np.asarray(sky["ghi"], float), np.asarray(sky["dni"], float), np.asarray(sky["dhi"], float)


class ClearSkyCache:
    """Each site's hourly clear-sky energy (kWh) over the span last asked for, extended by the hours it lacks.

    The service asks every hour for the same site's clear sky over its history window plus the next 24 h: the
    span moves by one hour, so each round after the first computes one new hour instead of ~1,800. Spans
    before the requested start are dropped (memory stays one window per site); at most `max_sites` sites are
    kept (least recently used first out).
    """

    def __init__(self, compute, max_sites: int = 5000) -> None:
        self._compute = compute  # (site, hour_starts_utc) -> kWh per hour
        self._spans: OrderedDict = OrderedDict()
        self.max_sites = max_sites
        self.hours_computed = 0

    def kwh(self, site, first_hour: np.datetime64, n: int) -> np.ndarray:
        first = np.datetime64(first_hour, "h")
        end = first + np.timedelta64(n, "h")
        span = self._spans.pop(site, None)
        if span is not None:
            s_first, values = span
            s_end = s_first + np.timedelta64(values.size, "h")
            if s_first <= first <= s_end and end > s_end:  # extend at the end
                extra = self._hours(site, s_end, int((end - s_end) // np.timedelta64(1, "h")))
                values = np.concatenate([values, extra])
                s_end = end
            if s_first <= first and end <= s_end:
                lo = int((first - s_first) // np.timedelta64(1, "h"))
                values = values[lo:]
                self._remember(site, first, values)
                return values[:n].copy()
        values = self._hours(site, first, n)
        self._remember(site, first, values)
        return values.copy()

    def _hours(self, site, first: np.datetime64, n: int) -> np.ndarray:
        self.hours_computed += n
        return np.asarray(self._compute(site, first + np.arange(n).astype("timedelta64[h]")), float)

    def _remember(self, site, first: np.datetime64, values: np.ndarray) -> None:
        self._spans[site] = (first, values)
        while len(self._spans) > self.max_sites:
            self._spans.popitem(last=False)
