"""The pooled gradient-boosting load model: its features, a judge fit that never saw the judged days, and the
service's choice between it, the day-type profile and the baselines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
import pytest

from forecasting import load_pooled as lp
from forecasting.profiles import _features
from forecasting.service import HISTORY_DAYS, forecast_load, load_profile

ISSUE = datetime(2026, 5, 4, tzinfo=UTC)  # a Monday


@cache
def _simulated(n: int) -> np.ndarray:
    from simulation.households import simulate

    sim = simulate(n, 2026, seed=11, weather_seed=5)
    return sim.consumption_kwh[:, :(sim.consumption_kwh.shape[1] // 24) * 24].reshape(n, -1, 24)


def _households(n: int, day: int = 130) -> dict[int, np.ndarray]:
    return {m: _simulated(n)[m, day - HISTORY_DAYS:day] for m in range(n)}


def _fleet(windows: dict, issue: datetime) -> tuple[dict, tuple]:
    profiles = {m: load_profile(w, issue) for m, w in windows.items()}
    return {m: (p[0], p[2]) for m, p in profiles.items()}, next(iter(profiles.values()))[1]


def test_features_are_the_scoring_features_of_the_scaled_series():
    rng = np.random.default_rng(2)
    days = rng.lognormal(-1, 0.5, (HISTORY_DAYS, 24))
    days[5, 3:9] = np.nan
    full, calendar, profile = load_profile(days, ISSUE)
    rows = np.arange(lp.LAG_DAYS, HISTORY_DAYS + 1)
    x, y, scale = lp.features(full, profile, calendar, rows)
    for i, r in enumerate(rows):
        known = np.isfinite(full[max(0, r - lp.SCALE_DAYS):r])
        assert scale[i] == pytest.approx(full[max(0, r - lp.SCALE_DAYS):r][known].mean())
        want = _features(full / scale[i], *calendar, r, profile / scale[i], None)
        np.testing.assert_allclose(x[24 * i:24 * (i + 1)], want, equal_nan=True)
    assert np.isnan(y[-24:]).all()  # the row to forecast has no target


def test_the_judge_is_fitted_only_on_rows_before_the_days_it_judges():
    fitted: list[np.ndarray] = []

    class Recording(lp.PooledLoad):
        def _fit(self, parts):
            fitted.append(np.concatenate([p[1] for p in parts]))
            return super()._fit(parts)

    windows = _households(4) | {"idle": np.zeros((HISTORY_DAYS, 24))}  # a meter that drew nothing: no level
    fleet, calendar = _fleet(windows, ISSUE)
    model = Recording(max_iter=20)  # what is fitted on is under test, not the fit
    out = model.forecast(fleet, calendar, ISSUE)
    assert np.isnan(out.pop("idle").next_day).all()
    assert forecast_load(windows["idle"], ISSUE, pooled=lp.PooledValues(np.full(24, np.nan), np.full(
        (lp.JUDGE_DAYS, 24), np.nan), ISSUE, 5)).model == "profile"
    del fleet["idle"]
    judge_y, production_y = fitted
    judge_y, production_y = judge_y[np.isfinite(judge_y)], production_y[np.isfinite(production_y)]
    # The judge's targets are exactly rows 8 .. n-15 of each meter: none of the 14 days it judges.
    expect = np.concatenate([lp.features(full, profile, calendar, np.arange(lp.LAG_DAYS, HISTORY_DAYS - lp.JUDGE_DAYS))[1]
                             for full, profile in fleet.values()])
    np.testing.assert_array_equal(judge_y, expect[np.isfinite(expect)])
    assert production_y.size == 4 * (HISTORY_DAYS - lp.LAG_DAYS) * 24
    assert set(out) == {0, 1, 2, 3} and out[0].recent.shape == (lp.JUDGE_DAYS, 24)
    # Reused for the next 6 days at this issue hour, refitted on the 7th or for an earlier (replayed) issue.
    for k, fits in ((1, 2), (6, 2), (7, 4), (-1, 6)):
        model.forecast(_fleet(_households(4, 130 + k), ISSUE + timedelta(days=k))[0], calendar,
                       ISSUE + timedelta(days=k))
        assert model.fits == fits, k


def test_the_service_writes_the_pooled_model_only_where_it_beat_baselines_and_profile():
    windows = _households(4)
    fleet, calendar = _fleet(windows, ISSUE)
    values = lp.PooledLoad().forecast(fleet, calendar, ISSUE)
    fc = forecast_load(windows[0], ISSUE, pooled=values[0], profile=fleet[0][1])
    assert fc.model == "pooled" and not fc.fallback, fc.method
    assert fc.method.startswith("pooled gradient boosting (4 meters") and "never saw them" in fc.method
    np.testing.assert_array_equal(fc.values, values[0].next_day)
    # Judged days where the pooled model is made worse than persistence: not used, and the method says why.
    bad = lp.PooledValues(values[0].next_day, values[0].recent * 3, ISSUE, 4)
    fc = forecast_load(windows[0], ISSUE, pooled=bad, profile=fleet[0][1])
    assert fc.model == "profile" and "pooled gradient boosting not used (did not beat both baselines" in fc.method
    # A random walk: yesterday is the best guess; neither model is used, the baseline is written.
    rng = np.random.default_rng(3)
    walks = {m: np.cumsum(rng.normal(0, 1, HISTORY_DAYS * 24)).reshape(HISTORY_DAYS, 24) + 100 for m in range(3)}
    fleet, calendar = _fleet(walks, ISSUE)
    values = lp.PooledLoad().forecast(fleet, calendar, ISSUE)
    fc = forecast_load(walks[0], ISSUE, pooled=values[0], profile=fleet[0][1])
    assert fc.fallback and "pooled gradient boosting not used" in fc.method
    np.testing.assert_array_equal(fc.values, walks[0][-1])


def test_too_little_history_fits_nothing():
    days = np.full((HISTORY_DAYS, 24), np.nan)
    days[-10:] = 0.3  # 10 days: the judge's rows (days 8 .. 20) are all unknown
    fleet, calendar = _fleet({0: days}, ISSUE)
    model = lp.PooledLoad()
    assert model.forecast(fleet, calendar, ISSUE) == {} and model.fits == 0


def test_air_temperature_is_a_feature_only_when_every_meter_has_it(caplog):
    from forecasting.service import Targets, _load_temperatures

    windows = _households(4)
    temps = 12 + 6 * np.sin(np.arange((HISTORY_DAYS + 1) * 24) * 2 * np.pi / 24).reshape(-1, 24)
    full, calendar, profile = load_profile(windows[0], ISSUE)
    rows = np.arange(lp.LAG_DAYS, HISTORY_DAYS + 1)
    x, _, _ = lp.features(full, profile, calendar, rows, temps)
    assert x.shape[1] == lp.N_FEATURES + 3
    np.testing.assert_array_equal(x[:, lp.N_FEATURES], temps[rows].ravel())
    assert x[0, lp.N_FEATURES + 2] == pytest.approx(temps[rows[0] - 1].mean())  # yesterday's mean
    fleet = {m: (p[0], p[2], temps) for m, p in ((m, load_profile(w, ISSUE)) for m, w in windows.items())}
    model = lp.PooledLoad(max_iter=20)
    assert all(v.temperature for v in model.forecast(fleet, calendar, ISSUE).values()) and model.fits == 2
    fleet[3] = fleet[3][:2]  # one meter without: the model runs without temperature (and is refitted so)
    assert not any(v.temperature for v in model.forecast(fleet, calendar, ISSUE).values()) and model.fits == 4
    # The service's source: complete series are kept, a gap or an error leaves the meter out, logged.
    series = {"a": np.full(36 * 24, 10.0), "b": np.r_[np.full(36 * 24 - 1, 10.0), np.nan]}

    def source(meter, start, hours):
        if meter == "c":
            raise OSError("no station")
        return series[meter][:hours]

    got = _load_temperatures(Targets(load_temperature=source), ["a", "b", "c"], ISSUE, 36 * 24)
    assert list(got) == ["a"] and got["a"].shape == (36, 24)
    assert "incomplete" in caplog.text and "no station" in caplog.text


def test_temperature_csv_reads_hours_and_reports_bad_rows_by_line():
    from forecasting.temperature import TemperatureCsv
    from forecasting.weather import WeatherFileError

    series = TemperatureCsv.parse("hour_start,temp_air_c\n2026-05-04T00:00:00+00:00,11.5\n"
                                  "2026-05-04T03:00:00+02:00,12\n")
    got = series("any-meter", ISSUE, 3)
    assert got[:2] == pytest.approx([11.5, 12.0]) and np.isnan(got[2])
    with pytest.raises(WeatherFileError) as err:
        TemperatureCsv.parse("hour_start,temp_air_c\n2026-05-04T00:00:00,1\n2026-05-04T01:30:00Z,2\n"
                             "2026-05-04T02:00:00Z,99\n2026-05-04T03:00:00Z,x\n", "t.csv")
    lines = str(err.value).splitlines()
    assert [x.split(":")[1] for x in lines] == ["2", "3", "4", "5"]
    assert "UTC offset" in lines[0] and "on the hour" in lines[1] and "outside" in lines[2]
    with pytest.raises(WeatherFileError, match="missing column"):
        TemperatureCsv.parse("hour,temp\n")


def test_forecast_run_refuses_a_bad_temperature_file_before_any_round(tmp_path):
    from click.testing import CliRunner

    from energytwin.forecast_cli import forecast

    bad = tmp_path / "t.csv"
    bad.write_text("hour_start,temp_air_c\n2026-05-04T00:00:00+00:00,hot\n")
    run = CliRunner().invoke(forecast, ["run", "--once", "--broker-url", "http://127.0.0.1:9",
                                        "--load-temperature-csv", str(bad)])
    assert run.exit_code != 0 and "t.csv:2: temp_air_c 'hot' is not a number" in run.output
