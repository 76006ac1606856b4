"""The data forecasts are scored on, all offline: pvlib's bundled weather years and the project's own simulation.

  * PV, held out: the TMY3 year pvlib ships for Greensboro, NC (`723170TYA.CSV`, NREL TMY3: twelve real months
    of measured-model irradiance). "Observed" PV is that irradiance through the same pvlib chain the forecaster
    uses, with DNI/DHI from the file (not Erbs) and an 86 % system factor the forecaster is not told.
    Every PV tuning choice (windows, median, persistence blend, dawn/dusk rule) was made on the two TUNING
    sites only, Miami TMY2 (`12839.tm2`) and Sand Point AK TMY3 (`703165TY.csv`): `PV_TUNING_SITES`,
    bench/forecast_pv_tuning.py. The held-out site is scored by `energytwin forecast score`, never by tuning.
  * Weather forecast stand-in: the held-out GHI times a lognormal error per day (sigma 0.30) and per hour
    (sigma 0.15), capped at 105 % of clear sky: roughly the 20-40 % relative MAE of day-ahead NWP GHI at
    mid-latitude sites (Lorenz et al. 2009, IEEE JSTARS 2(1)). It is noisier on cloudy days, as NWP is.
  * Load: simulation/households.py households (Madrid), 2024 and 2025 as history, 2026 held out, each year with
    its own weather seed so no random draw is shared.
  * Price: no market data ships with any package here, so the price series is SYNTHETIC, generated below from
    a stated model (daily level random walk, Spanish-market-like daily shape, solar dip driven by the same
    simulated PV, weekend/holiday discount, hourly noise). Scores on it say the method works on a series of
    that shape, not what it would score on OMIE prices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting.baselines import as_days
from forecasting.calendar import day_dates, day_types
from forecasting.pv import PvSite, modelled_kwh

SYSTEM_FACTOR = 0.86
MADRID_OFFSET_H = 1  # day blocks start at 00:00 CET (standard time, no DST)


@dataclass
class Dataset:
    """One scored series as day blocks, with what the models may use beside it."""

    name: str
    unit: str
    first_hour_utc: np.datetime64
    days: np.ndarray  # (n_days, 24)
    utc_offset_h: int
    held_out_from: int  # first held-out day index
    validation_from: int  # first validation day (model choice), before held_out_from
    extra: dict = field(default_factory=dict)

    @property
    def dates(self) -> pd.DatetimeIndex:
        return day_dates(self.first_hour_utc, self.days.shape[0], self.utc_offset_h)

    def period(self, start: int, stop: int | None = None) -> str:
        dates = self.dates
        stop = dates.size if stop is None else stop
        return f"{dates[start].date()}/{dates[stop - 1].date()}"


def _pvlib_data(name: str) -> Path:
    import pvlib

    return Path(pvlib.__file__).parent / "data" / name


@cache
def tmy3_site() -> tuple[PvSite, pd.DataFrame, int]:
    """Greensboro TMY3 as (site, hourly frame indexed by hour start UTC, utc offset)."""
    from pvlib.iotools import read_tmy3

    frame, meta = read_tmy3(_pvlib_data("723170TYA.CSV"), map_variables=True, coerce_year=2026)
    frame.index = (frame.index - pd.Timedelta(hours=1)).tz_convert("UTC")  # TMY rows are hour-ending
    site = PvSite(meta["latitude"], meta["longitude"], 25.0, 180.0, 5.0, meta["altitude"])
    return site, frame, int(meta["TZ"])


@cache
def tmy2_site() -> tuple[PvSite, pd.DataFrame, int]:
    """Miami TMY2 (tuning only)."""
    from pvlib.iotools import read_tmy2

    frame, meta = read_tmy2(_pvlib_data("12839.tm2"))
    frame = frame.rename(columns={"GHI": "ghi", "DNI": "dni", "DHI": "dhi", "DryBulb": "temp_air", "Wspd": "wind_speed"})
    frame.index = pd.date_range("2026-01-01", periods=len(frame), freq="h", tz=f"Etc/GMT+{-int(meta['TZ'])}").tz_convert("UTC")
    frame["temp_air"] = frame["temp_air"] / 10.0 if frame["temp_air"].abs().max() > 60 else frame["temp_air"]
    frame["wind_speed"] = frame["wind_speed"] / 10.0 if frame["wind_speed"].max() > 40 else frame["wind_speed"]
    site = PvSite(meta["latitude"], meta["longitude"], 25.0, 180.0, 5.0, meta["altitude"])
    return site, frame, int(meta["TZ"])


@cache
def sand_point_site() -> tuple[PvSite, pd.DataFrame, int]:
    """Sand Point, Alaska TMY3 (tuning only): a cloudy, changeable climate beside Miami's sunny one."""
    from pvlib.iotools import read_tmy3

    frame, meta = read_tmy3(_pvlib_data("703165TY.csv"), map_variables=True, coerce_year=2026)
    frame.index = (frame.index - pd.Timedelta(hours=1)).tz_convert("UTC")
    site = PvSite(meta["latitude"], meta["longitude"], 25.0, 180.0, 5.0, meta["altitude"])
    return site, frame, int(meta["TZ"])


