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
