"""`energytwin forecast ...`: score the forecasters on held-out data."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

# community.yaml -> forecasting.service.Targets. Set by the CLI layer (energytwin.forecast_cli), which may read
# community files; forecasting does not import the community part.
targets_loader: Callable[[Path], Any] | None = None


@click.group("forecast")
def forecast() -> None:
    """24-hour forecasts of PV, load and price, scored against persistence and seasonal-naive baselines.

    \b
    energytwin forecast score                     # table on the held-out data the project ships or simulates
    energytwin forecast score --json scores.json --chart scores.png
    energytwin forecast score --quick             # statistical models only (no gradient boosting), ~10 s
    energytwin forecast score --archived --tenant energytwin --days 30   # the service's own forecasts, live
    energytwin forecast run --community community.yaml --weather-csv weather.csv --keep-days 30
    energytwin forecast purge --keep-days 7       # delete archived forecasts older than 7 days
    """


@forecast.command("score")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the scores here.")
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("forecast-scores.png"), show_default=True, help="Monthly MAE chart (PNG).")
@click.option("--quick", is_flag=True, help="Skip the gradient-boosting candidate for load and price.")
@click.option("--archived", is_flag=True,
              help="Score the forecasts the service archived in the broker against what the meters measured.")
@click.option("--days", type=click.IntRange(min=1), default=30, show_default=True,
              help="With --archived: forecasts issued in this many days before now (or --at).")
@click.option("--issue-hour", "issue_hours", type=click.IntRange(0, 23), multiple=True,
              help="With --archived: score the forecasts issued at this UTC hour (repeatable; default 0).")
@click.option("--all-hours", is_flag=True, help="With --archived: score the forecasts of every issue hour.")
@click.option("--broker-url", default="http://127.0.0.1:1026", show_default=True, help="With --archived.")
@click.option("--tenant", default=None, help="With --archived: NGSILD-Tenant of the meters and forecasts.")
@click.option("--at", "at", default=None, help="With --archived: score as of this hour (ISO 8601 with offset).")
@click.option("--community", "community_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --archived: score price forecasts against the tariffs' price files and PV forecast from "
                   "a file against the installations' files (the measurement is not in the twin).")
def score(json_path: Path | None, chart_path: Path, quick: bool, archived: bool, days: int,
          issue_hours: tuple[int, ...], all_hours: bool, broker_url: str, tenant: str | None,
          at: str | None, community_file: Path | None) -> None:
    """Walk-forward day-ahead scores on held-out data; a model that does not beat both baselines is not used.

    Data (all offline, see docs/forecasts.md): PV on pvlib's Greensboro TMY3 year, load on the project's
    simulated households (2026 held out), price on a SYNTHETIC series (no market data ships here).

    \b
    With --archived: the load, PV and price forecasts the service wrote (archived EnergyForecast entities) whose
    24 h are over, scored against the meters' measured kWh (or, with --community, the tariffs' price files and
    the PV installations' history files), persistence and seasonal-naive over the same hours; the service does
    the same once a day and its fallback rule uses it. --json writes the report.
    """
    if archived:
        sources = {}
        if community_file is not None:
            from forecasting.service import measured_sources

            if targets_loader is None:
                raise click.ClickException("--community needs the energytwin CLI (energytwin forecast score ...)")
            try:
                sources = measured_sources(targets_loader(community_file))
            except ValueError as exc:  # CommunityFileError is a ValueError
                raise click.ClickException(str(exc)) from None
        _score_archived(json_path, days, None if all_hours else list(issue_hours or (0,)), broker_url, tenant, at,
                        sources)
        return
    from rich.console import Console
    from rich.table import Table

    from forecasting.scoring import chart, score_all

    scores = score_all(quick=quick)
    table = Table(title="Day-ahead forecasts on held-out data (walk-forward, issued 00:00 standard time)")
    for col in ("target", "held out", "MAE", "RMSE", "MAE pers.", "MAE s-naive", "skill vs pers.",
                "skill vs s-naive", "used"):
        table.add_column(col)
    for name, s in scores.items():
        table.add_row(name, s.held_out, f"{s.mae:.3f} {s.unit}", f"{s.rmse:.3f}", f"{s.mae_persistence:.3f}",
                      f"{s.mae_seasonal_naive:.3f}", f"{s.verdict.skill_vs_persistence:+.1%}",
                      f"{s.verdict.skill_vs_seasonal_naive:+.1%}", s.verdict.use)
    console = Console()
    console.print(table)
    for name, s in scores.items():
        console.print(f"  {s.verdict.describe(name)} -- {s.model}")
        if s.comparison:
            console.print(f"    model choice on validation: {s.comparison}")
    chart(scores, chart_path)
    console.print(f"chart: {chart_path}")
    if json_path:
        json_path.write_text(json.dumps({k: v.as_json() for k, v in scores.items()}, indent=2) + "\n")
        console.print(f"scores: {json_path}")


def _score_archived(json_path: Path | None, days: int, issue_hours: list[int] | None, broker_url: str,
                    tenant: str | None, at: str | None, sources: dict | None = None) -> None:
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    from fiware_client import FiwareError, NgsiLdClient
    from forecasting.live_scores import score_archived

    now = None
    if at is not None:
        try:
            now = datetime.fromisoformat(at)
        except ValueError:
            raise click.BadParameter(f"{at!r} is not an ISO 8601 time", param_hint="--at") from None
        if now.tzinfo is None:
            raise click.BadParameter(f"{at!r} needs a UTC offset", param_hint="--at")
        now = now.astimezone(UTC)
    with NgsiLdClient(broker_url, tenant=tenant) as client:
        try:
            report = score_archived(client, now, days, issue_hours=issue_hours, sources=sources)
        except FiwareError as exc:
            raise click.ClickException(f"cannot read the archived forecasts: {exc}") from None
    hours = "every hour" if issue_hours is None else "issued at " + ", ".join(f"{h:02d}:00Z" for h in issue_hours)
    table = Table(title=f"Archived forecasts of the {days} days before {report.generated} ({hours}) vs measured")
    for col in ("target", "forecasts", "hours", "MAE", "MAE pers.", "MAE s-naive", "skill vs pers.",
                "skill vs s-naive", "verdict"):
        table.add_column(col)
    for key, s in sorted(report.scores.items()):
        table.add_row(key, str(s.forecasts), str(s.hours), f"{s.mae:.3f} {s.unit}", f"{s.mae_persistence:.3f}",
                      f"{s.mae_seasonal_naive:.3f}", f"{s.skill_vs_persistence:+.1%}",
                      f"{s.skill_vs_seasonal_naive:+.1%}",
                      {"model": "model used"}.get(s.use, s.use if not s.judged else f"fall back: {s.use}"))
    console = Console()
    console.print(table)
    for key, reason in sorted(report.skipped.items()):
        console.print(f"  {key}: not scored: {reason}")
    if not report.scores and not report.skipped:
        console.print("  no archived load, PV or price forecast whose 24 hours are over in that period")
    if json_path:
        report.save(json_path)
        console.print(f"scores: {json_path}")