PV_HELD_OUT = "held_out"
PV_TUNING_SITES = ("miami", "sand_point")  # the only PV data any tuning choice has seen
_PV_SITES = {"held_out": (tmy3_site, "Greensboro NC TMY3 (pvlib 723170TYA.CSV)"),
             "miami": (tmy2_site, "Miami FL TMY2 (pvlib 12839.tm2)"),
             "tuning": (tmy2_site, "Miami FL TMY2 (pvlib 12839.tm2)"),
             "sand_point": (sand_point_site, "Sand Point AK TMY3 (pvlib 703165TY.csv)")}


def _observed_pv(site: PvSite, frame: pd.DataFrame) -> np.ndarray:
    import pvlib

    mid = frame.index + pd.Timedelta(minutes=30)
    loc = pvlib.location.Location(site.latitude_deg, site.longitude_deg, altitude=site.altitude_m)
    sol = loc.get_solarposition(mid)
    poa = pvlib.irradiance.get_total_irradiance(
        site.tilt_deg, site.azimuth_deg, sol["apparent_zenith"], sol["azimuth"], frame["dni"].to_numpy(),
        frame["ghi"].to_numpy(), frame["dhi"].to_numpy(), dni_extra=pvlib.irradiance.get_extra_radiation(mid),
        model="haydavies",
    )["poa_global"].fillna(0).clip(lower=0)
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_polymer"]
    cell = pvlib.temperature.sapm_cell(poa, frame["temp_air"].to_numpy(), frame["wind_speed"].to_numpy(), **params)
    dc = pvlib.pvsystem.pvwatts_dc(poa, cell, site.peak_power_kwp * 1000, -0.004)
    return np.clip(np.nan_to_num(np.asarray(dc, float)), 0, None) / 1000 * SYSTEM_FACTOR


def noisy_weather(ghi: np.ndarray, clear_ghi: np.ndarray, seed: int, sigma_day: float = 0.30,
                  sigma_hour: float = 0.15) -> np.ndarray:
    """The NWP stand-in described in the module docstring."""
    rng = np.random.default_rng(seed)
    n_days = ghi.size // 24
    factor = np.exp(np.repeat(rng.normal(0, sigma_day, n_days), 24) + rng.normal(0, sigma_hour, ghi.size))
    return np.minimum(ghi * factor, 1.05 * clear_ghi)


def pv_dataset(which: str = "held_out", weather_seed: int = 2126) -> Dataset:
    """PV on a TMY year: observed, clear-sky model and weather-forecast model as day blocks.

    `which`: "held_out" (Greensboro, scored only) or one of PV_TUNING_SITES."""
    import pvlib

    if which not in _PV_SITES:
        raise ValueError(f"PV data set must be one of {sorted(_PV_SITES)}, got {which!r}")
    loader, name = _PV_SITES[which]
    site, frame, tz = loader()
    hours = frame.index.tz_convert(None).to_numpy().astype("datetime64[h]")
    observed = _observed_pv(site, frame)
    clear = modelled_kwh(site, hours)
    loc = pvlib.location.Location(site.latitude_deg, site.longitude_deg, altitude=site.altitude_m)
    clear_ghi = loc.get_clearsky(frame.index + pd.Timedelta(minutes=30), model="ineichen")["ghi"].to_numpy()
    ghi_fc = noisy_weather(frame["ghi"].to_numpy(float), clear_ghi, weather_seed)
    weather = modelled_kwh(site, hours, ghi_w_m2=ghi_fc, temp_air_c=frame["temp_air"].to_numpy(float))
    return Dataset(name, "kWh", hours[0], as_days(observed), tz, held_out_from=31, validation_from=31,
                   extra={"site": site, "clear": as_days(clear), "weather": as_days(weather)})


LOAD_MEMBERS = 4
LOAD_SEED = 7


