"""The forecast service against the real embedded broker: history in, EnergyForecast entities out, valid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from datamodels.validation import validate_entity
from forecasting.service import forecast_load, hourly_energy


def test_hourly_energy_from_a_counter_with_a_gap_and_a_reset():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = [start + timedelta(minutes=30 * k) for k in range(9)]  # 0 .. 4 h
    counter = [10.0 + 0.5 * k for k in range(9)]  # 1 kWh per hour
    counter[8] = 0.0  # reset in the last hour
    out = hourly_energy(times, counter, start, 6)
    assert out[:3] == pytest.approx([1.0, 1.0, 1.0])
    assert np.isnan(out[3]) and np.isnan(out[4]) and np.isnan(out[5])


def test_forecast_load_uses_the_profile_or_falls_back():
    issue = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
    rng = np.random.default_rng(3)
    shape = np.sin(np.linspace(0, np.pi, 24)) + 0.5
    days = shape * rng.lognormal(0, 0.3, (35, 24))
    result = forecast_load(days, issue)
    assert not result.fallback and result.values.shape == (24,)
    # A random walk: yesterday is the best guess, the profile loses and is not used.
    walk = np.cumsum(rng.normal(0, 1, 35 * 24)).reshape(35, 24) + 100
    assert forecast_load(walk, issue).fallback


def test_run_once_writes_a_valid_forecast_per_meter(broker_url: str):
    from fiware_client import NgsiLdClient
    from forecasting.service import run_once

    issue = datetime(2026, 3, 2, tzinfo=UTC)
    meter = "urn:ngsi-ld:ThreePhaseAcMeasurement:fc-meter"
    rng = np.random.default_rng(4)
    total = 0.0
    with NgsiLdClient(broker_url, tenant="forecast-test") as client:
        for k in range(10 * 24, 0, -1):
            at = issue - timedelta(hours=k)
            total += 0.2 + 0.3 * np.sin(np.pi * at.hour / 24) * rng.uniform(0.8, 1.2)
            client.upsert_entities([{"id": meter, "type": "ThreePhaseAcMeasurement", "totalActiveEnergyImport": {
                "type": "Property", "value": round(total, 3), "unitCode": "KWH",
                "observedAt": at.strftime("%Y-%m-%dT%H:%M:%SZ")}}], update=True)
        written = run_once(client, issue)
        assert len(written) == 1
        stored = client.get_entity(written[0]["id"])
    validate_entity(stored)
    assert len(stored["hourlyValues"]["value"]) == 24
    assert stored["refTarget"]["object"] == meter


def test_run_round_writes_pv_price_and_load_with_weather_entities(broker_url: str):
    """A PV installation read from its generation meter, a price file source, WeatherForecast entities."""
    from fiware_client import NgsiLdClient
    from forecasting.entity import current_forecast_id
    from forecasting.pv import PvSite, modelled_kwh
    from forecasting.service import PriceTarget, PvTarget, Targets, run_round
    from forecasting.weather import EntityWeather, weather_forecast_entity

    issue = datetime(2026, 6, 1, tzinfo=UTC)
    site = PvSite(40.4, -3.7, 30, 180, 3.0)
    gen = "urn:ngsi-ld:ThreePhaseAcMeasurement:fc-roof"
    hours = np.datetime64("2026-05-11T00", "h") + np.arange(21 * 24).astype("timedelta64[h]")
    pv_kwh = modelled_kwh(site, hours) * 0.7
    exported = np.concatenate([[0.0], np.cumsum(pv_kwh)])
    with NgsiLdClient(broker_url, tenant="forecast-pv") as client:
        client.upsert_entities([{"id": gen, "type": "ThreePhaseAcMeasurement",
                                 "totalActiveEnergyExport": {"type": "Property", "value": round(float(v), 4),
                                                             "unitCode": "KWH",
                                                             "observedAt": f"{np.datetime_as_string(t)}:00:00Z"},
                                 "totalActiveEnergyImport": {"type": "Property", "value": 0.0, "unitCode": "KWH",
                                                             "observedAt": f"{np.datetime_as_string(t)}:00:00Z"}}
                                for t, v in zip(np.append(hours, hours[-1] + 1), exported, strict=True)],
                               update=True)
        client.upsert_entities([weather_forecast_entity(40.41, -3.70, issue + timedelta(hours=h),
                                                        800.0 if h == 12 else 0.0, 25.0, issue, name="madrid")
                                for h in range(24)])
        client.upsert_entities([{"id": "urn:ngsi-ld:WeatherForecast:broken", "type": "WeatherForecast",
                                 "validFrom": {"type": "Property", "value": "not a time"}}])

        def prices(start: datetime, n: int) -> np.ndarray:
            out = 50 + 20 * np.sin(np.arange(n) * 2 * np.pi / 24)
            out[n - 24 + 20:] = np.nan  # the file publishes the first 20 hours after the issue
            return out

        targets = Targets(pv=[PvTarget("roof", site, meter=gen)], price=[PriceTarget("pvpc", prices)],
                          load_meters=False, weather=EntityWeather(client))
        result = run_round(client, issue, targets)
        assert result.written == 2, result.skipped
        pv = client.get_entity(current_forecast_id("roof", "pvGeneration"))
        price = client.get_entity(current_forecast_id("pvpc", "price"))
    for entity in (pv, price):
        validate_entity(entity)
    assert pv["weatherInput"]["value"] == "WeatherForecast"
    assert pv["refTarget"]["object"] == gen
    values = pv["hourlyValues"]["value"]
    assert values[12] > 0 and sum(values) == pytest.approx(values[12])  # only the sunny forecast hour makes power
    assert targets.weather.rejected == 1
    assert price["hourlyValues"]["value"][:20] == pytest.approx(list(prices(issue, 36 * 24)[-24:-4]), abs=1e-3)
    assert "20 of 24 h published" in price["method"]["value"]


def test_weather_csv_errors_carry_line_numbers_and_nearest_point_wins():
    from forecasting.pv import PvSite
    from forecasting.weather import CsvWeather, WeatherFileError

    rows = ["hour_start,ghi_w_m2,temp_air_c,latitude_deg,longitude_deg"]
    start = datetime(2026, 6, 1, tzinfo=UTC)
    for h in range(24):
        at = (start + timedelta(hours=h)).isoformat()
        rows.append(f"{at},{100 + h},20,40.4,-3.7")
        rows.append(f"{at},{500 + h},20,41.4,2.2")  # Barcelona
    weather = CsvWeather.parse("\n".join(rows))
    ghi, temp = weather.for_site(PvSite(40.45, -3.6), start)
    assert ghi[0] == 100 and temp is not None
    assert weather.for_site(PvSite(48.8, 2.3), start) is None  # Paris: no point within 50 km
    assert weather.for_site(PvSite(40.4, -3.7), start + timedelta(hours=1)) is None  # 23 of 24 hours only
    bad = "hour_start,ghi_w_m2\n2026-06-01T00:00:00+00:00,abc\n2026-06-01T01:00:00,5\n2026-06-01T02:00:00+00:00,9000\n"
    with pytest.raises(WeatherFileError) as err:
        CsvWeather.parse(bad, "w.csv")
    message = str(err.value)
    assert "w.csv:2: ghi_w_m2 'abc' is not a number" in message
    assert "w.csv:3:" in message and "no UTC offset" in message
    assert "w.csv:4:" in message and "outside" in message
    with pytest.raises(WeatherFileError, match="w.csv:1: missing column"):
        CsvWeather.parse("hour_start,temp_air_c\n", "w.csv")


def test_demo_part_writes_load_and_pv_for_each_meter(broker_url: str):
    """The `energytwin demo` part: a fresh twin (no history) gets forecasts from the simulated households."""
    from types import SimpleNamespace

    from energytwin.demo_forecasts import ForecastPart
    from fiware_client import NgsiLdClient
    from forecasting.entity import current_forecast_id

    ctx = SimpleNamespace(options=SimpleNamespace(meters=2), site=SimpleNamespace(service="forecast-demo"),
                          broker_url=broker_url)
    part = ForecastPart()
    lines = part.start(ctx)
    try:
        assert part.wait_first_round(90)
    finally:
        part.stop()
    assert "EnergyForecast:meter-001:load" in lines[0]
    assert part.rounds and not part.rounds[0].skipped, part.rounds
    with NgsiLdClient(broker_url, tenant="forecast-demo") as client:
        for meter in ("meter-001", "meter-002"):
            for quantity in ("load", "pvGeneration"):
                entity = client.get_entity(current_forecast_id(meter, quantity))
                validate_entity(entity)
                assert entity["historySource"]["value"] == "simulation"
                assert entity["refTarget"]["object"] == f"urn:ngsi-ld:ThreePhaseAcMeasurement:{meter}"
                assert any(v > 0 for v in entity["hourlyValues"]["value"])


def test_retention_deletes_only_archives_past_keep_days(broker_url: str):
    """Archives 1 h, 2 d 23 h, 3 d 1 h and 20 d old, the current forecast: keep 3 days."""
    from fiware_client import NgsiLdClient
    from forecasting.entity import current_and_archived, forecast_entity
    from forecasting.retention import archived_issue, purge_archived

    now = datetime(2026, 5, 10, 6, tzinfo=UTC)
    ages_h = (1, 71, 73, 20 * 24)
    entities = [forecast_entity("urn:ngsi-ld:ThreePhaseAcMeasurement:ret-1", "load", now - timedelta(hours=h),
                                np.zeros(24), "profile") for h in ages_h]
    entities += current_and_archived("urn:ngsi-ld:ThreePhaseAcMeasurement:ret-1", "load", now, np.ones(24), "p")[:1]
    with NgsiLdClient(broker_url, tenant="forecast-retention") as client:
        client.upsert_entities(entities)
        first = purge_archived(client, keep_days=3, now=now)  # the lookback (7 days) misses the 20-day-old one
        assert first.deleted == 1 and not first.failed
        assert purge_archived(client, keep_days=3, now=now).deleted == 0
        assert purge_archived(client, keep_days=3, now=now, full=True).deleted == 1
        left = {e["id"] for e in client.query_entities(type="EnergyForecast", context=None)}
    assert left == {entities[0]["id"], entities[1]["id"], entities[-1]["id"]}
    assert archived_issue(entities[0]["id"]) == now - timedelta(hours=1)
    assert archived_issue(entities[-1]["id"]) is None  # the current forecast is never an archive
    with pytest.raises(ValueError, match="keep_days"):
        purge_archived(None, keep_days=0)


def test_archived_values_read_back_by_issue_hour(broker_url: str):
    from fiware_client import NgsiLdClient
    from forecasting.entity import forecast_entity
    from forecasting.retention import archived_values

    issue = datetime(2026, 5, 10, 6, tzinfo=UTC)
    entities = [forecast_entity("urn:ngsi-ld:Device:roof-1", "pvGeneration", issue - timedelta(days=k, hours=h),
                                np.full(24, float(k)), "m", weather_model_values=np.full(24, 10.0 + k))
                for k, h in ((1, 0), (3, 0), (2, 1))]  # the last one was issued at another hour
    with NgsiLdClient(broker_url, tenant="forecast-archive") as client:
        client.upsert_entities(entities)
        got = archived_values(client, "roof-1", "pvGeneration", issue, 4, "weatherModelValues")
    assert np.isnan(got[0]).all() and np.isnan(got[2]).all()  # 4 and 2 days before: none at 06:00
    assert (got[1] == 13.0).all() and (got[3] == 11.0).all()


def test_weather_path_is_used_only_when_its_archived_forecasts_beat_both_baselines():
    from forecasting.pv import PvSite, modelled_kwh
    from forecasting.service import PV_HISTORY_DAYS, RECENT_DAYS, forecast_pv

    site = PvSite(40.4, -3.7, 30, 180, 3.0, 650)
    issue = datetime(2026, 6, 15, 22, tzinfo=UTC)
    n = PV_HISTORY_DAYS
    hours = np.datetime64("2026-06-15T22", "h") - np.timedelta64(n * 24, "h") + np.arange(n * 24).astype(
        "timedelta64[h]")
    history = modelled_kwh(site, hours) * np.repeat(np.random.default_rng(5).uniform(0.2, 0.9, n), 24)
    weather = (np.full(24, 300.0), np.full(24, 25.0))
    unjudged = forecast_pv(site, history, issue, weather=weather)
    assert unjudged.weather_used and "not yet judged: 0 archived days" in unjudged.method
    good = history.reshape(n, 24)[-RECENT_DAYS:]  # a weather path that was right every day
    used = forecast_pv(site, history, issue, weather=weather, weather_archive=good)
    assert used.weather_used and "beats both baselines on 14 archived days" in used.method
    assert np.array_equal(used.values, unjudged.values)
    bad = good[::-1] * 3.0  # the wrong days, three times too big
    refused = forecast_pv(site, history, issue, weather=weather, weather_archive=bad)
    assert not refused.weather_used and refused.method.startswith("weather path not used")
    assert np.array_equal(refused.values, forecast_pv(site, history, issue).values)  # the no-weather forecast
    assert np.array_equal(refused.weather_values, used.weather_values)  # still archived, to be judged again
