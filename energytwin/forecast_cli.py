"""`energytwin forecast run`: the hourly forecast service, wired to the community file and the weather plug-ins.

It lives in the CLI layer because it joins parts that do not import each other (forecasting and community);
`energytwin forecast score` stays in forecasting/commands.py.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click

from forecasting import commands as _commands
from forecasting.commands import forecast

__all__ = ["forecast"]


def _load_targets(community_file: Path):
    from energytwin.forecast_targets import load_targets

    return load_targets(community_file)


_commands.targets_loader = _load_targets  # `forecast score --archived --community FILE` reads the files through it


def _issue(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time (e.g. 2026-10-20T00:00Z)") from None
    if moment.tzinfo is None:
        raise click.BadParameter(f"{value!r} needs a UTC offset (e.g. 2026-10-20T00:00+00:00)")
    return moment.astimezone(UTC)


@forecast.command("run")
@click.option("--broker-url", default="http://127.0.0.1:1026", show_default=True)
@click.option("--tenant", default=None, help="NGSILD-Tenant of the meters (the forecasts are written there too).")
@click.option("--community", "community_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="community.yaml: its installations get PV forecasts, its tariffs with a price file price ones.")
@click.option("--weather-csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Hourly weather forecast CSV (columns in docs/forecasts.md) used for PV.")
@click.option("--weather-entities", is_flag=True,
              help="Use the broker's WeatherForecast entities (SDM dataModel.Weather) for PV.")
@click.option("--at", "at", default=None, help="Issue one round at this past hour (ISO 8601 with offset); "
                                                "implies --once. For replaying a community file's period.")
@click.option("--once", is_flag=True, help="One round, then exit (default: every hour, on the hour).")
@click.option("--keep-days", type=click.IntRange(min=0), default=30, show_default=True,
              help="Delete archived forecasts issued more than this many days ago after each round (0: keep all).")
@click.option("--scores-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the daily live scores of the archived forecasts here (JSON; docs/forecasts.md).")
@click.option("--load-temperature-csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Hourly air temperature (hour_start,temp_air_c: observed history + next-24-h forecast) for "
                   "the load model.")
def run(broker_url: str, tenant: str | None, community_file: Path | None, weather_csv: Path | None,
        weather_entities: bool, at: str | None, once: bool, keep_days: int, scores_file: Path | None,
        load_temperature_csv: Path | None) -> None:
    """Every hour, write 24-hour forecasts into the twin: load per meter, PV per installation, price per tariff.

    \b
    Each forecast is an EnergyForecast entity at urn:ngsi-ld:EnergyForecast:<target>:<quantity> (the current
    one) plus an archived copy per issue (...:<yyyymmddThhmmZ>) kept for scoring; see docs/forecasts.md.
    energytwin forecast run --tenant energytwin --once
    energytwin forecast run --community community/examples/community.yaml --at 2026-10-20T00:00+00:00
    """
    from community.config import CommunityFileError
    from energytwin.forecast_targets import load_targets
    from fiware_client import FiwareError, NgsiLdClient
    from forecasting.service import run_round
    from forecasting.temperature import TemperatureCsv
    from forecasting.weather import CsvWeather, EntityWeather, WeatherFileError

    try:
        targets = load_targets(community_file)
    except CommunityFileError as exc:
        raise click.ClickException(str(exc)) from None
    issue = _issue(at)
    targets.keep_days = keep_days or None
    targets.scores_file = scores_file
    if load_temperature_csv is not None:
        try:
            targets.load_temperature = TemperatureCsv.load(load_temperature_csv)
        except WeatherFileError as exc:
            raise click.ClickException(str(exc)) from None
    with NgsiLdClient(broker_url, tenant=tenant) as client:
        if weather_csv is not None:
            try:
                targets.weather = CsvWeather.load(weather_csv)
            except WeatherFileError as exc:
                raise click.ClickException(str(exc)) from None
        elif weather_entities:
            targets.weather = EntityWeather(client)
        while True:
            try:
                result = run_round(client, issue, targets)
            except FiwareError as exc:  # the broker is down or refuses: say so, try again next hour
                if once or issue is not None:
                    raise click.ClickException(f"forecast round failed: {exc}") from None
                click.echo(f"{datetime.now(UTC):%Y-%m-%dT%H:%MZ} round failed, next on the hour: {exc}", err=True)
                time.sleep(3600 - time.time() % 3600 + 5)
                continue
            click.echo(f"{result.issue:%Y-%m-%dT%H:%MZ} wrote {result.written} forecasts"
                       + (f", skipped {len(result.skipped)}" if result.skipped else "")
                       + (f", purged {result.purged} archived" if result.purged else "")
                       + ("; load models: " + ", ".join(f"{k} {v}" for k, v in sorted(result.load_models.items()))
                          if result.load_models else ""))
            for target, reason in sorted(result.skipped.items()):
                click.echo(f"  skipped {target}: {reason}", err=True)
            if once or issue is not None:
                return
            time.sleep(3600 - time.time() % 3600 + 5)


@forecast.command("purge")
@click.option("--broker-url", default="http://127.0.0.1:1026", show_default=True)
@click.option("--tenant", default=None, help="NGSILD-Tenant the forecasts are in.")
@click.option("--keep-days", type=click.IntRange(min=1), default=30, show_default=True,
              help="Keep archived forecasts issued within this many days; delete the older ones.")
def purge(broker_url: str, tenant: str | None, keep_days: int) -> None:
    """Delete archived forecasts (ids ending :<yyyymmddThhmmZ>) older than --keep-days; current ones stay.

    \b
    The service does this after every round (`forecast run --keep-days`); this scans the whole archive once,
    e.g. after the service was stopped for longer than a week or to shorten the retention.
    energytwin forecast purge --tenant energytwin --keep-days 7
    """
    from fiware_client import FiwareError, NgsiLdClient
    from forecasting.retention import purge_archived

    with NgsiLdClient(broker_url, tenant=tenant) as client:
        try:
            result = purge_archived(client, keep_days, full=True)
        except FiwareError as exc:
            raise click.ClickException(f"purge failed: {exc}") from None
    click.echo(f"deleted {result.deleted} archived forecasts issued before {result.cutoff:%Y-%m-%dT%H:%MZ}"
               + (f"; {len(result.failed)} could not be deleted (see the log)" if result.failed else ""))
    if result.failed:
        raise SystemExit(1)
