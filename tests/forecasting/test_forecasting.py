"""Forecasting: hand-checked pvlib pieces, baseline math, the fallback rule, the calendar."""

from __future__ import annotations

from datetime import UTC

import numpy as np
import pytest

from forecasting import baselines as b
from forecasting import pv
from forecasting.calendar import SATURDAY, SUNDAY_OR_HOLIDAY, WORKDAY, day_types
from forecasting.profiles import profile_walk_forward

MADRID = pv.PvSite(40.42, -3.70, tilt_deg=30, azimuth_deg=180, peak_power_kwp=1.0, altitude_m=650)


def test_persistence_and_seasonal_naive_shift_by_one_day_and_one_week():
    days = np.arange(10 * 24, dtype=float).reshape(10, 24)
    assert np.isnan(b.persistence(days)[0]).all()
    assert (b.persistence(days)[5] == days[4]).all()
    assert np.isnan(b.seasonal_naive(days)[6]).all()
    assert (b.seasonal_naive(days)[9] == days[2]).all()


def test_mae_rmse_skill_by_hand():
    actual = np.array([1.0, 2.0, 3.0, np.nan])
    forecast = np.array([2.0, 2.0, 1.0, 5.0])
    assert b.mae(forecast, actual) == pytest.approx(1.0)  # (1 + 0 + 2) / 3, the NaN hour skipped
    assert b.rmse(forecast, actual) == pytest.approx(np.sqrt(5 / 3))
    assert b.skill(0.7, 1.0) == pytest.approx(0.3)
    assert b.skill(1.2, 1.0) == pytest.approx(-0.2)


def test_fallback_rule_needs_both_baselines_beaten():
    rng = np.random.default_rng(0)
    actual = rng.normal(10, 1, (60, 24))
    perfect = actual.copy()
    assert b.verdict(perfect, actual).use == "model"
    # A model that is good against seasonal-naive but worse than persistence is not used.
    actual_smooth = np.cumsum(rng.normal(0, 0.1, (60, 24)), axis=0) + 10
    bad = actual_smooth + 0.5
    v = b.verdict(bad, actual_smooth, naive=actual_smooth + 5)
    assert v.fallback and v.use == "persistence"
    assert "NOT used" in v.describe("pv")


def test_pvwatts_temperature_loss_by_hand():
    # Noon clear sky in June near Madrid, 30 deg south: POA ~ 950-1000 W/m2, SAPM open-rack cell ~ 49 C at 20 C
    # air and 1 m/s, PVWatts -0.4 %/K: ~0.90 x POA/1000 per kWp. Midnight is zero.
    hours = np.array(["2026-06-21T11:00", "2026-06-21T23:00"], dtype="datetime64[h]")  # 13:00 / 01:00 CEST
    noon, night = pv.modelled_kwh(MADRID, hours)
    assert 0.78 < noon < 0.95
    assert night == 0.0
    hot = pv.modelled_kwh(MADRID, hours[:1], temp_air_c=40.0)[0]
    assert hot / noon == pytest.approx(1 - 0.004 * 20, rel=0.01)  # 20 K hotter cell


def test_weather_ghi_path_agrees_with_clear_sky_at_clear_sky_ghi():
    import pandas as pd
    import pvlib

    hours = np.arange("2026-06-21T06", "2026-06-21T18", dtype="datetime64[h]")
    loc = pvlib.location.Location(MADRID.latitude_deg, MADRID.longitude_deg, altitude=MADRID.altitude_m)
    mid = pd.DatetimeIndex(hours).tz_localize("UTC") + pd.Timedelta(minutes=30)
    ghi = loc.get_clearsky(mid, model="ineichen")["ghi"].to_numpy()
    clear = pv.modelled_kwh(MADRID, hours).sum()
    from_ghi = pv.modelled_kwh(MADRID, hours, ghi_w_m2=ghi).sum()
    assert from_ghi == pytest.approx(clear, rel=0.10)  # Erbs split vs Ineichen's own beam/diffuse
    assert pv.modelled_kwh(MADRID, hours, ghi_w_m2=ghi * 0.5).sum() < 0.6 * clear


def test_learned_index_recovers_a_constant_loss_factor():
    model = np.tile(np.concatenate([np.zeros(6), np.sin(np.linspace(0, np.pi, 12)), np.zeros(6)]), (40, 1))
    obs = 0.8 * model
    assert pv.learned_index(obs, model, 35, 30)[6:18] == pytest.approx(0.8)
    forecast = pv.pv_walk_forward(obs, model, window_days=30)
    assert forecast[35] == pytest.approx(obs[35])


def test_persistence_weight_follows_lag1_autocorrelation():
    assert pv.persistence_weight(np.full(20, 0.7)) == 0.0
    lasting = np.repeat([0.3, 0.9], 10)  # two long spells
    assert pv.persistence_weight(lasting) > 0.7


