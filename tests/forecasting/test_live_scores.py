"""Live scores: archived forecasts scored against the twin's measurements, and the fallback rule they drive."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from click.testing import CliRunner

from forecasting.entity import forecast_entity

ISSUE = datetime(2026, 4, 21, tzinfo=UTC)
DAYS = 20


@pytest.fixture(scope="module")
def twin(broker_url: str) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Two meters with 20 days of hourly counters and 12 days of archived load forecasts (00 UTC) each: `good`'s
    archives are the measured values (+ a little noise), `bad`'s are the measurement shifted by 11 hours."""
    from fiware_client import NgsiLdClient

    url = broker_url
    first = ISSUE - timedelta(days=DAYS)
    hours = DAYS * 24 + 1
    rng = np.random.default_rng(8)
    measured = {}
    with NgsiLdClient(url, tenant="live-test") as client:
        for name in ("good", "bad"):
            meter = f"urn:ngsi-ld:ThreePhaseAcMeasurement:live-{name}"
            shape = 0.2 + 0.6 * np.sin(np.pi * ((np.arange(hours - 1) % 24) - 6) / 14).clip(0)
            kwh = shape * rng.lognormal(0, 0.4, hours - 1)
            measured[name] = kwh
            counter = np.concatenate([[10.0], 10 + np.cumsum(kwh)])
            client.upsert_entities([{"id": meter, "type": "ThreePhaseAcMeasurement", "totalActiveEnergyImport": {
                "type": "Property", "value": round(float(v), 4),
                "observedAt": (first + timedelta(hours=k)).strftime("%Y-%m-%dT%H:%M:%SZ")}}
                for k, v in enumerate(counter)], update=True)
            archives = []
            for d in range(DAYS - 12, DAYS):
                issued = first + timedelta(days=d)
                actual = kwh[d * 24:(d + 1) * 24]
                values = (actual * rng.uniform(0.97, 1.03, 24) if name == "good"
                          else np.roll(actual, 11))
                archives.append(forecast_entity(meter, "load", issued, values, "test model"))
                archives.append(forecast_entity(meter, "load", issued + timedelta(hours=5), values, "other hour"))
            client.upsert_entities(archives)
        client.upsert_entities([forecast_entity("live-roof", "pvGeneration", first + timedelta(days=d), np.ones(24),
                                                "from a file", ref_target="urn:ngsi-ld:PhotovoltaicInstallation:live-roof")
                                for d in range(DAYS - 10, DAYS)])
    yield url, measured


def test_archived_forecasts_are_scored_against_the_measurement(twin):
    from fiware_client import NgsiLdClient
    from forecasting import baselines as b
    from forecasting.live_scores import score_archived

    url, measured = twin
    with NgsiLdClient(url, tenant="live-test") as client:
        report = score_archived(client, ISSUE, 30)
    good, bad = report.get("live-good", "load"), report.get("live-bad", "load")
    assert good.forecasts == bad.forecasts == 12 and good.hours == 12 * 24  # only the 00 UTC issues
    assert good.use == "model" and good.skill_vs_persistence > 0.8
    assert bad.use in ("persistence", "seasonal_naive") and bad.skill_vs_persistence < 0
    assert "no meter in the twin" in report.skipped["live-roof:pvGeneration"]  # PV read from a file
    # persistence over the scored days, by hand: the day before each issue day
    days = measured["bad"].reshape(DAYS, 24)
    assert bad.mae_persistence == pytest.approx(b.mae(days[7:19], days[8:20]), abs=1e-4)  # counter rounding
    with NgsiLdClient(url, tenant="live-test") as client:
        every_hour = score_archived(client, ISSUE, 30, issue_hours=None)
        assert every_hour.get("live-good", "load").forecasts == 23  # the last 05:00 issue is not over yet
        assert not score_archived(client, ISSUE, 3).get("live-good", "load").judged  # 3 forecasts < 7


def test_the_service_falls_back_where_the_model_lost_on_live_data(twin, tmp_path, caplog):
    from fiware_client import NgsiLdClient
    from forecasting.service import Targets, run_round

    url, measured = twin
    meters = [f"urn:ngsi-ld:ThreePhaseAcMeasurement:live-{n}" for n in ("good", "bad")]
    scores = tmp_path / "live.json"
    targets = Targets(meters=meters, keep_days=None, scores_file=scores)
    with NgsiLdClient(url, tenant="live-test") as client, caplog.at_level(logging.WARNING, "energytwin.forecast"):
        result = run_round(client, ISSUE, targets)
        assert result.live_scored and "live-bad:load" in result.live_fallbacks
        assert not run_round(client, ISSUE + timedelta(hours=1), targets).live_scored  # once a day
    bad = next(e for e in result.entities if e["id"].endswith("live-bad:load"))
    assert bad["fallback"]["value"] is True and "on live data" in bad["method"]["value"]
    days = measured["bad"].reshape(DAYS, 24)
    expected = days[-1] if targets.live_report.get("live-bad", "load").use == "persistence" else days[-7]
    assert bad["hourlyValues"]["value"] == pytest.approx(expected, abs=1e-3)
    assert len(bad["modelValues"]["value"]) == 24  # the model keeps being judged
    assert "did not beat both baselines on live data" in caplog.text
    written = json.loads(scores.read_text())
    assert written["scores"]["live-good:load"]["use"] == "model"
    assert written["scores"]["live-bad:load"]["use"] != "model"


