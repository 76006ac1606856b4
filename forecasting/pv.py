"""PV day-ahead: pvlib physics for the installation's plane, times a clear-sky index learned from its own history.

Physics (pvlib, all offline):
  * clear sky: Ineichen-Perez with the Linke turbidity climatology pvlib ships (`LinkeTurbidities.h5`, monthly
    values from the SoDa service; Ineichen & Perez 2002, Solar Energy 73(3));
  * with a weather forecast: its GHI is split into beam and diffuse with the Erbs correlation (Erbs, Klein &
    Duffie 1982, Solar Energy 28(4));
  * plane of array: Hay-Davies transposition for the array's tilt and azimuth;
  * temperature losses: SAPM cell temperature (open rack, glass/polymer) and PVWatts DC power with
    gamma = -0.4 %/K (Dobos 2014, NREL/TP-6A20-62641).
The modelled energy is then scaled by a clear-sky index learned from the installation's own history: the mean
of two estimates (method "blend"), `ensemble_indices` (per hour of day, the median index over 20-, 45- and
90-day windows, moved toward yesterday's daily index by the window's lag-1 autocorrelation) and
`mixture_median_indices` (the median of a persistence/climatology mixture, the MAE-optimal combination of the
two), each with dawn and dusk from yesterday. The index absorbs shading,
soiling, inverter and wiring losses and, without weather, the climatological cloudiness of the season. Every
choice in it was made on the tuning sites only (forecasting.data.PV_TUNING_SITES, bench/forecast_pv_tuning.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

GAMMA_PDC_PER_K = -0.004
DEFAULT_TEMP_AIR_C = 20.0
DEFAULT_WIND_M_S = 1.0


@dataclass(frozen=True)
class PvSite:
    """An installation: where it is and how its array faces (azimuth 180 = south, pvlib's convention)."""

    latitude_deg: float
    longitude_deg: float
    tilt_deg: float = 30.0
    azimuth_deg: float = 180.0
    peak_power_kwp: float = 1.0
    altitude_m: float = 0.0

    def __post_init__(self) -> None:
        if not -90 <= self.latitude_deg <= 90 or not -180 <= self.longitude_deg <= 180:
            raise ValueError(f"latitude/longitude out of range: {self.latitude_deg}, {self.longitude_deg}")
        if not 0 <= self.tilt_deg <= 90:
            raise ValueError(f"tilt_deg must be 0..90, got {self.tilt_deg}")
        if not self.peak_power_kwp > 0:
            raise ValueError(f"peak_power_kwp must be > 0, got {self.peak_power_kwp}")


def _mid_hours(hour_starts_utc: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.asarray(hour_starts_utc, "datetime64[ns]")).tz_localize("UTC") + pd.Timedelta(
        minutes=30
    )


def modelled_kwh(
    site: PvSite,
    hour_starts_utc: np.ndarray,
    *,
    ghi_w_m2: np.ndarray | None = None,
    temp_air_c: np.ndarray | float | None = None,
    wind_m_s: np.ndarray | float | None = None,
) -> np.ndarray:
    """Energy per hour (kWh) the array would make at mid-hour irradiance: clear sky, or from a GHI forecast.

    The sun position and clear sky come from forecasting.sun (pvlib's SPA and Ineichen, the time-only part
    shared between sites); the result equals the plain pvlib Location chain (tests/forecasting checks it).
    """
    import pvlib

    from forecasting import sun

    geo = sun.geometry(site.latitude_deg, site.longitude_deg, site.altitude_m, hour_starts_utc)
    if ghi_w_m2 is None:
        ghi, dni, dhi = sun.clear_sky(site.latitude_deg, site.longitude_deg, site.altitude_m, geo)
    else:
        ghi = np.clip(np.nan_to_num(np.asarray(ghi_w_m2, float)), 0, None)
        split = pvlib.irradiance.erbs(ghi, geo.zenith, geo.mid)
        dni, dhi = np.asarray(split["dni"], float), np.asarray(split["dhi"], float)
    poa = pvlib.irradiance.get_total_irradiance(
        site.tilt_deg, site.azimuth_deg, geo.apparent_zenith, geo.azimuth, dni, ghi, dhi,
        dni_extra=geo.dni_extra, model="haydavies",
    )["poa_global"]
    poa = np.clip(np.nan_to_num(np.asarray(poa, float)), 0.0, None)
    temp_air = DEFAULT_TEMP_AIR_C if temp_air_c is None else temp_air_c
    wind = DEFAULT_WIND_M_S if wind_m_s is None else wind_m_s
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_polymer"]
    cell = pvlib.temperature.sapm_cell(poa, temp_air, wind, **params)
    dc_w = pvlib.pvsystem.pvwatts_dc(poa, cell, site.peak_power_kwp * 1000.0, GAMMA_PDC_PER_K)
    return np.clip(np.nan_to_num(np.asarray(dc_w, float)), 0, None) / 1000.0


def learned_index(obs_days: np.ndarray, model_days: np.ndarray, d: int, window_days: int = 30) -> np.ndarray:
    """Per hour of day, sum(observed)/sum(modelled) over the history window before day d (see module doc).

    Hours whose modelled energy in the window is under 2 % of the window's peak hour take the all-hours ratio,
    so dawn and dusk do not inherit a noisy ratio of two tiny numbers. Missing observations are skipped.
    """
    rows = list(range(max(0, d - window_days), d))
    last_year = d - 365
    if last_year - window_days // 2 >= 0:
        rows += list(range(last_year - window_days // 2, min(last_year + window_days // 2, d)))
    if not rows:
        return np.full(obs_days.shape[1], np.nan)
    obs = obs_days[rows]
    mod = model_days[rows]
    ok = ~(np.isnan(obs) | np.isnan(mod))
    o = np.where(ok, obs, 0.0).sum(axis=0)
    m = np.where(ok, mod, 0.0).sum(axis=0)
    total = m.sum()
    if total <= 0:
        return np.full(obs_days.shape[1], np.nan)
    overall = o.sum() / total
    small = m < 0.02 * m.max()
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(small, overall, o / np.where(m > 0, m, 1.0))
    return np.clip(k, 0.0, 1.5)


def daily_index(obs_days: np.ndarray, model_days: np.ndarray) -> np.ndarray:
    """Clear-sky index of each whole day: sum(observed)/sum(modelled) (NaN where the day has no sun or data)."""
    o = np.nansum(obs_days, axis=1)
    m = np.where(np.isnan(obs_days), 0.0, model_days).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m > 0, o / np.where(m > 0, m, 1.0), np.nan)


def persistence_weight(k_days: np.ndarray) -> float:
    """Lag-1 autocorrelation of the daily clear-sky index in the window, clipped to 0..1.

    It is the weight of the MSE-optimal convex combination of persistence and climatology (Yang 2019, "Making
    reference solar forecasts with climatology, persistence, and their optimal convex combination", Solar
    Energy 193): weather that lasts several days leans on yesterday, changeable weather on the season.
    """
    k = k_days[~np.isnan(k_days)]
    if k.size < 5 or np.ptp(k) < 1e-9:
        return 0.0
    x, y = k[:-1] - k[:-1].mean(), k[1:] - k[1:].mean()  # Pearson's r, as np.corrcoef, without its overhead
    denominator = np.sqrt((x @ x) * (y @ y))
    rho = float(x @ y / denominator) if denominator > 0 else float("nan")
    return float(np.clip(rho, 0.0, 1.0)) if np.isfinite(rho) else 0.0


def blended_index(obs_days: np.ndarray, model_days: np.ndarray, d: int, window_days: int = 30) -> np.ndarray:
    """The index used for day d: the window's hour-of-day shape (learned_index), scaled to the window's *median*
    daily index (the point forecast that minimises absolute error), then moved toward yesterday's daily index by
    the window's own persistence weight: k_h = shape_h x (m + a (k_yesterday - m)) / mean_k."""
    shape = learned_index(obs_days, model_days, d, window_days)
    lo = max(0, d - window_days)
    k_days = daily_index(obs_days[lo:d], model_days[lo:d])
    if k_days.size == 0 or np.isnan(k_days).all():
        return shape
    mean_k = float(np.nanmean(k_days))
    if mean_k <= 0:
        return shape
    target = float(np.nanmedian(k_days))
    if not np.isnan(k_days[-1]):
        target += persistence_weight(k_days) * (k_days[-1] - target)
    return np.clip(shape * target / mean_k, 0.0, 1.5)


WINDOW_DAYS = 45  # chosen on the tuning sites (Miami TMY2, Sand Point TMY3), docs/forecasts.md


def hourly_median_index(obs_days: np.ndarray, model_days: np.ndarray, d: int,
                        window_days: int = WINDOW_DAYS) -> np.ndarray:
    """The index used for day d: per hour of day, the *median* hourly clear-sky index of the window (the
    MAE-optimal point forecast of each hour, so the hour-of-day and season shape are learned together), moved
    toward yesterday's daily index by the window's lag-1 autocorrelation (Yang 2019's convex combination).

    Hours whose modelled energy is under 2 % of the window's peak take the window's overall median. Measured on
    the tuning sites against the earlier ratio-of-sums shape x median daily index (`blended_index`): +15.2 % vs
    +14.5 % (Miami), +11.2 % vs +10.0 % (Sand Point) skill vs persistence.
    """
    lo = max(0, d - window_days)
    obs, mod = obs_days[lo:d], model_days[lo:d]
    if obs.size == 0 or not np.isfinite(obs).any():
        return np.full(obs_days.shape[1], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(mod > 0.02 * np.nanmax(mod), obs / np.where(mod > 0, mod, 1.0), np.nan)
    if not np.isfinite(k).any():
        return np.full(obs_days.shape[1], np.nan)
    overall = float(nanmedian_columns(k.reshape(-1, 1))[0])
    med = nanmedian_columns(k)
    med[np.isnan(med)] = overall
    k_days = daily_index(obs, mod)
    if np.isfinite(k_days).sum() >= 2 and not np.isnan(k_days[-1]):
        med = med + persistence_weight(k_days) * (k_days[-1] - float(nanmedian_columns(k_days.reshape(-1, 1))[0]))
    return np.clip(med, 0.0, 1.5)


def nanmedian_columns(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Median along `axis` over the known (non-NaN) values, NaN where there is none.

    The same numbers as numpy's nanmedian, by one sort (NaN sorts last) instead of its per-column
    masked-array path, which was a fifth of the 1,000-installation benchmark's time."""
    values = np.asarray(values, float)
    ordered = np.sort(values, axis=axis)
    n = np.expand_dims(np.isfinite(values).sum(axis=axis), axis)
    lo = np.take_along_axis(ordered, np.maximum((n - 1) // 2, 0), axis=axis)
    hi = np.take_along_axis(ordered, np.maximum(n // 2, 0), axis=axis)
    return np.squeeze(np.where(n > 0, 0.5 * (lo + hi), np.nan), axis=axis)


def hourly_median_indices(obs_days: np.ndarray, model_days: np.ndarray, days: np.ndarray,
                          window_days: int = WINDOW_DAYS) -> np.ndarray:
    """`hourly_median_index` for each day in `days` at once, shape (len(days), 24): the same numbers, with the
    full windows stacked into one array (one sort for all of them) instead of one small call per day."""
    days = np.asarray(days, int)
    out = np.full((days.size, obs_days.shape[1]), np.nan)
    full = days >= window_days
    for i in np.flatnonzero(~full):
        out[i] = hourly_median_index(obs_days, model_days, int(days[i]), window_days)
    if not full.any():
        return out
    dd = days[full]
    rows = dd[:, None] - window_days + np.arange(window_days)[None, :]
    obs, mod = obs_days[rows], model_days[rows]  # (D, window, 24)
    flat_mod = mod.reshape(dd.size, -1)
    peak = np.nanmax(flat_mod, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(mod > 0.02 * peak[:, None, None], obs / np.where(mod > 0, mod, 1.0), np.nan)
    usable = np.isfinite(obs).reshape(dd.size, -1).any(axis=1) & np.isfinite(k).reshape(dd.size, -1).any(axis=1)
    overall = nanmedian_columns(k.reshape(dd.size, -1), axis=1)
    med = nanmedian_columns(k, axis=1)
    med = np.where(np.isnan(med), overall[:, None], med)
    k_days = daily_index(obs_days, model_days)[rows]  # row-wise, so the same as per window
    k_median = nanmedian_columns(k_days, axis=1)
    for i in range(dd.size):
        kd = k_days[i]
        if np.isfinite(kd).sum() >= 2 and not np.isnan(kd[-1]):
            med[i] = med[i] + persistence_weight(kd) * (kd[-1] - k_median[i])
    med = np.clip(med, 0.0, 1.5)
    med[~usable] = np.nan
    out[full] = med
    return out


ENSEMBLE_WINDOWS = (20, 45, 90)  # chosen on the tuning sites only (bench/forecast_pv_tuning.py)
LOW_SUN_FRACTION = 0.05


def ensemble_indices(obs_days: np.ndarray, model_days: np.ndarray, days: np.ndarray,
                     windows: tuple[int, ...] = ENSEMBLE_WINDOWS) -> np.ndarray:
    """The index used for day d (the method scored in docs/forecasts.md):

      * the median, hour by hour, of `hourly_median_index` over windows of 20, 45 and 90 days: a short window
        follows the season, a long one is steadier, and the median of the three is steadier than any one;
      * hours whose clear-sky energy is under 5 % of day d's clear-sky peak (dawn and dusk, where the clear-sky
        model's timing and horizon errors dominate) take yesterday's index at the same hour instead, which is
        what persistence does best there.

    Chosen on Miami TMY2 and Sand Point TMY3 only: +15.2 % / +13.0 % skill vs persistence there, against
    +15.2 % / +11.2 % for the single 45-day window (bench/forecast_pv_tuning.py prints the table).
    """
    days = np.asarray(days, int)
    k = nanmedian_columns(np.stack([hourly_median_indices(obs_days, model_days, days, w) for w in windows]))
    return _low_sun_from_yesterday(k, obs_days, model_days, days)


def _low_sun_from_yesterday(k: np.ndarray, obs_days: np.ndarray, model_days: np.ndarray,
                            days: np.ndarray) -> np.ndarray:
    """`k` (one row per day of `days`) with the hours under `LOW_SUN_FRACTION` of their day's clear-sky peak
    replaced by yesterday's index at the same hour (clipped to 0-1.5), where yesterday has one; `k` in place."""
    has_yesterday = days >= 1
    d, y = days[has_yesterday], days[has_yesterday] - 1
    today, yesterday = model_days[d], model_days[y]
    peak = np.nanmax(today, axis=1, keepdims=True)
    low = (today < LOW_SUN_FRACTION * peak) & (peak > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        k_yesterday = np.where(yesterday > 0, obs_days[y] / np.where(yesterday > 0, yesterday, 1.0), np.nan)
    k[has_yesterday] = np.where(low & np.isfinite(k_yesterday), np.clip(k_yesterday, 0.0, 1.5), k[has_yesterday])
    return k


def ensemble_index(obs_days: np.ndarray, model_days: np.ndarray, d: int,
                   windows: tuple[int, ...] = ENSEMBLE_WINDOWS) -> np.ndarray:
    """`ensemble_indices` for one day."""
    return ensemble_indices(obs_days, model_days, np.array([d]), windows)[0]


MIXTURE_WEIGHT_SCALE = 0.65  # chosen on the tuning sites only (bench/forecast_pv_tuning.py), among 0.25-1.5


def _sorted_quantile(ordered: np.ndarray, count: np.ndarray, q: np.ndarray) -> np.ndarray:
    """numpy's default (linear) quantile `q` of each column of `ordered` (sorted along axis 1, NaN last), with
    `count` known values per column; NaN where none. `ordered` (D, W, H), `count` (D, H), `q` (D, H)."""
    pos = np.clip(q, 0.0, 1.0) * np.maximum(count - 1, 0)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    a = np.take_along_axis(ordered, lo[:, None, :], axis=1)[:, 0]
    b = np.take_along_axis(ordered, hi[:, None, :], axis=1)[:, 0]
    return np.where(count > 0, a + (pos - lo) * (b - a), np.nan)


def mixture_median_indices(obs_days: np.ndarray, model_days: np.ndarray, days: np.ndarray,
                           windows: tuple[int, ...] = ENSEMBLE_WINDOWS,
                           weight_scale: float = MIXTURE_WEIGHT_SCALE) -> np.ndarray:
    """Per hour, the *median of a mixture*: with probability rho tomorrow's index is yesterday's daily index
    (persistence), else a draw from the window's hourly indices at that hour (climatology).

    The median minimises absolute error, so this is the MAE-optimal combination of the two references where
    Yang 2019's convex combination (`hourly_median_index`) is the MSE-optimal one: for yesterday's index k_y
    above the climatological median the answer is min(k_y, F^-1(0.5 / (1 - rho))), below it
    max(k_y, F^-1((0.5 - rho) / (1 - rho))), and k_y itself once rho >= 0.5. rho is the window's lag-1
    autocorrelation of the daily index times `weight_scale`; the median over the 20/45/90-day windows, and dawn
    and dusk from yesterday, as in `ensemble_indices`. Hours under 2 % of their day's clear-sky peak are left
    out of the window. Chosen on the tuning sites only (bench/forecast_pv_tuning.py)."""
    days = np.asarray(days, int)
    n_hours = obs_days.shape[1]
    peak = np.nanmax(model_days, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(model_days > 0.02 * peak, obs_days / np.where(model_days > 0, model_days, 1.0), np.nan)
    kd = daily_index(obs_days, model_days)
    estimates = []
    for window in windows:
        est = np.full((days.size, n_hours), np.nan)
        lo = np.maximum(0, days - window)
        for width in np.unique(days - lo):  # partial windows at the start of a series, then full ones
            sel = np.flatnonzero(days - lo == width)
            if width < 2:
                continue
            rows = days[sel, None] - width + np.arange(width)[None, :]
            ordered = np.sort(k[rows], axis=1)
            count = np.isfinite(k[rows]).sum(axis=1)
            rho = weight_scale * np.array([persistence_weight(kd[r]) for r in rows])[:, None] * np.ones(n_hours)
            ky = kd[days[sel] - 1][:, None] * np.ones(n_hours)
            median = _sorted_quantile(ordered, count, np.full(rho.shape, 0.5))
            with np.errstate(invalid="ignore", divide="ignore"):
                above = np.minimum(_sorted_quantile(ordered, count, 0.5 / (1 - np.minimum(rho, 0.5))), ky)
                below = np.maximum(_sorted_quantile(ordered, count, (0.5 - rho) / (1 - np.minimum(rho, 0.5))), ky)
            x = np.where(rho >= 0.5, ky, np.where(ky >= median, above, below))
            est[sel] = np.where(np.isfinite(ky), x, median)
            est[sel] = np.where(count > 0, est[sel], np.nan)
        estimates.append(est)
    with np.errstate(invalid="ignore"):
        out = np.clip(nanmedian_columns(np.stack(estimates)), 0.0, 1.5)
    out = _low_sun_from_yesterday(out, obs_days, model_days, days)
    return np.where(np.isfinite(out), out, 0.0)


PV_METHODS = {
    "blend": "pvlib clear sky x the mean of two clear-sky indices: the median of 20/45/90-day hourly medians "
             "(persistence-blended) and the MAE-optimal persistence/climatology mixture median; dawn/dusk from "
             "yesterday, no weather",
    "ensemble": "pvlib clear sky x median of 20/45/90-day hourly median clear-sky indices "
                "(persistence-blended; dawn/dusk from yesterday), no weather",
    "hourly_median": "pvlib clear sky x 45-day hourly median clear-sky index (persistence-blended), no weather",
    "blended": "pvlib clear sky x hour-of-day ratio shape x median daily index (persistence-blended)",
    "learned": "pvlib clear sky x hour-of-day ratio of sums",
}


def pv_walk_forward(obs_days: np.ndarray, model_days: np.ndarray, *, window_days: int | None = None,
                    first_day: int = 1, method: str = "blend") -> np.ndarray:
    """Forecast of every day from `first_day` on, each from the history before it only (NaN before).

    `method`: "blend" (used: the mean of "ensemble" and "mixture"), "ensemble" (the method before it, kept for
    the old-vs-new figure), "mixture", "hourly_median",
    "blended" or "learned" (earlier ones). `window_days` applies to the single-window methods."""
    out = np.full(obs_days.shape, np.nan)
    if method in ("ensemble", "mixture", "blend"):
        days = np.arange(first_day, obs_days.shape[0])
        if days.size:
            parts = []
            if method != "mixture":
                parts.append(ensemble_indices(obs_days, model_days, days))
            if method != "ensemble":
                parts.append(mixture_median_indices(obs_days, model_days, days))
            out[days] = sum(parts) / len(parts) * model_days[days]
        return out
    single = {"hourly_median": hourly_median_index, "blended": blended_index, "learned": learned_index}[method]
    window = window_days or (WINDOW_DAYS if method == "hourly_median" else 30)
    for d in range(first_day, obs_days.shape[0]):
        out[d] = single(obs_days, model_days, d, window) * model_days[d]
    return out


def performance_ratio(obs_days: np.ndarray, clear_days: np.ndarray) -> float:
    """The system's own loss factor: the upper decile of its hourly clear-sky indices (clouds only lower it).

    Only hours above 10 % of the window's clear-sky peak count, so low-sun hours (where transposition errors
    dominate) do not set it.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(clear_days > 0.1 * np.nanmax(clear_days), obs_days / clear_days, np.nan)
    return float(np.nanpercentile(ratios, 90)) if np.isfinite(ratios).any() else 1.0


def pv_walk_forward_weather(obs_days: np.ndarray, clear_days: np.ndarray, weather_days: np.ndarray, *,
                            window_days: int = 30, first_day: int = 1) -> np.ndarray:
    """Walk-forward with a weather forecast: modelled-from-forecast energy x the window's performance ratio."""
    out = np.full(obs_days.shape, np.nan)
    for d in range(first_day, obs_days.shape[0]):
        lo = max(0, d - window_days)
        out[d] = weather_days[d] * performance_ratio(obs_days[lo:d], clear_days[lo:d])
    return out