@cache
def _community(year: int):
    from simulation.households import simulate

    return simulate(LOAD_MEMBERS, year, seed=LOAD_SEED, weather_seed=year)


def load_dataset(member: int = 0) -> Dataset:
    """One simulated member's hourly load, 2024-2026; 2025 validates the model choice, 2026 is held out."""
    years = (2024, 2025, 2026)
    sims = [_community(y) for y in years]
    hours = np.concatenate([s.hour_starts_utc for s in sims])
    load = np.concatenate([s.consumption_kwh[member] for s in sims])
    n24 = load.size // 24 * 24
    ds = Dataset(f"simulated household {member} (simulation/households.py, seed {LOAD_SEED})", "kWh",
                 hours[0].astype("datetime64[h]"), as_days(load[:n24]), MADRID_OFFSET_H, 0, 0)
    dates = ds.dates
    ds.validation_from = int(np.flatnonzero(dates.year == 2025)[0])
    ds.held_out_from = int(np.flatnonzero(dates.year == 2026)[0])
    return ds


def synthetic_price_eur_mwh(hours_utc: np.ndarray, pv_kwh: np.ndarray, clear_kwh: np.ndarray,
                            seed: int = 31) -> np.ndarray:
    """Hourly day-ahead-like prices (EUR/MWh); the model is the module docstring's, parameters below.

    level_d = mu(day of year) x exp(x_d), x_d = 0.9 x_{d-1} + N(0, 0.10)     (gas/hydro regime wanders)
    mu = 70 + 20 cos(2 pi (doy - 15)/365.25) - 15 exp(-((doy - 120)/30)^2) (winter high, spring low)
    shape: +15 at 08-10 h, +25 at 19-22 h, -10 at 02-05 h local; solar dip -45 x PV/clear-sky x clear-sky shape
    weekends and national holidays x 0.85; hourly AR(1) noise phi 0.7, sigma 5; floored at -5.
    """
    rng = np.random.default_rng(seed)
    local = pd.DatetimeIndex(hours_utc).tz_localize("UTC").tz_convert("Europe/Madrid")
    n = hours_utc.size
    day = (np.arange(n) // 24)
    n_days = day.max() + 1
    x = np.zeros(n_days)
    for d in range(1, n_days):
        x[d] = 0.9 * x[d - 1] + rng.normal(0, 0.10)
    doy = np.asarray(local.dayofyear)
    mu = 70 + 20 * np.cos(2 * np.pi * (doy - 15) / 365.25) - 15 * np.exp(-(((doy - 120) / 30) ** 2))
    hod = np.asarray(local.hour)
    shape = 15 * np.isin(hod, [8, 9, 10]) + 25 * np.isin(hod, [19, 20, 21, 22]) - 10 * np.isin(hod, [2, 3, 4, 5])
    peak = np.maximum(clear_kwh.reshape(-1, 24).max(axis=1), 1e-9)[day]
    solar = -45 * pv_kwh / peak
    dates = pd.DatetimeIndex(local.normalize().tz_localize(None))
    off = np.asarray(day_types(dates) > 0)
    noise = np.zeros(n)
    for k in range(1, n):
        noise[k] = 0.7 * noise[k - 1] + rng.normal(0, 5)
    price = (mu * np.exp(x[day]) + shape + solar) * np.where(off, 0.85, 1.0) + noise
    return np.maximum(price, -5.0)


def price_dataset() -> Dataset:
    """Synthetic hourly prices 2024-2026 over the simulated community's PV; 2025 validation, 2026 held out."""
    years = (2024, 2025, 2026)
    sims = [_community(y) for y in years]
    hours = np.concatenate([s.hour_starts_utc for s in sims])
    pv = np.concatenate([s.generation_kwh for s in sims])
    from simulation.households import MADRID_ROOF
    from simulation.pv import clear_sky_energy_kwh

    clear = clear_sky_energy_kwh(MADRID_ROOF, hours) * LOAD_MEMBERS * 1.5
    price = synthetic_price_eur_mwh(hours, pv, clear)
    n24 = price.size // 24 * 24
    ds = Dataset("synthetic day-ahead price (forecasting/data.py model)", "EUR/MWh",
                 hours[0].astype("datetime64[h]"), as_days(price[:n24]), MADRID_OFFSET_H, 0, 0)
    dates = ds.dates
    ds.validation_from = int(np.flatnonzero(dates.year == 2025)[0])
    ds.held_out_from = int(np.flatnonzero(dates.year == 2026)[0])
    return ds