def test_site_rejects_nonsense():
    with pytest.raises(ValueError, match="tilt"):
        pv.PvSite(40, -3, tilt_deg=120)
    with pytest.raises(ValueError, match="peak_power"):
        pv.PvSite(40, -3, peak_power_kwp=0)


def test_spanish_day_types_include_national_holidays():
    import pandas as pd

    dates = pd.DatetimeIndex(["2026-10-12", "2026-10-13", "2026-10-17", "2026-12-25"])  # Mon holiday, Tue, Sat, Fri
    assert list(day_types(dates)) == [SUNDAY_OR_HOLIDAY, WORKDAY, SATURDAY, SUNDAY_OR_HOLIDAY]


def test_profile_uses_only_same_type_past_days():
    days = np.vstack([np.full(24, float(k)) for k in range(14)])
    types = np.array([WORKDAY, SATURDAY] * 7)
    out = profile_walk_forward(days, types, same_days=2, first_day=7)
    assert out[10] == pytest.approx(np.full(24, (6 + 8) / 2))  # days 6 and 8 are the last two WORKDAYs before 10
    assert np.isnan(out[6]).all()


def test_forecast_entity_validates_offline_and_bad_ones_do_not():
    from datetime import datetime

    from datamodels.validation import EntityValidationError, validate_entity
    from forecasting.entity import current_and_archived, current_forecast_id, forecast_entity

    issued = datetime(2026, 6, 15, 22, tzinfo=UTC)
    current, entity = current_and_archived("urn:ngsi-ld:Device:roof", "pvGeneration", issued,
                                           np.linspace(0, 2, 24), "clear-sky", weather_input="none")
    validate_entity(entity)
    validate_entity(current)
    assert entity["id"] == "urn:ngsi-ld:EnergyForecast:roof:pvGeneration:20260615T2200Z"
    assert current["id"] == current_forecast_id("roof", "pvGeneration") == "urn:ngsi-ld:EnergyForecast:roof:pvGeneration"
    assert current["refTarget"]["object"] == "urn:ngsi-ld:Device:roof"
    with pytest.raises(ValueError, match="history_source"):
        forecast_entity("urn:x:y", "load", issued, np.zeros(24), "profile", history_source="guess")
    with pytest.raises(ValueError, match="cannot name"):
        current_forecast_id("a b", "load")
    assert entity["validTo"]["value"]["@value"] == "2026-06-16T22:00:00Z"
    entity["hourlyValues"]["value"] = entity["hourlyValues"]["value"][:23]
    with pytest.raises(EntityValidationError, match="hourlyValues"):
        validate_entity(entity)
    with pytest.raises(ValueError, match="24 hourly"):
        forecast_entity("urn:x:y", "load", issued, np.zeros(23), "profile")


def test_shared_sun_path_equals_the_plain_pvlib_location_chain():
    import pandas as pd
    import pvlib

    site = pv.PvSite(-33.9, 151.2, tilt_deg=20, azimuth_deg=0, peak_power_kwp=2.0, altitude_m=40)  # Sydney
    hours = np.arange("2026-03-19T00", "2026-03-22T00", dtype="datetime64[h]")
    mid = pd.DatetimeIndex(hours).tz_localize("UTC") + pd.Timedelta(minutes=30)
    loc = pvlib.location.Location(site.latitude_deg, site.longitude_deg, tz="UTC", altitude=site.altitude_m)
    sol = loc.get_solarposition(mid)
    sky = loc.get_clearsky(mid, model="ineichen", solar_position=sol)
    poa = pvlib.irradiance.get_total_irradiance(
        site.tilt_deg, site.azimuth_deg, sol["apparent_zenith"], sol["azimuth"], sky["dni"], sky["ghi"], sky["dhi"],
        dni_extra=pvlib.irradiance.get_extra_radiation(mid), model="haydavies")["poa_global"].fillna(0).clip(lower=0)
    cell = pvlib.temperature.sapm_cell(poa, 20.0, 1.0, **pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"][
        "open_rack_glass_polymer"])
    expected = np.clip(np.nan_to_num(np.asarray(pvlib.pvsystem.pvwatts_dc(poa, cell, 2000.0, -0.004))), 0, None) / 1000
    got = pv.modelled_kwh(site, hours)
    assert got.sum() > 10
    assert np.abs(got - expected).max() < 1e-9
    scattered = pv.modelled_kwh(site, hours[::5])  # not consecutive: pvlib's own path
    assert np.abs(scattered - expected[::5]).max() < 1e-9