def test_score_archived_cli_prints_and_writes_the_report(twin, tmp_path):
    from forecasting.commands import forecast

    url, _ = twin
    out = tmp_path / "scores.json"
    args = ["score", "--archived", "--broker-url", url, "--tenant", "live-test", "--at", ISSUE.isoformat(),
            "--days", "30", "--json", str(out)]
    run = CliRunner(env={"COLUMNS": "200"}).invoke(forecast, args)  # rich wraps the table at 80 columns
    assert run.exit_code == 0, run.output
    assert "live-bad:load" in run.output and "fall back" in run.output
    assert json.loads(out.read_text())["scores"]["live-good:load"]["forecasts"] == 12
    down = CliRunner().invoke(forecast, ["score", "--archived", "--broker-url", "http://127.0.0.1:9"])
    assert down.exit_code != 0 and "cannot read the archived forecasts" in down.output


def _prices(start: datetime, hours: int) -> np.ndarray:
    """A price file stand-in (EUR/MWh): the same value for an hour whatever window asks for it."""
    h = (start - datetime(2026, 1, 1, tzinfo=UTC)).total_seconds() // 3600 + np.arange(hours)
    return 60 + 25 * np.sin(2 * np.pi * ((h % 24) - 8) / 24) + 12 * np.sin(h * 0.37) + 8 * np.sin(h / 97)


def _roof(start: datetime, hours: int) -> np.ndarray:
    h = (start - datetime(2026, 1, 1, tzinfo=UTC)).total_seconds() // 3600 + np.arange(hours)
    return np.clip(np.sin(np.pi * ((h % 24) - 6) / 12), 0, None) * (1.5 + np.sin(h / 24 * 1.3))


def test_price_and_file_pv_are_scored_from_their_files_and_published_prices_are_not(twin):
    """Archived price forecasts whose written hours are the published prices (perfect) and whose model values
    are 11 hours off: the model is scored, not what the file published. PV from a file against that file."""
    from fiware_client import NgsiLdClient
    from forecasting import baselines as b
    from forecasting.live_scores import score_archived
    from forecasting.service import PriceTarget, Targets, run_round

    url, _ = twin
    first = ISSUE - timedelta(days=12)
    archives = []
    for d in range(12):
        issued = first + timedelta(days=d)
        actual = _prices(issued, 24)
        archives.append(forecast_entity("live-tariff", "price", issued, actual, "24 of 24 h published",
                                        model_values=np.roll(actual, 11)))
        archives.append(forecast_entity("live-old", "price", issued, actual, "24 of 24 h published in the price "
                                        "file; others: ridge"))  # before modelValues: not the model's values
    with NgsiLdClient(url, tenant="live-test") as client:
        client.upsert_entities(archives)
        sources = {"live-tariff:price": _prices, "live-roof:pvGeneration": _roof, "live-old:price": _prices}
        report = score_archived(client, ISSUE, 30, sources=sources)
        without = score_archived(client, ISSUE, 30)
    price, roof = report.get("live-tariff", "price"), report.get("live-roof", "pvGeneration")
    assert price.unit == "EUR/MWh" and price.forecasts == 12 and price.use != "model" and price.ref == "file"
    days = _prices(first - timedelta(days=7), 19 * 24).reshape(19, 24)
    assert price.mae == pytest.approx(b.mae(np.roll(days[7:], 11, axis=1), days[7:]), abs=1e-3)
    assert price.mae_persistence == pytest.approx(b.mae(days[6:18], days[7:]), abs=1e-3)
    assert roof.forecasts == 10 and roof.unit == "kWh"
    assert "no archived model values" in report.skipped["live-old:price"]
    assert "price file" in without.skipped["live-tariff:price"]
    assert "no meter in the twin" in without.skipped["live-roof:pvGeneration"]
    # The service passes its price target's file and falls back where the model lost on it.
    targets = Targets(meters=[], load_meters=False, price=[PriceTarget("live-tariff", _prices)], keep_days=None)
    with NgsiLdClient(url, tenant="live-test") as client:
        result = run_round(client, ISSUE, targets)
    assert "live-tariff:price" in result.live_fallbacks
    current = next(e for e in result.entities if e["id"].endswith("live-tariff:price"))
    assert "on live data" in current["method"]["value"] and len(current["modelValues"]["value"]) == 24


def test_score_archived_cli_reads_the_community_price_file(broker_url: str, tmp_path):
    from energytwin.forecast_cli import forecast
    from energytwin.forecast_targets import load_targets
    from fiware_client import NgsiLdClient

    community = "community/examples/community.yaml"
    prices = load_targets(community).price[0].history
    at = datetime(2026, 10, 25, tzinfo=UTC)
    with NgsiLdClient(broker_url, tenant="live-cli") as client:
        client.upsert_entities([forecast_entity("pvpc", "price", at - timedelta(days=d), prices(
            at - timedelta(days=d), 24) * 1.01, "model") for d in range(2, 12)])
    out = tmp_path / "scores.json"
    args = ["score", "--archived", "--broker-url", broker_url, "--tenant", "live-cli", "--at", at.isoformat(),
            "--json", str(out)]
    run = CliRunner(env={"COLUMNS": "200"}).invoke(forecast, [*args, "--community", community])
    assert run.exit_code == 0, run.output
    score = json.loads(out.read_text())["scores"]["pvpc:price"]
    assert score["forecasts"] == 10 and score["unit"] == "EUR/MWh"
    scored = np.concatenate([prices(at - timedelta(days=d), 24) for d in range(2, 12)])
    assert score["mae"] == pytest.approx(0.01 * np.abs(scored).mean(), abs=1e-3)  # the model's 1 % error
    run = CliRunner(env={"COLUMNS": "200"}).invoke(forecast, args)
    assert run.exit_code == 0 and "price file" in run.output