def test_nanmedian_columns_matches_numpy():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(31, 24))
    values[rng.random(values.shape) < 0.3] = np.nan
    values[:, 5] = np.nan
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmedian(values, axis=0)
    assert np.allclose(pv.nanmedian_columns(values), expected, equal_nan=True)


def test_clear_sky_cache_computes_only_the_new_hours():
    from forecasting.sun import ClearSkyCache

    cache = ClearSkyCache(pv.modelled_kwh)
    first = np.datetime64("2026-06-01T00", "h")
    a = cache.kwh(MADRID, first, 48)
    b2 = cache.kwh(MADRID, first + np.timedelta64(1, "h"), 48)  # next round: one hour later
    assert cache.hours_computed == 49
    assert np.array_equal(b2[:47], a[1:])
    assert np.array_equal(b2, pv.modelled_kwh(MADRID, first + 1 + np.arange(48).astype("timedelta64[h]")))
    cache.kwh(MADRID, first - np.timedelta64(24, "h"), 24)  # before the span: computed afresh
    assert cache.hours_computed == 73


def test_ensemble_index_takes_dawn_and_dusk_from_yesterday():
    model = np.tile(np.concatenate([np.zeros(6), np.sin(np.linspace(0.02, np.pi - 0.02, 12)), np.zeros(6)]), (40, 1))
    obs = 0.8 * model
    obs[38, 6] = 0.3 * model[38, 6]  # yesterday's first sun hour (under 5 % of the peak) was shaded
    k = pv.ensemble_index(obs, model, 39)
    assert k[6] == pytest.approx(0.3)
    assert k[8:16] == pytest.approx(0.8)


def test_mixture_median_is_the_median_of_persistence_and_climatology_mixed():
    """By hand, hour by hour: the median of (1 - rho) x the window's indices + rho x yesterday's daily index."""
    rng = np.random.default_rng(12)
    model = np.tile(np.concatenate([np.zeros(6), np.sin(np.linspace(0.02, np.pi - 0.02, 12)), np.zeros(6)]), (60, 1))
    level = np.full(60, 0.6)
    for d in range(1, 60):  # weather that lasts: an AR(1) daily index, so rho is far from 0
        level[d] = 0.6 + 0.8 * (level[d - 1] - 0.6) + rng.normal(0, 0.15)
    obs = model * np.clip(level[:, None] + rng.normal(0, 0.05, (60, 24)), 0, None)
    days = np.array([30, 59])
    got = pv.mixture_median_indices(obs, model, days, windows=(20,), weight_scale=0.65)
    kd = pv.daily_index(obs, model)
    for i, d in enumerate(days):
        rho = 0.65 * pv.persistence_weight(kd[d - 20:d])
        assert 0.2 < rho < 0.5
        for h in range(8, 16):  # full sun (dawn and dusk come from yesterday)
            window = obs[d - 20:d, h] / model[d - 20:d, h]
            grid = np.linspace(0, 1.5, 30001)  # the mixture's CDF, solved numerically
            cdf = (1 - rho) * (window[None, :] <= grid[:, None]).mean(axis=1) + rho * (grid >= kd[d - 1])
            median = grid[np.argmax(cdf >= 0.5)]
            assert got[i, h] == pytest.approx(median, abs=0.02), (d, h)  # numpy's interpolated quantile
    assert pv.mixture_median_indices(obs, model, days, windows=(20,), weight_scale=0.0)[:, 8:16] == pytest.approx(
        np.median(obs[[range(10, 30), range(39, 59)]][:, :, 8:16] / model[10:30, 8:16], axis=1))


def test_weather_path_is_refused_on_validation_when_it_loses_to_a_baseline(monkeypatch):
    from forecasting import data, scoring

    rng = np.random.default_rng(8)
    clear = np.tile(np.concatenate([np.zeros(6), np.sin(np.linspace(0.1, np.pi - 0.1, 12)), np.zeros(6)]), (60, 1))
    observed = clear * rng.uniform(0.3, 0.9, (60, 1))

    def fake(which: str, weather: np.ndarray) -> data.Dataset:
        return data.Dataset(which, "kWh", np.datetime64("2026-01-01T00", "h"), observed, 0, 31, 31,
                            extra={"clear": clear, "weather": weather})

    good = {"good": fake("good", observed / 0.9)}  # perfect up to the performance ratio
    monkeypatch.setattr(data, "PV_TUNING_SITES", ("good",))
    monkeypatch.setattr(data, "pv_dataset", lambda which: good[which])
    assert scoring.weather_path_on_validation()["weather_path_used"]
    good["good"] = fake("good", clear * rng.uniform(0.0, 1.0, (60, 1)))  # a forecast that knows nothing
    decision = scoring.weather_path_on_validation()
    assert not decision["weather_path_used"] and decision["good"]["skill_vs_persistence"] < 0
